"""params.yaml, read and checked per stage and per model, so a bad value stops a stage before any work starts.

Every value lives in params.yaml; nothing here supplies a default. Each model has a schema of its own: the
shared keys of what fits it (the Adam engine's, or for ials the solver's seed, device and threads) plus only
the keys the model reads, so a key that a model would ignore is refused rather than swallowed.
"""

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from lenscf.errors import PipelineError

PARAMS_FILE = Path("params.yaml")
SPLIT_METHODS = ("random", "temporal")
ROW_SCALINGS = ("sqrt", "none")
DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
PERCENT = re.compile(r"(\d+(\.\d*)?|\.\d+)%")


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


def _is_share(value: Any) -> bool:
    """A share of the training ratings, as a string like "10%": more than 0, at most 100."""
    return isinstance(value, str) and PERCENT.fullmatch(value) is not None and 0 < float(value[:-1]) <= 100


@dataclass(frozen=True)
class Check:
    """What a key accepts, and how to say so when it gets something else."""

    valid: Callable[[Any], bool]
    expected: str


POSITIVE = Check(lambda v: _is_number(v) and v > 0, "a positive number")
NON_NEGATIVE = Check(lambda v: _is_number(v) and v >= 0, "a number >= 0")
COUNT = Check(lambda v: _is_int(v) and v > 0, "a whole number > 0")
WHOLE = Check(lambda v: _is_int(v) and v >= 0, "a whole number >= 0")
FRACTION = Check(lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)")
FLAG = Check(lambda v: isinstance(v, bool), "true or false")


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

    def get(self, name: str, check: Check) -> Any:
        if name not in self.values:
            raise PipelineError(f"params.yaml: missing key {self.key(name)}")
        value = self.values[name]
        if not check.valid(value):
            raise PipelineError(f"params.yaml: {self.key(name)} must be {check.expected}, got {value!r}")
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
        # Imported here, by the one stage that reads this section: releases pulls in pyarrow's compute and CSV
        # modules, 0.08 s of start-up that every other stage would pay for nothing.
        from lenscf.releases import RELEASES

        s = _Section(params.get("data"), "data")
        dataset = s.get("dataset", Check(lambda v: v in RELEASES, f"one of {', '.join(RELEASES)}"))
        pins = s.get("sha256", Check(lambda v: isinstance(v, dict), "a mapping of dataset to member checksums"))
        own = _Section(pins.get(dataset) or {}, f"data.sha256.{dataset}")
        digest = Check(lambda v: isinstance(v, str) and len(v) == 64, "a 64-digit SHA-256")
        return cls(
            dataset=dataset,
            url=s.get("url", Check(lambda v: isinstance(v, str) and "{dataset}" in v, "a URL containing {dataset}")),
            timeout_s=s.get("timeout_s", Check(POSITIVE.valid, "a positive number of seconds")),
            retries=s.get("retries", WHOLE),
            sha256={member: own.get(member, digest) for member in own.values},
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
            method=s.get("method", Check(lambda v: v in SPLIT_METHODS, f"one of {', '.join(SPLIT_METHODS)}")),
            seed=s.get("seed", Check(lambda v: _is_int(v) and 0 <= v < 2**32, "a whole number in [0, 2**32)")),
            val_frac=s.get("val_frac", Check(lambda v: _is_number(v) and 0 < v < 1, "a number in (0, 1)")),
        )


@dataclass(frozen=True)
class EngineParams:
    """The training engine's keys: top level in params.yaml, so `dvc exp run -S lr=...` retrains every model."""

    lr: float
    epochs: int  # the most epochs; with holdout_frac > 0 early stopping picks how many
    batch_size: int | str  # ratings per step, or a share of them such as "10%"; 0 = one full-batch step per epoch
    l2: float
    seed: int
    device: str
    holdout_frac: float
    patience: int
    min_improvement: float  # the fraction of the best holdout loss an epoch must gain to count as better
    row_scaling: str
    threads: int  # 0 = as many as torch picks
    beta1: float  # Adam's decay rates of its two moments
    beta2: float
    dense_lr: float | None  # Adam's step for a network's dense layers (collab_fnet's); None for the others
    bias_l2: float | None  # L2 on the bias rows, apart from the embeddings' (mf_bias's); None: l2 for every row
    row_l2: float | None  # L2 on each row once per epoch, spread over its ratings (the rating models'); None: bpr

    def batch_ratings(self, n_ratings: int) -> int:
        """Ratings per step for a fit on n_ratings: a share grows with the data, so that an epoch takes the same
        number of steps on ml-25m as on ml-latest-small (0 means all of them: the notebook's full batch)."""
        if isinstance(self.batch_size, str):
            return max(1, math.ceil(n_ratings * float(self.batch_size[:-1]) / 100))
        return self.batch_size or n_ratings

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


ENGINE_KEYS: dict[str, Check] = {
    "lr": POSITIVE,
    "epochs": COUNT,
    "batch_size": Check(lambda v: WHOLE.valid(v) or _is_share(v), 'a whole number >= 0 or a share such as "10%"'),
    "l2": NON_NEGATIVE,
    "seed": Check(lambda v: _is_int(v) and 0 <= v < 2**63, "a whole number >= 0"),
    "device": Check(lambda v: isinstance(v, str) and DEVICE.fullmatch(v) is not None, "auto, cpu, cuda or cuda:N"),
    "holdout_frac": FRACTION,
    "patience": COUNT,
    "min_improvement": FRACTION,
    "row_scaling": Check(lambda v: v in ROW_SCALINGS, f"one of {', '.join(ROW_SCALINGS)}"),
    "threads": WHOLE,
    "beta1": FRACTION,
    "beta2": FRACTION,
}

