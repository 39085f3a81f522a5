"""Every option of a scoring run, declared once: name, type, default, range and help.

`batchscore run`'s options, a job file's [job] keys, RunOptions' defaults and checks, and the Python
API's arguments all read this table, so a default or a limit cannot differ between them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

DEVICES = ("auto", "cpu", "gpu")
PRECISIONS = ("float32", "bfloat16")
DRIFT_LEVELS = ("never", "warn", "alert")  # fail_on_drift's values; the drift statuses above "ok"


@dataclass(frozen=True)
class Setting:
    name: str  # RunOptions field and job key; the CLI flag is --name-with-dashes unless `flag` says
    default: Any
    help: str = ""
    kind: type = str  # str, int, float or bool
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    optional: bool = False  # None allowed (the default then means "decided elsewhere")
    flag: str = ""  # the CLI spelling, when it is not the name's
    negatable: bool = False  # a --x/--no-x switch rather than a plain flag
    in_job: bool = False  # a job file may set it in [job]

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    def problem(self, value: Any) -> str | None:
        """Why `value` is not allowed, in the words RunOptions reports it; None when it is fine."""
        if value is None and self.optional:
            return None
        if self.choices and value not in self.choices:
            return f"{self.name} must be one of {self.choices} (got {value!r})"
        if self.kind in (int, float) and (isinstance(value, bool) or not isinstance(value, int | float)):
            return f"{self.name} must be a number (got {value!r})"
        if (
            self.minimum is not None
            and self.maximum is not None
            and not self.minimum <= value <= self.maximum
        ):
            return f"{self.name} must be between {self.minimum:g} and {self.maximum:g} (got {value!r})"
        if self.minimum is not None and not value >= self.minimum:
            return f"{self.name} must be at least {self.minimum:g} (got {value!r})"
        return None

    def option(self) -> Callable:
        """The Click option of `batchscore run`: the same default and range, checked before any work."""
        show = self.default is not None and not (self.kind is bool and not self.negatable)
        if self.kind is bool:
            if self.negatable:
                name = f"{self.cli_flag}/--no-{self.cli_flag[2:]}"
                return click.option(name, self.name, default=self.default, show_default=True, help=self.help)
            return click.option(self.cli_flag, self.name, is_flag=True, help=self.help)
        if self.choices:
            kind: click.ParamType | type = click.Choice(list(self.choices))
        elif self.kind is int:
            kind = click.IntRange(
                min=None if self.minimum is None else int(self.minimum),
                max=None if self.maximum is None else int(self.maximum),
            )
        elif self.kind is float:
            kind = click.FloatRange(self.minimum, self.maximum)
        else:
            kind = str
        return click.option(
            self.cli_flag,
            self.name,
            type=kind,
            default=self.default,
            show_default=show,
            help=self.help or None,
        )


RUN_SETTINGS: tuple[Setting, ...] = (
    Setting("text_column", "text", "Column holding the review text.", in_job=True),
    Setting(
        "id_column",
        None,
        "Column identifying rows (kept as is). Without it the output gets 'row', the input position.",
        optional=True,
        in_job=True,
    ),
    Setting(
        "batch_tokens",
        131072,  # measured in docs/determinism.md
        "Padded tokens per forward batch and device (rows per device = this / bucket width).",
        int,
        minimum=1,
        in_job=True,
    ),
    # 256-row batches beat 1024 at every input size (docs/determinism.md)
    Setting("max_batch_rows", 256, "Upper bound on rows per batch and device.", int, minimum=1, in_job=True),
    Setting(
        "window_rows",
        16384,
        "Rows read, bucketed and committed together (memory and resume granularity).",
        int,
        minimum=1,
        in_job=True,
    ),
    Setting(
        "max_tokens",
        None,
        "Truncation length. Default: the model's.",
        int,
        minimum=1,
        maximum=100_000,
        optional=True,
        in_job=True,
    ),
    Setting(
        "host_workers",
        None,
        "Threads that tokenize and pad batches. Default: the machine's cores.",
        int,
        minimum=1,
        optional=True,
        in_job=True,
    ),
    Setting(
        "device",
        "auto",
        "Where the model runs: auto (a GPU when JAX sees one), cpu or gpu.",
        choices=DEVICES,
        in_job=True,
    ),
    Setting(
        "precision",
        "float32",
        "Matmul inputs. bfloat16: the LSTM matmuls take bfloat16 inputs (float32 sums), used where "
        "the CPU has native BF16 (AVX512_BF16, AMX; elsewhere float32 runs and the summary says so); "
        "probabilities move by up to ~4e-3, labels rarely (1 of 25,000 IMDb reviews), and it was not "
        "faster where measured (docs/performance.md).",
        choices=PRECISIONS,
        in_job=True,
    ),
    Setting("keep_text", False, "Copy the text column into the output.", bool, in_job=True),
    Setting(
        "provenance",
        True,
        "Add the columns model, model_sha256 (the bundle's files), run_id and scored_at (the run's "
        "start, UTC) to every output; a resumed output keeps the run that started it.",
        bool,
        negatable=True,
        in_job=True,
    ),
    Setting("csv_delimiter", ",", "Field delimiter of CSV inputs.", in_job=True),
    Setting(
        "csv_infer_types",
        False,
        "Infer CSV column types (numbers, dates). Default: every CSV column is kept as written (string).",
        bool,
        flag="--infer-csv-types",
        in_job=True,
    ),
    Setting("overwrite", False, "Replace existing outputs (and discard partial ones).", bool),
    Setting(
        "resume",
        False,
        "Skip outputs already complete for the same input and model; continue partial ones.",
        bool,
    ),
    Setting(
        "skip_bad_files",
        False,
        "With several inputs: score the readable ones, report the rest.",
        bool,
        in_job=True,
    ),
    Setting(
        "max_error_rate",
        0.05,
        "Fail (exit 6) when more than this share of rows cannot be scored.",
        float,
        minimum=0.0,
        maximum=1.0,
        in_job=True,
    ),
    Setting(
        "fail_on_drift",
        "never",
        "Exit 9 when the drift status (input and scores against the model's validation data: token "
        "lengths, unknown words, score distribution) reaches this level; outputs are still written.",
        choices=DRIFT_LEVELS,
    ),
)
# where a run executes: options of `run` and keys of a job, but not RunOptions (the engine is built from them)
ENGINE_SETTINGS: tuple[Setting, ...] = (
    Setting(
        "engine",
        "local",
        "local: this process. ray: Ray Data tasks and an actor pool (needs batchscore[ray]).",
        choices=("local", "ray"),
        in_job=True,
    ),
    Setting(
        "ray_address",
        None,
        "Ray cluster to join (default: $RAY_ADDRESS, else a local one).",
        optional=True,
        in_job=True,
    ),
)
RUN = {setting.name: setting for setting in RUN_SETTINGS + ENGINE_SETTINGS}


def default(name: str) -> Any:
    return RUN[name].default


def cli_options(command: Callable) -> Callable:
    """Decorate a Click command with every run and engine setting, in the table's order."""
    for setting in reversed(RUN_SETTINGS + ENGINE_SETTINGS):
        command = setting.option()(command)
    return command


def job_settings() -> tuple[Setting, ...]:
    """The settings a job file may set in [job]."""
    return tuple(setting for setting in RUN_SETTINGS + ENGINE_SETTINGS if setting.in_job)
