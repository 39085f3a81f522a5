"""Ray Data engine: the local engine's stages, spread over a cluster, as ONE streaming pipeline.

    files -> [read + tokenize: Ray tasks, files in parallel] -> [bucket + forward: actor pool] -> driver

Every input file is one item of a single dataset; a read task reads it with the same ShardReader as the
local engine (from the first row not yet committed, so `--resume` reads only what is left), cleans and
tokenizes it with the same stage functions, and yields its windows in a run-wide schema (the unified
column types of the preflight), followed by an end marker carrying the task's stage times. One actor
pool, created once per run, buckets and scores rows of any file together, so many small shards fill
full batches. Results stream back in input order to the driver, which writes each file's rows through
the same crash-safe writer as the local engine (per-file parts, manifest, atomic assembly, locks):
outputs, metadata, resume and summaries are those of the local engine, and so are the scores.

Why the writer stays on the driver: it is the one place that holds the output locks and sees every
file's commits in order, and it costs little: on the benchmark (benchmarks/ray_shards.py) the write
stage is a few percent of the wall time, while read/tokenize/forward, the work that scales, runs on the
cluster.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import socket
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from batchscore.base import interrupts
from batchscore.base.errors import BatchscoreError, InputError, UsageError, error_from_record, error_record
from batchscore.inference.compute import CPUS_PER_ACTOR, ComputePlan, actor_plan
from batchscore.inference.forward import Scorer, Truncation
from batchscore.inference.rows import Window, encode_window
from batchscore.io.paths import InputFile
from batchscore.io.readers import ReadOptions, ShardReader
from batchscore.model.bundle import Bundle, BundleError, default_bundle_path, load_bundle
from batchscore.pipeline.options import RunOptions
from batchscore.pipeline.plan import RunPlan
from batchscore.pipeline.tasks import FileBad, FileDone, FileEvent, FileTask, ready_event
from batchscore.text.encoding import Encoded
from batchscore.text.tokenizer import TokenizerConfig
from batchscore.text.vocab import Vocab

FILE = "__batchscore_file"  # index of the input file in the run
ROW = "__batchscore_row"  # row number in that file; END or BAD on a marker row
IDS = "__batchscore_ids"
REASON = "__batchscore_error"
READ_STATS = "__batchscore_read"  # JSON on end markers: read/tokenize seconds, replaced UTF-8 counts
ACTOR_STATS = "__batchscore_actor"  # JSON on an actor batch's first row: forward seconds, node
LOGITS = "__batchscore_logits"
END, BAD = -1, -2
ACTOR_MEMORY = 1 << 30  # bytes; peak RSS of a scoring process is ~0.9 GB (README, Performance)
EXTRA_COLUMNS = (FILE, ROW, IDS, REASON, READ_STATS)


def _extra_fields() -> list[pa.Field]:
    return [
        pa.field(FILE, pa.int32()),
        pa.field(ROW, pa.int64()),
        pa.field(IDS, pa.list_(pa.int32())),
        pa.field(REASON, pa.string()),
        pa.field(READ_STATS, pa.string()),
    ]


_VOCABS: dict[str, Vocab] = {}  # per worker process: the vocabulary is fetched once, not per task


def _vocab(holder: tuple) -> Vocab:
    import ray

    (ref,) = holder  # wrapped so that Ray passes the reference, not a copy per task
    key = ref.hex()
    if key not in _VOCABS:
        _VOCABS[key] = Vocab(ray.get(ref))
    return _VOCABS[key]


def _read_file(
    item: pa.Table,
    files: list[tuple[InputFile, int]],
    read_options: ReadOptions,
    schema: pa.Schema,
    vocab: tuple,
    tokenizer: dict,
) -> Iterator[pa.Table]:
    """Ray task: one input file -> its windows (read from its first uncommitted row, cleaned and
    tokenized as the local engine does) in the run's schema, then an end marker; a file that turns
    bad part-way ends with a BAD marker instead (the driver decides whether that fails the run)."""
    index = int(item.column("file")[0].as_py())
    source, skip_rows = files[index]
    reader = ShardReader(source, read_options)
    words, config = _vocab(vocab), TokenizerConfig.from_dict(tokenizer)
    seconds = {"read": 0.0, "tokenize": 0.0}
    first_row = skip_rows
    windows = reader.windows(skip_rows)
    while True:
        started = time.perf_counter()
        try:
            table = next(windows, None)
        except InputError as err:
            yield _marker(schema, index, BAD, str(err), seconds, reader)
            return
        seconds["read"] += time.perf_counter() - started
        if table is None:
            break
        started = time.perf_counter()
        texts, reasons, encoded = encode_window(table, read_options.text_column, words, config)
        ids = pa.ListArray.from_arrays(pa.array(encoded.offsets, pa.int32()), pa.array(encoded.ids))
        columns = []
        for field in schema:
            if field.name == read_options.text_column:
                columns.append(texts)
            elif field.name in table.column_names:
                columns.append(table.column(field.name).cast(field.type))
        n = table.num_rows
        columns += [
            pa.array(np.full(n, index, np.int32)),
            pa.array(np.arange(first_row, first_row + n, dtype=np.int64)),
            ids,
            pa.array(reasons, pa.string()),
            pa.nulls(n, pa.string()),
        ]
        seconds["tokenize"] += time.perf_counter() - started
        yield pa.Table.from_arrays(columns, schema=schema)
        first_row += n
    yield _marker(schema, index, END, "end of file", seconds, reader)


def _marker(
    schema: pa.Schema, index: int, kind: int, message: str, seconds: dict, reader: ShardReader
) -> pa.Table:
    """A one-row table that says "file `index` ended" (or went bad), with the read task's figures."""
    stats = json.dumps({**seconds, "replaced_utf8": dict(reader.replaced_utf8)})
    values = {FILE: [index], ROW: [kind], IDS: [[]], REASON: [message], READ_STATS: [stats]}
    return pa.Table.from_arrays(
        [pa.array(values[f.name], f.type) if f.name in values else pa.nulls(1, f.type) for f in schema],
        schema=schema,
    )


