"""Crash-safe Parquet output: committed parts, then one atomic assembly.

Each scored window is written as a part file in a hidden work directory beside
the target (`.NAME.parts/`) and then recorded in that directory's manifest; the
manifest is replaced atomically, so it is the commit point. A killed run leaves
the manifest describing exactly the rows already committed, and `--resume`
continues after them. When all rows are in, the parts are assembled into a
temporary file that is renamed onto the final name: readers never see a half file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from batchscore.base.errors import OutputError
from batchscore.io.console import printable
from batchscore.io.paths import Location
from batchscore.io.safe_files import (
    is_local,
    json_record,
    make_private_dir,
    open_lock_file,
    require_own_directory,
    write_location,
    write_location_bytes,
)

MANIFEST = "manifest.json"
MANIFEST_SCHEMA_VERSION = 1  # an internal file: read back by --resume only
_MANIFEST_FIELDS = {
    "rows_done": int,
    "parts": int,
    "fingerprint": dict,
    "complete": (bool, type(None)),
    "tally": (dict, type(None)),
    "run": (dict, type(None)),
}


def part_name(index: int) -> str:
    """Committed parts are Parquet, but not named *.parquet: a recursive `**/*.parquet` reader
    (DuckDB, a glob) must not take an interrupted run's parts for data."""
    return f"part-{index:06d}.parquet-part"


METADATA_PREFIX = "batchscore."

# Called with the name of each commit step as it completes ("part written", "manifest updated",
# "output written", "output renamed", "parts removed"; a Delta job adds "night staged" and
# "night committed", a training checkpoint "arrays written"). None in normal runs; the fault-injection
# tests set it to a function that ends the process, to prove every step is a safe place to die.
commit_hook: Callable[[str], None] | None = None


def step_done(step: str) -> None:
    """Tell the commit hook (if any) that `step` has completed."""
    if commit_hook is not None:
        commit_hook(step)


@dataclass
class Progress:
    rows_done: int = 0
    parts: int = 0
    complete: bool = False
    tally: dict | None = None  # the caller's running totals over the committed rows (JSON)
    run: dict | None = None  # the caller's record of the run that started the output (JSON)


def read_file_metadata(location: Location) -> dict[str, str]:
    """The batchscore.* key-value metadata of a scored file (empty if unreadable)."""
    try:
        with location.filesystem.open_input_file(location.path) as handle:
            return batchscore_metadata(pq.ParquetFile(handle).schema_arrow)
    except (OSError, pa.ArrowInvalid):
        return {}


def batchscore_metadata(schema: pa.Schema) -> dict[str, str]:
    """The batchscore.* keys of a schema's metadata, prefix removed."""
    prefix = METADATA_PREFIX.encode()
    raw = schema.metadata or {}
    return {k[len(prefix) :].decode(): v.decode() for k, v in raw.items() if k.startswith(prefix)}


def read_columns(location: Location, columns: list[str]) -> pa.Table:
    with location.filesystem.open_input_file(location.path) as handle:
        return pq.read_table(handle, columns=columns)


