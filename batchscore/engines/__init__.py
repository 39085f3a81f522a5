"""Engines turn a run's file tasks into ONE stream of scored windows and file events
(`stream(tasks, stages)`); the run's sink writes whatever they yield. `local` scores in this
process, `ray` on a Ray cluster. Both take their device, precision and batch plan from a
core.compute plan, so an output started by one is resumed by the other."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from batchscore.core.compute import ComputePlan
    from batchscore.core.rows import Window
    from batchscore.run.plan import RunPlan
    from batchscore.run.tasks import FileEvent, FileTask


class Engine(Protocol):
    compute: ComputePlan

    def stream(
        self, tasks: Iterable[FileTask], plan: RunPlan, stages: dict[str, float]
    ) -> Iterator[Window | FileEvent]:
        """Every task's scored windows in row order, then its "end" (or "skip"/"bad") event; time
        spent reading, tokenizing and in the forward pass is added to `stages`."""
        ...

    def compute_line(self) -> str:
        """The run summary's compute line, once the stream has run (Ray adds the nodes it used)."""
        ...