class _ScoreActor:
    """Actor: loads the bundle and builds its scorer once, then buckets and scores any rows."""

    def __init__(self, bundle_dir: str, bundle_sha256: str, truncation: Truncation, compute: ComputePlan):
        import ray

        self.node = ray.get_runtime_context().get_node_id()
        self.failure: dict[str, str] | None = None  # an error here reaches the driver as data
        try:
            self._load(bundle_dir, bundle_sha256, truncation, compute)
        except BatchscoreError as err:
            self.failure = error_record(err)

    def _load(
        self, bundle_dir: str, bundle_sha256: str, truncation: Truncation, compute: ComputePlan
    ) -> None:
        from batchscore.inference.device import enable_compilation_cache, pick_devices

        bundle = load_bundle(bundle_dir)
        if bundle.bundle_sha256 != bundle_sha256:  # each node reads its own disk: another copy, another model
            node = socket.gethostname()
            raise BundleError(
                f"{bundle_dir} on worker {node} is not the bundle the driver loaded (model sha256 "
                f"{bundle.bundle_sha256[:12]} on the worker, {bundle_sha256[:12]} on the driver): its "
                "outputs would be labelled with the wrong model; give every node the same bundle"
            )
        enable_compilation_cache()
        # a CPU actor splits its batches over its share of the node's cores, not every host device
        devices = pick_devices(compute.platform)[:CPUS_PER_ACTOR]
        self.classes = bundle.model.num_classes
        # the driver's plan, as it is: every actor computes as the fingerprint says
        self.scorer = Scorer(
            bundle.model, bundle.params, truncation, compute.buckets, devices, compute.precision
        )

    def __call__(self, batch: pa.Table) -> pa.Table:
        if self.failure is not None:  # the driver raises it on the first batch it takes
            stats = [json.dumps({"error": self.failure})] + [None] * (batch.num_rows - 1)
            logits = pa.nulls(batch.num_rows, pa.list_(pa.float32(), 2))
            return batch.append_column(LOGITS, logits).append_column(
                ACTOR_STATS, pa.array(stats, pa.string())
            )
        started = time.perf_counter()
        ok = np.flatnonzero(pc.is_null(batch.column(REASON)).to_numpy(zero_copy_only=False))
        logits = np.zeros((batch.num_rows, self.classes), np.float32)
        logits[ok] = self.scorer.logits(_encoded(batch), ok)
        stats = [None] * batch.num_rows
        stats[0] = json.dumps({"forward": time.perf_counter() - started, "node": self.node})
        flat = pa.array(logits.reshape(-1))
        return batch.append_column(
            LOGITS, pa.FixedSizeListArray.from_arrays(flat, self.classes)
        ).append_column(ACTOR_STATS, pa.array(stats, pa.string()))


