"""Models and stage train: shapes, learning, determinism, the notebook's full-batch semantics, bad params."""

import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import encode
import train as train_stage
from conftest import low_rank_ratings, write_params
from errors import PipelineError
from models import MODELS, build_model, load_checkpoint
from params import MODEL_NAMES, TrainParams, load_params
from training import Ratings, fit, make_optimizers

SMALL = {"lr": 0.01, "epochs": 40, "batch_size": 64, "l2": 0.001, "emb_size": 8, "seed": 0, "device": "cpu"}


def small_params(model: str, **changes: object) -> TrainParams:
    """Quick settings for tiny data, without params.yaml's per-model overrides."""
    params = {**load_params(Path(__file__).parents[1] / "params.yaml"), **SMALL, "models": {model: {}}}
    return replace(TrainParams.load(params, model), **changes)


def encoded_low_rank(seed: int = 0) -> tuple[Ratings, Ratings, int, int]:
    ratings = low_rank_ratings(seed=seed)
    is_val = torch.rand(len(ratings), generator=torch.Generator().manual_seed(seed)).numpy() < 0.2
    tables = encode.encode(ratings[~is_val], ratings[is_val])
    return (
        Ratings.from_frame(tables["train"]),
        Ratings.from_frame(tables["val"]),
        len(tables["users"]),
        len(tables["items"]),
    )


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_forward_gives_one_prediction_per_rating(name: str) -> None:
    model = build_model(small_params(name), n_users=5, n_items=7, mean=3.5)
    out = model(torch.tensor([0, 4, 2]), torch.tensor([6, 0, 3]))
    assert out.shape == (3,) and out.dtype == torch.float32


@pytest.mark.parametrize("name", [n for n in MODEL_NAMES if n != "global_mean"])
def test_one_gradient_step_lowers_the_loss(name: str) -> None:
    train, _, n_users, n_items = encoded_low_rank()
    model = build_model(small_params(name, dropout=0.0), n_users, n_items, mean=3.0)
    optimizers = make_optimizers(model, lr=0.01)
    before = F.mse_loss(model(train.users, train.items), train.ratings)
    before.backward()
    for optimizer in optimizers:
        optimizer.step()
    after = F.mse_loss(model(train.users, train.items), train.ratings)
    assert after.item() < before.item()


def test_global_mean_has_nothing_to_train() -> None:
    model = build_model(small_params("global_mean"), 3, 3, mean=3.25)
    assert not list(model.parameters())
    assert model(torch.tensor([0, 1]), torch.tensor([2, 0])).tolist() == [3.25, 3.25]


@pytest.mark.parametrize("name", ["mf", "mf_bias", "collab_fnet"])
def test_embedding_models_learn_low_rank_structure(name: str) -> None:
    train, val, n_users, n_items = encoded_low_rank()
    mean = train.ratings.mean().item()
    baseline = F.mse_loss(torch.full_like(val.ratings, mean), val.ratings).item()
    params = small_params(name, mean_offset=True, dropout=0.0, epochs=100)
    model = build_model(params, n_users, n_items, mean)
    fit(model, train, val, params)
    with torch.no_grad():
        mse = F.mse_loss(model(val.users, val.items), val.ratings).item()
    assert mse < 0.5 * baseline


def notebook_train_epocs(
    model: torch.nn.Module, train: Ratings, epochs: int, optimizers: list[torch.optim.Optimizer]
) -> list[float]:
    """The notebook's train_epocs loop: every epoch, one step on the MSE of all training ratings."""
    losses = []
    for _ in range(epochs):
        loss = F.mse_loss(model(train.users, train.items), train.ratings)
        for optimizer in optimizers:
            optimizer.zero_grad()
        loss.backward()
        for optimizer in optimizers:
            optimizer.step()
        losses.append(loss.item())
    return losses


def test_full_batch_is_the_notebooks_training_loop() -> None:
    train, val, n_users, n_items = encoded_low_rank()
    params = small_params("collab_fnet", batch_size=0, l2=0.0, epochs=5, lr=0.05, dropout=0.0)
    ours, notebook = (build_model(params, n_users, n_items, mean=0.0) for _ in range(2))  # same seed, same weights
    history = fit(ours, train, val, params)
    losses = notebook_train_epocs(notebook, train, 5, make_optimizers(notebook, lr=0.05))
    assert [row["train_loss"] for row in history] == pytest.approx(losses, rel=1e-6)
    for ours_weight, notebook_weight in zip(ours.state_dict().values(), notebook.state_dict().values(), strict=True):
        torch.testing.assert_close(ours_weight, notebook_weight)


