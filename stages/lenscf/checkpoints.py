"""Saving and loading trained models: a state_dict and the constructor arguments that rebuild the model.

A checkpoint records what the model is (its class's name, table sizes and own keys), never how it was
trained, so adding a training key never makes an old checkpoint unloadable.
"""

import pickle
import zipfile
from inspect import signature
from pathlib import Path
from typing import Any

import torch

from lenscf.artifacts import atomic_path
from lenscf.errors import PipelineError
from lenscf.models import MODELS, Recommender
from lenscf.params import stage_of

FORMAT = 1


def constructor_args(model: Recommender) -> dict[str, Any]:
    """Every model keeps its constructor's arguments as attributes of the same names; μ lives in a buffer."""
    names = [p for p in signature(type(model)).parameters if p != "self"]
    return {name: float(model.mean) if name == "mean" else getattr(model, name) for name in names}


def save_checkpoint(path: Path, name: str, model: Recommender) -> None:
    """Through an open file object, because given a path torch.save names its records after the (temporary) file;
    and not through a BytesIO, which held the whole checkpoint in memory, and a copy of it for writing."""
    state = {k: v.cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp, tmp.open("wb") as file:
        torch.save({"format": FORMAT, "model": name, "args": constructor_args(model), "state_dict": state}, file)


def load_checkpoint(path: Path, device: str | torch.device = "cpu") -> Recommender:
    """weights_only refuses pickled code, so a tampered checkpoint cannot run anything; it is refused in one line."""
    if not path.exists():
        raise PipelineError(f"{path}: no trained model; run `dvc repro {stage_of(path.stem)}` first")
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
        model = MODELS[checkpoint["model"]](**checkpoint["args"])
        model.load_state_dict(checkpoint["state_dict"])
    except (pickle.UnpicklingError, RuntimeError, zipfile.BadZipFile, EOFError, KeyError, TypeError) as err:
        restore = f"`dvc checkout {path}` or `dvc repro {stage_of(path.stem)}` restores it"
        raise PipelineError(f"{path}: not a checkpoint this pipeline wrote; {restore}") from err
    return model.to(device).eval()
