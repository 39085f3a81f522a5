"""Model bundles: round trip, and a clear rejection of every kind of broken bundle."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from batchscore.model.bilstm import flatten_params
from batchscore.model.bundle import BundleError, load_bundle, save_bundle


@pytest.fixture
def bundle_copy(tiny_bundle, tmp_path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(tiny_bundle, target)
    return target


def test_round_trip_keeps_everything(tiny_bundle, tmp_path):
    bundle = load_bundle(tiny_bundle)
    save_bundle(bundle, tmp_path / "again", weights_dtype="float32")
    again = load_bundle(tmp_path / "again")
    assert again.model == bundle.model and again.tokenizer == bundle.tokenizer
    assert again.vocab.tokens == bundle.vocab.tokens
    assert (again.max_tokens, again.head_tokens, again.temperature) == (48, 12, 1.0)
    for name, value in flatten_params(bundle.params).items():
        np.testing.assert_array_equal(np.asarray(value), np.asarray(flatten_params(again.params)[name]))
    assert again.weights_sha256 == bundle.weights_sha256


def test_float16_weights_load_as_float32(tiny_bundle, tmp_path):
    save_bundle(load_bundle(tiny_bundle), tmp_path / "half", weights_dtype="float16")
    arrays = load_file(str(tmp_path / "half" / "weights.safetensors"))
    assert all(a.dtype == np.float16 for a in arrays.values())
    loaded = load_bundle(tmp_path / "half")
    assert loaded.params["head"]["kernel"].dtype == np.float32


@pytest.mark.parametrize("missing", ["config.json", "vocab.txt", "weights.safetensors"])
def test_missing_file(bundle_copy, missing):
    (bundle_copy / missing).unlink()
    with pytest.raises(BundleError, match=f"missing {missing}"):
        load_bundle(bundle_copy)


def _edit_config(directory: Path, edit) -> None:
    config = json.loads((directory / "config.json").read_text())
    edit(config)
    (directory / "config.json").write_text(json.dumps(config))


def test_newer_format_version(bundle_copy):
    _edit_config(bundle_copy, lambda c: c.update(format_version=99))
    with pytest.raises(BundleError, match="newer than this batchscore supports"):
        load_bundle(bundle_copy)


def test_vocabulary_size_mismatch(bundle_copy):
    with (bundle_copy / "vocab.txt").open("a") as handle:
        handle.write("extra\n")
    with pytest.raises(BundleError, match=r"vocab.txt has .* tokens but config.json says"):
        load_bundle(bundle_copy)


def test_wrong_weight_shape(bundle_copy):
    _edit_config(bundle_copy, lambda c: c["model"].update(hidden=7))
    with pytest.raises(BundleError, match="has shape"):
        load_bundle(bundle_copy)


def test_missing_weight(bundle_copy):
    path = bundle_copy / "weights.safetensors"
    arrays = load_file(str(path))
    del arrays["head/bias"]
    save_file(arrays, str(path))
    with pytest.raises(BundleError, match=r"missing \['head/bias'\]"):
        load_bundle(bundle_copy)


def test_non_finite_weight(bundle_copy):
    path = bundle_copy / "weights.safetensors"
    arrays = load_file(str(path))
    arrays["head/bias"] = np.array([np.nan, 0], np.float32)
    save_file(arrays, str(path))
    with pytest.raises(BundleError, match="NaN"):
        load_bundle(bundle_copy)


def test_truncated_weights_file(bundle_copy):
    path = bundle_copy / "weights.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(BundleError, match="unreadable"):
        load_bundle(bundle_copy)


def test_not_json_config(bundle_copy):
    (bundle_copy / "config.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(bundle_copy)


def test_file_linked_outside_the_bundle_is_refused(bundle_copy, tmp_path):
    outside = tmp_path / "elsewhere.txt"
    shutil.move(bundle_copy / "vocab.txt", outside)
    os.symlink(outside, bundle_copy / "vocab.txt")
    with pytest.raises(BundleError, match="outside the bundle directory"):
        load_bundle(bundle_copy)


def test_pooled_head_is_format_version_2_and_plain_head_stays_1(tiny_bundle, tmp_path):
    from dataclasses import replace

    from batchscore.model.bilstm import ModelConfig
    from batchscore.model.network import init_params

    plain = load_bundle(tiny_bundle)
    assert json.loads((tiny_bundle / "config.json").read_text())["format_version"] == 1
    assert "pooling" not in json.loads((tiny_bundle / "config.json").read_text())["model"]
    config = replace(plain.model, pooling=("max", "mean"))
    pooled = replace(plain, model=config, params=init_params(config, 1))
    save_bundle(pooled, tmp_path / "pooled", weights_dtype="float32")
    written = json.loads((tmp_path / "pooled" / "config.json").read_text())
    assert written["format_version"] == 2 and written["model"]["pooling"] == ["max", "mean"]
    loaded = load_bundle(tmp_path / "pooled")
    assert loaded.model.pooling == ("max", "mean") and loaded.params["head"]["kernel"].shape == (48, 2)

    written["format_version"] = 1  # a version-1 file cannot describe a pooled head
    (tmp_path / "pooled" / "config.json").write_text(json.dumps(written))
    with pytest.raises(BundleError, match="needs format_version 2"):
        load_bundle(tmp_path / "pooled")
    written["format_version"], written["model"]["pooling"] = 2, ["median"]
    (tmp_path / "pooled" / "config.json").write_text(json.dumps(written))
    with pytest.raises(BundleError, match="pooling must be"):
        load_bundle(tmp_path / "pooled")
    assert ModelConfig(vocab_size=3).head_width == 4 * ModelConfig(vocab_size=3).hidden


def edit_config(bundle: Path, edit) -> None:
    config = json.loads((bundle / "config.json").read_text())
    edit(config)
    (bundle / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (lambda c: c.update(labels=["positive", "negative"]), "labels: must be ['negative', 'positive']"),
        (lambda c: c.update(labels=["negative", "positive", "mixed"]), "labels: must be"),
        (lambda c: c.update(temperature=1e-320), "temperature: must be a number from 0.01 to 100"),
        (lambda c: c.update(temperature="1.0"), "temperature: must be a number"),
        (lambda c: c["tokenizer"].update(lowercase="no"), "tokenizer.lowercase: must be true or false"),
        (lambda c: c["model"].update(num_classes=3), "model.num_classes: must be a whole number from 2 to 2"),
        (lambda c: c.update(max_tokens=10**12), "max_tokens: must be a whole number from 1 to 100000"),
        (lambda c: c.update(head_tokens=60), "head_tokens: must not exceed max_tokens (48)"),
        (lambda c: c.pop("format_version"), "format_version: missing"),
        (lambda c: c.update(format_version="2"), "format_version: must be a whole number"),
        (lambda c: c["model"].update(hidden=True), "model.hidden: must be a whole number"),
        (lambda c: c.update(surprise=1), "surprise: not a known key"),
        (lambda c: c.update(card=[]), "card: must be a JSON object"),
        (lambda c: c.update(model=[1, 2]), "model: must be a JSON object"),
    ],
)
def test_a_config_value_outside_the_schema_is_refused_naming_the_key(bundle_copy, edit, says):
    edit_config(bundle_copy, edit)
    with pytest.raises(BundleError) as raised:
        load_bundle(bundle_copy)
    message = str(raised.value)
    assert message.startswith(f"model bundle {bundle_copy}: config.json") and says in message, message
    assert "\n" not in message


def test_a_deeply_nested_config_is_one_clear_refusal(bundle_copy):
    (bundle_copy / "config.json").write_text('{"format": "batchscore-bundle", "card": ' + "[" * 100_000)
    with pytest.raises(BundleError, match=r"config\.json is not valid JSON"):
        load_bundle(bundle_copy)


def test_the_hashes_are_of_the_bytes_that_were_loaded(bundle_copy):
    """What is scored and what model_sha256 names come from one read of each file."""
    import hashlib

    bundle = load_bundle(bundle_copy)
    weights = (bundle_copy / "weights.safetensors").read_bytes()
    assert bundle.weights_sha256 == hashlib.sha256(weights).hexdigest()
    arrays = load_file(str(bundle_copy / "weights.safetensors"))
    for name, value in flatten_params(bundle.params).items():
        np.testing.assert_array_equal(np.asarray(value), arrays[name].astype(np.float32))
