"""Files batchscore creates on a local disk, made so that a planted name cannot redirect them.

In a directory that others can write, any name batchscore picks in advance (a lock, a temporary
file) may already be a symlink, a hard link or a FIFO put there to make the run overwrite, truncate
or block on something else. So: temporary files get unpredictable names and are created with
O_EXCL | O_NOFOLLOW and written through that descriptor; a final name is only ever replaced by
rename(2), which replaces a symlink itself, never its target; a lock file must be a regular file
with one link. Object stores have no links, so their paths keep pyarrow's plain calls.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from collections.abc import Callable
from typing import TYPE_CHECKING, BinaryIO

import pyarrow as pa
import pyarrow.fs as pafs

from batchscore.base.errors import OutputError

if TYPE_CHECKING:
    from batchscore.io.paths import Location

CREATE_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def is_local(filesystem: pafs.FileSystem) -> bool:
    return isinstance(filesystem, pafs.LocalFileSystem)


_RANDOM_BYTES = 6
# Bytes a temporary name adds to its target's: "." + ".tmp-" + a pid (at most 7 digits) + "-" + random.
TEMPORARY_NAME_EXTRA = len(".") + len(".tmp-") + 7 + len("-") + 2 * _RANDOM_BYTES


def temporary_name(path: str) -> str:
    """A sibling name nobody can guess in advance: `.NAME.tmp-PID-RANDOM`."""
    directory, name = os.path.split(path)
    return os.path.join(directory, f".{name}.tmp-{os.getpid()}-{secrets.token_hex(_RANDOM_BYTES)}")


def replace_atomically(path: str, write: Callable[[BinaryIO], None], mode: int = 0o644) -> None:
    """Write a new file through `write` and rename it onto `path` (a reader sees old or new, whole).

    `path` itself may be anything but a directory; whatever is there is replaced, not written into.
    """
    tmp = temporary_name(path)
    fd = os.open(tmp, CREATE_NEW, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_bytes_atomically(path: str, data: bytes) -> None:
    replace_atomically(path, lambda handle: handle.write(data))


def write_location(location: Location, write: Callable[[pa.NativeFile], object]) -> None:
    """Write `location` whole or not at all, through `write(stream)`, on any filesystem: locally with
    replace_atomically; on an object store as a temporary sibling moved onto the name (no links
    there to plant). The temporary is removed on failure."""
    if is_local(location.filesystem):
        replace_atomically(location.path, lambda handle: write(pa.PythonFile(handle, mode="w")))
        return
    filesystem = location.filesystem
    tmp = location.sibling(os.path.basename(temporary_name(location.path)))
    try:
        with filesystem.open_output_stream(tmp.path) as handle:
            write(handle)
        filesystem.move(tmp.path, location.path)
    except BaseException:
        with contextlib.suppress(OSError):
            if filesystem.get_file_info(tmp.path).type == pafs.FileType.File:
                filesystem.delete_file(tmp.path)
        raise


def write_location_bytes(location: Location, data: bytes) -> None:
    write_location(location, lambda handle: handle.write(data))


def write_to_named_target(path: str, data: bytes) -> None:
    """Output the user named (e.g. --summary-json): a FIFO, a terminal or /dev/null is written into,
    as the user asked; a regular file or a new name is replaced atomically."""
    try:
        info = os.stat(path)  # the user's own name: following their symlink is what they asked for
    except FileNotFoundError:
        info = None
    if info is not None and stat.S_ISDIR(info.st_mode):
        raise OutputError(f"{path}: is a directory")
    if info is not None and not stat.S_ISREG(info.st_mode):
        with open(path, "wb") as handle:
            handle.write(data)
        return
    write_bytes_atomically(path, data)


def open_lock_file(path: str) -> int:
    """A descriptor of the lock file at `path`, created if missing; refuses anything but a plain file
    of its own (a symlink, a FIFO, a hard link to another file)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except OSError as err:
        if os.path.islink(path):
            message = "the lock file's name is a symbolic link; remove it and rerun"
            raise OutputError(f"{path}: {message}") from err
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        what = "has other hard links" if stat.S_ISREG(info.st_mode) else "is not a regular file"
        raise OutputError(f"{path}: the lock file {what}; remove it and rerun")
    return fd


