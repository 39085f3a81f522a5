"""A hostile or shared directory: planted links and FIFOs, odd names and empty specs, API odd types.

Each test plants what an attacker or a careless neighbour could, then checks that batchscore
neither writes through it, nor blocks on it, nor scores the wrong data, and says why in one line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from batchscore.interfaces.api import load_model
from batchscore.interfaces.cli import main
from tests.helpers import score_files


def cli(*args):
    words = [*map(str, args)]
    return CliRunner().invoke(main, [*words, "--no-progress"] if words[0] == "run" else words)


def run_under_limit(limit: str, source, output, bundle) -> subprocess.CompletedProcess:
    """`batchscore run` in a shell whose `ulimit` is set first (no fork of this JAX process)."""
    command = f"ulimit {limit} && exec {sys.executable} -m batchscore run {source} -o {output} "
    return subprocess.run(
        ["bash", "-c", command + f"--model {bundle} --no-progress"],
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture
def victim(tmp_path):
    """A file outside the output directory that nothing may touch."""
    path = tmp_path / "elsewhere" / "victim.txt"
    path.parent.mkdir()
    path.write_text("precious\n")
    return path


@pytest.fixture
def source(tmp_path, reviews_table):
    path = tmp_path / "in" / "reviews.parquet"
    path.parent.mkdir()
    pq.write_table(reviews_table, path)
    return path


def test_a_planted_lock_symlink_is_refused_and_its_target_untouched(tmp_path, tiny_bundle, source, victim):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".r.parquet.lock").symlink_to(victim)
    result = cli("run", source, "-o", out / "r.parquet", "--model", tiny_bundle)
    assert result.exit_code == 5, result.output
    assert "symbolic link" in result.output and len(result.output.strip().splitlines()) == 1
    assert victim.read_text() == "precious\n"
    assert not (out / "r.parquet").exists()


def test_a_dangling_lock_symlink_creates_nothing_where_it_points(tmp_path, tiny_bundle, source):
    out = tmp_path / "out"
    out.mkdir()
    target = tmp_path / "elsewhere-new"
    (out / ".r.parquet.lock").symlink_to(target)
    assert cli("run", source, "-o", out / "r.parquet", "--model", tiny_bundle).exit_code == 5
    assert not target.exists()


def test_a_lock_hard_linked_to_another_file_is_refused(tmp_path, tiny_bundle, source, victim):
    out = tmp_path / "out"
    out.mkdir()
    os.link(victim, out / ".r.parquet.lock")
    result = cli("run", source, "-o", out / "r.parquet", "--model", tiny_bundle)
    assert result.exit_code == 5 and "hard links" in result.output
    assert victim.read_text() == "precious\n"


def test_an_output_name_planted_as_a_symlink_is_replaced_not_written_through(
    tmp_path, tiny_bundle, source, victim
):
    out = tmp_path / "out"
    out.mkdir()
    (out / "r.parquet").symlink_to(victim)
    result = cli("run", source, "-o", out / "r.parquet", "--model", tiny_bundle, "--overwrite")
    assert result.exit_code == 0, result.output
    assert victim.read_text() == "precious\n"
    assert not (out / "r.parquet").is_symlink() and pq.read_table(out / "r.parquet").num_rows == 300


@pytest.mark.parametrize("flag", ["--overwrite", "--resume"])
def test_a_planted_parts_directory_link_is_refused_not_followed(tmp_path, tiny_bundle, source, flag):
    out, elsewhere = tmp_path / "out", tmp_path / "someone-elses"
    out.mkdir()
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("mine")
    (out / ".r.parquet.parts").symlink_to(elsewhere, target_is_directory=True)
    result = cli("run", source, "-o", out / "r.parquet", "--model", tiny_bundle, flag)
    assert result.exit_code == 5, result.output
    assert ".r.parquet.parts: the folder of committed parts is a symbolic link" in result.output
    assert (elsewhere / "keep.txt").read_text() == "mine" and sorted(os.listdir(elsewhere)) == ["keep.txt"]
    assert not (out / "r.parquet").exists()


def test_summary_json_into_a_fifo_is_written_into_it(tmp_path, tiny_bundle, source):
    fifo = tmp_path / "summary.fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    result = cli("run", source, "-o", tmp_path / "r.parquet", "--model", tiny_bundle, "--summary-json", fifo)
    reader.join(timeout=60)
    assert result.exit_code == 0, result.output
    assert json.loads(received[0])["status"] == "ok"
    assert fifo.is_fifo()  # still the FIFO, not replaced by a regular file


def test_summary_json_in_a_missing_directory_is_refused_before_any_work(tmp_path, tiny_bundle, source):
    result = cli("run", source, "-o", tmp_path / "r.parquet", "--model", tiny_bundle,
                 "--summary-json", tmp_path / "nope" / "s.json")  # fmt: skip
    assert result.exit_code == 2 and "does not exist" in result.output
    assert not (tmp_path / "r.parquet").exists()


def test_job_markers_planted_as_symlinks_are_replaced(job_setup, tmp_path, victim):
    partition = tmp_path / "scored" / "date=2026-11-28"
    metrics = tmp_path / "scored" / "_metrics" / "date=2026-11-28"
    partition.mkdir(parents=True)
    metrics.mkdir(parents=True)
    (partition / "_SUCCESS").symlink_to(victim)
    (metrics / "metrics.json").symlink_to(victim)
    result = cli("job", job_setup, "--date", "2026-11-28", "--no-progress")
    assert result.exit_code == 0, result.output
    assert victim.read_text() == "precious\n"
    assert not (partition / "_SUCCESS").is_symlink()
    assert json.loads((metrics / "metrics.json").read_text())["exit_code"] == 0


@pytest.mark.parametrize("spec", ["", "   "])
def test_an_empty_input_is_a_usage_error_not_the_current_directory(tmp_path, tiny_bundle, spec, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("run", spec, "-o", "out", "--model", tiny_bundle)
    assert result.exit_code == 2 and "empty" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("key", ["input", "output"])
def test_an_empty_job_path_is_a_job_file_error(job_setup, key):
    text = job_setup.read_text().splitlines()
    job_setup.write_text("\n".join(f'{key} = ""' if line.startswith(f"{key} =") else line for line in text))
    result = cli("job", job_setup, "--date", "2026-11-28")
    assert result.exit_code == 2 and f"[job] {key} is empty" in result.output


def test_a_job_file_that_is_not_utf8_names_the_file(tmp_path):
    spec = tmp_path / "job.toml"
    spec.write_bytes(b'[job]\nname = "caf\xe9"\n')
    result = cli("job", spec)
    assert result.exit_code == 2 and "job.toml" in result.output and "UTF-8" in result.output


def test_an_existing_path_with_glob_characters_is_that_file(tmp_path, tiny_bundle, reviews_table):
    pq.write_table(reviews_table.slice(0, 10), tmp_path / "reviews[1].parquet")
    pq.write_table(reviews_table.slice(10, 5), tmp_path / "reviews1.parquet")  # what the pattern matches
    result = cli("run", tmp_path / "reviews[1].parquet", "-o", tmp_path / "o.parquet", "--model", tiny_bundle)
    assert result.exit_code == 0, result.output
    assert pq.read_table(tmp_path / "o.parquet").num_rows == 10


def test_a_file_reached_twice_through_a_link_is_scored_once(tmp_path, tiny_bundle, source):
    (source.parent / "again.parquet").symlink_to(source)
    result = cli("run", source.parent, "-o", tmp_path / "out", "--model", tiny_bundle)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["reviews.parquet"]


def test_a_fifo_matched_by_a_glob_is_refused_not_waited_on(tmp_path, tiny_bundle, source):
    os.mkfifo(source.parent / "stuck.parquet")
    done = subprocess.run(
        [sys.executable, "-m", "batchscore", "run", f"{source.parent}/*.parquet", "-o", str(tmp_path / "o"),
         "--model", str(tiny_bundle), "--no-progress"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 3 and "not a regular file" in done.stderr


def test_api_takes_one_string_arrow_arrays_and_lone_surrogates(tiny_bundle):
    model = load_model(tiny_bundle)
    assert len(model.predict("one whole text")) == 1
    arrow = model.predict(pa.array(["good film", None]))
    assert arrow["error"].tolist()[1] == "null text" and arrow["label"].notna().tolist() == [True, False]
    assert model.predict(["bad \udcff bytes", "fine"])["error"].tolist()[0] == "invalid UTF-8"
    texts = pd.Series(["x \ud800", "ok"], dtype=object)  # pandas' Arrow strings cannot hold one
    frame = model.score_frame(pd.DataFrame({"text": texts}))
    assert frame["error"].tolist()[0] == "invalid UTF-8"


def test_predict_from_stdin_with_invalid_bytes_scores_the_good_lines(tiny_bundle):
    done = subprocess.run(
        [sys.executable, "-m", "batchscore", "predict", "--model", str(tiny_bundle), "-"],
        input=b"good film\n\xff\n", capture_output=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    header, *lines = done.stdout.decode().splitlines()
    assert header.split() == ["label", "p(positive)", "tokens", "text"]
    assert len(lines) == 2 and "invalid UTF-8" in lines[1] and "Traceback" not in done.stderr.decode()


def test_two_jobs_cannot_share_one_output_root(job_setup, tmp_path):
    assert cli("job", job_setup, "--date", "2026-11-28", "--no-progress").exit_code == 0
    other = tmp_path / "other.toml"
    other.write_text(job_setup.read_text().replace('name = "nightly_test"', 'name = "another"'))
    before = sorted(p.name for p in (tmp_path / "scored" / "date=2026-11-28").iterdir())
    result = cli("job", other, "--date", "2026-11-28", "--no-progress")
    assert result.exit_code == 5 and "belongs to job 'nightly_test'" in result.output
    assert sorted(p.name for p in (tmp_path / "scored" / "date=2026-11-28").iterdir()) == before
    assert (
        cli("job", job_setup, "--date", "2026-11-28", "--no-progress").exit_code == 0
    )  # its owner still may


def test_an_input_column_named_like_the_partition_key_is_renamed(job_setup, tmp_path):
    import duckdb

    landing = tmp_path / "landing" / "2026-11-28"
    for part in landing.iterdir():
        table = pq.read_table(part)
        pq.write_table(table.append_column("date", pa.array(["1999-01-01"] * table.num_rows)), part)
    assert cli("job", job_setup, "--date", "2026-11-28", "--no-progress").exit_code == 0
    root = tmp_path / "scored"
    frame = pd.read_parquet(root)  # refused before: the column and the partition key collided
    assert set(frame["input_date"]) == {"1999-01-01"} and set(frame["date"].astype(str)) == {"2026-11-28"}
    rows = duckdb.sql(
        f"select distinct date, input_date from read_parquet('{root}/*/*.parquet', hive_partitioning=true)"
    )
    assert [tuple(map(str, r)) for r in rows.fetchall()] == [("2026-11-28", "1999-01-01")]


def test_folders_a_glob_matched_are_kept_below_the_output(tmp_path, tiny_bundle, reviews_table):
    for country in ("fr", "de"):
        (tmp_path / "landing" / f"country={country}").mkdir(parents=True)
        pq.write_table(
            reviews_table.slice(0, 5), tmp_path / "landing" / f"country={country}" / "part-0.parquet"
        )
    result = cli("run", f"{tmp_path}/landing/country=*", "-o", tmp_path / "out", "--model", tiny_bundle)
    assert result.exit_code == 0, result.output
    outputs = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.parquet"))
    assert outputs == ["country=de/part-0.parquet", "country=fr/part-0.parquet"]


def test_readers_after_a_kill_see_committed_outputs_only(tmp_path, tiny_bundle, reviews_table, monkeypatch):
    """pandas, pyarrow.dataset and DuckDB's recursive glob read the finished file, never the parts."""
    import duckdb
    import pyarrow.dataset as ds

    from tests.helpers import crashed_run

    (tmp_path / "in").mkdir()
    pq.write_table(reviews_table.slice(0, 100), tmp_path / "in" / "done.parquet")
    pq.write_table(reviews_table, tmp_path / "in" / "killed.parquet")
    out = tmp_path / "out"
    crashed_run(monkeypatch, [tmp_path / "in"], out, tiny_bundle, "manifest updated", 2, window_rows=100)
    assert list(out.glob(".killed.parquet.parts/part-*"))  # the interrupted file's parts are there
    assert len(pd.read_parquet(out)) == 100
    assert ds.dataset(out, format="parquet").count_rows() == 100
    assert duckdb.sql(f"select count(*) from read_parquet('{out}/**/*.parquet')").fetchall() == [(100,)]


