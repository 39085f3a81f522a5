"""Input discovery (files, directories, globs, filesystem URIs) and output naming."""

from __future__ import annotations

import fnmatch
import glob
import os
import stat
from dataclasses import dataclass, replace

import pyarrow as pa
import pyarrow.fs as pafs

from batchscore.base import environment
from batchscore.base.errors import InputError, NoInputFound, OutputError, UsageError
from batchscore.io.console import printable
from batchscore.io.safe_files import TEMPORARY_NAME_EXTRA, is_local, planted_path_problem

FORMATS = {".parquet": "parquet", ".csv": "csv", ".csv.gz": "csv"}
SCORED_SUFFIX = ".scored.parquet"
_NOT_PARQUET = (
    ".csv",
    ".gz",
    ".json",
    ".jsonl",
    ".tsv",
    ".txt",
    ".orc",
    ".avro",
    ".xlsx",
)  # -o never ends so
_URI_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError, ValueError)


@dataclass(frozen=True)
class Location:
    """A path on a pyarrow filesystem; `uri` is what the user wrote (for messages)."""

    filesystem: pafs.FileSystem
    path: str
    uri: str

    def child(self, name: str) -> Location:
        sep = "" if self.path.endswith("/") else "/"
        return Location(self.filesystem, f"{self.path}{sep}{name}", f"{self.uri.rstrip('/')}/{name}")

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    def parent(self) -> Location:
        head = self.path.rstrip("/").rsplit("/", 1)[0] or "/"
        uri_head = self.uri.rstrip("/").rsplit("/", 1)[0] if "/" in self.uri else "."
        return Location(self.filesystem, head, uri_head)

    def sibling(self, name: str) -> Location:
        return self.parent().child(name)

    def exists(self) -> bool:
        return self.filesystem.get_file_info(self.path).type != pafs.FileType.NotFound

    def is_dir(self) -> bool:
        return self.filesystem.get_file_info(self.path).type == pafs.FileType.Directory


@dataclass(frozen=True)
class InputFile:
    location: Location
    format: str  # "parquet" | "csv"
    relative: str = ""  # the path below the directory it was found in (its name otherwise)
    listed_under: Location | None = None  # that directory; None for a file named or globbed itself

    @property
    def stem(self) -> str:
        return split_extension(self.location.name)[0]

    @property
    def relative_stem(self) -> str:
        """What its output is named after under -o DIR: subfolders kept (Hive-style a=1/part-0)."""
        return split_extension(self.relative or self.location.name)[0]

    def __str__(self) -> str:
        return self.location.uri


def split_extension(name: str) -> tuple[str, str]:
    lower = name.lower()
    for ext in sorted(FORMATS, key=len, reverse=True):
        if lower.endswith(ext):
            return name[: -len(ext)], ext
    return name, ""


def resolve(uri: str, filesystem: pafs.FileSystem | None = None) -> Location:
    """A user-written path or URI (s3://, gs://, file://, local) as a filesystem location."""
    if filesystem is not None:
        return Location(filesystem, uri, uri)
    if "://" not in uri:
        return Location(pafs.LocalFileSystem(), os.path.abspath(uri), uri)
    try:
        fs, path = pafs.FileSystem.from_uri(uri)
        settings = _s3_settings() if isinstance(fs, pafs.S3FileSystem) else {}
        if settings:
            fs = _tuned_s3(fs, settings)
    except _URI_ERRORS as err:
        raise InputError(f"{uri}: cannot open this location: {err}") from err
    return Location(fs, path, uri)


# Object-store settings that pyarrow takes only as constructor arguments, not in a URI: environment
# variables, so `run`, `job` and a scheduler's environment all set them the same way.
S3_SETTINGS = {
    "BATCHSCORE_S3_CONNECT_TIMEOUT": "connect_timeout",  # seconds
    "BATCHSCORE_S3_REQUEST_TIMEOUT": "request_timeout",  # seconds
    "BATCHSCORE_S3_RETRIES": "retry_strategy",  # attempts per request (AWS standard retry strategy)
}


def _s3_settings() -> dict:
    settings = {}
    for variable, name in S3_SETTINGS.items():
        value = environment.read(variable)
        if value is not None:
            settings[name] = pafs.AwsStandardS3RetryStrategy(value) if name == "retry_strategy" else value
    return settings


def _tuned_s3(parsed: pafs.S3FileSystem, settings: dict) -> pafs.S3FileSystem:
    """The S3 filesystem pyarrow made from the URI (region, endpoint, credentials as it resolved
    them) with the BATCHSCORE_S3_* settings added."""
    options = parsed.__reduce__()[1][0]  # every setting from_uri resolved, endpoint included
    return pafs.S3FileSystem(**{**options, **settings})


