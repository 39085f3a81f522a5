"""Every run option is declared once (batchscore.base.settings): the CLI, job files, RunOptions and the
Python API take their defaults and limits from it, so none of them can drift from the others."""

from __future__ import annotations

import dataclasses
import re

import click
import pytest
from click.testing import CliRunner

from batchscore.base.errors import UsageError
from batchscore.base.settings import RUN, RUN_SETTINGS, job_settings
from batchscore.interfaces.cli import main, run
from batchscore.interfaces.jobs import JobSpec
from batchscore.pipeline.options import RunOptions


def received_when_omitted(command: click.Command, args: list[str]) -> dict:
    """The values a command body receives for the options a user leaves out (Click's parsing, no run)."""
    with command.make_context(command.name, args) as ctx:
        return dict(ctx.params)


def test_the_run_command_receives_every_settings_default_when_it_is_omitted():
    received = received_when_omitted(run, ["x.parquet"])
    for setting in RUN.values():
        assert setting.name in received, setting.name
        assert received[setting.name] == setting.default, setting.name


def test_run_help_shows_every_flag_and_its_default():
    shown = " ".join(CliRunner().invoke(main, ["run", "--help"], terminal_width=200).output.split())
    for setting in RUN.values():
        assert setting.cli_flag in shown, setting.name
        if setting.default is not None and setting.kind is not bool:
            assert re.search(rf"\[default: {re.escape(str(setting.default))}[;\]]", shown), setting.name


def test_job_keys_have_the_settings_defaults():
    job_defaults = {f.name: f.default for f in dataclasses.fields(JobSpec)}
    for setting in job_settings():
        assert job_defaults[setting.name] == setting.default, setting.name


def test_run_options_from_no_settings_are_the_defaults():
    assert RunOptions.from_settings({}) == RunOptions()
    given = RunOptions.from_settings({"batch_tokens": 4096, "max_batch_rows": 64, "fail_on_drift": "warn"})
    assert (given.buckets.token_budget, given.buckets.max_rows, given.drift.fail_on_drift) == (
        4096,
        64,
        "warn",
    )


@pytest.mark.parametrize(
    "name, bad",
    [("window_rows", 0), ("batch_tokens", -1), ("max_error_rate", 1.5), ("device", "tpu"), ("max_tokens", 0)],
)
def test_a_value_out_of_range_is_refused_the_same_way_everywhere(tmp_path, name, bad):
    """The limit of a setting is one rule: RunOptions, a job file and (for the CLI's own types) Click
    all refuse the value before any work, naming the setting."""
    problem = RUN[name].problem(bad)
    assert problem and name in problem
    with pytest.raises(UsageError, match=name):
        RunOptions.from_settings({name: bad})
    if RUN[name].in_job:
        spec = tmp_path / "job.toml"
        value = f'"{bad}"' if isinstance(bad, str) else bad
        spec.write_text(f'[job]\nname = "n"\ninput = "in/*.parquet"\noutput = "out"\n{name} = {value}\n')
        result = CliRunner().invoke(main, ["job", str(spec)])
        assert result.exit_code == 2 and name in result.output, result.output
    flag = RUN[name].cli_flag
    result = CliRunner().invoke(main, ["run", "x.parquet", flag, str(bad)])
    assert result.exit_code == 2 and flag in result.output, result.output


def test_every_setting_has_help_or_choices():
    assert all(setting.help or setting.choices for setting in RUN_SETTINGS)


def test_the_train_command_receives_train_configs_defaults_when_they_are_omitted(tmp_path):
    from batchscore.interfaces.cli import train
    from batchscore.training.config import TrainConfig

    data = tmp_path / "train.parquet"
    data.write_bytes(b"")  # --train must name an existing path; nothing is read while parsing
    received = received_when_omitted(train, ["--train", str(data), "-o", str(tmp_path / "m")])
    defaults = TrainConfig()
    not_on_the_command_line = {"warmup_steps", "clip_norm", "boundaries"}  # fixed by the recipe code
    for field in dataclasses.fields(TrainConfig):
        if field.name in not_on_the_command_line:
            assert field.name not in received, field.name
            continue
        value = received[field.name]
        if field.name == "init_model":  # a path, or none given
            assert value is None and defaults.init_model == "", value
        else:
            assert value == getattr(defaults, field.name), field.name
