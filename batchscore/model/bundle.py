"""A model on disk: config.json + vocab.txt + weights.safetensors, validated on load.

Nothing here unpickles or executes code: the config is JSON, the vocabulary is
text and the weights are safetensors (a JSON header and raw arrays). File names
are fixed, so a bundle cannot point the loader outside its own directory.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load, save

from batchscore.base.errors import ModelError
from batchscore.io.safe_files import replace_atomically
from batchscore.model.bilstm import ModelConfig, flatten_params, unflatten_params
from batchscore.text.tokenizer import TokenizerConfig
from batchscore.text.vocab import Vocab

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


LABELS = ("negative", "positive")  # the head's class order: column 1 is prob_positive


@dataclass(frozen=True)
class Bundle:
    name: str
    model: ModelConfig
    tokenizer: TokenizerConfig
    vocab: Vocab
    params: dict
    labels: tuple[str, ...] = LABELS
    max_tokens: int = 400
    head_tokens: int = 100
    temperature: float = 1.0
    card: dict = field(default_factory=dict)  # training data, command, metrics: for humans
    weights_sha256: str = ""
    bundle_sha256: str = ""  # all three files: any change to weights, config or vocabulary changes it

    def identity(self) -> dict[str, str]:
        """Which model scored: what a run summary and an output's metadata name it by."""
        return {"name": self.name, "model_sha256": self.bundle_sha256, "weights_sha256": self.weights_sha256}

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
    weights = save(arrays, metadata={"format": FORMAT})
    _write(directory / WEIGHTS_FILE, weights)
    _write(directory / VOCAB_FILE, bundle.vocab.to_text().encode("utf-8"))
    save_config(bundle, directory)
    return hashlib.sha256(weights).hexdigest()


def save_config(bundle: Bundle, directory: Path) -> None:
    """Write config.json alone (atomically): settings and card change, weights and vocabulary stay."""
    text = json.dumps(bundle.config_dict(), indent=2, sort_keys=False) + "\n"
    _write(directory / CONFIG_FILE, text.encode("utf-8"))


