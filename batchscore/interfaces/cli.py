"""The `batchscore` command line: parse options, call the library, report. No logic of its own."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import sys
from pathlib import Path

import click

from batchscore.base import settings
from batchscore.base.errors import ExitCode
from batchscore.base.version import __version__
from batchscore.io.console import STDERR, printable
from batchscore.training.config import TrainConfig

# Click 8.2+ raises this for a bare `batchscore`; 8.1 prints the help itself and exits 0
_NO_ARGS_IS_HELP: type[Exception] | tuple = getattr(click.exceptions, "NoArgsIsHelpError", ())


class _WithTraceback(Exception):
    """Carries a command's error (its __cause__) past the one-line boundary: --debug was given."""


class _Program(click.Group):
    """The error boundary of every command: Click's own errors (unknown option, bad value) in
    batchscore's one-line form (exit 2), and any other error as _exit_for says."""

    def invoke(self, ctx: click.Context):
        ctx.ensure_object(dict)  # the command's options a subcommand shares (--debug), per invocation
        try:
            return super().invoke(ctx)
        except BrokenPipeError:  # stdout's reader went away (`predict - | head -1`): it wants no more
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise click.exceptions.Exit(0) from None
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as err:
            if ctx.obj.get("debug"):
                raise _WithTraceback() from err
            _exit_for(err)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            result = super().main(args, prog_name or "batchscore", complete_var, False, **extra)
        except _NO_ARGS_IS_HELP as err:  # a bare `batchscore`: the help, as asked
            click.echo(err.format_message())
            sys.exit(0)
        except click.UsageError as err:
            where = err.ctx.command_path if err.ctx is not None else "batchscore"
            message = f"{err.format_message()} (see '{where} --help')"
            _tell(f"error: {message}")
            sys.exit(err.exit_code)
        except click.ClickException as err:
            _tell(f"error: {err.format_message()}")
            sys.exit(err.exit_code)
        except click.Abort:
            _tell("error: interrupted")
            sys.exit(ExitCode.INTERRUPTED)
        except _WithTraceback as shown:  # --debug: the error as Python shows it
            raise shown.__cause__ from None
        except Exception as err:
            _exit_for(err)
        sys.exit(result if isinstance(result, int) else 0)


@click.group(cls=_Program, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="batchscore")
def main() -> None:
    """Score review text for sentiment in batch: Parquet/CSV shards in, scored Parquet out.

    Typical nightly use:  batchscore run 'shards/*.parquet' -o scored/
    """
    from batchscore.base.environment import check_environment

    check_environment()  # a bad BATCHSCORE_* value: exit 2 naming it, before any work
    try:
        os.getcwd()
    except FileNotFoundError:  # relative paths would fail later, one by one, naming no file
        raise click.UsageError(
            "the current directory no longer exists; cd to an existing one and rerun"
        ) from None


def _load_bundle(model: Path | None):
    from batchscore.model.bundle import load_bundle

    return load_bundle(model)


_model_option = click.option(
    "--model",
    type=click.Path(path_type=Path),
    default=None,
    help="Model bundle directory. Default: the bundled IMDb model.",
)


def _stamp() -> str:
    """A UTC timestamp when stderr goes to a log file or a scheduler, nothing on a terminal."""
    if sys.stderr.isatty():
        return ""
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ ")


def _tell(line: str) -> None:
    """One `[time ]batchscore: ...` line on stderr (dropped where nobody reads it: console.STDERR);
    whatever `line` holds (a file name, another run's lock file) cannot start a line of its own."""
    click.echo(f"{_stamp()}batchscore: {printable(line)}", file=STDERR)


def _logger(quiet: bool = False):
    """Each message as one `[time ]batchscore: ...` line on stderr; --quiet drops them all. Several
    lines are several messages (RunSummary.lines): a newline inside one is shown as an escape."""

    def log(message: str) -> None:
        if not quiet:
            _tell(message.removeprefix("batchscore: "))

    return log


def _request_debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """--debug, kept in the command's context (an engine gets it as an argument: its own logs too)."""
    if value:
        ctx.ensure_object(dict)["debug"] = True


def _debug_requested() -> bool:
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and (ctx.obj or {}).get("debug"))


_debug_option = click.option(
    "--debug", is_flag=True, expose_value=False, callback=_request_debug, help="Show Python tracebacks."
)


