"""params.yaml, read and checked per stage, so a bad value stops a stage before any work starts."""

import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import yaml

from datasets import RELEASES
from errors import PipelineError

PARAMS_FILE = Path("params.yaml")

MODEL_NAMES = ("global_mean", "biases", "mf", "mf_bias", "collab_fnet")
SPLIT_METHODS = ("random", "temporal")
DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def load_params(path: Path = PARAMS_FILE) -> dict[str, Any]:
    try:
        params = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise PipelineError(f"{path}: cannot read parameters: {err}") from err
    if not isinstance(params, dict):
        raise PipelineError(f"{path}: expected a mapping of parameters")
    return params


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Section:
    """Looks up keys of one section, naming the full dotted key in every complaint."""

    def __init__(self, values: Any, prefix: str, renamed: dict[str, str] | None = None) -> None:
        if not isinstance(values, dict):
            raise PipelineError(f"params.yaml: {prefix} must be a mapping")
        self.values, self.prefix, self.renamed = values, prefix, renamed or {}

    def key(self, name: str) -> str:
        """The dotted key as written in params.yaml (a merged view names the override where there is one)."""
        if name in self.renamed:
            return self.renamed[name]
        return f"{self.prefix}.{name}" if self.prefix else name

    def get(self, name: str, valid: Callable[[Any], bool], expected: str) -> Any:
        if name not in self.values:
            raise PipelineError(f"params.yaml: missing key {self.key(name)}")
        value = self.values[name]
        if not valid(value):
            raise PipelineError(f"params.yaml: {self.key(name)} must be {expected}, got {value!r}")
        return value


@dataclass(frozen=True)
class DataParams:
    dataset: str
    url: str
    timeout_s: float
    retries: int
    sha256: dict[str, str]  # pinned member checksums of this dataset; empty when GroupLens' .md5 must do

    @classmethod
    def load(cls, params: dict[str, Any]) -> "DataParams":
        s = _Section(params.get("data"), "data")
        dataset = s.get("dataset", lambda v: v in RELEASES, f"one of {', '.join(RELEASES)}")
        pins = s.get("sha256", lambda v: isinstance(v, dict), "a mapping of dataset to member checksums")
        own = _Section(pins.get(dataset, {}), f"data.sha256.{dataset}")
        checksums = {
            member: own.get(member, lambda v: isinstance(v, str) and len(v) == 64, "a 64-digit SHA-256")
            for member in own.values
        }
        return cls(
            dataset=dataset,
            url=s.get("url", lambda v: isinstance(v, str) and "{dataset}" in v, "a URL containing {dataset}"),
            timeout_s=s.get("timeout_s", lambda v: _is_number(v) and v > 0, "a positive number of seconds"),
            retries=s.get("retries", lambda v: _is_int(v) and v >= 0, "a whole number >= 0"),
            sha256=checksums,
        )


@dataclass(frozen=True)
class SplitParams:
    method: str
    seed: int
    val_frac: float

    @classmethod
    def load(cls, params: dict[str, Any]) -> "SplitParams":
        s = _Section(params.get("split"), "split")
        return cls(
            method=s.get("method", lambda v: v in SPLIT_METHODS, f"one of {', '.join(SPLIT_METHODS)}"),
            seed=s.get("seed", lambda v: _is_int(v) and 0 <= v < 2**32, "a whole number in [0, 2**32)"),
            val_frac=s.get("val_frac", lambda v: _is_number(v) and 0 < v < 1, "a number in (0, 1)"),
        )


@dataclass(frozen=True)
class TrainParams:
    """Shared keys are top level (so `dvc exp run -S lr=...` retrains all); models.<name> may override them."""

    model: str
    lr: float
    epochs: int
    batch_size: int
    l2: float
    emb_size: int
    seed: int
    device: str
    holdout_frac: float
    patience: int
    n_hidden: int
    dropout: float
    y_range: tuple[float, float] | None
    mean_offset: bool

    SHARED: ClassVar = ("lr", "epochs", "batch_size", "l2", "emb_size", "seed", "device", "holdout_frac", "patience")
    PER_MODEL_DEFAULTS: ClassVar = {"n_hidden": 10, "dropout": 0.0, "y_range": None, "mean_offset": False}

    @classmethod
    def load(cls, params: dict[str, Any], model: str) -> "TrainParams":
        if model not in MODEL_NAMES:
            raise PipelineError(f"{model} is not a known model ({', '.join(MODEL_NAMES)})")
        models = _Section(params.get("models"), "models")
        models.get(model, lambda v: isinstance(v, dict | None), "a mapping of per-model keys")
        own = models.values[model] or {}
        unknown = sorted(set(own) - set(cls.SHARED) - set(cls.PER_MODEL_DEFAULTS))
        if unknown:
            raise PipelineError(f"params.yaml: models.{model}.{unknown[0]} is not a training key")
        merged = {**cls.PER_MODEL_DEFAULTS, **{k: params[k] for k in cls.SHARED if k in params}, **own}
        s = _Section(merged, "", renamed={k: f"models.{model}.{k}" for k in own})
        y_range = s.get(
            "y_range",
            lambda v: v is None or (isinstance(v, list) and len(v) == 2 and all(map(_is_number, v)) and v[0] < v[1]),
            "null or [low, high] with low < high",
        )
        return cls(
            model=model,
            lr=s.get("lr", lambda v: _is_number(v) and v > 0, "a positive number"),
            epochs=s.get("epochs", lambda v: _is_int(v) and v >= 0, "a whole number >= 0"),
            batch_size=s.get("batch_size", lambda v: _is_int(v) and v >= 0, "a whole number >= 0 (0 = full batch)"),
            l2=s.get("l2", lambda v: _is_number(v) and v >= 0, "a number >= 0"),
            emb_size=s.get("emb_size", lambda v: _is_int(v) and v > 0, "a whole number > 0"),
            seed=s.get("seed", lambda v: _is_int(v) and v >= 0, "a whole number >= 0"),
            device=s.get("device", lambda v: isinstance(v, str) and DEVICE.fullmatch(v), "auto, cpu, cuda or cuda:N"),
            holdout_frac=s.get("holdout_frac", lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
            patience=s.get("patience", lambda v: _is_int(v) and v > 0, "a whole number > 0"),
            n_hidden=s.get("n_hidden", lambda v: _is_int(v) and v > 0, "a whole number > 0"),
            dropout=s.get("dropout", lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
            y_range=tuple(y_range) if y_range else None,
            mean_offset=s.get("mean_offset", lambda v: isinstance(v, bool), "true or false"),
        )

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class EvaluateParams:
    top_n: int
    relevant_rating: float

    @classmethod
    def load(cls, params: dict[str, Any]) -> "EvaluateParams":
        s = _Section(params.get("evaluate"), "evaluate")
        return cls(
            top_n=s.get("top_n", lambda v: _is_int(v) and v > 0, "a whole number > 0"),
            relevant_rating=s.get("relevant_rating", _is_number, "a rating"),
        )
