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


def printable(text: str, limit: int = 2000) -> str:
    """`text` as one line a terminal or a log shows as it is: control characters (newlines and
    escape sequences included), line separators and undecodable bytes of a file name written as
    escapes, and overlong text cut. Every foreign string (a file name, another process's lock file,
    a value from a file) goes through this before it reaches an operator."""
    out = []
    for ch in text[:limit]:
        code = ord(ch)
        if code < 0x20 or 0x7F <= code < 0xA0 or code in (0x2028, 0x2029):
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        elif 0xD800 <= code <= 0xDFFF:  # a byte that was not UTF-8 (surrogateescape)
            out.append(f"\\x{code - 0xDC00:02x}" if code >= 0xDC80 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out) + ("..." if len(text) > limit else "")