def _exit_for(err: Exception) -> None:
    """The one error boundary: one readable line and the error's documented exit code (README, Exit
    codes); with --debug the command's invoke shows the traceback instead."""
    from batchscore.base.errors import BatchscoreError

    code = err.exit_code if isinstance(err, BatchscoreError) else ExitCode.FAILED
    _tell(f"error: {err}")
    sys.exit(code)


_progress_option = click.option(
    "--progress/--no-progress", default=None, help="Progress bar (default: when stderr is a terminal)."
)


def _summary_json_option(what: str):
    return click.option(
        "--summary-json",
        type=click.Path(path_type=Path),
        default=None,
        help=f'Also write {what} ("-": stdout), on success and on failure.',
    )


_quiet_option = click.option(
    "--quiet", "-q", is_flag=True, help="No progress, log or summary lines on stderr (errors still are)."
)


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "-o",
    "--output",
    default=None,
    help="Output .parquet file (one input) or directory (several inputs, a directory or a glob).",
)
@_model_option
@settings.cli_options
@_progress_option
@_summary_json_option("the summary as JSON")
@_quiet_option
@_debug_option
def run(
    inputs,
    output,
    model,
    progress,
    summary_json,
    quiet,
    engine,
    ray_address,
    **values,
) -> None:
    """Score review text in INPUTS (files, directories or globs of .parquet/.csv/.csv.gz).

    \b
    One file, no -o:      writes <stem>.scored.parquet beside it.
    One file, -o X.parquet: writes X.parquet.
    Several / directory:  -o DIR gets DIR/<stem>.parquet per input file.

    Output rows keep the input order. Columns: the input's columns except the text (see
    --keep-text), 'row' (without --id-column), label, prob_positive, prob_negative, n_tokens,
    truncated, error, model, model_sha256, run_id, scored_at (see --no-provenance).
    Exit codes: 0 ok, 2 usage, 3 bad input, 4 bad model, 5 output problem, 6 too many bad rows,
    7 finished but bad files were skipped, 8 no input found, 9 drift (with --fail-on-drift),
    130 interrupted (resumable).
    """
    from batchscore.base.interrupts import stop_on_signals

    if engine == "local" and (click.get_current_context().obj or {}).get("own_process"):
        _arrow_without_pandas()
    with stop_on_signals():  # before the heavy imports: an early Ctrl-C is a clean exit 130 too
        from batchscore.interfaces.run_command import run_scoring
        from batchscore.pipeline.options import RunOptions

        run_options = RunOptions.from_settings(
            values, command="batchscore " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        )
        summary = run_scoring(
            list(inputs),
            output,
            model,
            run_options,
            False if quiet else progress,
            summary_json,
            log=_logger(quiet),
            engine=engine,
            ray_address=ray_address,
            engine_logs=_debug_requested(),
        )
    sys.exit(summary.exit_code)  # 0, or 7: finished with bad files skipped (pipeline/verdict.py)


def _arrow_without_pandas() -> None:
    """pyarrow imports pandas (0.3-0.4 s, a sixth of a small run) the first time it converts
    anything, only to ask whether the input is a pandas object. A local `run` hands it Arrow and
    NumPy data alone, so its own process runs pyarrow as it runs where pandas is not installed.
    Only the program's process: a caller's interpreter keeps its pandas."""
    if "pandas" not in sys.modules:
        sys.meta_path.insert(0, _NoPandas())


class _NoPandas:
    """An import finder under which `import pandas` fails as it does where pandas is not installed."""

    def find_spec(self, name: str, path=None, target=None):
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError("pandas is not loaded by a local `batchscore run`", name=name)
        return None


@main.command()
@click.argument("texts", nargs=-1, required=True)
@_model_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per text.")
def predict(texts, model, as_json) -> None:
    """Print the label and probabilities for each TEXT (for humans checking a model).

    TEXT "-" reads one text per line from standard input.
    """
    from batchscore.interfaces.model_commands import predict_texts

    if list(texts) == ["-"]:  # bytes that are not UTF-8 become that line's error, not a crash
        texts = [line.decode("utf-8", "surrogateescape").rstrip("\r\n") for line in sys.stdin.buffer]
    results = predict_texts(list(texts), _load_bundle(model))
    if not as_json:
        click.echo(f"{'label':8s}  {'p(positive)':>11s}  {'tokens':>6s}  text")
    for result in results:
        tokens = "-" if result["n_tokens"] is None else str(result["n_tokens"])
        if as_json:
            click.echo(json.dumps({"schema_version": PREDICT_SCHEMA_VERSION, **result}))
        elif result["error"] is not None:  # no probability to show, only why
            click.echo(f"{'error':8s}  {result['error']:>11s}  {tokens:>6s}  {result['text'][:60]!r}")
        else:
            cut = " (truncated)" if result["truncated"] else ""
            click.echo(
                f"{result['label']:8s}  {result['prob_positive']:11.3f}  {tokens:>6s}  "
                f"{result['text'][:60]!r}{cut}"
            )


