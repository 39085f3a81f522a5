"""`batchscore report`: one self-contained HTML page from a job's nightly metrics.json files.

Operators do not read JSON files to see a trend. The page puts every date of a job's output root side
by side (rows, errors by reason, label shares, drift statistics against their thresholds, throughput)
and draws the latest night's probability histogram against the model's reference. Charts are Plotly
figures with plotly.js inlined once, so the file opens offline, from a laptop or a mail attachment.
"""

from __future__ import annotations

import html
import itertools
import json
import os
from datetime import UTC, datetime

import pyarrow.fs as pafs

from batchscore.base.errors import InputError, NoInputFound, UsageError, require_extra
from batchscore.io.console import printable
from batchscore.io.paths import Location, require_regular_file, resolve
from batchscore.io.safe_files import is_local, write_location_bytes

METRICS_DIR = "_metrics"
SOURCE_KEY = "_metrics_file"  # where a night's metrics were read from, for error messages
STATUS_COLOURS = {"ok": "#1a7f37", "warn": "#9a6700", "alert": "#cf222e", "failed": "#cf222e"}
DATE_AXIS = {"type": "category", "title": "date"}  # one slot per night, not a time scale


def collect_metrics(root: str) -> list[dict]:
    """Every `_metrics/date=*/metrics.json` under a job's output root, oldest date first."""
    base = resolve(root).child(METRICS_DIR)
    selector = pafs.FileSelector(base.path, recursive=False, allow_not_found=True)
    nights = []
    for info in base.filesystem.get_file_info(selector):
        name = info.path.rstrip("/").rsplit("/", 1)[-1]
        if info.type != pafs.FileType.Directory or not name.startswith("date="):
            continue
        path = Location(base.filesystem, info.path, f"{base.uri}/{name}").child("metrics.json")
        if not path.exists():
            continue
        require_regular_file(path)  # a FIFO would block the report forever
        try:
            with path.filesystem.open_input_stream(path.path) as handle:
                night = json.loads(handle.read().decode("utf-8"))
        except (OSError, ValueError, RecursionError) as err:
            raise InputError(f"{path.uri}: not a readable metrics.json: {printable(str(err), 200)}") from err
        if not isinstance(night, dict):
            raise InputError(f"{path.uri}: not a metrics.json (a JSON object was expected)")
        problem = _night_problem(night)
        if problem:
            raise InputError(f"{path.uri}: {problem}")
        nights.append({**night, SOURCE_KEY: path.uri})
    if not nights:
        raise NoInputFound(f"{base.uri}: no date=*/metrics.json found; is {root} a job's output root?")
    return sorted(nights, key=lambda m: str(m.get("date", "")))


# What the page reads from a night's metrics.json, and the type each must have. A metrics.json is
# foreign data (anyone who can write the output root can edit it): a value of another type is refused
# here, naming the file and key, and every text that reaches the page is HTML-escaped (_e).
_TEXT, _DATE, _COUNT, _NUMBER, _CODE = "text", "date", "count", "number", "exit code"
_HISTOGRAM = {"edges": [_NUMBER], "counts": [_COUNT]}
NIGHT_FIELDS: dict = {
    "job": _TEXT,
    "date": _DATE,
    "status": _TEXT,
    "exit_code": _CODE,
    "rows": _COUNT,
    "error_rows": _COUNT,
    "errors": {_TEXT: _COUNT},
    "labels": {_TEXT: _COUNT},
    "mean_prob_positive": _NUMBER,
    "rows_per_second": _NUMBER,
    "error_rate": _NUMBER,
    "profile": {"prob_histogram": _HISTOGRAM},
    "drift": {
        "status": _TEXT,
        "reasons": [_TEXT],
        "unknown_rate": _NUMBER,
        "unknown_rate_ratio": _NUMBER,
        "psi_prob_positive": _NUMBER,
        "psi_length": _NUMBER,
        "label_share_shift": _NUMBER,
        "thresholds": {_TEXT: _NUMBER},
        "reference": {"prob_histogram": _HISTOGRAM},
    },
}
_LARGEST = 1e15  # beyond any count or rate a night can have


def _night_problem(night: dict) -> str | None:
    return _value_problem(night, NIGHT_FIELDS, "")


