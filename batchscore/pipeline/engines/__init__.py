"""Engines turn a run's opened file tasks into ONE stream of scored windows and file events
(`stream(tasks, plan, stages)`); the run hands each item to the sink. `local` scores in this
process, `ray` on a Ray cluster. Both take their device, precision and batch plan from an
inference.compute plan, so an output started by one is resumed by the other."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from batchscore.base.errors import require_extra

if TYPE_CHECKING:
    from batchscore.inference.compute import ComputePlan
    from batchscore.inference.forward import Truncation
    from batchscore.inference.rows import Window
    from batchscore.model.bundle import Bundle
    from batchscore.pipeline.options import RunOptions
    from batchscore.pipeline.plan import RunPlan
    from batchscore.pipeline.tasks import FileEvent, FileTask


class Engine(Protocol):
    compute: ComputePlan

    def stream(
        self, tasks: list[FileTask], plan: RunPlan, stages: dict[str, float]
    ) -> Iterator[Window | FileEvent]:
        """Every task's scored windows in row order, then its FileDone (or FileAlreadyDone/FileBad);
        time spent reading, tokenizing and in the forward pass is added to `stages`."""
        ...

    def compute_line(self) -> str:
        """The run summary's compute line, once the stream has run (Ray adds the nodes it used)."""
        ...


def open_engine(
    name: str,
    bundle: Bundle,
    model: Path | str | None,
    options: RunOptions,
    truncation: Truncation,
    ray_address: str | None = None,
    engine_logs: bool = False,
) -> Engine:
    """The engine `--engine` names, set up for this bundle and these options; `engine_logs` lets a
    cluster engine show its own logs (--debug)."""
    if name == "ray":
        require_extra("ray.data", "ray", "--engine ray")
        from batchscore.pipeline.engines.ray import RayEngine

        return RayEngine(bundle, model, options, truncation, ray_address, engine_logs)
    from batchscore.pipeline.engines.local import LocalEngine

    return LocalEngine(bundle, options, truncation)