@main.command()
@click.argument("data", type=click.Path(exists=True, path_type=Path))
@_model_option
@click.option("--text-column", default="text", show_default=True)
@click.option("--label-column", default="label", show_default=True)
@click.option(
    "--against",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Another bundle to compare with on the same rows (paired difference, McNemar test): "
    "is a new model really better than the one in production?",
)
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
def evaluate(data, model, text_column, label_column, against, as_json) -> None:
    """Accuracy, per-class precision/recall/F1, ROC-AUC, confusion matrix, accuracy by length, ECE."""
    from batchscore.training.datasets import read_labeled
    from batchscore.training.evaluate import (
        REPORT_SCHEMA_VERSION,
        evaluate_bundle,
        format_comparison,
        format_report,
    )

    other = _load_bundle(against) if against is not None else None
    report = evaluate_bundle(
        _load_bundle(model), read_labeled(data, text_column, label_column), against=other
    )
    if as_json:
        if "comparison" in report:
            report["comparison"]["against"] = str(against)
        click.echo(json.dumps({"schema_version": REPORT_SCHEMA_VERSION, **report}, indent=2))
        return
    click.echo(format_report(report))
    if "comparison" in report:
        name = str(model) if model is not None else "bundled model"
        click.echo("\n" + format_comparison(report["comparison"], name, str(against)))


@main.command()
@click.argument("root")
@click.option(
    "-o", "--output", default="report.html", show_default=True, help="Where to write the HTML page."
)
def report(root, output) -> None:
    """An HTML page of a job's nights: ROOT is the job's output root (holding _metrics/date=*/).

    Self-contained (opens offline); needs batchscore[report].
    """
    from batchscore.monitoring.report_page import write_report

    if not output.lower().endswith((".html", ".htm")):  # r.pdf would hold HTML under a PDF's name
        raise click.BadParameter(f"{output}: the report is an HTML page; name it .html", param_hint="-o")
    nights = write_report(root, output)
    _tell(f"wrote {output} ({nights} night(s))")


# The bundled model's training settings (its model card has the full command, data included: the
# film-held-out split and --lm-data with IMDb's unlabeled reviews); --recipe imdb.
RECIPES = {
    "imdb": {
        "epochs": 6,
        "dropout": 0.5,
        "ema_decay": 0.998,
        "max_tokens": 500,
        "head_tokens": 125,
        "pooling": ("max", "mean"),
        "average_epochs": True,
        "lm_pretrain_epochs": 2,
    }
}


def _as_flags(settings: dict) -> str:
    """A recipe as the command-line options it stands for."""
    flags = []
    for key, value in settings.items():
        flag = "--" + key.replace("_", "-")
        flags.append(
            flag if value is True else f"{flag} {','.join(value) if isinstance(value, tuple) else value}"
        )
    return " ".join(flags)


# of `predict --json` lines and of the profile `reference-profile` prints (README, "Output schema")
PREDICT_SCHEMA_VERSION = 1
PROFILE_SCHEMA_VERSION = 1

_SHARE = click.FloatRange(min=0.0, max=1.0, max_open=True)  # a dropout rate, a decay: 1 would stop learning
_AT_LEAST_1 = click.IntRange(min=1)
_NOT_NEGATIVE = click.FloatRange(min=0.0)


def _setting(name: str, kind: click.ParamType, help: str | None = None):
    """A training setting: a number within its range (checked before any work), with TrainConfig's
    default (declared there once), shown."""
    default = getattr(TrainConfig, name.removeprefix("--").replace("-", "_"))
    return click.option(name, type=kind, default=default, show_default=True, help=help)


