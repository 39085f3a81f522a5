"""What drift profiling costs a run (target: <= 2% of `batchscore run` wall time on 5,000 reviews).

    python -m benchmarks.drift [--rows 5000] [--repeats 3]
One process, the same input: runs with profiling and runs with it switched off (Profile's methods
replaced by no-ops) alternate after a warm-up, so both see the same compiled model and page cache.
Also printed: the seconds spent inside the profile's own methods, counted during the profiled runs
(a noise-free lower bound of the overhead).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from batchscore.interfaces.run_command import run_scoring
from batchscore.monitoring.drift import Profile
from batchscore.pipeline.options import RunOptions
from benchmarks.common import DEFAULT_IMDB

PROFILE_METHODS = ("add", "to_counts", "merge_counts", "to_dict")


class _Switch:
    """Profile's methods counted (on) or replaced by no-ops (off)."""

    def __init__(self) -> None:
        self.originals = {name: getattr(Profile, name) for name in PROFILE_METHODS}
        self.seconds = 0.0

    def counted(self) -> None:
        for name, method in self.originals.items():
            setattr(Profile, name, self._timed(method))

    def off(self) -> None:
        empty = Profile().to_counts()
        Profile.add = lambda self, *args: None
        Profile.merge_counts = lambda self, counts: None
        Profile.to_counts = lambda self: empty
        Profile.to_dict = self.originals["to_dict"]  # once per run; keeps the summary valid

    def _timed(self, method):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--imdb", type=Path, default=DEFAULT_IMDB)
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    table = pq.read_table(args.imdb, columns=["id", "text"]).slice(0, args.rows)
    switch = _Switch()
    times: dict[str, list[float]] = {"on": [], "off": []}
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "reviews.parquet"
        pq.write_table(table, source)
        options = RunOptions(id_column="id", overwrite=True, window_rows=2048)

        def run() -> float:
            started = time.perf_counter()
            run_scoring(
                [str(source)], f"{tmp}/out.parquet", None, options, progress=False, log=lambda m: None
            )
            return time.perf_counter() - started

        run()  # warm-up: compilation
        for _ in range(args.repeats):
            for mode in ("off", "on"):
                switch.off() if mode == "off" else switch.counted()
                times[mode].append(run())
    on, off = statistics.median(times["on"]), statistics.median(times["off"])
    inside = switch.seconds / args.repeats
    print(f"{args.rows:,} IMDb test reviews, median of {args.repeats} alternating runs")
    print(f"  run without profiling: {off:.2f} s   with profiling: {on:.2f} s   ({on / off - 1:+.1%})")
    print(
        f"  time inside the profile per run: {inside * 1000:.0f} ms = {inside / on:.2%} of the run"
        " (target <= 2%)"
    )


if __name__ == "__main__":
    main()
