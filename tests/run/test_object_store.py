"""Object stores: `run` and `job` against a real S3 API (moto's server on 127.0.0.1), through
pyarrow's S3 filesystem, give the local outputs; a kill -9 mid-run resumes there too."""

from __future__ import annotations

import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from batchscore.interfaces.cli import main
from tests.helpers import HOOKED_RUN, RUN_VARYING, without_run_columns

moto_server = pytest.importorskip("moto.server")
pytestmark = pytest.mark.slow  # a server, and a killed subprocess

BUCKET = "nightly"


@pytest.fixture(scope="module")
def s3_endpoint():
    """An S3-compatible server for this module, found by pyarrow (and child processes) through the
    standard AWS_* environment variables."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    settings = {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ALLOW_HTTP": "true",  # Delta Lake's storage client, to the test server's plain HTTP
    }
    saved = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)
    admin = pafs.S3FileSystem(endpoint_override=f"{host}:{port}", scheme="http", allow_bucket_creation=True)
    admin.create_dir(BUCKET)
    yield admin
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def landing(s3_endpoint, reviews_table, tmp_path, request):
    """The same three shards locally and under s3://nightly/<test>/in/."""
    prefix = f"{BUCKET}/{request.node.name[:40]}"
    (tmp_path / "in").mkdir()
    for index, start in enumerate((0, 100, 220)):
        part = reviews_table.slice(start, 100 if start < 200 else 80)
        pq.write_table(part, tmp_path / "in" / f"part-{index}.parquet")
        pq.write_table(part, f"{prefix}/in/part-{index}.parquet", filesystem=s3_endpoint)
    return prefix


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def read_s3(s3, path: str) -> pa.Table:
    with s3.open_input_file(path) as handle:
        return pq.read_table(handle)


def test_run_on_s3_gives_the_local_outputs(s3_endpoint, landing, tmp_path, tiny_bundle):
    local = cli("run", tmp_path / "in", "-o", tmp_path / "out", "--model", tiny_bundle, "--no-progress")
    assert local.exit_code == 0, local.output
    remote = cli("run", f"s3://{landing}/in/", "-o", f"s3://{landing}/out/", "--model", tiny_bundle)
    assert remote.exit_code == 0, remote.output
    names = sorted(info.base_name for info in s3_endpoint.get_file_info(pafs.FileSelector(f"{landing}/out")))
    assert names == ["part-0.parquet", "part-1.parquet", "part-2.parquet"]  # no parts, temporary or lock
    for name in names:
        expected = pq.read_table(tmp_path / "out" / name)
        got = read_s3(s3_endpoint, f"{landing}/out/{name}")
        assert without_run_columns(got).equals(without_run_columns(expected)), name
        assert set(RUN_VARYING) <= set(got.column_names)
    again = cli(
        "run", f"s3://{landing}/in/", "-o", f"s3://{landing}/out/", "--model", tiny_bundle, "--resume"
    )
    assert again.exit_code == 0 and "3 already complete" in again.output


