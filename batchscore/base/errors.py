"""Exit codes, and the errors an operator can act on, each carrying its code (docs/operations.md)."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Every exit status batchscore documents, named once."""

    OK = 0
    FAILED = 1
    USAGE = 2
    BAD_INPUT = 3
    BAD_MODEL = 4
    OUTPUT = 5
    ERROR_RATE = 6
    BAD_FILES_SKIPPED = 7  # finished, but some input files were bad and left out
    NO_INPUT = 8
    DRIFT = 9
    INTERRUPTED = 130


class BatchscoreError(Exception):
    """A failure explained in one message; the CLI prints it without a traceback."""

    exit_code = ExitCode.FAILED


class InputError(BatchscoreError):
    """An input file or location is missing, unreadable or malformed."""

    exit_code = ExitCode.BAD_INPUT


class NoInputFound(InputError):
    """Nothing to score at the given place (missing path, empty directory, a glob matching nothing).

    Its own exit code, because for a nightly job it usually means "the data has not landed yet:
    wait and rerun", not "fix a file".
    """

    exit_code = ExitCode.NO_INPUT


class ModelError(BatchscoreError):
    """The model bundle cannot be used."""

    exit_code = ExitCode.BAD_MODEL


class OutputError(BatchscoreError):
    """Output cannot be written (exists, not writable, disk full, ...)."""

    exit_code = ExitCode.OUTPUT


class ErrorRateExceeded(BatchscoreError):
    """Too many rows could not be scored."""

    exit_code = ExitCode.ERROR_RATE


class DriftAlert(BatchscoreError):
    """fail_on_drift: the input or the scores moved away from the model's reference profile.

    The outputs are complete and correct for the model; the exit code says "do not publish them
    unreviewed" (a job writes no _SUCCESS).
    """

    exit_code = ExitCode.DRIFT


class Interrupted(BatchscoreError):
    """SIGINT/SIGTERM: stopped cleanly with resumable state."""

    exit_code = ExitCode.INTERRUPTED


class UsageError(BatchscoreError):
    """The command asks for something that cannot be done (a bad option value, an output that is an input)."""

    exit_code = ExitCode.USAGE


class OutOfMemory(UsageError):
    """The device or host ran out of memory for a batch: a setting to lower, not a bug."""


class NoGpu(UsageError):
    """A GPU was asked for (--device gpu) and this process has none."""


class MissingExtra(UsageError):
    """An optional part of batchscore was asked for without its extra installed: a setup matter."""


def require_extra(module: str, extra: str, purpose: str):
    """Import `module`, or stop with the pip command that installs it (exit 2, not a traceback)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtra(f"{purpose} needs the '{extra}' extra: pip install 'batchscore[{extra}]'") from err


def error_record(err: BatchscoreError) -> dict[str, str]:
    """An error as plain data, for crossing a process boundary (a Ray worker) without pickling."""
    return {"kind": type(err).__name__, "message": str(err)}


def error_from_record(record: dict[str, str]) -> BatchscoreError:
    """The error `error_record` described, as its own class (BatchscoreError for an unknown kind)."""
    kinds: dict[str, type[BatchscoreError]] = {}
    pending: list[type[BatchscoreError]] = [BatchscoreError]
    while pending:
        kind = pending.pop()
        kinds[kind.__name__] = kind
        pending.extend(kind.__subclasses__())
    return kinds.get(record.get("kind", ""), BatchscoreError)(record.get("message", ""))