def make_private_dir(path: str, role: str = "the work directory") -> None:
    """Create the directory `path` (parents as needed); an existing one must pass own_directory_problem."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o755)
    require_own_directory(path, role)


# Directories batchscore adopts (committed parts it resumes from), writes into or deletes from (a job's
# root and partitions) must be the running user's own: in a shared folder (mode 1777) anyone can create
# a name first, and whoever owns or can write a directory can swap what batchscore finds in it.


def own_directory_problem(path: str) -> str | None:
    """Why the local directory `path` must not be adopted, written into or deleted from; None if it
    may be (or does not exist yet). Not a symbolic link, owned by the running user, and writable by
    nobody else (group-writable only for the user's own private group)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(info.st_mode):
        return "is a symbolic link"
    if not stat.S_ISDIR(info.st_mode):
        return "is not a directory"
    if info.st_uid != os.geteuid():
        return f"belongs to another user (uid {info.st_uid})"
    if _writable_by_others(info):
        return "is writable by other users"
    return None


def require_own_directory(path: str, role: str) -> None:
    problem = own_directory_problem(path)
    if problem:
        raise OutputError(
            f"{path}: {role} {problem}; batchscore only adopts, writes into or deletes from directories "
            "of its own user that nobody else can write (remove it, or chmod go-w it, and rerun)"
        )


def private_path_problem(path: str) -> str | None:
    """own_directory_problem for `path`, and no folder above it that another user could use to swap it:
    each is owned by the running user or root, and writable by others only if sticky (like /tmp)."""
    problem = own_directory_problem(path)
    if problem:
        return f"{path} {problem}"
    parent = os.path.dirname(os.path.abspath(path))
    while True:
        info = os.stat(parent)
        if info.st_uid not in (0, os.geteuid()):
            return f"{parent} belongs to another user (uid {info.st_uid})"
        if _writable_by_others(info) and not info.st_mode & stat.S_ISVTX:
            return f"{parent} is writable by other users"
        if parent == os.path.dirname(parent):
            return None
        parent = os.path.dirname(parent)


def planted_path_problem(path: str) -> str | None:
    """Whether a folder on the way to `path` was put there by another user inside a folder everyone
    can write (like /tmp): such a folder, or a link in its place, lets that user choose where
    batchscore writes. Folders of other users elsewhere (a team's landing folder) are fine."""
    current = os.path.abspath(path)
    while True:
        parent = os.path.dirname(current)
        if parent == current:
            return None
        try:
            info, above = os.lstat(current), os.stat(parent)
        except OSError:  # not there yet (batchscore will make it, as its own), or under a file
            current = parent
            continue
        if above.st_mode & stat.S_IWOTH and info.st_uid not in (0, os.geteuid()):
            what = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "a folder"
            return (
                f"{current} is {what} another user (uid {info.st_uid}) made in {parent}, which everyone "
                "can write"
            )
        current = parent


def _writable_by_others(info: os.stat_result) -> bool:
    if info.st_mode & stat.S_IWOTH:
        return True
    return bool(info.st_mode & stat.S_IWGRP) and not _is_private_group(info.st_gid)


def _is_private_group(gid: int) -> bool:
    """The running user's own group with no other members (the usual "user private group")."""
    if gid != os.getegid():
        return False
    try:
        import grp
        import pwd

        members = set(grp.getgrgid(gid).gr_mem)
        return members <= {pwd.getpwuid(os.geteuid()).pw_name}
    except (KeyError, ImportError):
        return True  # the user's own group with no entry in the group database: nobody else is in it


def json_record(data: bytes, fields: dict[str, type | tuple[type, ...]]) -> dict:
    """A JSON object read back from a file batchscore wrote but anyone with access could have edited
    (a manifest, an owner marker): ValueError unless it is an object whose `fields` (missing counts as
    None, allowed where the type tuple has type(None)) have their types. Too deep a nesting is
    ValueError too, not RecursionError."""
    try:
        record = json.loads(data.decode("utf-8"))
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    for key, kind in fields.items():
        value = record.get(key)
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            raise ValueError(
                f"{key!r} is {type(value).__name__}, not {' or '.join(k.__name__ for k in kinds)}"
            )
    return record