# Engine keys that only some models read: they sit under models.<name> and are refused elsewhere.
MODEL_ENGINE_KEYS: dict[str, dict[str, Check]] = {
    "biases": {"row_l2": NON_NEGATIVE},
    "mf": {"row_l2": NON_NEGATIVE},
    "mf_bias": {"bias_l2": NON_NEGATIVE, "row_l2": NON_NEGATIVE},
    "collab_fnet": {"dense_lr": POSITIVE, "row_l2": NON_NEGATIVE},
}
OWN_ENGINE_NAMES = tuple(sorted({name for keys in MODEL_ENGINE_KEYS.values() for name in keys}))

# Each model's own keys, exactly as its constructor takes them.
MODEL_KEYS: dict[str, dict[str, Check]] = {
    "global_mean": {},
    "popularity": {"damping": NON_NEGATIVE},
    "biases": {},
    "mf": {"emb_size": COUNT, "mean_offset": FLAG},
    "mf_bias": {"emb_size": COUNT, "mean_offset": FLAG},
    "collab_fnet": {"emb_size": COUNT, "n_hidden": COUNT, "dropout": FRACTION, "mean_offset": FLAG},
    "bpr": {"emb_size": COUNT},
    "ials": {"emb_size": COUNT},
}
MODEL_NAMES = tuple(MODEL_KEYS)
COUNTED = ("global_mean", "popularity")  # computed from counts in one pass: no engine, no epochs
SOLVED = ("ials",)  # fit by alternating least squares: no learning rate, no batches, no early stopping
TRAINED = tuple(name for name in MODEL_NAMES if name not in COUNTED + SOLVED)  # the Adam engine's


def stage_of(model: str) -> str:
    """The dvc.yaml stage that writes a model's checkpoint."""
    return f"{'count' if model in COUNTED else 'solve' if model in SOLVED else 'train'}@{model}"


@dataclass(frozen=True)
class SolverParams:
    """Implicit ALS's keys: its own under models.<name>, and the engine's seed, device and threads."""

    alpha: float  # a rated pair weighs 1 + alpha in the squared error, an unrated pair 1
    reg: float  # L2 penalty λ on every user and item row
    sweeps: int  # alternations of a users' solve and an items' solve
    cg_steps: int  # conjugate-gradient steps per solve, each warm-started from the last sweep
    seed: int
    device: str
    threads: int


SOLVER_KEYS: dict[str, Check] = {"alpha": POSITIVE, "reg": POSITIVE, "sweeps": COUNT, "cg_steps": COUNT}
SOLVER_SHARED = ("seed", "device", "threads")  # top-level engine keys the solver reads too


@dataclass(frozen=True)
class ModelParams:
    """One model's constructor keys, and the settings of whatever fits it: the engine's for a trained model,
    the solver's for a solved one, neither for a counted one."""

    model: str
    args: dict[str, Any]
    engine: EngineParams | None
    solver: SolverParams | None = None

    @property
    def fitter(self) -> "EngineParams | SolverParams | None":
        """Whatever fits the model: both kinds carry its seed, device and threads."""
        return self.engine or self.solver

    @classmethod
    def load(cls, params: dict[str, Any], model: str) -> "ModelParams":
        if model not in MODEL_KEYS:
            raise PipelineError(f"{model} is not a known model ({', '.join(MODEL_NAMES)})")
        models = _Section(params.get("models"), "models")
        own = models.get(model, Check(lambda v: isinstance(v, dict | None), "a mapping of per-model keys")) or {}
        own_engine = MODEL_ENGINE_KEYS.get(model, {})
        own_solver = SOLVER_KEYS if model in SOLVED else {}
        shared_names = () if model in COUNTED else ENGINE_KEYS if model in TRAINED else SOLVER_SHARED
        shared_keys = {k: ENGINE_KEYS[k] for k in shared_names}
        unknown = sorted(set(own) - {*MODEL_KEYS[model], *own_engine, *own_solver, *shared_keys})
        if unknown:
            raise PipelineError(f"params.yaml: models.{model}.{unknown[0]} is not a key of {model}")
        section = _Section(own, f"models.{model}")
        args = {name: section.get(name, check) for name, check in MODEL_KEYS[model].items()}
        if model in COUNTED:
            return cls(model, args, None)
        merged = {**{k: params[k] for k in shared_keys if k in params}, **own}
        shared = _Section(merged, "", renamed={k: f"models.{model}.{k}" for k in own})
        values = {name: shared.get(name, check) for name, check in shared_keys.items()}
        if model in SOLVED:
            solver = {name: section.get(name, check) for name, check in own_solver.items()}
            return cls(model, args, None, SolverParams(**solver, **values))
        for name in OWN_ENGINE_NAMES:  # None where the model has no such key
            values[name] = section.get(name, own_engine[name]) if name in own_engine else None
        engine = EngineParams(**values)
        return cls(model, args, engine)


@dataclass(frozen=True)
class EvaluateParams:
    top_n: int
    relevant_rating: float
    max_users: int | None  # top-N for a seeded random subset of this many users; None = every user
    bootstrap_samples: int
    seed: int

    @classmethod
    def load(cls, params: dict[str, Any]) -> "EvaluateParams":
        s = _Section(params.get("evaluate"), "evaluate")
        return cls(
            top_n=s.get("top_n", COUNT),
            relevant_rating=s.get("relevant_rating", Check(_is_number, "a rating")),
            max_users=s.get("max_users", Check(lambda v: v is None or COUNT.valid(v), "null or a whole number > 0")),
            bootstrap_samples=s.get("bootstrap_samples", Check(lambda v: _is_int(v) and v >= 100, "a count >= 100")),
            seed=s.get("seed", WHOLE),
        )
