"""Where an engine's stream lands: each scored window committed to its file's parts, each file end
assembled into its output, each file counted in the summary from the finished output (so rows an
earlier run committed count the same as new ones). One thread takes the items, in stream order."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np

from batchscore import __version__
from batchscore.bundle import Bundle
from batchscore.core.outputs import OutputBuilder
from batchscore.core.rows import Window, make_window
from batchscore.io.paths import Location
from batchscore.io.writers import batchscore_metadata, read_columns
from batchscore.report import ProgressListener, RunSummary
from batchscore.run.tasks import FileEvent, FileTask

SUMMARY_COLUMNS = ["label", "prob_positive", "n_tokens", "truncated", "error"]  # what RunSummary counts


class Sink:
    def __init__(
        self,
        bundle: Bundle,
        builder: OutputBuilder,
        summary: RunSummary,
        skip_bad_files: bool,
        progress: ProgressListener,
        log: Callable[[str], None],
    ):
        self.bundle, self.builder, self.summary = bundle, builder, summary
        self.skip_bad_files = skip_bad_files
        self.progress, self.log = progress, log
        self._noted_renames: set[tuple[str, ...]] = set()

    def take(self, item: Window | FileEvent) -> None:
        if isinstance(item, Window):
            self.write_window(item)
            return
        task = item.task
        if item.kind == "bad" and not self.skip_bad_files:
            raise item.error
        if item.kind == "skip":
            self.count_output(task.target)
            self.summary.files_skipped_done += 1
            self.log(f"{task.target.uri}: already complete, skipped")
        elif item.kind == "bad":
            task.writer.discard()  # the file is reported bad: leave no half output behind
            self.summary.bad_files.append(item.detail)
            self.summary.bad_file_outputs.append(task.target.uri)
            self.log(f"skipping bad file: {item.detail}")
        else:
            self.finish(task)
        task.finished = True
        task.lock.release()
        if item.kind != "bad":
            self.progress.file_done()

    def write_window(self, window: Window) -> None:
        """Commit one window's output rows, with the file's profile so far."""
        task, summary = window.task, self.summary
        task.writer.write_part(self._output(window, task), task.profile.to_counts())
        self.progress.rows(window.table.num_rows)
        summary.rows_scored_now += window.table.num_rows
        summary.tokens_now += int(window.encoded.n_tokens.sum())

    def _output(self, window: Window, task: FileTask, profile: bool = True):
        columns = tuple(window.table.column_names)
        if columns not in self._noted_renames:  # the same for every window of a file: noted once
            renamed = self.builder.renamed(list(columns), self.builder.provenance)
            self.summary.renamed_columns.update({k: v for k, v in renamed.items() if k != v})
            self._noted_renames.add(columns)
        return self.builder.table(window, task.run, task.profile if profile else None)

    def finish(self, task: FileTask) -> None:
        """All rows are committed: assemble the output file atomically and count it."""
        writer, summary = task.writer, self.summary
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
            summary.replaced_utf8[column] += count
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
        summary.files_scored += 1

    def count_output(self, target: Location) -> None:
        """Summary counts come from the finished file, so rows committed before a crash count too."""
        summary = self.summary
        scores = read_columns(target, SUMMARY_COLUMNS)
        summary.add_rows(scores)
        metadata = batchscore_metadata(scores.schema)  # the footer came with the columns
        if "run_id" in metadata:
            summary.output_run_ids.add(metadata["run_id"])
        profile = metadata.get("profile")
        if profile is not None:
            summary.profile.merge_counts(json.loads(profile))
        else:  # an output of a batchscore release before drift profiles
            summary.unprofiled_rows += scores.num_rows
        if scores.num_rows == 0:
            summary.empty_files += 1
        summary.outputs.append(target.uri)
