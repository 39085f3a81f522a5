"""The local engine: three stages at once so the host never waits on itself.

A reader thread opens each file as it comes (the task), reads windows and encodes them with pyarrow
kernels (which release the GIL) and packs windows of consecutive files into groups of about
`window_rows` rows (the first one smaller), with an event after each file's last window; a forward
thread buckets, pads and dispatches all batches of a group before fetching the previous group's
results (dispatch ahead, fetch behind); the caller takes the scored groups. Queues of two groups
bound memory.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator

from batchscore.base import interrupts
from batchscore.base.errors import InputError
from batchscore.inference.compute import local_plan
from batchscore.inference.forward import Truncation
from batchscore.inference.rows import Window
from batchscore.inference.scorer import WindowScorer
from batchscore.model.bundle import Bundle
from batchscore.pipeline.options import RunOptions
from batchscore.pipeline.plan import RunPlan
from batchscore.pipeline.tasks import FileBad, FileDone, FileEvent, FileTask, ready_event

Group = list[Window | FileEvent]
# A CPU waits for the run's first group to be read and encoded: a small one starts it sooner
# (16,384 short reviews took 0.07-0.11 s to encode), and the next group is encoded while the device
# scores it.
FIRST_GROUP_ROWS = 2048


class LocalEngine:
    def __init__(self, bundle: Bundle, options: RunOptions, truncation: Truncation):
        self.compute = local_plan(options.device, options.precision, options.buckets)
        self.scoring = WindowScorer(bundle, self.compute, truncation, options.host_workers)
        self.window_rows = options.window_rows
        self.text_column = options.text_column

    def compute_line(self) -> str:
        return self.compute.description

    def stream(
        self, tasks: list[FileTask], plan: RunPlan, stages: dict[str, float]
    ) -> Iterator[Window | FileEvent]:
        stop = threading.Event()
        encoded_q: queue.Queue = queue.Queue(maxsize=2)
        scored_q: queue.Queue = queue.Queue(maxsize=2)
        failures: list[BaseException] = []

        def read() -> None:
            try:
                for group in self._groups(tasks, stages):
                    if not _put(encoded_q, group, stop):
                        return
            except BaseException as err:  # handed to the caller
                failures.append(err)
            finally:
                _put(encoded_q, None, stop)

        def forward() -> None:
            try:
                self._forward_loop(encoded_q, scored_q, stop, stages)
            except BaseException as err:
                failures.append(err)
            finally:
                _put(scored_q, None, stop)

        threads = [threading.Thread(target=read, daemon=True), threading.Thread(target=forward, daemon=True)]
        for thread in threads:
            thread.start()
        try:
            while (group := _get(scored_q, stop)) is not None:
                yield from group
        finally:
            stop.set()
            for thread in reversed(threads):  # no thread may still be inside Arrow or JAX after this
                thread.join()
        if failures:
            raise failures[0]

    def _forward_loop(
        self, encoded_q: queue.Queue, scored_q: queue.Queue, stop: threading.Event, stages: dict
    ) -> None:
        """Dispatch ahead, fetch behind: a group is queued on the device while the previous one is
        fetched and handed on. On a stop request the group not yet fetched is dropped (not committed)."""
        ahead: tuple[Group, Callable[[], None]] | None = None

        def hand_over(group: Group, fetch: Callable[[], None]) -> bool:
            started = time.perf_counter()
            fetch()
            stages["forward"] += time.perf_counter() - started
            return _put(scored_q, group, stop)

        while True:
            group = _get(encoded_q, stop)
            if stop.is_set() or interrupts.stop_requested():
                return
            if group is None:  # the end of the stream: the last group goes on too
                if ahead is not None:
                    hand_over(*ahead)
                return
            started = time.perf_counter()
            fetch = self.scoring.dispatch([item for item in group if isinstance(item, Window)])
            stages["forward"] += time.perf_counter() - started
            if ahead is not None and (interrupts.stop_requested() or not hand_over(*ahead)):
                return
            ahead = (group, fetch)

    def _groups(self, tasks: list[FileTask], stages: dict) -> Iterator[Group]:
        """Windows of every file in order, packed into groups of about `window_rows` rows (on a CPU the
        first group of FIRST_GROUP_ROWS), with an event after each file's last window (or in place of
        a file already complete or gone bad)."""
        group: Group = []
        rows = 0
        # a small first group on a CPU only: a GPU's batches are larger, so it would be one shape more
        small_first = self.compute.platform == "cpu" and self.window_rows > FIRST_GROUP_ROWS
        first = FIRST_GROUP_ROWS if small_first else 0  # 0 once the first group is out
        for task in tasks:
            ready = ready_event(task)
            if ready is not None:
                group.append(ready)
                continue
            try:
                for window in self._windows(task, stages, first - rows if first else 0):
                    group.append(window)
                    rows += window.table.num_rows
                    if rows >= (first or self.window_rows):
                        yield group
                        group, rows, first = [], 0, 0
            except InputError as err:  # a file that turned bad mid-way: the sink decides what that means
                group.append(FileBad(task, err))
                continue
            group.append(FileDone(task))
        if group:
            yield group

    def _windows(self, task: FileTask, stages: dict, first_rows: int) -> Iterator[Window]:
        tables = task.reader.windows(task.skip_rows, first_rows)
        first_row = task.skip_rows
        while True:
            started = time.perf_counter()
            table = next(tables, None)
            stages["read"] += time.perf_counter() - started
            if table is None:
                return
            started = time.perf_counter()
            window = self.scoring.window(table, first_row, self.text_column)
            stages["tokenize"] += time.perf_counter() - started
            window.task = task
            yield window
            first_row += table.num_rows


def _get(q: queue.Queue, stop: threading.Event):
    while True:
        try:
            return q.get(timeout=0.2)
        except queue.Empty:
            if stop.is_set():
                return None


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    """Put unless the run is stopping; False when it is."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.2)
            return True
        except queue.Full:
            continue
    return False