def _value_problem(value, kind, key: str) -> str | None:
    """Why `value` (at `key`) does not fit `kind`; None when it does or is null."""
    if value is None:
        return None
    if isinstance(kind, list):
        if not isinstance(value, list):
            return f"{key} must be a list"
        return next(
            filter(None, (_value_problem(v, kind[0], f"{key}[{i}]") for i, v in enumerate(value))), None
        )
    if isinstance(kind, dict):
        if not isinstance(value, dict):
            return f"{key} must be an object"
        if _TEXT in kind:  # any names, one kind of value
            found = (
                _value_problem(v, kind[_TEXT], f"{key}.{printable(str(k), 40)}") for k, v in value.items()
            )
        else:
            found = (_value_problem(value.get(k), sub, f"{key}.{k}".lstrip(".")) for k, sub in kind.items())
        return next(filter(None, found), None)
    if kind in (_TEXT, _DATE):
        if not isinstance(value, str) or len(value) > 500:
            return f"{key} must be a text of at most 500 characters"
        if kind == _DATE and not _is_date(value):
            return f"{key} must be a date YYYY-MM-DD (got {printable(value, 40)!r})"
        return None
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not abs(value) <= _LARGEST:  # NaN fails too
        return f"{key} must be a number (got {printable(json.dumps(value)[:40])})"
    if kind in (_COUNT, _CODE) and (not float(value).is_integer() or value < 0):
        return f"{key} must be a whole number, 0 or more (got {value!r})"
    return None


def _is_date(text: str) -> bool:
    try:
        return datetime.strptime(text, "%Y-%m-%d").date().isoformat() == text
    except ValueError:
        return False


def render(nights: list[dict], root: str) -> str:
    """The page as one HTML string."""
    go = require_extra("plotly.graph_objects", "report", "batchscore report")
    get_plotlyjs = require_extra("plotly.offline", "report", "batchscore report").get_plotlyjs
    latest = nights[-1]
    drift = latest.get("drift") or {}
    figures = [_trend_figure(go, nights), _drift_figure(go, nights), _histogram_figure(go, latest)]
    charts = "\n".join(
        f.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False})
        for f in figures
        if f
    )
    title = f"batchscore report: {latest.get('job', root)}"
    generated = datetime.now(UTC).isoformat(timespec="seconds")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #1f2328; }}