def _write(path: Path, data: bytes) -> None:
    """Whole or not at all, never through a name planted beside it; readable by other users and
    services (a bundle is shared)."""
    replace_atomically(str(path), lambda handle: handle.write(data), mode=0o644)


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
    """Load and validate a bundle; raises BundleError naming the file and the problem.

    Each file is read once into memory, and what is checked, used and hashed are those same bytes:
    a file replaced while the bundle loads cannot give scores from one version under another's hash.
    """
    directory = Path(directory) if directory is not None else default_bundle_path()
    where = f"model bundle {directory}"
    if not directory.is_dir():
        raise BundleError(f"{where}: not a directory")
    root = directory.resolve()
    contents = {}
    for name in BUNDLE_FILES:
        path = directory / name
        if not path.is_file():
            raise BundleError(f"{where}: missing {name}")
        if root not in path.resolve().parents:
            raise BundleError(f"{where}: {name} points outside the bundle directory")
        try:
            contents[name] = path.read_bytes()
        except OSError as err:
            raise BundleError(f"{where}: cannot read {name}: {err.strerror}") from err
    config = _read_config(contents[CONFIG_FILE], f"{where}: {CONFIG_FILE}")
    model = ModelConfig.from_dict(config["model"])
    tokenizer = TokenizerConfig.from_dict(config["tokenizer"])
    try:
        vocab = Vocab.from_text(contents[VOCAB_FILE].decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise BundleError(f"{where}: {VOCAB_FILE} is invalid: {err}") from err
    if len(vocab) != model.vocab_size:
        raise BundleError(
            f"{where}: {VOCAB_FILE} has {len(vocab)} tokens but {CONFIG_FILE} says "
            f"vocab_size={model.vocab_size}"
        )
    params = _read_weights(contents[WEIGHTS_FILE], model, where)
    hashes = {name: hashlib.sha256(data).hexdigest() for name, data in contents.items()}
    return Bundle(
        name=config.get("name", directory.name),
        model=model,
        tokenizer=tokenizer,
        vocab=vocab,
        params=params,
        **_scoring_settings(config),
        card=dict(config.get("card", {})),
        weights_sha256=hashes[WEIGHTS_FILE],
        bundle_sha256=hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest(),
    )


# config.json, checked as a whole before any of it is used: every key known, every value of its type
# and within its range. (kind, minimum, maximum); "count" is an integer, "number" a finite float.
_MAX_TOKENS = 100_000  # a review longer than this is cut (head + tail) long before the model sees it
CONFIG_SCHEMA: dict = {
    "format": ("text", None, None),
    "format_version": ("count", 1, FORMAT_VERSION),
    "name": ("text", None, None),
    "model": {
        "vocab_size": ("count", 2, 10_000_000),
        "embed_dim": ("count", 1, 4096),
        "hidden": ("count", 1, 4096),
        "num_layers": ("count", 1, 16),
        "num_classes": ("count", 2, 2),
        "dropout": ("number", 0.0, 0.99),
        "pooling": ("texts", None, None),
    },
    "tokenizer": {
        "name": ("text", None, None),
        "version": ("count", 1, None),
        "lowercase": ("flag", None, None),
        "strip_html": ("flag", None, None),
    },
    "labels": ("texts", None, None),
    "max_tokens": ("count", 1, _MAX_TOKENS),
    "head_tokens": ("count", 0, _MAX_TOKENS),
    "temperature": ("number", 0.01, 100.0),
    "card": ("object", None, None),
}
_REQUIRED = {"": ("format", "format_version", "model", "tokenizer"), "model": ("vocab_size",)}


def _schema_problem(data, schema: dict, prefix: str = "") -> str | None:
    """The first way `data` breaks `schema` ("key: problem"), or None."""
    if not isinstance(data, dict):
        return f"{prefix or 'the file'}: must be a JSON object"
    for key in _REQUIRED.get(prefix, ()):
        if key not in data:
            return f"{prefix}.{key}: missing".lstrip(".")
    for key, value in data.items():
        name = f"{prefix}.{key}".lstrip(".")
        if key not in schema:
            return f"{name}: not a known key"
        rule = schema[key]
        problem = (
            _schema_problem(value, rule, name) if isinstance(rule, dict) else _value_problem(value, *rule)
        )
        if problem:
            return problem if isinstance(rule, dict) else f"{name}: {problem} (found {_shown(value)})"
    return None


def _value_problem(value, kind: str, low: float | None, high: float | None) -> str | None:
    if kind == "text":
        return None if isinstance(value, str) and 0 < len(value) <= 200 else "must be a non-empty text"
    if kind == "texts":
        if isinstance(value, list) and all(isinstance(v, str) and v for v in value) and len(value) <= 16:
            return None
        return "must be a list of non-empty texts"
    if kind == "flag":
        return None if isinstance(value, bool) else "must be true or false"
    if kind == "object":
        return None if isinstance(value, dict) else "must be a JSON object"
    whole = kind == "count"
    if isinstance(value, bool) or not isinstance(value, int if whole else int | float):
        return "must be " + ("a whole number" if whole else "a number")
    if not (math.isfinite(value) and (low is None or value >= low) and (high is None or value <= high)):
        bounds = f"from {low:g}" + (f" to {high:g}" if high is not None else " up")
        return ("must be a whole number " if whole else "must be a number ") + bounds
    return None


def _shown(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:60] + "..."


def _read_config(data: bytes, where: str) -> dict:
    """config.json's content, refused (naming the key) unless it is a whole, valid config."""
    try:
        config = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        raise BundleError(f"{where} is not valid JSON: {str(err)[:200]}") from err
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise BundleError(f"{where} is not a {FORMAT} config")
    version = config.get("format_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise BundleError(
            f"{where}: format version {version} is newer than this batchscore supports "
            f"({FORMAT_VERSION}); upgrade batchscore"
        )
    problem = _schema_problem(config, CONFIG_SCHEMA)
    if problem is None:
        problem = _consistency_problem(config)
    if problem:
        raise BundleError(f"{where}: {problem}")
    return config


def _scoring_settings(config: dict) -> dict:
    """labels, max_tokens, head_tokens and temperature as config.json gives them, Bundle's defaults
    where it leaves one out (declared once, on Bundle)."""
    defaults = {f.name: f.default for f in fields(Bundle) if f.name in SCORING_SETTINGS}
    given = {key: config[key] for key in SCORING_SETTINGS if key in config}
    settings = {**defaults, **given}
    return {**settings, "labels": tuple(settings["labels"]), "temperature": float(settings["temperature"])}


SCORING_SETTINGS = ("labels", "max_tokens", "head_tokens", "temperature")


def _consistency_problem(config: dict) -> str | None:
    """What the schema's per-key rules cannot see: how the keys fit together."""
    model, tokenizer = config["model"], config["tokenizer"]
    settings = _scoring_settings(config)
    if settings["labels"] != LABELS:
        found = _shown(config["labels"])
        return f"labels: must be {list(LABELS)}, the order the model's head uses (found {found})"
    if settings["head_tokens"] > settings["max_tokens"]:
        return f"head_tokens: must not exceed max_tokens ({settings['max_tokens']})"
    if model.get("pooling") and config["format_version"] < 2:
        return "model.pooling: needs format_version 2"
    try:
        ModelConfig.from_dict(model)
        TokenizerConfig.from_dict(tokenizer)
    except (TypeError, ValueError) as err:
        return str(err)
    return None


def _read_weights(data: bytes, model: ModelConfig, where: str) -> dict:
    try:
        arrays = load(data)
    except (SafetensorError, OSError, ValueError) as err:
        raise BundleError(f"{where}: {WEIGHTS_FILE} is unreadable: {err}") from err
    expected = model.param_shapes()
    missing = sorted(set(expected) - set(arrays))
    extra = sorted(set(arrays) - set(expected))
    if missing or extra:
        raise BundleError(
            f"{where}: {WEIGHTS_FILE} does not match {CONFIG_FILE}: "
            f"missing {missing or 'nothing'}, unexpected {extra or 'nothing'}"
        )
    for name, shape in expected.items():
        if arrays[name].dtype.kind != "f":
            raise BundleError(f"{where}: weight {name} is {arrays[name].dtype}, not floating point")
        if arrays[name].shape != shape:
            raise BundleError(
                f"{where}: weight {name} has shape {arrays[name].shape}, config expects {shape}"
            )
        if not np.all(np.isfinite(arrays[name])):
            raise BundleError(f"{where}: weight {name} has NaN or infinite values")
    return unflatten_params({name: a.astype(np.float32) for name, a in arrays.items()})
