"""Every environment variable batchscore reads, declared once: its type, range, default and meaning.

Environment values come from outside (a scheduler, a shell profile, a wrapper script someone else
wrote), so none is used raw: each is read here, checked against its declaration, and a bad one is
refused before any work with exit 2 and a line naming the variable. Start-up code that runs before
the command line is parsed (XLA flags, signal handling) takes the default for a bad value and the
command then refuses it (check_environment), so even a bad value never ends in a traceback.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from batchscore.base.errors import UsageError


@dataclass(frozen=True)
class Variable:
    name: str
    kind: str  # "int", "number", "choice", "path" (a directory, or "off" where `choices` allows it)
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()

    def parse(self, raw: str) -> Any:
        """The value of `raw`, or UsageError naming the variable and what it accepts."""
        text = raw.strip()
        if self.kind == "choice" or (self.choices and text.lower() in self.choices):
            if text.lower() not in self.choices:
                raise self._refuse(raw, "one of " + ", ".join(self.choices))
            return text.lower()
        if self.kind == "path":
            if "\x00" in text:
                raise self._refuse(raw, "a directory path")
            return text
        try:
            value = int(text) if self.kind == "int" else float(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or not self._in_range(value):
            raise self._refuse(raw, self._accepted())
        return value

    def _in_range(self, value: float) -> bool:
        low = self.minimum if self.minimum is not None else -math.inf
        high = self.maximum if self.maximum is not None else math.inf
        return low <= value <= high

    def _accepted(self) -> str:
        what = "a whole number" if self.kind == "int" else "a number"
        return f"{what} from {self.minimum:g} to {self.maximum:g}"

    def _refuse(self, raw: str, accepted: str) -> UsageError:
        shown = raw if len(raw) <= 40 else raw[:40] + "..."
        return UsageError(f"environment variable {self.name}={shown!r}: expected {accepted}")


MAX_CPU_DEVICES = 8  # past this, a batch's share per device gets too small to keep a core busy


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


VARIABLES: dict[str, Variable] = {
    v.name: v
    for v in (
        Variable(
            "BATCHSCORE_COMPILATION_CACHE",
            "path",
            "",
            "where compiled programs are kept (a private directory), or off",
            choices=("off",),
        ),
        Variable("XDG_CACHE_HOME", "path", "", "the user's cache root (the cache: its batchscore/jax)"),
        Variable(
            "BATCHSCORE_CPU_DEVICES",
            "int",
            min(_cores(), MAX_CPU_DEVICES),
            f"host devices the CPU is split into, each scoring its share of every batch on one core "
            f"(default: one per core, at most {MAX_CPU_DEVICES})",
            minimum=1,
            maximum=_cores(),
        ),
        Variable(
            "BATCHSCORE_STOP_GRACE_SECONDS",
            "number",
            30.0,
            "how long a stop after SIGINT/SIGTERM may take before the process ends",
            minimum=0.1,
            maximum=3600,
        ),
        Variable(
            "BATCHSCORE_XLA_DEFAULTS",
            "choice",
            "on",
            "off drops batchscore's XLA flags, and with them the determinism promise",
            choices=("on", "off"),
        ),
        Variable(
            "BATCHSCORE_GPU_RNN",
            "choice",
            "cudnn",
            "the GPU recurrence: cuDNN's kernel or the portable scan",
            choices=("cudnn", "scan"),
        ),
        Variable(
            "BATCHSCORE_S3_CONNECT_TIMEOUT",
            "number",
            None,
            "seconds to connect to an object store",
            minimum=0.001,
            maximum=3600,
        ),
        Variable(
            "BATCHSCORE_S3_REQUEST_TIMEOUT",
            "number",
            None,
            "seconds an object-store request may take",
            minimum=0.001,
            maximum=3600,
        ),
        Variable(
            "BATCHSCORE_S3_RETRIES", "int", None, "attempts per object-store request", minimum=1, maximum=100
        ),
    )
}


def read(name: str, environ: Mapping[str, str] | None = None) -> Any:
    """The checked value of a declared variable (its default when unset or empty)."""
    variable = VARIABLES[name]
    raw = (os.environ if environ is None else environ).get(name, "")
    return variable.parse(raw) if raw.strip() else variable.default


def read_or_default(name: str) -> Any:
    """For start-up code that runs before a command can refuse a bad value (see the module text)."""
    try:
        return read(name)
    except UsageError:
        return VARIABLES[name].default


def check_environment(environ: Mapping[str, str] | None = None) -> None:
    """Refuse every declared variable with a bad value, all named in one line (exit 2)."""
    problems = []
    for name in VARIABLES:
        try:
            read(name, environ)
        except UsageError as err:
            problems.append(str(err))
    if problems:
        raise UsageError("; ".join(problems))
