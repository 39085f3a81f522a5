"""Where batchscore's words to the operator go: log lines and progress bars on stderr."""

from __future__ import annotations

import contextlib
import sys


class _Stderr:
    """sys.stderr, looked up at every write (so a redirection still holds), that drops what nobody
    can read any more (a closed pipe, a full log disk): losing the log must not stop or fail the
    work, whose exit code still says how it ended."""

    def write(self, text: str) -> int:
        with contextlib.suppress(OSError):
            sys.stderr.write(text)
        return len(text)

    def flush(self) -> None:
        with contextlib.suppress(OSError):
            sys.stderr.flush()

    def __getattr__(self, name: str):  # isatty, encoding, fileno: the real stream's
        return getattr(sys.stderr, name)


STDERR = _Stderr()