def discover_inputs(specs: list[str], filesystem: pafs.FileSystem | None = None) -> list[InputFile]:
    """Expand files, directories (recursively) and globs into a sorted, de-duplicated file list."""
    found: dict[tuple, InputFile] = {}
    for spec in specs:
        if not spec.strip():  # "" would otherwise mean the current directory, every file below it
            raise UsageError("an input path is empty; name a file, a directory or a glob")
        for location, relative, directory in _expand(spec, filesystem):
            key = _identity(location)  # one file reached twice (a link beside it, two specs): once
            first = found.get(key)
            if first is None:
                found[key] = _as_input(location, relative, directory)
                continue
            if _is_link(first.location) and not _is_link(location):  # kept under its own path
                first = _as_input(location, relative, first.listed_under)
            if first.listed_under is None and directory is not None:  # named and listed: both count
                first = replace(first, listed_under=directory)
            found[key] = first
    if not found:
        raise NoInputFound(f"no input files found in {', '.join(specs)}")
    return sorted(found.values(), key=lambda f: f.location.path)


# (file, its path below the listed directory or its name, that directory or None)
_Found = tuple[Location, str, Location | None]


def _expand(spec: str, filesystem: pafs.FileSystem | None) -> list[_Found]:
    if is_pattern(spec, filesystem):
        return _glob(spec, filesystem)
    location = resolve(spec, filesystem)
    try:
        info = location.filesystem.get_file_info(location.path)
    except OSError as err:
        raise InputError(f"{spec}: cannot read: {err}") from err
    if info.type == pafs.FileType.NotFound:
        raise NoInputFound(f"{spec}: no such file or directory")
    if info.type == pafs.FileType.Directory:
        return _list_directory(location)
    require_regular_file(location)
    return [(location, location.name, None)]


def is_pattern(spec: str, filesystem: pafs.FileSystem | None = None) -> bool:
    """A glob, unless a path of that very name exists: `reviews[1].csv` is that file if it exists."""
    return any(ch in spec for ch in "*?[") and not _exists_as_named(spec, filesystem)


def _exists_as_named(spec: str, filesystem: pafs.FileSystem | None) -> bool:
    if "://" not in spec and filesystem is None:
        return os.path.lexists(spec)
    try:
        location = resolve(spec, filesystem)
        return location.filesystem.get_file_info(location.path).type != pafs.FileType.NotFound
    except (OSError, InputError):
        return False


def _is_link(location: Location) -> bool:
    return is_local(location.filesystem) and os.path.islink(location.path)


def require_regular_file(location: Location) -> None:
    """A FIFO or a device would block the reader forever (signals cannot interrupt native reads)."""
    if is_local(location.filesystem):
        try:
            regular = stat.S_ISREG(os.stat(location.path).st_mode)
        except OSError as err:
            raise InputError(f"{location.uri}: cannot read: {err}") from err
        if not regular:
            raise InputError(f"{location.uri}: not a regular file (a FIFO, socket or device); not read")


def _glob(spec: str, filesystem: pafs.FileSystem | None) -> list[_Found]:
    if "://" not in spec and filesystem is None:
        matches = sorted(glob.glob(spec, recursive=True))
        if not matches:
            raise NoInputFound(f"{spec}: the pattern matches no files")
        base = _literal_prefix(spec)  # folders the pattern matched are kept below -o (country=fr/...)
        out: list[_Found] = []
        for match in matches:
            location = resolve(match)
            below_base = os.path.relpath(match, base)
            if location.is_dir():
                out.extend(
                    (found, f"{below_base}/{relative}", directory)
                    for found, relative, directory in _list_directory(location)
                )
            else:
                require_regular_file(location)
                out.append((location, below_base, None))
        return out
    base_uri, _, pattern = spec.rpartition("/")
    base = resolve(base_uri, filesystem)
    selector = pafs.FileSelector(base.path, recursive=False, allow_not_found=True)
    names = [info for info in base.filesystem.get_file_info(selector) if info.type == pafs.FileType.File]
    out: list[_Found] = [
        (base.child(info.base_name), info.base_name, None)
        for info in names
        if fnmatch.fnmatch(info.base_name, pattern)
    ]
    if not out:
        raise NoInputFound(f"{spec}: the pattern matches no files")
    return out


def _literal_prefix(pattern: str) -> str:
    """The folder a glob starts from: its leading path components without glob characters."""
    parts = pattern.split(os.sep)
    literal = []
    for part in parts[:-1]:
        if any(ch in part for ch in "*?["):
            break
        literal.append(part)
    return os.sep.join(literal) or ("/" if pattern.startswith("/") else ".")