def _batchscore_cause(err: BaseException) -> BaseException | None:
    """The BatchscoreError inside a Ray task error, so the run exits with its code and message."""
    seen = 0
    while err is not None and seen < 10:
        if isinstance(err, BatchscoreError):
            return err
        err = getattr(err, "cause", None) or err.__cause__
        seen += 1
    return None


def _encoded(batch: pa.Table) -> Encoded:
    ids = batch.column(IDS).combine_chunks()
    offsets = ids.offsets.to_numpy().astype(np.int64)
    values = ids.values.to_numpy()[offsets[0] : offsets[-1]]
    return Encoded(values.astype(np.int32), offsets - offsets[0])


class RayEngine:
    """Reads, tokenizes and scores the run's files on a Ray cluster; the driver commits."""

    def __init__(
        self, bundle: Bundle, bundle_dir: Path | str | None, options: RunOptions, truncation: Truncation,
        ray_address: str | None = None, logs: bool = False,
    ):  # fmt: skip
        import ray

        self.bundle = bundle
        self.bundle_dir = str(bundle_dir or default_bundle_path())
        self.options = options
        self.truncation = truncation
        _start_ray(ray_address or os.environ.get("RAY_ADDRESS"), logs)  # before anything starts JAX here
        self.compute, self.actors = actor_plan(
            ray.cluster_resources(), options.device, options.precision, options.buckets
        )
        self.actor_nodes: set[str] = set()

    def compute_line(self) -> str:
        nodes = f" on {len(self.actor_nodes)} node(s)" if self.actor_nodes else ""
        return self.compute.description + nodes

    def stream(
        self, tasks: list[FileTask], plan: RunPlan, stages: dict[str, float]
    ) -> Iterator[Window | FileEvent]:
        """Outputs already whole, or only left to assemble, need no cluster; the rest are read in
        parallel, a task per file."""
        opened = tasks
        pending = []
        for task in opened:
            ready = ready_event(task)
            if ready is None:
                pending.append(task)
            else:
                yield ready
        if not pending:
            return
        batches = iter(
            self._dataset(pending, plan.input_types).iter_batches(
                batch_size=None, batch_format="pyarrow", prefetch_batches=2
            )
        )
        while not interrupts.stop_requested():
            try:
                batch = next(batches, None)
            except Exception as err:  # a task's failure arrives wrapped in Ray's exception types
                raise _batchscore_cause(err) or err from err
            if batch is None:
                return
            yield from self._items(batch, pending, stages)

    def _schema(self, first: FileTask, input_types: dict[str, pa.DataType]) -> pa.Schema:
        """The run-wide block schema: input columns in the first file's order, unified types."""
        text = self.options.text_column
        fields = [
            pa.field(name, pa.string() if name == text else input_types[name])
            for name in first.reader.schema().names
        ]
        return pa.schema(fields + _extra_fields())

    def _dataset(self, pending: list[FileTask], input_types: dict[str, pa.DataType]):
        """The run's one pipeline: a read task per file, then the scoring actor pool."""
        import ray

        accepts_remote_args = "ray_remote_args" in inspect.signature(ray.data.Dataset.map_batches).parameters
        actor_options = {"max_restarts": 0} if accepts_remote_args else {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # max_restarts has no named parameter
            return (
                ray.data.from_items(
                    [{"file": i} for i in range(len(pending))], override_num_blocks=len(pending)
                )
                .map_batches(
                    _read_file,
                    batch_size=1,
                    batch_format="pyarrow",
                    fn_kwargs={
                        "files": [(task.source, task.skip_rows) for task in pending],
                        "read_options": self.options.read_options(),
                        "schema": self._schema(pending[0], input_types),
                        "vocab": (ray.put(self.bundle.vocab.tokens),),
                        "tokenizer": self.bundle.tokenizer.to_dict(),
                    },
                )
                .map_batches(
                    _ScoreActor,
                    batch_format="pyarrow",
                    batch_size=self.options.window_rows,
                    fn_constructor_kwargs={
                        "bundle_dir": self.bundle_dir,
                        "bundle_sha256": self.bundle.bundle_sha256,
                        "truncation": self.truncation,
                        "compute": self.compute,
                    },
                    compute=ray.data.ActorPoolStrategy(size=self.actors),
                    num_gpus=1 if self.compute.platform == "gpu" else 0,
                    # the model and its compiled shapes: reserved so Ray does not pack actors onto a
                    # node that cannot hold them (and, differing from the read tasks' needs, it keeps
                    # Ray from fusing reading into the actors, which would read one file at a time)
                    memory=ACTOR_MEMORY,
                    # a lost actor fails the run (which resumes); with restarts Ray also logs an
                    # error-level notice on every run, since its constructor arguments live in the
                    # object store
                    **actor_options,
                )
            )

    def _items(self, batch: pa.Table, pending: list[FileTask], stages: dict) -> Iterator[Window | FileEvent]:
        """One scored batch as per-file windows and file events, in order."""
        for stats in batch.column(ACTOR_STATS).drop_null().to_pylist():
            actor = json.loads(stats)
            if "error" in actor:
                raise error_from_record(actor["error"])
            stages["forward"] += actor["forward"]
            self.actor_nodes.add(actor["node"])
        files = batch.column(FILE).to_numpy()
        rows = batch.column(ROW).to_numpy()
        # a new segment where the file changes or a marker row starts/ends
        marker = rows < 0
        cuts = np.flatnonzero((np.diff(files) != 0) | marker[1:] | marker[:-1]) + 1
        for start, stop in zip(np.r_[0, cuts], np.r_[cuts, batch.num_rows], strict=True):
            task = pending[int(files[start])]
            if (
                rows[start] >= 0
            ):  # Ray may merge blocks: commit every window_rows rows, as the local engine does
                for first in range(start, stop, self.options.window_rows):
                    size = min(self.options.window_rows, stop - first)
                    yield self._window(batch.slice(first, size), task)
                continue
            read = json.loads(batch.column(READ_STATS)[start].as_py())
            stages["read"] += read["read"]
            stages["tokenize"] += read["tokenize"]
            task.reader.replaced_utf8.update(Counter(read["replaced_utf8"]))
            message = batch.column(REASON)[start].as_py()
            if rows[start] == BAD:
                yield FileBad(task, InputError(message))
            else:
                yield FileDone(task)

    def _window(self, part: pa.Table, task: FileTask) -> Window:
        reasons = np.array(part.column(REASON).to_pylist(), dtype=object)
        logits = part.column(LOGITS).combine_chunks().flatten().to_numpy()
        logits = logits.reshape(part.num_rows, -1)[reasons == None]  # noqa: E711
        original = part.drop_columns([*EXTRA_COLUMNS, LOGITS, ACTOR_STATS])
        first_row = int(part.column(ROW)[0].as_py())
        texts = original.column(self.options.text_column).combine_chunks()
        return Window(first_row, original, texts, reasons, _encoded(part), logits, task)


def _require_reachable(address: str | None, timeout: float = 10.0) -> None:
    """A cluster address (host:port) that answers, or a one-line refusal: Ray itself waits for an
    address that does not answer without end, printing its own log lines."""
    if not address or address == "auto" or "://" in address:
        return  # local, discovered, or a client URL (ray://) that Ray checks with its own timeout
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--ray-address {address!r}: expected HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise UsageError(
            f"--ray-address {address}: no Ray cluster answers there ({err.strerror or err}); check the "
            "address (ray status on the head node prints it)"
        ) from None


def _start_ray(address: str | None, verbose: bool) -> None:
    import ray
    import ray.data  # configures Ray Data's loggers: quieten them after this, not before

    if not ray.is_initialized():
        _require_reachable(address)
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=verbose,
            logging_level=logging.INFO if verbose else logging.ERROR,
        )
    logging.getLogger("ray").setLevel(logging.INFO if verbose else logging.ERROR)
    logging.getLogger("ray.data").setLevel(logging.INFO if verbose else logging.ERROR)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    context.print_on_execution_start = verbose
