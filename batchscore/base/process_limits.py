"""The process's resource limits batchscore depends on, one rule each: open files and address space."""

from __future__ import annotations

from batchscore.base.errors import UsageError

MIN_ADDRESS_SPACE = 3 << 30  # below this XLA's CPU client aborts natively (exit 134/139), untrappable


def allow_open_files(count: int) -> int:
    """Raise the soft limit on open files to at least `count` where the hard limit allows: a run holds
    one lock per output (and a reader per file of a window group) until that output is written, so a
    landing of a few thousand shards would otherwise stop at the common default of 1,024. Returns the
    limit now in force; where the limit cannot be read or raised the run goes on with what it has."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < count:
            soft = count if hard == resource.RLIM_INFINITY else min(count, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        return soft
    except (ImportError, ValueError, OSError):
        return -1


def require_open_files(outputs: int, spare: int = 256) -> None:
    """A run locks every output before it reads a row (and holds each lock until that output is
    written): one descriptor per output, plus `spare` for readers, the compilation cache and the
    runtime. Where the hard limit cannot give that many, said before any lock is taken."""
    limit = allow_open_files(outputs + spare)
    if 0 <= limit < outputs + spare:
        raise UsageError(
            f"this run writes {outputs:,} outputs and locks them all while it runs, but the process may "
            f"open only {limit:,} files (ulimit -n, hard limit); raise the limit or split the input "
            "into runs of fewer files"
        )


def require_address_space() -> None:
    """A `ulimit -v` too small for JAX is said in one line before JAX starts, not as a native abort."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    except (ImportError, ValueError, OSError):
        return
    if soft != resource.RLIM_INFINITY and soft < MIN_ADDRESS_SPACE:
        raise UsageError(
            f"the process may use {soft / 2**30:.1f} GiB of address space (ulimit -v); batchscore needs at "
            f"least {MIN_ADDRESS_SPACE / 2**30:.0f} GiB (JAX reserves it up front); raise the limit"
        )
