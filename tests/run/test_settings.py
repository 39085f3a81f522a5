"""Every run option is declared once (batchscore.settings): the CLI, job files, RunOptions and the
Python API take their defaults and limits from it, so none of them can drift from the others."""

from __future__ import annotations

import dataclasses

import pytest
from click.testing import CliRunner

from batchscore.cli import main, run
from batchscore.errors import UsageError
from batchscore.jobs import JobSpec
from batchscore.run.options import RunOptions
from batchscore.settings import RUN, RUN_SETTINGS, job_settings


def test_the_run_command_declares_every_setting_with_its_default():
    params = {param.name: param for param in run.params}
    for setting in RUN.values():
        assert setting.name in params, setting.name
        assert params[setting.name].default == setting.default, setting.name


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


def test_the_train_command_takes_its_defaults_from_train_config():
    from batchscore.cli import train
    from batchscore.training.config import TrainConfig

    defaults = TrainConfig()
    parsed_elsewhere = ("pooling", "init_model")  # a callback makes the tuple; a path or none
    checked = [p for p in train.params if hasattr(defaults, p.name) and p.name not in parsed_elsewhere]
    assert len(checked) >= 15
    for param in checked:
        assert param.default == getattr(defaults, param.name), param.name