def _training_data_options(train_help: str):
    """--train, --valid and --valid-fraction: how training split its data (train and
    reference-profile must redo the same split)."""

    def decorate(command):
        command = click.option(
            "--valid-fraction",
            type=click.FloatRange(min=0.0, max=1.0, min_open=True, max_open=True),
            default=0.1,
            show_default=True,
            help="Share of --train held out for validation.",
        )(command)
        command = click.option(
            "--valid",
            "valid_path",
            type=click.Path(exists=True, path_type=Path),
            help="Labeled validation data. Default: a stratified --valid-fraction of --train.",
        )(command)
        return click.option(
            "--train",
            "train_path",
            required=True,
            type=click.Path(exists=True, path_type=Path),
            help=train_help,
        )(command)

    return decorate


@main.command("reference-profile")
@click.option(
    "--model",
    "model",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Bundle directory whose card gets the profile.",
)
@_training_data_options("The training data the model was trained with (its validation split is redone).")
@click.option("--text-column", default="text", show_default=True)
@click.option("--label-column", default="label", show_default=True)
def reference_profile(model, train_path, valid_path, valid_fraction, text_column, label_column) -> None:
    """Add the drift reference profile to a bundle trained before profiles existed.

    Training writes it itself; this recomputes it from the model's own validation rows (checked
    against the card's sha256) and rewrites only config.json.
    """
    from batchscore.training.card import add_reference_profile

    profile = add_reference_profile(model, train_path, valid_path, valid_fraction, text_column, label_column)
    click.echo(json.dumps({"schema_version": PROFILE_SCHEMA_VERSION, **profile}, indent=2))


@main.command()
@_model_option
@click.option("--json", "as_json", is_flag=True, help="The whole config.json card as JSON.")
def info(model, as_json) -> None:
    """Print the model card: data, embeddings, command, seed, metrics."""
    from batchscore.interfaces.model_commands import model_card_text

    bundle = _load_bundle(model)
    click.echo(json.dumps(bundle.config_dict(), indent=2) if as_json else model_card_text(bundle))