@pytest.mark.parametrize("name", ["u.csv", "u.csv.gz"])
def test_a_quote_never_closed_is_a_data_error_not_lost_rows(tmp_path, tiny_bundle, name):
    import gzip

    lines = ["review_id,text", *(f'{i},"review {i} was fine"' for i in range(500)), '500,"I loved it']
    lines += [f'{i},"more {i}"' for i in range(501, 1000)]
    data = ("\n".join(lines) + "\n").encode()
    (tmp_path / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    result = cli("run", tmp_path / name, "-o", tmp_path / "o.parquet", "--model", tiny_bundle)
    assert result.exit_code == 3
    assert (
        "row 500 (counted from 0 after the header, like the output's row column; column 'text')"
        in result.output
    )
    assert not (tmp_path / "o.parquet").exists()


def test_a_stray_quote_in_an_unquoted_field_is_read_as_written(tmp_path, tiny_bundle):
    (tmp_path / "s.csv").write_text('review_id,text\n1,the 12" pizza was great\n2,"a\nmultiline one"\n')
    result = cli(
        "run", tmp_path / "s.csv", "-o", tmp_path / "o.parquet", "--model", tiny_bundle, "--keep-text"
    )
    assert result.exit_code == 3  # odd quotes and a line break: refused, never silently merged
    (tmp_path / "t.csv").write_text('review_id,text\n1,the 12" pizza was great\n2,fine\n')
    result = cli(
        "run", tmp_path / "t.csv", "-o", tmp_path / "t.parquet", "--model", tiny_bundle, "--keep-text"
    )
    assert result.exit_code == 0, result.output
    assert pq.read_table(tmp_path / "t.parquet").column("text").to_pylist() == [
        'the 12" pizza was great',
        "fine",
    ]


@pytest.mark.slow
def test_more_shards_than_the_soft_open_file_limit(tmp_path, tiny_bundle, reviews_table):
    landing = tmp_path / "landing"
    landing.mkdir()
    for i in range(300):
        pq.write_table(reviews_table.slice(i, 1), landing / f"s{i:04d}.parquet")
    done = run_under_limit("-Sn 256", landing, tmp_path / "out", tiny_bundle)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(list((tmp_path / "out").glob("*.parquet"))) == 300


def test_an_output_name_too_long_for_its_siblings_is_refused_before_scoring(
    tmp_path, tiny_bundle, reviews_table
):
    source = tmp_path / ("a" * 235 + ".parquet")
    pq.write_table(reviews_table.slice(0, 5), source)
    result = cli("run", source, "--model", tiny_bundle)
    assert result.exit_code == 5 and "too long" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [source.name]


def test_report_refuses_fifos_odd_metrics_and_missing_folders(tmp_path):
    page = str(tmp_path / "r.html")
    night = tmp_path / "root" / "_metrics" / "date=2026-11-28"
    night.mkdir(parents=True)
    (night / "metrics.json").write_text("[1, 2]")
    result = cli("report", tmp_path / "root", "-o", tmp_path / "r.html")
    assert result.exit_code == 3 and "metrics.json: not a metrics.json" in result.output
    result = cli("report", tmp_path / "root", "-o", tmp_path / "missing" / "r.html")
    assert result.exit_code == 2 and "does not exist" in result.output
    (night / "metrics.json").unlink()
    os.mkfifo(night / "metrics.json")
    done = subprocess.run(
        [sys.executable, "-m", "batchscore", "report", str(tmp_path / "root"), "-o", page],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 3 and "not a regular file" in done.stderr


def test_a_stop_signal_ends_the_process_even_inside_a_native_call_that_never_returns(tmp_path):
    """A blocked read (a remote store retrying, a FIFO with no writer) keeps Python's handler from
    running; the watchdog still ends the process, 130, within the grace period."""
    fifo = tmp_path / "never.fifo"
    os.mkfifo(fifo)
    script = (
        "import sys, pyarrow.fs as fs\n"
        "from batchscore.base import interrupts\n"
        "interrupts.install_for_process()\n"
        "with interrupts.stop_on_signals():\n"
        "    print('ready', flush=True)\n"
        "    fs.LocalFileSystem().open_input_stream(sys.argv[1]).read()\n"
    )
    env = {**os.environ, "BATCHSCORE_STOP_GRACE_SECONDS": "2"}
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(fifo)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    assert process.stdout.readline().strip() == "ready"
    process.send_signal(__import__("signal").SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130 and "still busy 2 s after the stop signal" in stderr


def test_skip_bad_files_keeps_the_earlier_output_of_a_shard_gone_bad(job_setup, tmp_path):
    job_setup.write_text(job_setup.read_text() + "skip_bad_files = true\n")
    assert cli("job", job_setup, "--date", "2026-11-28", "--no-progress").exit_code == 0
    good_before = pq.read_table(tmp_path / "scored" / "date=2026-11-28" / "b.parquet")
    (tmp_path / "landing" / "2026-11-28" / "b.parquet").write_bytes(b"corrupt now")
    result = cli("job", job_setup, "--date", "2026-11-28", "--no-progress")
    assert result.exit_code == 7, result.output
    kept = pq.read_table(tmp_path / "scored" / "date=2026-11-28" / "b.parquet")
    assert kept.equals(good_before)  # not deleted as "no current input maps to it"


def test_an_input_replaced_after_the_preflight_is_refused_not_scored(
    tmp_path, tiny_bundle, reviews_table, monkeypatch
):
    from batchscore.io.readers import ShardReader
    from tests.helpers import score_files

    (tmp_path / "in").mkdir()
    for name in ("a", "b"):
        pq.write_table(reviews_table, tmp_path / "in" / f"{name}.parquet")
    real = ShardReader.windows

    def replaced_first(self, skip_rows=0, first_rows=0):
        if self.source.location.name == "b.parquet":  # another writer swaps it in, other columns
            pq.write_table(reviews_table.drop_columns(["stars"]).append_column("x", reviews_table["stars"]),
                           self.source.location.path)  # fmt: skip
            os.utime(self.source.location.path, ns=(1, 1))
        return real(self, skip_rows, first_rows)

    monkeypatch.setattr(ShardReader, "windows", replaced_first)
    from batchscore.base.errors import InputError

    with pytest.raises(InputError, match=r"b\.parquet: changed since the preflight"):
        score_files([tmp_path / "in"], tmp_path / "out", tiny_bundle)
    assert not (tmp_path / "out" / "b.parquet").exists()


def test_a_value_that_does_not_fit_the_shared_column_type_is_a_data_error(tmp_path, tiny_bundle):
    (tmp_path / "in").mkdir()
    pq.write_table(
        pa.table({"text": ["good film"], "n": pa.array([2**53 + 1], pa.int64())}),
        tmp_path / "in" / "a.parquet",
    )
    pq.write_table(
        pa.table({"text": ["bad film"], "n": pa.array([1.5], pa.float64())}), tmp_path / "in" / "b.parquet"
    )
    summary = tmp_path / "s.json"
    result = cli(
        "run", tmp_path / "in", "-o", tmp_path / "out", "--model", tiny_bundle, "--summary-json", summary
    )
    assert result.exit_code == 3
    assert (
        "a.parquet: row 0, column 'n' (value '9007199254740993') does not fit the run's type double"
        in result.output
    )
    assert json.loads(summary.read_text())["exit_code"] == 3


def test_evaluate_counts_only_the_rows_run_scores(tiny_bundle):
    import numpy as np

    from batchscore.model.bundle import load_bundle
    from batchscore.training.datasets import LabeledData
    from batchscore.training.evaluate import evaluate_bundle

    data = LabeledData(pa.array(["good film", " \t ", "bad film"]), np.array([1, 1, 0], np.int8), "x.csv")
    report = evaluate_bundle(load_bundle(tiny_bundle), data)
    assert report["rows"] == 2 and report["unscored_rows"] == {"empty text": 1}


def test_a_csv_whose_first_row_is_longer_than_a_read_block_is_read(tmp_path, tiny_bundle):
    (tmp_path / "big.csv").write_text(
        'review_id,text\n1,"' + "good " * 1_000_000 + '"\n2,fine film\n'
    )  # 5 MB row
    summary = score_files(
        [tmp_path / "big.csv"], tmp_path / "o.parquet", tiny_bundle, csv_block_bytes=1 << 20
    )
    assert summary.exit_code == 0
    assert pq.read_table(tmp_path / "o.parquet").column("truncated").to_pylist() == [True, False]


def test_an_address_space_limit_too_small_for_jax_is_one_line_not_a_native_abort(
    tmp_path, tiny_bundle, source
):
    done = run_under_limit("-v 1500000", source, tmp_path / "o.parquet", tiny_bundle)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "address space (ulimit -v)" in done.stderr and len(done.stderr.strip().splitlines()) == 1