def _list_directory(location: Location) -> list[_Found]:
    """Supported files below a directory; hidden and `_`-prefixed entries (markers, temp files) skipped."""
    try:
        if isinstance(location.filesystem, pafs.LocalFileSystem):
            paths = _walk_local(location.path)
        else:
            selector = pafs.FileSelector(location.path, recursive=True)
            infos = location.filesystem.get_file_info(selector)
            paths = [info.path for info in infos if info.type == pafs.FileType.File]
    except OSError as err:
        raise InputError(f"{location.uri}: cannot list directory: {err}") from err
    out = []
    for path in paths:
        relative = path[len(location.path.rstrip("/")) + 1 :]
        if "" in relative.split("/"):  # an object-store key like day//b.parquet: listed, never readable
            raise InputError(
                f"{printable(location.uri.rstrip('/'))}/{printable(relative)}: the key has an empty folder "
                "name ('//'), which batchscore's storage layer cannot read; copy it to a key without one"
            )
        if _skipped_when_listing(relative):
            continue
        if split_extension(relative.rsplit("/", 1)[-1])[1]:
            uri = f"{location.uri.rstrip('/')}/{relative}"
            out.append((Location(location.filesystem, path, uri), relative, location))
    if not out:
        raise NoInputFound(f"{location.uri}: directory holds no .parquet, .csv or .csv.gz files")
    return out


def _skipped_when_listing(relative: str) -> bool:
    return any(part.startswith(HIDDEN_PREFIXES) for part in relative.split("/"))


HIDDEN_PREFIXES = ("_", ".")  # names Spark, pyarrow.dataset, DuckDB and batchscore skip in a folder


def _walk_local(root: str) -> list[str]:
    """Files below a local directory, following symlinks but entering each real directory once,
    so a symlink loop (a -> ..) ends instead of growing without bound."""
    seen: set[tuple[int, int]] = set()
    files: list[str] = []

    def fail(err: OSError) -> None:
        raise err

    for directory, subdirs, names in os.walk(root, followlinks=True, onerror=fail):
        info = os.stat(directory)
        key = (info.st_dev, info.st_ino)
        if key in seen:
            subdirs[:] = []
            continue
        seen.add(key)
        subdirs.sort()
        files.extend(
            os.path.join(directory, name) for name in names if os.path.isfile(os.path.join(directory, name))
        )
    return files


def check_outputs_are_not_inputs(inputs: list[InputFile], outputs: list[Location]) -> None:
    """An output may never replace an input, whatever the flags: --resume or --overwrite would
    otherwise destroy the very data being scored."""
    input_keys = {_identity(f.location): f for f in inputs}
    for target in outputs:
        source = input_keys.get(_identity(target))
        if source is not None:
            raise UsageError(f"output {target.uri} is the input {source}; choose another -o")


def check_outputs_are_not_listed_inputs(inputs: list[InputFile], outputs: list[Location]) -> None:
    """An output below an input directory would be listed as an input by the next run of the same
    command (refused there as 'output is the input', or scored again): a nightly job that works
    on its first night and fails on its second. Refused on the first."""
    directories = {f.listed_under.path: f.listed_under for f in inputs if f.listed_under is not None}
    for directory in directories.values():
        for target in outputs:
            relative = _relative_below(directory, target)
            if relative is not None and not _skipped_when_listing(relative):
                suggestion = f"{directory.uri.rstrip('/')}/_scored/"
                raise UsageError(
                    f"output {target.uri} is inside the input directory {directory.uri}, so the next "
                    f"run would read it as input; choose -o outside it, or below a folder whose name "
                    f"starts with _ (not listed as input), e.g. -o {suggestion}"
                )


def _relative_below(directory: Location, target: Location) -> str | None:
    """target's path below directory, or None when it is not below it (links resolved locally)."""
    if isinstance(directory.filesystem, pafs.LocalFileSystem):
        if not isinstance(target.filesystem, pafs.LocalFileSystem):
            return None
        root, path = os.path.realpath(directory.path), os.path.realpath(target.path)
        return os.path.relpath(path, root) if os.path.commonpath([root, path]) == root else None
    if type(directory.filesystem) is not type(target.filesystem):
        return None
    root = directory.path.rstrip("/") + "/"
    return target.path[len(root) :] if target.path.startswith(root) else None


def _identity(location: Location) -> tuple:
    if isinstance(location.filesystem, pafs.LocalFileSystem):
        try:
            info = os.stat(location.path)
            return ("inode", info.st_dev, info.st_ino)
        except OSError:
            return ("path", os.path.realpath(location.path))
    return ("path", type(location.filesystem).__name__, location.path.rstrip("/"))


