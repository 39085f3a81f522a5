"""A model on disk: config.json + vocab.txt + weights.safetensors, validated on load.

Nothing here unpickles or executes code: the config is JSON, the vocabulary is
text and the weights are safetensors (a JSON header and raw arrays). File names
are fixed, so a bundle cannot point the loader outside its own directory.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from batchscore.errors import ModelError
from batchscore.model import ModelConfig, flatten_params, unflatten_params
from batchscore.text import TokenizerConfig
from batchscore.vocab import Vocab

FORMAT = "batchscore-bundle"
FORMAT_VERSION = 2  # 2: model.pooling (head sees pooled outputs too); 1: first and last outputs only
CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.txt"
WEIGHTS_FILE = "weights.safetensors"
BUNDLE_FILES = (CONFIG_FILE, VOCAB_FILE, WEIGHTS_FILE)
DEFAULT_MODEL_PACKAGE = "batchscore.models"
DEFAULT_MODEL_NAME = "imdb-bilstm-glove50"


class BundleError(ModelError):
    """A model bundle is missing, incomplete or inconsistent."""


@dataclass(frozen=True)
class Bundle:
    name: str
    model: ModelConfig
    tokenizer: TokenizerConfig
    vocab: Vocab
    params: dict
    labels: tuple[str, ...] = ("negative", "positive")
    max_tokens: int = 400
    head_tokens: int = 100
    temperature: float = 1.0
    card: dict = field(default_factory=dict)  # training data, command, metrics: for humans
    weights_sha256: str = ""
    bundle_sha256: str = ""  # all three files: any change to weights, config or vocabulary changes it

    def config_dict(self) -> dict:
        """The config.json payload; a first-and-last head is written as version 1, which older
        batchscore releases read too."""
        model = self.model.to_dict()
        if not self.model.pooling:
            del model["pooling"]
        return {
            "format": FORMAT,
            "format_version": 2 if self.model.pooling else 1,
            "name": self.name,
            "model": model,
            "tokenizer": self.tokenizer.to_dict(),
            "labels": list(self.labels),
            "max_tokens": self.max_tokens,
            "head_tokens": self.head_tokens,
            "temperature": self.temperature,
            "card": self.card,
        }


def save_bundle(bundle: Bundle, directory: Path, weights_dtype: str = "float16") -> str:
    """Write the bundle's three files (each atomically); returns the weights' sha256."""
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        name: np.ascontiguousarray(np.asarray(value, dtype=weights_dtype))
        for name, value in flatten_params(bundle.params).items()
    }
    _atomic(directory / WEIGHTS_FILE, lambda tmp: save_file(arrays, str(tmp), metadata={"format": FORMAT}))
    _atomic(directory / VOCAB_FILE, bundle.vocab.save)
    save_config(bundle, directory)
    return file_sha256(directory / WEIGHTS_FILE)


def save_config(bundle: Bundle, directory: Path) -> None:
    """Write config.json alone (atomically): settings and card change, weights and vocabulary stay."""
    text = json.dumps(bundle.config_dict(), indent=2, sort_keys=False) + "\n"
    _atomic(directory / CONFIG_FILE, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.chmod(tmp, 0o644)  # a bundle is read by other users and services
    os.replace(tmp, path)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def default_bundle_path() -> Path:
    """The model shipped inside the package, found via importlib.resources."""
    return Path(str(resources.files(DEFAULT_MODEL_PACKAGE).joinpath(DEFAULT_MODEL_NAME)))


def load_bundle(directory: Path | str | None = None) -> Bundle:
    """Load and validate a bundle; raises BundleError naming the file and the problem."""
    directory = Path(directory) if directory is not None else default_bundle_path()
    if not directory.is_dir():
        raise BundleError(f"model bundle {directory}: not a directory")
    root = directory.resolve()
    paths = {}
    for name in BUNDLE_FILES:
        path = directory / name
        if not path.is_file():
            raise BundleError(f"model bundle {directory}: missing {name}")
        if root not in path.resolve().parents:
            raise BundleError(f"model bundle {directory}: {name} points outside the bundle directory")
        paths[name] = path
    config = _read_config(paths[CONFIG_FILE])
    try:
        model = ModelConfig.from_dict(config["model"])
        tokenizer = TokenizerConfig.from_dict(config["tokenizer"])
    except (KeyError, TypeError, ValueError) as err:
        raise BundleError(f"model bundle {directory}: {CONFIG_FILE} is invalid: {err}") from err
    if model.pooling and config["format_version"] < 2:
        raise BundleError(
            f"model bundle {directory}: {CONFIG_FILE} uses model.pooling, which needs format_version 2"
        )
    settings = _check_settings(config, model, f"model bundle {directory}: {CONFIG_FILE}")
    try:
        vocab = Vocab.load(paths[VOCAB_FILE])
    except (ValueError, UnicodeDecodeError) as err:
        raise BundleError(f"model bundle {directory}: {VOCAB_FILE} is invalid: {err}") from err
    if len(vocab) != model.vocab_size:
        raise BundleError(
            f"model bundle {directory}: {VOCAB_FILE} has {len(vocab)} tokens "
            f"but {CONFIG_FILE} says vocab_size={model.vocab_size}"
        )
    params = _read_weights(paths[WEIGHTS_FILE], model)
    hashes = {name: file_sha256(path) for name, path in paths.items()}
    return Bundle(
        name=str(config.get("name", directory.name)),
        model=model,
        tokenizer=tokenizer,
        vocab=vocab,
        params=params,
        card=dict(config.get("card", {})),
        weights_sha256=hashes[WEIGHTS_FILE],
        bundle_sha256=hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest(),
        **settings,
    )


def _check_settings(config: dict, model: ModelConfig, where: str) -> dict:
    """The scoring settings of a config, each checked: a bad value must stop a run, not skew its scores."""

    def fail(key: str, problem: str) -> BundleError:
        return BundleError(f"{where}: {key!r} {problem} (found {config.get(key)!r})")

    def integer(key: str, default: int, minimum: int) -> int:
        value = config.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise fail(key, f"must be an integer >= {minimum}")
        return value

    for key in ("vocab_size", "embed_dim", "hidden", "num_layers", "num_classes"):
        value = getattr(model, key)
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or value < (2 if key == "num_classes" else 1)
        ):
            raise BundleError(f"{where}: model.{key} must be a positive integer (found {value!r})")
    max_tokens = integer("max_tokens", 400, 1)
    head_tokens = integer("head_tokens", 100, 0)
    if head_tokens > max_tokens:
        raise fail("head_tokens", f"must not exceed max_tokens ({max_tokens})")
    temperature = config.get("temperature", 1.0)
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, int | float)
        or not math.isfinite(temperature)
        or temperature <= 0
    ):
        raise fail("temperature", "must be a finite number > 0")
    labels = config.get("labels", ["negative", "positive"])
    if (
        not isinstance(labels, list)
        or not all(isinstance(label, str) and label for label in labels)
        or len(set(labels)) != len(labels)
    ):
        raise fail("labels", "must be a list of distinct non-empty strings")
    if len(labels) != model.num_classes:
        raise fail("labels", f"must name {model.num_classes} classes (model.num_classes)")
    if not isinstance(config.get("card", {}), dict):
        raise fail("card", "must be a JSON object")
    return {
        "labels": tuple(labels),
        "max_tokens": max_tokens,
        "head_tokens": head_tokens,
        "temperature": float(temperature),
    }


def _read_config(path: Path) -> dict:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise BundleError(f"model bundle {path.parent}: {CONFIG_FILE} is not valid JSON: {err}") from err
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise BundleError(f"model bundle {path.parent}: {CONFIG_FILE} is not a {FORMAT} config")
    version = config.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version > FORMAT_VERSION:
        raise BundleError(
            f"model bundle {path.parent}: format version {version!r} is newer than this "
            f"batchscore supports ({FORMAT_VERSION}); upgrade batchscore"
        )
    return config


def _read_weights(path: Path, model: ModelConfig) -> dict:
    try:
        arrays = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise BundleError(f"model bundle {path.parent}: {WEIGHTS_FILE} is unreadable: {err}") from err
    expected = model.param_shapes()
    missing = sorted(set(expected) - set(arrays))
    extra = sorted(set(arrays) - set(expected))
    if missing or extra:
        raise BundleError(
            f"model bundle {path.parent}: {WEIGHTS_FILE} does not match {CONFIG_FILE}: "
            f"missing {missing or 'nothing'}, unexpected {extra or 'nothing'}"
        )
    for name, shape in expected.items():
        if arrays[name].dtype.kind != "f":
            raise BundleError(
                f"model bundle {path.parent}: weight {name} is {arrays[name].dtype}, not floating point"
            )
        if arrays[name].shape != shape:
            raise BundleError(
                f"model bundle {path.parent}: weight {name} has shape {arrays[name].shape}, "
                f"config expects {shape}"
            )
        if not np.all(np.isfinite(arrays[name])):
            raise BundleError(f"model bundle {path.parent}: weight {name} has NaN or infinite values")
    return unflatten_params({name: a.astype(np.float32) for name, a in arrays.items()})