table {{ border-collapse: collapse; font-size: 0.85rem; }}
th, td {{ border: 1px solid #d0d7de; padding: 0.3rem 0.5rem; text-align: right; }}
th {{ background: #f6f8fa; }} td.text {{ text-align: left; }}
.status {{ font-weight: 600; }} .note {{ color: #59636e; font-size: 0.85rem; }}
</style>
<script>{get_plotlyjs()}</script>
</head><body>
<h1>{_e(title)}</h1>
<p class="note">Output root {_e(root)}; {len(nights)} date(s), {_e(nights[0].get("date"))} to
{_e(latest.get("date"))}; generated {generated}.</p>
<h2>Latest night: {_e(latest.get("date"))}</h2>
<p>Run {_badge(latest.get("status", "?"))}, drift {_badge(drift.get("status", "unavailable"))}.
{_e("; ".join(drift.get("reasons", [])))}</p>
<h2>Every night</h2>
{_table(nights)}
<p class="note">Drift thresholds (latest night): {_e(_thresholds(drift))}. PSI compares the share of rows
per bin with the model's validation rows; see README "Drift" for what each signal means.</p>
<h2>Charts</h2>
{charts}
</body></html>
"""


def write_report(root: str, output: str) -> int:
    """Build the page for `root` and write it to `output` (local path or URI); returns the nights."""
    target = resolve(output)
    if is_local(target.filesystem) and not os.path.isdir(os.path.dirname(target.path)):
        raise UsageError(f"-o {output}: directory {os.path.dirname(target.path)} does not exist")
    nights = collect_metrics(root)
    try:
        page = render(nights, root)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise InputError(
            f"{_unrenderable(nights, root)}: a metrics.json without the expected fields ({err!r})"
        ) from err
    write_location_bytes(target, page.encode("utf-8"))
    return len(nights)


def _unrenderable(nights: list[dict], root: str) -> str:
    """Which night's file breaks the page, found by rendering each night alone (failure path only)."""
    for night in nights:
        try:
            render([night], root)
        except (KeyError, TypeError, ValueError, AttributeError):
            return str(night.get(SOURCE_KEY, root))
    return root


COLUMNS = (
    "date",
    "status",
    "rows",
    "errors",
    "labels",
    "mean p(pos)",
    "unknown tokens",
    "drift",
    "PSI prob",
    "PSI length",
    "label shift",
    "rows/s",
)


def _table(nights: list[dict]) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in COLUMNS)
    body = []
    for night in reversed(nights):  # newest first, as an operator reads it
        drift = night.get("drift") or {}
        rows = night.get("rows") or 0
        labels = night.get("labels") or {}
        errors = night.get("errors") or {}
        cells = [
            _e(night.get("date")),
            _badge(night.get("status", "?"))
            + (_e(f" (exit {night['exit_code']})") if night.get("exit_code") else ""),
            f"{rows:,}",
            _e(f"{night.get('error_rows', 0):,}" + ("".join(f"; {k} {v:,}" for k, v in errors.items()))),
            _e(", ".join(f"{k} {v / rows:.1%}" for k, v in sorted(labels.items())) if rows else ""),
            _number(night.get("mean_prob_positive"), ".3f"),
            _number(drift.get("unknown_rate"), ".2%"),
            _badge(drift.get("status", "unavailable")),
            _number(drift.get("psi_prob_positive"), ".3f"),
            _number(drift.get("psi_length"), ".3f"),
            _number(drift.get("label_share_shift"), ".2f"),
            _number(night.get("rows_per_second"), ",.0f"),
        ]
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _trend_figure(go, nights: list[dict]):
    dates = [n.get("date") for n in nights]
    fig = go.Figure()
    fig.add_bar(x=dates, y=[n.get("rows") or 0 for n in nights], name="rows")
    fig.add_scatter(
        x=dates,
        y=[n.get("error_rate") or 0 for n in nights],
        name="error rate",
        yaxis="y2",
        mode="lines+markers",
    )
    top = max([n.get("error_rate") or 0 for n in nights] + [0.04]) * 1.25
    fig.update_layout(
        title="Rows and error rate per night",
        xaxis=DATE_AXIS,
        yaxis={"title": "rows", "rangemode": "tozero"},
        yaxis2={
            "title": "error rate",
            "overlaying": "y",
            "side": "right",
            "tickformat": ".1%",
            "range": [0, top],
        },
        height=360,
    )
    return fig


def _drift_figure(go, nights: list[dict]):
    dates = [n.get("date") for n in nights]
    drifts = [n.get("drift") or {} for n in nights]
    fig = go.Figure()
    for key, name in (("psi_prob_positive", "PSI prob_positive"), ("psi_length", "PSI length")):
        fig.add_scatter(x=dates, y=[d.get(key) for d in drifts], name=name, mode="lines+markers")
    fig.add_scatter(
        x=dates,
        y=[d.get("unknown_rate_ratio") for d in drifts],
        name="unknown-token rate / reference",
        mode="lines+markers",
        yaxis="y2",
    )
    thresholds = drifts[-1].get("thresholds") or {}
    for level, dash in (("warn", "dot"), ("alert", "dash")):
        if f"psi_{level}" in thresholds:
            fig.add_hline(
                y=thresholds[f"psi_{level}"],
                line_dash=dash,
                line_color=STATUS_COLOURS[level],
                annotation_text=f"PSI {level}",
            )
    fig.update_layout(
        title="Drift against the model's reference",
        xaxis=DATE_AXIS,
        yaxis={"title": "PSI", "rangemode": "tozero"},
        yaxis2={
            "title": "unknown-token rate / reference",
            "overlaying": "y",
            "side": "right",
            "rangemode": "tozero",
        },
        legend={"orientation": "h", "y": -0.2},
        height=360,
    )
    return fig


def _histogram_figure(go, night: dict):
    drift = night.get("drift") or {}
    run = (night.get("profile") or {}).get("prob_histogram")
    reference = (drift.get("reference") or {}).get("prob_histogram")
    if not run or not sum(run["counts"]):
        return None
    edges = run["edges"]
    labels = [f"{a:.1f}-{b:.1f}" for a, b in itertools.pairwise(edges)]
    fig = go.Figure()
    fig.add_bar(x=labels, y=_shares(run["counts"]), name=f"{night.get('date')} ({sum(run['counts']):,} rows)")
    if reference:
        fig.add_bar(x=labels, y=_shares(reference["counts"]), name="reference (validation rows)")
    fig.update_layout(
        title=f"prob_positive, {night.get('date')} against the reference",
        yaxis={"title": "share of rows", "tickformat": ".0%"},
        xaxis={"title": "prob_positive"},
        barmode="group",
        height=360,
    )
    return fig


def _shares(counts: list[int]) -> list[float]:
    total = sum(counts) or 1
    return [c / total for c in counts]


def _thresholds(drift: dict) -> str:
    t = drift.get("thresholds") or {}
    if not t:
        return "none recorded"
    return (
        f"PSI warn {t['psi_warn']:g} / alert {t['psi_alert']:g}; unknown-token rate warn "
        f"{t['unknown_ratio_warn']:g}x / alert {t['unknown_ratio_alert']:g}x the reference; label shift warn "
        f"{t['label_shift_warn']:g} / alert {t['label_shift_alert']:g}; PSI and label shift judged from "
        f"{t['min_rows']} rows"
    )


def _badge(status: str) -> str:
    colour = STATUS_COLOURS.get(status, "#59636e")
    return f'<span class="status" style="color:{colour}">{_e(status)}</span>'


def _number(value, spec: str) -> str:
    return "" if value is None else _e(format(value, spec))


def _e(value) -> str:
    return html.escape(str(value if value is not None else ""))