def test_lazy_adam_follows_the_notebooks_adam_in_full_batch() -> None:
    """Every row is touched in a full batch, so SparseAdam takes Adam's steps (eps aside)."""
    train, _, n_users, n_items = encoded_low_rank()
    params = small_params("mf_bias", batch_size=0, l2=0.0, lr=0.05)
    ours, notebook = (build_model(params, n_users, n_items, mean=0.0) for _ in range(2))
    for module in notebook.modules():
        if isinstance(module, torch.nn.Embedding):
            module.sparse = False  # the notebook's dense embeddings, for its plain Adam
    sparse_losses = notebook_train_epocs(ours, train, 5, make_optimizers(ours, lr=0.05))
    adam_losses = notebook_train_epocs(notebook, train, 5, [torch.optim.Adam(notebook.parameters(), lr=0.05)])
    assert sparse_losses == pytest.approx(adam_losses, rel=1e-3)
    assert sparse_losses[-1] < 0.8 * sparse_losses[0]


def test_validation_split_never_steers_training() -> None:
    train, val, n_users, n_items = encoded_low_rank()
    params = small_params("mf_bias", holdout_frac=0.2, patience=2, epochs=30)
    other_val = Ratings(val.users, val.items, val.ratings.flip(0))
    weights = []
    for v in (val, other_val):
        model = build_model(params, n_users, n_items, mean=3.0)
        history = fit(model, train, v, params)
        weights.append(model.state_dict())
        assert "holdout_loss" in history[0]
    for a, b in zip(weights[0].values(), weights[1].values(), strict=True):
        assert torch.equal(a, b)


def test_early_stopping_keeps_the_best_holdout_epoch() -> None:
    train, val, n_users, n_items = encoded_low_rank()
    params = small_params("mf", lr=0.05, l2=0.0, emb_size=30, holdout_frac=0.3, patience=2, epochs=200)
    history = fit(build_model(params, n_users, n_items, 3.0), train, val, params)
    best = min(range(len(history)), key=lambda k: history[k]["holdout_loss"])
    assert len(history) == best + 1 + params.patience < 200


def prepare_encoded(project: Path) -> None:
    ratings = low_rank_ratings()
    tables = encode.encode(ratings.iloc[:600], ratings.iloc[600:])
    Path("data/encoded").mkdir(parents=True)
    for name, table in tables.items():
        table.to_csv(f"data/encoded/{name}.csv", index=False)
    write_params(project, **{**SMALL, "epochs": 3}, models={name: {} for name in MODEL_NAMES})


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_train_stage_is_byte_identical_when_repeated(project: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    prepare_encoded(project)
    monkeypatch.setattr(sys, "argv", ["train.py", name])
    outputs = [Path(f"models/{name}.pt"), Path(f"plots/history/{name}.csv")]
    train_stage.main()
    first = [p.read_bytes() for p in outputs]
    train_stage.main()
    assert [p.read_bytes() for p in outputs] == first
    history = pd.read_csv(outputs[1])
    assert history.columns.tolist() == ["epoch", "train_loss", "val_loss"] and len(history) == 3


def test_checkpoint_rebuilds_the_model(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prepare_encoded(project)
    monkeypatch.setattr(sys, "argv", ["train.py", "collab_fnet"])
    train_stage.main()
    model = load_checkpoint(Path("models/collab_fnet.pt"))
    assert isinstance(model, MODELS["collab_fnet"]) and not model.training
    checkpoint = torch.load("models/collab_fnet.pt", weights_only=True)
    assert checkpoint["params"]["model"] == "collab_fnet"
    for key, value in model.state_dict().items():
        assert torch.equal(value, checkpoint["state_dict"][key])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"lr": -0.1}, "lr must be a positive number, got -0.1"),
        ({"emb_size": 0}, "emb_size must be a whole number > 0, got 0"),
        ({"batch_size": 1.5}, "batch_size must be a whole number >= 0"),
        ({"device": "tpu"}, "device must be auto, cpu, cuda or cuda:N"),
        ({"models": {"mf": {"n_hiden": 3}}}, "models.mf.n_hiden is not a training key"),
        ({"models": {"mf": {"lr": 0}}}, "models.mf.lr must be a positive number, got 0"),
    ],
)
def test_bad_params_stop_before_any_work(
    project: Path, monkeypatch: pytest.MonkeyPatch, change: dict, message: str
) -> None:
    write_params(project, **change)
    monkeypatch.setattr(sys, "argv", ["train.py", "mf" if "models" in change else "mf_bias"])
    with pytest.raises(PipelineError, match=message):
        train_stage.main()
    assert not Path("models").exists()


def test_unknown_model_is_refused(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["train.py", "svdpp"])
    with pytest.raises(PipelineError, match="svdpp is not a known model"):
        train_stage.main()
