"""Where an engine's stream lands: each scored window committed to its file's parts, each file end
assembled into its output, each file counted in the summary from the finished output (so rows an
earlier run committed count the same as new ones). One thread takes the items, in stream order."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np

from batchscore.base.errors import InputError
from batchscore.base.version import __version__
from batchscore.inference.outputs import OutputBuilder
from batchscore.inference.rows import Window, make_window
from batchscore.io.paths import Location
from batchscore.io.writers import batchscore_metadata, read_columns
from batchscore.model.bundle import Bundle
from batchscore.monitoring.summary import OutputCounts, ProgressListener
from batchscore.pipeline.plan import RunPlan
from batchscore.pipeline.tasks import FileTask


class Sink:
    """Named lifecycle calls, one per kind of stream item: `write` (a scored window), `file_done`,
    `file_already_done`, `file_bad`. Counts what the outputs hold in `counts`, which the run returns."""

    def __init__(
        self,
        bundle: Bundle,
        builder: OutputBuilder,
        plan: RunPlan,
        counts: OutputCounts,
        progress: ProgressListener,
        log: Callable[[str], None],
    ):
        self.bundle, self.builder = bundle, builder
        self.skips_bad_files = plan.skips_bad_files
        self.progress, self.log = progress, log
        self.counts = counts
        for reason, output in plan.bad_files:  # found by the preflight: never opened
            self.counts.bad_files.append(reason)
            self.counts.bad_file_outputs.append(output)
        self._noted_renames: set[tuple[str, ...]] = set()

    def file_already_done(self, task: FileTask) -> None:
        self.count_output(task.target)
        self.counts.files_skipped_done += 1
        self.log(f"{task.target.uri}: already complete, skipped")
        self._close(task)
        self.progress.file_done()

    def file_bad(self, task: FileTask, error: InputError) -> None:
        """A file that turned bad part-way: the run fails, or (skipping bad files) it is left out."""
        if not self.skips_bad_files:
            raise error
        task.writer.discard()  # the file is reported bad: leave no half output behind
        self.counts.bad_files.append(str(error))
        self.counts.bad_file_outputs.append(task.target.uri)
        self.log(f"skipping bad file: {error}")
        self._close(task)

    def file_done(self, task: FileTask) -> None:
        self.finish(task)
        self._close(task)
        self.progress.file_done()

    def _close(self, task: FileTask) -> None:
        task.finished = True
        task.lock.release()

    def write(self, window: Window) -> None:
        """Commit one window's output rows, with the file's profile so far."""
        task, counts = window.task, self.counts
        task.writer.write_part(self._output(window, task), task.profile.to_counts())
        self.progress.rows(window.table.num_rows)
        counts.rows_scored_now += window.table.num_rows
        counts.tokens_now += int(window.encoded.n_tokens.sum())

    def _output(self, window: Window, task: FileTask, profile: bool = True):
        columns = tuple(window.table.column_names)
        if columns not in self._noted_renames:  # the same for every window of a file: noted once
            renamed = self.builder.renamed(list(columns), self.builder.provenance)
            self.counts.renamed_columns.update({k: v for k, v in renamed.items() if k != v})
            self._noted_renames.add(columns)
        return self.builder.table(window, task.run, task.profile if profile else None)

    def finish(self, task: FileTask) -> None:
        """All rows are committed: assemble the output file atomically and count it."""
        writer, counts = task.writer, self.counts
        if not task.assemble_only:
            if writer.progress.parts == 0:  # a zero-row input: an empty part carries the schema
                window = make_window(
                    task.reader.empty_table(),
                    0,
                    self.builder.text_column,
                    self.bundle.vocab,
                    self.bundle.tokenizer,
                )
                window.logits = np.zeros((0, self.bundle.model.num_classes), np.float32)
                window.task = task
                writer.write_part(self._output(window, task, profile=False), task.profile.to_counts())
            writer.mark_complete()
        for column, count in task.reader.replaced_utf8.items():
            counts.replaced_utf8[column] += count
        metadata = {
            "model_name": self.bundle.name,
            "model_sha256": self.bundle.bundle_sha256,
            "weights_sha256": self.bundle.weights_sha256,
            "version": __version__,
            "run_id": task.run["run_id"],
            "scored_at": task.run["scored_at"],
            "input": task.source.location.uri,
            "text_column": self.builder.text_column,
            "fingerprint": json.dumps(task.fingerprint),
            "profile": json.dumps(task.profile.to_counts()),  # drift.Profile counts of every row
        }
        writer.assemble(metadata)
        self.count_output(task.target)
        counts.files_scored += 1

    def count_output(self, target: Location) -> None:
        """Summary counts come from the finished file, so rows committed before a crash count too."""
        counts = self.counts
        scores = read_columns(target, list(OutputCounts.COLUMNS))
        counts.add_rows(scores)
        metadata = batchscore_metadata(scores.schema)  # the footer came with the columns
        if "run_id" in metadata:
            counts.output_run_ids.add(metadata["run_id"])
        profile = metadata.get("profile")
        if profile is not None:
            counts.profile.merge_counts(json.loads(profile))
        else:  # an output of a batchscore release before drift profiles
            counts.unprofiled_rows += scores.num_rows
        if scores.num_rows == 0:
            counts.empty_files += 1
        counts.outputs.append(target.uri)