@main.command()
@click.argument("spec", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--date", "day", default=None, help="Partition date YYYY-MM-DD (default: yesterday, UTC).")
@_progress_option
@_summary_json_option("metrics.json's record as one JSON line")
@_quiet_option
@_debug_option
def job(spec, day, progress, summary_json, quiet) -> None:
    """Run a nightly job definition (TOML) for one date, idempotently.

    Writes OUTPUT/date=YYYY-MM-DD/<stem>.parquet, then OUTPUT/date=YYYY-MM-DD/_SUCCESS and
    OUTPUT/_metrics/date=YYYY-MM-DD/metrics.json. Rerunning a date skips finished shards.
    """
    from datetime import UTC, datetime, timedelta

    from batchscore.interfaces.jobs import run_job

    try:  # exactly YYYY-MM-DD: fromisoformat alone also takes 20260101 and 2026-W01 as other dates
        when = (
            datetime.strptime(day, "%Y-%m-%d").date()
            if day is not None
            else datetime.now(UTC).date() - timedelta(days=1)
        )
        if day is not None and when.isoformat() != day:
            raise ValueError(day)
    except ValueError:
        raise click.BadParameter(f"{day!r} is not YYYY-MM-DD", param_hint="--date") from None
    from batchscore.base.interrupts import stop_on_signals

    with stop_on_signals():
        metrics = run_job(
            spec,
            when,
            progress=False if quiet else progress,
            log=_logger(quiet),
            summary_json=summary_json,
        )
    sys.exit(metrics["exit_code"])  # 0, or 7: bad files skipped (pipeline/verdict.py)


def _parse_pooling(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    from batchscore.model.bilstm import ModelConfig

    pooling = tuple(part.strip() for part in value.split(",") if part.strip())
    try:
        ModelConfig(vocab_size=1, pooling=pooling)
    except ValueError as err:
        raise click.BadParameter(str(err)) from err
    return pooling


@main.command()
@_training_data_options(
    "Labeled training data: .parquet/.csv with text and label columns, or an aclImdb folder."
)
@click.option(
    "--test",
    "test_path",
    type=click.Path(exists=True, path_type=Path),
    help="Labeled test data, evaluated once at the end for the model card; never used for choices.",
)
@click.option(
    "--embeddings",
    default="glove-6b-50d",
    show_default=True,
    help="'glove-6b-50d' (needs batchscore[train]) or a Stanford GloVe .txt file of any dimension.",
)
@click.option(
    "-o", "--output", required=True, type=click.Path(path_type=Path), help="Bundle directory to write."
)
@click.option(
    "--checkpoint-dir",
    type=click.Path(path_type=Path),
    help="Where per-epoch checkpoints go. Default: OUTPUT.checkpoint next to the bundle.",
)
@click.option("--resume", is_flag=True, help="Continue from the last checkpoint of an identical run.")
@_setting("--epochs", _AT_LEAST_1)
@_setting("--batch-size", _AT_LEAST_1)
@_setting("--learning-rate", click.FloatRange(min=0.0, min_open=True))
@_setting("--weight-decay", _NOT_NEGATIVE)
@_setting("--dropout", _SHARE)
@_setting("--token-dropout", _SHARE, "Share of training tokens replaced by <unk>.")
@_setting(
    "--embed-lr-scale",
    _NOT_NEGATIVE,
    "Learning-rate factor for the embeddings (0: keep the pretrained vectors fixed).",
)
@_setting(
    "--adversarial-epsilon",
    _NOT_NEGATIVE,
    "Also train on each review's embeddings pushed this L2 distance along its loss gradient "
    "(adversarial training; about 2x the step cost; 0: off).",
)
@_setting(
    "--lm-pretrain-epochs",
    click.IntRange(min=0),
    "First train the LSTM layers to predict each next token of the training texts, in both "
    "reading directions, for this many epochs (language-model pretraining; labels unused; 0: off).",
)
@click.option(
    "--lm-data",
    multiple=True,
    metavar="PATH",
    help="Unlabeled reviews the language-model stage also reads (repeatable): Parquet/CSV files, "
    "folders or globs with the --text-column, or a folder of .txt reviews such as aclImdb/train/unsup/. "
    "They join the vocabulary; a text equal to a training or validation row is left out.",
)
@_setting(
    "--weight-drop",
    _SHARE,
    "Share of the LSTMs' hidden-to-hidden weights dropped, with one mask per training batch "
    "(DropConnect on the recurrence; classifier training only; 0: off).",
)
@_setting("--ema-decay", _SHARE, "Ship an EMA of the weights (0: off).")
@click.option(
    "--average-epochs",
    is_flag=True,
    help="Ship a greedy average of the epochs' weights: each epoch joins only if validation accuracy "
    "does not drop (default: the best epoch alone).",
)
@click.option(
    "--pooling",
    default="",
    callback=_parse_pooling,
    help="Head features beyond the first and last outputs: 'max', 'mean' or 'max,mean' (default: none).",
)
@click.option(
    "--init-model",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Continue from this bundle's weights and vocabulary (a fine-tune) instead of GloVe + random.",
)
@_setting("--hidden", _AT_LEAST_1, "LSTM units per direction.")
@_setting("--num-layers", _AT_LEAST_1)
@_setting("--max-tokens", _AT_LEAST_1, "Truncation length (head + tail kept).")
@_setting("--head-tokens", click.IntRange(min=0), "Tokens kept from the start of a long review.")
@_setting("--min-count", _AT_LEAST_1, "Keep training tokens seen at least this often.")
@_setting("--max-vocab", _AT_LEAST_1)
@_setting("--seed", click.IntRange(min=0))
@click.option("--text-column", default="text", show_default=True)
@click.option("--label-column", default="label", show_default=True)
@_progress_option
@click.option(
    "--recipe",
    type=click.Choice(sorted(RECIPES)),
    default=None,
    help="Start from a named recipe's settings; options given on the command line override it. "
    "'imdb' is the bundled model's: " + _as_flags(RECIPES["imdb"]),
)
@_debug_option
@click.pass_context
def train(ctx: click.Context, recipe: str | None, **options) -> None:
    """Train a model bundle (GloVe -> 2-layer BiLSTM -> first+last [+ pooled] -> Dense).

    The bundle is named after its output directory. --recipe imdb trains the bundled model's recipe.
    """
    from batchscore.training.job import run_training

    for key, value in RECIPES.get(recipe, {}).items():
        if ctx.get_parameter_source(key) is click.core.ParameterSource.DEFAULT:
            options[key] = value
    command = "batchscore " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    run_training(command=command, log=_logger(), **options)


if __name__ == "__main__":
    main()