class PartWriter:
    """Commits one output file window by window; see the module docstring."""

    def __init__(self, target: Location, fingerprint: dict[str, str], run: dict | None = None):
        """`run`: kept in the manifest from the first part on; a resumed output gets back the record
        of the run that started it (`progress.run`), so its rows never carry two."""
        self.target = target
        self.fingerprint = fingerprint
        self.work = target.sibling(f".{target.name}.parts")
        self.run = run
        self.progress = Progress(run=run)
        self._schema: pa.Schema | None = None

    def has_partial(self) -> bool:
        self._require_own_work_dir()
        return self.work.exists()

    def _require_own_work_dir(self) -> None:
        """Committed parts are adopted, and a parts folder deleted, only if it is the running user's
        own real directory: in a shared folder anyone could have made `.NAME.parts` first."""
        if is_local(self.work.filesystem):
            require_own_directory(self.work.path, "the folder of committed parts")

    def resume(self) -> Progress:
        """Pick up committed parts if they were made from the same input and settings."""
        self._require_own_work_dir()
        manifest = self._read_manifest()
        if manifest is None or manifest.get("fingerprint") != self.fingerprint:
            self.discard()
            return self.progress
        self.progress = Progress(
            manifest["rows_done"],
            manifest["parts"],
            manifest.get("complete", False),
            manifest.get("tally"),
            manifest.get("run", self.run),
        )
        return self.progress

    def discard(self) -> None:
        self._require_own_work_dir()
        if self.work.exists():
            self.work.filesystem.delete_dir(self.work.path)
        self.progress = Progress(run=self.run)

    def _read_manifest(self) -> dict | None:
        """The committed state, or None when there is none. Only a missing file means "none":
        any other failure (a flaky object store, a corrupt file) stops the run and keeps the parts."""
        path = self.work.child(MANIFEST)
        try:
            with path.filesystem.open_input_stream(path.path) as handle:
                data = handle.read()
        except FileNotFoundError:
            return None
        except OSError as err:
            raise OutputError(
                f"{path.uri}: cannot read the manifest of committed parts ({err}); nothing was "
                "discarded, rerun with --resume once it is readable (or --overwrite to start again)"
            ) from err
        try:
            manifest = json_record(data, _MANIFEST_FIELDS)
        except (ValueError, UnicodeDecodeError) as err:
            raise OutputError(
                f"{path.uri}: the manifest of committed parts is malformed ({printable(str(err), 200)}); "
                "nothing was discarded: remove the folder or rerun with --overwrite"
            ) from None
        if manifest["rows_done"] < 0 or manifest["parts"] < 0:
            raise OutputError(
                f"{path.uri}: the manifest of committed parts is malformed; nothing was discarded"
            )
        return manifest

    def _guard(self, action: str, func, *args):
        try:
            return func(*args)
        except OSError as err:
            raise OutputError(f"{self.target.uri}: cannot {action}: {err}") from err

    def schema(self) -> pa.Schema | None:
        """The output schema: set by the first part, read back from committed parts on resume."""
        if self._schema is None and self.progress.parts:
            self._schema = self._committed_schema()
        return self._schema

    def write_part(self, table: pa.Table, tally: dict | None = None) -> None:
        """Write one window's rows (in the file's schema) and commit them in the manifest, together
        with `tally` (totals over all committed rows, kept for the caller: it comes back on resume)."""
        if self.progress.parts == 0:
            self._create_work_dir()
        schema = self.schema()
        if schema is None:
            self._schema = table.schema
        elif table.schema != schema:
            table = table.cast(schema)
        name = part_name(self.progress.parts)
        self._guard("write a part", self._write_atomic, self.work.child(name), table)
        step_done("part written")
        self.progress.parts += 1
        self.progress.rows_done += table.num_rows
        self.progress.tally = tally
        self._write_manifest()
        step_done("manifest updated")

    def _committed_schema(self) -> pa.Schema:
        return self._read_part(0, pq.read_schema)

    def _read_part(self, index: int, read):
        """`read(handle)` of committed part `index`; a part that is missing or damaged (a disk
        error, someone's edit) stops the run naming it, and nothing is discarded."""
        part = self.work.child(part_name(index))
        try:
            with part.filesystem.open_input_file(part.path) as handle:
                return read(handle)
        except (OSError, pa.ArrowException) as err:
            raise OutputError(
                f"{part.uri}: committed part {index} cannot be read ({printable(str(err), 200)}); "
                "rerun with --overwrite to score this output again from the start"
            ) from err

    def mark_complete(self) -> None:
        if self.progress.parts == 0:
            self._create_work_dir()
        self.progress.complete = True
        self._write_manifest()

    def _create_work_dir(self) -> None:
        if is_local(self.work.filesystem):
            self._guard("create the work directory", make_private_dir, self.work.path)
        else:
            self._guard("create the work directory", self.work.filesystem.create_dir, self.work.path)

    def _write_manifest(self) -> None:
        payload = {
            "schema_version": MANIFEST_SCHEMA_VERSION,
            "fingerprint": self.fingerprint,
            "rows_done": self.progress.rows_done,
            "parts": self.progress.parts,
            "complete": self.progress.complete,
            "tally": self.progress.tally,
            "run": self.progress.run,
        }
        data = json.dumps(payload, indent=1).encode("utf-8")
        self._guard("commit the manifest", write_location_bytes, self.work.child(MANIFEST), data)

    def assemble(self, metadata: dict[str, str]) -> None:
        """Concatenate the committed parts (one row group each) into the final file, atomically."""
        schema = self.schema().with_metadata(
            {f"{METADATA_PREFIX}{k}".encode(): str(v).encode() for k, v in metadata.items()}
        )

        def write(handle):
            with pq.ParquetWriter(handle, schema, compression="zstd") as writer:
                for index in range(self.progress.parts):
                    writer.write_table(self._read_part(index, pq.read_table).cast(schema))
            step_done("output written")  # complete under its temporary name, not yet renamed

        self._guard("write the output", write_location, self.target, write)
        step_done("output renamed")
        self.discard()
        step_done("parts removed")

    def remove_leftovers(self) -> None:
        """Delete what a run killed mid-write left beside the target: temporary output files, and the
        parts of a run that died after its final rename. Call only while holding the target's lock."""
        parent = self.target.parent()
        prefix = f".{self.target.name}.tmp-"
        try:
            infos = parent.filesystem.get_file_info(pafs.FileSelector(parent.path, allow_not_found=True))
        except OSError as err:
            raise OutputError(f"{parent.uri}: cannot list the output directory: {err}") from err
        for info in infos:
            if info.type == pafs.FileType.File and info.base_name.startswith(prefix):
                self._guard("remove a leftover temporary file", parent.filesystem.delete_file, info.path)

    def _write_atomic(self, location: Location, table: pa.Table) -> None:
        write_location(location, lambda handle: pq.write_table(table, handle, compression="zstd"))


class OutputLock:
    """Only one run may write a given output at a time.

    On local disks this is an flock on `.NAME.lock` beside the output: the kernel drops it when its
    holder dies, even by kill -9, so a stale lock never blocks `--resume`. The file names the holder
    (host, pid, start time, command) for the message the second run prints. Object stores have no
    such primitive; there the lock is not taken (documented in the README).
    """

    def __init__(self, target: Location):
        self.target = target
        self.location = target.sibling(f".{target.name}.lock")
        self._fd: int | None = None

    def acquire(self, command: str) -> None:
        if not isinstance(self.location.filesystem, pafs.LocalFileSystem):
            return
        path = self.location.path
        while True:
            try:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                fd = open_lock_file(path)
            except OSError as err:
                raise OutputError(f"{self.target.uri}: cannot create the lock file {path}: {err}") from err
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = printable(os.read(fd, 4096).decode("utf-8", "replace").strip(), 300) or "unknown"
                os.close(fd)
                raise OutputError(
                    f"{self.target.uri} is being written by another batchscore run ({holder}); "
                    "wait for it to finish or stop it, then rerun (with --resume to keep its work)"
                ) from None
            # The holder before us may have removed the file after we opened it: lock the live one.
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        holder = f"pid {os.getpid()} on {socket.gethostname()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}"
        os.ftruncate(fd, 0)
        os.write(fd, f"{holder}, command: {command}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):  # unlinked while still locked: nobody locks a vanishing file
            os.unlink(self.location.path)
        os.close(self._fd)
        self._fd = None
