"""Errors an operator can act on, each with its documented exit code."""

from __future__ import annotations


class BatchscoreError(Exception):
    """A failure explained in one message; the CLI prints it without a traceback."""

    exit_code = 1


class InputError(BatchscoreError):
    """An input file or location is missing, unreadable or malformed."""

    exit_code = 3


class NoInputFound(InputError):
    """Nothing to score at the given place (missing path, empty directory, a glob matching nothing).

    Its own exit code, because for a nightly job it usually means "the data has not landed yet:
    wait and rerun", not "fix a file".
    """

    exit_code = 8


class ModelError(BatchscoreError):
    """The model bundle cannot be used."""

    exit_code = 4


class OutputError(BatchscoreError):
    """Output cannot be written (exists, not writable, disk full, ...)."""

    exit_code = 5


class ErrorRateExceeded(BatchscoreError):
    """Too many rows could not be scored."""

    exit_code = 6


class DriftAlert(BatchscoreError):
    """fail_on_drift: the input or the scores moved away from the model's reference profile.

    The outputs are complete and correct for the model; the exit code says "do not publish them
    unreviewed" (a job writes no _SUCCESS).
    """

    exit_code = 9


class Interrupted(BatchscoreError):
    """SIGINT/SIGTERM: stopped cleanly with resumable state."""

    exit_code = 130


class UsageError(BatchscoreError):
    """The command asks for something that cannot be done (a bad option value, an output that is an input)."""

    exit_code = 2


class MissingExtra(UsageError):
    """An optional part of batchscore was asked for without its extra installed: a setup matter."""


def require_extra(module: str, extra: str, purpose: str):
    """Import `module`, or stop with the pip command that installs it (exit 2, not a traceback)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtra(f"{purpose} needs the '{extra}' extra: pip install 'batchscore[{extra}]'") from err
