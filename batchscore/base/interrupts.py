"""SIGINT/SIGTERM as a stop request that the job honours at its next safe point.

Raising from a signal handler lands the exception wherever the main thread happens
to be, including inside JAX or Arrow C++ calls, where it can abort the process
(exit -6/-11) or skip a commit. Inside `stop_on_signals()` the handler only records
the request; the pipeline checks it between windows and files and stops with exit
130, keeping every committed window. A second signal means "now", and outside such
a block (imports, other commands) a signal also ends the process at once with 130:
committed work and checkpoints are safe on disk at every instant.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from batchscore.base.environment import read_or_default
from batchscore.base.errors import Interrupted

# SIGHUP too: a closed terminal or a scheduler ending a session must stop as cleanly as SIGTERM.
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_requested: list[int] = []
_deferring = False


def _handle(signum: int, frame) -> None:
    if _requested or not _deferring:
        os.write(2, b"batchscore: interrupted, exiting now; committed work is kept (rerun to resume)\n")
        os._exit(Interrupted.exit_code)
    _requested.append(signum)


STOP_GRACE_ENV = "BATCHSCORE_STOP_GRACE_SECONDS"  # how long a stop may take before it is forced


def install_for_process() -> None:
    """The program's first act: from here on no signal becomes a traceback or "Aborted!" (exit 1)."""
    for sig in _SIGNALS:
        signal.signal(sig, _handle)
    _watch_for_stuck_stops()


def _watch_for_stuck_stops() -> None:
    """A stop within a bounded time, even while the main thread sits in native code (a remote read
    retrying, a blocked open), where Python's handler cannot run until that call returns.

    The C-level handler still writes each signal's number to the wake-up pipe; a thread reading it
    gives the orderly stop a grace period, then ends the process with 130. Ending at any instant is
    safe: committed work is on disk and the next run resumes after it.
    """
    grace = read_or_default(STOP_GRACE_ENV)
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    try:
        signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    except ValueError:  # not the main thread: no watchdog, the handlers alone
        os.close(read_fd)
        os.close(write_fd)
        return
    wanted = {int(sig) for sig in _SIGNALS}

    def watch() -> None:
        while True:
            received = os.read(read_fd, 64)
            if not received:
                return
            if wanted & set(received):
                timer = threading.Timer(grace, _force_exit, args=(grace,))
                timer.daemon = True
                timer.start()
                return

    threading.Thread(target=watch, name="batchscore-stop-watch", daemon=True).start()


def _force_exit(grace: float) -> None:
    os.write(
        2,
        f"batchscore: still busy {grace:.0f} s after the stop signal (a native call that does not "
        "return); exiting now, committed work is kept (rerun to resume)\n".encode(),
    )
    os._exit(Interrupted.exit_code)


def stop_requested() -> bool:
    return bool(_requested)


RESUME_HINT = "Run the same command with --resume to continue."


def check(what: str = "committed work is kept", hint: str = RESUME_HINT) -> None:
    """Raise Interrupted if a stop was requested; `what` tells the operator where things stand."""
    if _requested:
        name = signal.Signals(_requested[0]).name
        raise Interrupted(f"interrupted ({name}); {what}. {hint}")


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Route SIGINT/SIGTERM to a stop request while the block runs (no-op off the main thread or nested)."""
    global _deferring
    if _deferring or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _handle) for sig in _SIGNALS}
    _deferring = True
    _requested.clear()
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _deferring = False
        _requested.clear()


def ignore_during_teardown() -> None:
    """The command is over and its exit code decided; Python's shutdown (which resets handlers to the
    default, then waits for JAX and Arrow threads) must not turn a late signal into a kill."""
    for sig in _SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