def _as_input(location: Location, relative: str = "", listed_under: Location | None = None) -> InputFile:
    try:
        location.path.encode("utf-8")
    except UnicodeEncodeError:  # bytes that are not UTF-8 (surrogateescape): no reader can open it
        raise InputError(
            f"{printable(location.uri)}: the file name is not valid UTF-8; rename it (for example with "
            "convmv) and rerun"
        ) from None
    ext = split_extension(location.name)[1]
    if not ext:
        raise InputError(
            f"{location.uri}: unsupported file type (batchscore reads .parquet, .csv and .csv.gz)"
        )
    return InputFile(location, FORMATS[ext], relative, listed_under)


_NAME_MAX = 255  # bytes per path component on Linux and macOS filesystems


def plan_outputs(
    inputs: list[InputFile], output: str | None, single_input: bool, filesystem: pafs.FileSystem | None = None
) -> list[Location]:
    """Where each input's scores go (_output_names), each name short enough for the temporary
    files written beside it: found before hours of scoring, not at the final rename."""
    outputs = _output_names(inputs, output, single_input, filesystem)
    folders = {target.parent().path: target for target in outputs if is_local(target.filesystem)}
    for folder, target in folders.items():  # one walk per output folder, not per shard
        problem = planted_path_problem(folder)
        if problem:
            raise OutputError(f"{target.uri}: not written: {problem}; name an output of your own")
    longest = _NAME_MAX - TEMPORARY_NAME_EXTRA
    for source, target in zip(inputs, outputs, strict=True):
        if len(target.name.encode("utf-8")) > longest:
            raise OutputError(
                f"{source}: its output name {target.name[:40]}... is too long for the files written "
                f"beside it (at most {longest} bytes); rename the input or name the output with -o"
            )
    return outputs


def _below_output(source: InputFile) -> str:
    """The input's path below -o DIR: its relative stem without empty folder names (an object-store key
    like `day//b.csv`); refused where it would leave DIR (`..` in a glob) or be hidden from the
    readers of DIR (a name starting with `_` or `.`)."""
    parts = [part for part in source.relative_stem.split("/") if part]
    if not parts or any(part in (".", "..") for part in parts):
        raise UsageError(
            f"{source}: its path below the pattern's folder ({source.relative_stem}) leaves the output "
            "directory; write the input pattern without '..'"
        )
    hidden = [part for part in parts if part.startswith(HIDDEN_PREFIXES)]
    if hidden:
        raise UsageError(
            f"{source}: its output would be named {'/'.join(parts)}.parquet, which readers of the output "
            f"directory skip as hidden ({hidden[0]!r} starts with '_' or '.'); rename the input or "
            "score it with -o FILE.parquet"
        )
    return "/".join(parts)


def _output_names(
    inputs: list[InputFile], output: str | None, single_input: bool, filesystem: pafs.FileSystem | None
) -> list[Location]:
    """Where each input's scores go.

    One file and no -o: `<stem>.scored.parquet` beside it. One file and an -o ending
    in .parquet: that file. Otherwise -o is a directory with one `<stem>.parquet`
    per input, subfolders below a directory input kept, so shards map one to one.
    """
    if output is not None and not output.strip():  # "" would be the current directory
        raise UsageError("-o is empty; name a .parquet file or a directory")
    if output is not None and output.lower().rstrip("/").endswith(_NOT_PARQUET):
        raise UsageError(f"-o {output}: batchscore writes Parquet; name a .parquet file or a directory")
    if single_input and len(inputs) == 1:
        source = inputs[0]
        if output is None:
            return [source.location.sibling(source.stem + SCORED_SUFFIX)]
        if output.lower().endswith(".parquet"):
            return [resolve(output, filesystem)]
    if output is None:
        raise UsageError("several input files (or a directory): pass -o DIR for the scored shards")
    if output.lower().endswith(".parquet"):
        raise UsageError(f"-o {output}: several inputs need an output directory, not a .parquet file")
    directory = resolve(output, filesystem)
    outputs = [directory.child(_below_output(f) + ".parquet") for f in inputs]
    seen: dict[str, InputFile] = {}
    for source, target in zip(inputs, outputs, strict=True):
        if target.path in seen:
            raise UsageError(
                f"{seen[target.path]} and {source} would both be written to {target.uri}; "
                "rename one or score them separately"
            )
        seen[target.path] = source
    for source, target in zip(inputs, outputs, strict=True):  # x.csv -> x.parquet and x.parquet/y.csv
        folder = target.parent()
        while folder.path.rstrip("/") != directory.path.rstrip("/") and len(folder.path) > 1:
            if folder.path in seen:
                raise UsageError(
                    f"{seen[folder.path]} and {source} need {folder.uri} as a file and as a folder; "
                    "rename one or score them separately"
                )
            folder = folder.parent()
    return outputs