def test_kill_9_mid_run_on_s3_then_resume(s3_endpoint, landing, tmp_path, tiny_bundle):
    args = ["run", f"s3://{landing}/in/", "-o", f"s3://{landing}/out/", "--model", str(tiny_bundle)]
    args += ["--window-rows", "40", "--no-progress"]
    killed = subprocess.run(
        [sys.executable, "-c", HOOKED_RUN, "SIGKILL", "manifest updated", "4", *args],
        capture_output=True,
        text=True,
    )
    assert killed.returncode == -9, killed.stderr
    parts = s3_endpoint.get_file_info(pafs.FileSelector(f"{landing}/out", recursive=True))
    assert any(".parts/" in info.path for info in parts)  # committed work left on the store
    resumed = subprocess.run(
        [sys.executable, "-m", "batchscore", *args, "--resume"], capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after" in resumed.stderr
    straight = cli(
        "run", tmp_path / "in", "-o", tmp_path / "out", "--model", tiny_bundle, "--window-rows", 40
    )
    assert straight.exit_code == 0
    for index in range(3):
        got = read_s3(s3_endpoint, f"{landing}/out/part-{index}.parquet")
        expected = pq.read_table(tmp_path / "out" / f"part-{index}.parquet")
        assert without_run_columns(got).equals(without_run_columns(expected))
        assert len(got.column("run_id").unique()) == 1  # a resumed output keeps one run
    left = s3_endpoint.get_file_info(pafs.FileSelector(f"{landing}/out", recursive=True))
    assert sorted(info.base_name for info in left) == ["part-0.parquet", "part-1.parquet", "part-2.parquet"]


def test_job_with_s3_input_and_output(s3_endpoint, landing, tmp_path, tiny_bundle):
    spec = tmp_path / "nightly.toml"
    spec.write_text(
        "[job]\n"
        'name = "s3_nightly"\n'
        f'input = "s3://{landing}/in/"\n'
        f'output = "s3://{landing}/scored"\n'
        f'model = "{tiny_bundle}"\n'
        'id_column = "review_id"\n'
    )
    result = cli("job", spec, "--date", "2026-11-28", "--no-progress")
    assert result.exit_code == 0, result.output
    partition = f"{landing}/scored/date=2026-11-28"
    assert s3_endpoint.get_file_info(f"{partition}/_SUCCESS").type == pafs.FileType.File
    metrics = s3_endpoint.open_input_stream(f"{landing}/scored/_metrics/date=2026-11-28/metrics.json").read()
    assert b'"rows": 280' in metrics
    scored = pq.read_table(f"{partition}/", filesystem=s3_endpoint)
    landed = [*range(5000, 5200), *range(5220, 5300)]  # the three shards' ids
    assert scored.num_rows == 280 and sorted(scored.column("review_id").to_pylist()) == landed


def test_s3_timeouts_and_retries_are_settings(s3_endpoint, landing, tmp_path, tiny_bundle, monkeypatch):
    monkeypatch.setenv("BATCHSCORE_S3_RETRIES", "two")
    refused = CliRunner().invoke(main, ["run", f"s3://{landing}/in/", "-o", str(tmp_path / "o")])
    assert refused.exit_code == 2 and "BATCHSCORE_S3_RETRIES='two'" in refused.output
    monkeypatch.setenv("BATCHSCORE_S3_RETRIES", "2")
    monkeypatch.setenv("BATCHSCORE_S3_CONNECT_TIMEOUT", "2.5")
    monkeypatch.setenv("BATCHSCORE_S3_REQUEST_TIMEOUT", "10")
    tuned = cli("run", f"s3://{landing}/in/", "-o", tmp_path / "o", "--model", tiny_bundle, "--no-progress")
    assert tuned.exit_code == 0, tuned.output
    assert pq.read_table(tmp_path / "o").num_rows == 280


def test_a_key_with_an_empty_folder_name_is_named_not_skipped(s3_endpoint, reviews_table, tmp_path):
    """`day//b.parquet` is a valid S3 key that pyarrow lists but cannot open: the run refuses it by
    name instead of scoring its neighbours alone with exit 0."""
    import boto3

    prefix = "empty-segment"
    pq.write_table(reviews_table.slice(0, 50), f"{BUCKET}/{prefix}/day/a.parquet", filesystem=s3_endpoint)
    pq.write_table(reviews_table.slice(50, 50), tmp_path / "b.parquet")
    client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    client.put_object(
        Bucket=BUCKET, Key=f"{prefix}/day//b.parquet", Body=(tmp_path / "b.parquet").read_bytes()
    )
    result = CliRunner().invoke(
        main, ["run", f"s3://{BUCKET}/{prefix}/day/", "-o", f"s3://{BUCKET}/{prefix}/out/", "--no-progress"]
    )
    assert result.exit_code == 3, result.output
    assert f"s3://{BUCKET}/{prefix}/day//b.parquet: the key has an empty folder name" in result.output


def test_a_delta_job_on_the_object_store_commits_each_night_once(s3_endpoint, job_setup):
    """In processes of their own: Delta Lake's client waits on the server holding the interpreter's
    lock, and the test's S3 server runs in this interpreter."""
    import re

    deltalake = pytest.importorskip("deltalake")
    root = f"s3://{BUCKET}/delta-job"
    text = re.sub(r'output = ".*"', f'output = "{root}"', job_setup.read_text())
    job_setup.write_text(text + 'format = "delta"\n')
    for day in ("2026-11-27", "2026-11-28", "2026-11-28"):
        done = subprocess.run(
            [sys.executable, "-m", "batchscore", "job", str(job_setup), "--date", day, "--no-progress"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    assert "night 2026-11-28 already committed (version 1)" in done.stderr
    table = deltalake.DeltaTable(root)
    assert table.version() == 1
    files = [uri.removeprefix("s3://") for uri in table.file_uris()]
    rows = pa.concat_tables(pq.read_table(path, filesystem=s3_endpoint) for path in files)
    assert sorted(rows.column("review_id").to_pylist()) == list(range(5000, 5300))
