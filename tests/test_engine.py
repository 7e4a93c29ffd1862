"""The training engine: its gradients against autograd, Adam, the notebook's full batch, early stopping, learning."""

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import low_rank_ratings, make_params
from lenscf import engine as engine_module
from lenscf.engine import (
    DotPairs,
    DotRatings,
    NetRatings,
    RowAdam,
    carve_holdout,
    distinct_indices,
    fit,
    objective,
    pairwise_objective,
    rating_mse,
    train_model,
)
from lenscf.models import build_model
from lenscf.params import SOLVED, TRAINED, EngineParams, ModelParams
from lenscf.scoring import SeenItems, top_unseen
from lenscf.splits import Ratings

SCALE = (0.5, 5.0)


def engine(name: str = "mf", **changes: object) -> EngineParams:
    return ModelParams.load(make_params(**changes), name).engine


def model_params(name: str, **changes: object) -> ModelParams:
    """tests/params.yaml's keys for `name`, with some of that model's own keys changed."""
    raw = make_params()
    raw["models"][name] = {**raw["models"][name], **changes}
    return ModelParams.load(raw, name)


def random_ratings(n_users: int = 13, n_items: int = 17, n: int = 90, seed: int = 0) -> Ratings:
    """Distinct random (user, item) pairs with random ratings."""
    g = torch.Generator().manual_seed(seed)
    keys = torch.unique(torch.randint(0, n_users * n_items, (n,), generator=g))
    ratings = torch.rand(len(keys), generator=g) * 4.5 + 0.5
    return Ratings(keys // n_items, keys % n_items, ratings)


def randomised(name: str, n_users: int = 13, n_items: int = 17, **args: object) -> torch.nn.Module:
    """A model whose weights are all far from their initial values, so that no gradient term is trivially zero."""
    defaults = {
        "biases": {},
        "mf": {"emb_size": 4, "mean_offset": True},
        "mf_bias": {"emb_size": 4, "mean_offset": False},
        "collab_fnet": {"emb_size": 4, "n_hidden": 3, "dropout": 0.0, "mean_offset": True},
        "bpr": {"emb_size": 4},
    }
    torch.manual_seed(1)
    model = build_model(name, n_users, n_items, 3.2, {**defaults[name], **args})
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5)
    return model


def autograd_grads(model: torch.nn.Module, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad()
    loss.backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def collab_grads(trainer: NetRatings, rows: torch.Tensor, grad: torch.Tensor) -> dict[str, torch.Tensor]:
    """The engine's row gradients spread onto collab_fnet's tables, beside the layers' gradients it left."""
    model = trainer.model
    full = torch.zeros_like(trainer.table).index_add_(0, rows, grad)
    got = {"user_emb.weight": full[: model.n_users], "item_emb.weight": full[model.n_users :]}
    return got | {k: p.grad for k, p in model.named_parameters() if k.startswith("lin")}


def fit_ratings(data: Ratings, n_users: int = 13, n_items: int = 17) -> tuple[torch.Tensor, torch.Tensor]:
    """Each user's and each item's ratings in `data`, as `objective` takes them for row_l2."""
    return torch.bincount(data.users, minlength=n_users).float(), torch.bincount(data.items, minlength=n_items).float()


@pytest.mark.parametrize("name", ["biases", "mf", "mf_bias", "collab_fnet"])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("batch_size", "row_l2"), [(0, 0.0), (0, 0.7), (25, 0.7)])
def test_rating_gradients_equal_autograds(name: str, seed: int, batch_size: int, row_l2: float) -> None:
    """The engine's gradient of a random batch is autograd's gradient of `objective`, to 1e-5: the whole data as
    one batch, and a batch of 25 of its ratings whose rows carry only their share of row_l2's prior."""
    data, l2 = random_ratings(seed=seed), 0.3
    model = randomised(name)
    raw = make_params(batch_size=batch_size, l2=l2)  # mf_bias's bias_l2 (0.001) sets its biases apart
    raw["models"][name]["row_l2"] = row_l2
    params = ModelParams.load(raw, name).engine
    trainer = (NetRatings if name == "collab_fnet" else DotRatings)(model, data, params, torch.Generator())
    prepared = trainer.batches[0]
    batch = prepared["batch"]
    assert len(batch.ratings) == (batch_size or len(data))
    users = batch.rows[: batch.n_users][batch.user_of]
    items = batch.rows[batch.n_users :][batch.item_of] - model.n_users
    loss = objective(model, users, items, batch.ratings, l2, params.bias_l2, row_l2, fit_ratings(data))
    expected = autograd_grads(model, loss)
    grad, squared = trainer.gradient(prepared, trainer.table.index_select(0, batch.rows))
    if name == "collab_fnet":
        got = collab_grads(trainer, batch.rows, grad)
    else:
        got = trainer.packed.parameter_grads(batch.rows, grad)
    assert set(got) == set(expected)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], atol=1e-5, rtol=1e-5, msg=key)
    with torch.no_grad():
        assert squared.item() == pytest.approx(((model(users, items) - batch.ratings) ** 2).sum().item())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_collab_gradients_with_dropout_equal_autograds(seed: int) -> None:
    """With dropout on, the engine draws the very mask forward() draws from the same seed, and its gradient is
    autograd's through that mask."""
    data, l2 = random_ratings(seed=seed), 0.3
    model = randomised("collab_fnet", dropout=0.3).train()
    torch.manual_seed(seed)
    expected = autograd_grads(model, objective(model, data.users, data.items, data.ratings, l2))
    trainer = NetRatings(model, data, engine("collab_fnet", batch_size=0, l2=l2), torch.Generator())
    prepared = trainer.batches[0]
    rows = prepared["batch"].rows
    torch.manual_seed(seed)
    grad, _ = trainer.gradient(prepared, trainer.table.index_select(0, rows))
    got = collab_grads(trainer, rows, grad)
    assert (expected["user_emb.weight"] != 0).any()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], atol=1e-5, rtol=1e-5, msg=key)


@pytest.mark.parametrize("every_row_from", [0.0, 2.0])
@pytest.mark.parametrize(("seed", "pairs_per_chunk"), [(0, 8192), (1, 8192), (2, 8192), (0, 7), (1, 1)])
def test_pairwise_gradients_equal_autograds(
    monkeypatch: pytest.MonkeyPatch, seed: int, pairs_per_chunk: int, every_row_from: float
) -> None:
    """Also with the pairs in chunks of 7 (a ragged last chunk) and of 1: chunks must not drop or repeat a pair;
    and both for steps that take every row of the table (EVERY_ROW_FROM 0) and for those that gather theirs (2)."""
    monkeypatch.setattr(engine_module, "PAIRS_PER_CHUNK", pairs_per_chunk)
    monkeypatch.setattr(engine_module, "EVERY_ROW_FROM", every_row_from)
    data, l2 = random_ratings(n_items=200, seed=seed), 0.3  # a catalogue that one step's draws leave partly untouched
    model = randomised("bpr", n_items=200)
    trainer = DotPairs(model, data, engine(batch_size=0, l2=l2), torch.Generator())
    prepared = trainer.batches[0]
    batch = prepared["batch"]
    negative = torch.randint(0, model.n_items, (len(batch.ratings),), generator=torch.Generator().manual_seed(seed))
    rows, grad, _, _, loss = trainer.gradient(prepared, negative)
    assert (len(rows) == len(trainer.table)) == (every_row_from == 0.0)
    users = batch.rows[: batch.n_users][batch.user_of]
    positive = batch.rows[batch.n_users :][batch.item_of] - model.n_users
    expected = autograd_grads(model, pairwise_objective(model, users, positive, negative, l2))
    got = trainer.packed.parameter_grads(rows, grad)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], atol=1e-5, rtol=1e-5, msg=key)
    with torch.no_grad():
        assert loss.item() == pytest.approx(F.softplus(model(users, negative) - model(users, positive)).sum().item())


@pytest.mark.parametrize("rows_per_chunk", [2048, 4, 1])
def test_row_adam_is_torch_adam_when_every_row_steps(monkeypatch: pytest.MonkeyPatch, rows_per_chunk: int) -> None:
    """With every row in every batch and no scaling, lazy Adam is torch.optim.Adam, eps placement included, however
    the rows are cut into chunks (4 leaves a ragged last chunk of 2)."""
    monkeypatch.setattr(engine_module, "ROWS_PER_CHUNK", rows_per_chunk)
    weight = torch.randn(6, 3)
    reference = torch.nn.Parameter(weight.clone())
    adam = torch.optim.Adam([reference], lr=0.05, betas=(0.8, 0.99))
    ours = RowAdam(weight, lr=0.05, betas=(0.8, 0.99), sqrt_scaling=False)
    rows = torch.arange(6)
    for step in range(5):
        grad = torch.randn(6, 3, generator=torch.Generator().manual_seed(step))
        reference.grad = grad.clone()
        adam.step()
        ours.step(rows, weight.index_select(0, rows), grad, torch.ones(6, 1))
    torch.testing.assert_close(weight, reference.detach())


def test_row_adam_stepping_the_whole_table_is_torch_adam() -> None:
    """What collab_fnet's layers take every batch."""
    weight = torch.randn(4, 5)
    reference = torch.nn.Parameter(weight.clone())
    adam = torch.optim.Adam([reference], lr=0.02, betas=(0.7, 0.95))
    ours = RowAdam(weight, lr=0.02, betas=(0.7, 0.95), sqrt_scaling=False)
    for step in range(5):
        grad = torch.randn(4, 5, generator=torch.Generator().manual_seed(step))
        reference.grad = grad.clone()
        adam.step()
        ours.step_all(grad)
    torch.testing.assert_close(weight, reference.detach())


def test_row_adam_leaves_untouched_rows_and_scales_by_the_root_of_the_count() -> None:
    weight = torch.zeros(4, 2)
    adam = RowAdam(weight, lr=0.1, betas=(0.9, 0.999), sqrt_scaling=True)
    adam.step(torch.tensor([1, 3]), torch.zeros(2, 2), torch.ones(2, 2), torch.tensor([[1.0], [4.0]]))
    assert weight[0].tolist() == [0, 0] and weight[2].tolist() == [0, 0]
    # Adam's first step moves by lr (its m/√v is 1); a row counted 4 times moves √4 = 2 times as far.
    torch.testing.assert_close(weight[1], torch.full((2,), -0.1), atol=1e-6, rtol=0)
    torch.testing.assert_close(weight[3], torch.full((2,), -0.2), atol=1e-6, rtol=0)


@pytest.mark.parametrize("sqrt_scaling", [True, False])
def test_stepping_every_row_is_lazy_adam_on_the_touched_rows(sqrt_scaling: bool) -> None:
    """A batch that spans the table steps it whole and puts back the rows it does not touch: the same lazy Adam as
    gathering the touched rows, and an untouched row keeps its value and moments to the bit."""
    table = torch.randn(9, 3, generator=torch.Generator().manual_seed(0))
    lazy = RowAdam(table.clone(), lr=0.1, betas=(0.8, 0.99), sqrt_scaling=sqrt_scaling)
    whole = RowAdam(table.clone(), lr=0.1, betas=(0.8, 0.99), sqrt_scaling=sqrt_scaling)
    for step in range(6):
        g = torch.Generator().manual_seed(step + 1)
        rows = torch.randperm(9, generator=g)[:5].sort().values
        grad, counts = torch.randn(5, 3, generator=g), torch.randint(1, 4, (5, 1), generator=g).float()
        before = [t.clone() for t in (whole.table, whole.exp_avg, whole.exp_avg_sq)]
        lazy.step(rows, lazy.table.index_select(0, rows), grad, counts)
        every = torch.arange(9)
        whole.step(
            every,
            whole.table,
            torch.zeros(9, 3).index_copy_(0, rows, grad),
            torch.zeros(9, 1).index_copy_(0, rows, counts),
        )
        idle = torch.ones(9, dtype=torch.bool).index_fill_(0, rows, False)
        for now, then in zip((whole.table, whole.exp_avg, whole.exp_avg_sq), before, strict=True):
            assert torch.equal(now[idle], then[idle])
        for mine, theirs in (
            (whole.table, lazy.table),
            (whole.exp_avg, lazy.exp_avg),
            (whole.exp_avg_sq, lazy.exp_avg_sq),
        ):
            torch.testing.assert_close(mine, theirs, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("name", ["mf_bias", "collab_fnet", "bpr"])
def test_batches_that_span_the_table_train_as_gathered_ones(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """The trainers give the same weights whichever way their batches step: EVERY_ROW_FROM 0 makes every batch span
    the table, 2 none."""
    data = random_ratings(n=150)
    weights = []
    for share in (0.0, 2.0):
        monkeypatch.setattr(engine_module, "EVERY_ROW_FROM", share)
        model = randomised(name, **({"dropout": 0.0} if name == "collab_fnet" else {}))
        trainer = engine_module.TRAINERS[type(model)](model, data, engine(name, batch_size=40), torch.Generator())
        assert all((len(b["batch"].rows) == len(trainer.table)) == (share == 0.0) for b in trainer.batches)
        for _ in range(3):
            trainer.epoch(list(range(len(trainer.batches))), "test")
        weights.append(trainer.table.clone())
    torch.testing.assert_close(weights[0], weights[1], atol=1e-6, rtol=1e-5)


def test_distinct_is_torch_unique_with_its_inverse() -> None:
    items = torch.tensor([7, 2, 7, 0, 9, 2])
    expected = torch.unique(items, return_inverse=True)
    for got, want in zip(distinct_indices(items, n_items=10), expected, strict=True):
        assert torch.equal(got, want)


@pytest.mark.parametrize(
    ("batch_size", "n_ratings", "expected"),
    [(64, 1000, 64), (0, 1000, 1000), ("10%", 1000, 100), ("10%", 1001, 101), ("2.5%", 80, 2), ("100%", 7, 7)],
)
def test_batch_size_is_a_count_or_a_share_of_the_ratings(batch_size: int | str, n_ratings: int, expected: int) -> None:
    assert engine(batch_size=batch_size).batch_ratings(n_ratings) == expected


def test_a_share_cuts_every_fit_into_about_the_same_number_of_steps() -> None:
    """What a share is for: the search's and the refit's fits, and data of any size, take about ten steps."""
    model = build_model("mf", 40, 50, 3.0, {"emb_size": 4, "mean_offset": True})
    for n in (90, 1000, 1234):
        data = random_ratings(n_users=40, n_items=50, n=n)
        trainer = DotRatings(model, data, engine(batch_size="10%"), torch.Generator().manual_seed(0))
        sizes = [len(b["batch"].ratings) for b in trainer.batches]
        assert sum(sizes) == len(data) and max(sizes) == math.ceil(len(data) / 10)
        assert len(sizes) in (9, 10)


def notebook_train_epocs(model: torch.nn.Module, data: Ratings, epochs: int, lr: float) -> list[float]:
    """The notebook's train_epocs: torch.optim.Adam, and one step on the MSE of all training ratings per epoch."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(epochs):
        loss = F.mse_loss(model(data.users, data.items), data.ratings)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("name", ["mf", "mf_bias", "collab_fnet"])
def test_full_batch_is_the_notebooks_training_loop(name: str) -> None:
    """batch_size 0 with no scaling and no L2 takes exactly the notebook's full-batch Adam steps."""
    data = random_ratings(n=150)
    params = engine(name, batch_size=0, l2=0.0, lr=0.05, epochs=5, row_scaling="none")
    params = dataclasses.replace(params, row_l2=0.0, bias_l2=None if params.bias_l2 is None else 0.0)
    if name == "collab_fnet":
        params = dataclasses.replace(params, dense_lr=0.05)  # the notebook has one learning rate for all
    args = {"mean_offset": False} if name != "collab_fnet" else {"dropout": 0.0}
    ours, notebook = randomised(name, **args), randomised(name, **args)
    history = _fit_fixed(ours, data, params)
    losses = notebook_train_epocs(notebook, data, 5, lr=0.05)
    assert [row["train_loss"] for row in history] == pytest.approx(losses, rel=1e-5)
    for key, value in notebook.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[key], value, atol=1e-5, rtol=1e-5, msg=key)


def _fit_fixed(model: torch.nn.Module, data: Ratings, params: EngineParams) -> list[dict]:
    """fit() on an existing model: build hands back this model, so the test controls its weights."""
    _, record = fit(lambda: model, data, data, SCALE, params)
    return record["history"]


def encoded_low_rank(seed: int = 0) -> tuple[Ratings, Ratings, int, int]:
    ratings = low_rank_ratings(seed=seed)
    users = np.unique(ratings["userId"], return_inverse=True)[1]
    items = np.unique(ratings["movieId"], return_inverse=True)[1]
    data = Ratings.from_arrays(users, items, ratings["rating"].to_numpy())
    train, val = carve_holdout(data, 0.2, seed)
    return train, val, int(users.max()) + 1, int(items.max()) + 1


@pytest.mark.parametrize("name", ["mf", "mf_bias", "collab_fnet"])
def test_embedding_models_learn_low_rank_structure(name: str) -> None:
    train, val, n_users, n_items = encoded_low_rank()
    mean = train.ratings.mean().item()
    baseline = F.mse_loss(torch.full_like(val.ratings, mean), val.ratings).item()
    raw = make_params(lr=0.01, epochs=100, l2=0.001, batch_size=64)
    if name == "collab_fnet":
        raw["models"][name] |= {"dropout": 0.0, "dense_lr": 0.01, "n_hidden": 10}
    model, _ = train_model(ModelParams.load(raw, name), train, val, n_users, n_items, SCALE)
    assert rating_mse(model, val, SCALE) < 0.5 * baseline


def test_training_is_deterministic() -> None:
    train, val, n_users, n_items = encoded_low_rank()
    for name in (*TRAINED, *SOLVED):
        params = ModelParams.load(make_params(holdout_frac=0.2), name)
        first, second = (train_model(params, train, val, n_users, n_items, SCALE) for _ in range(2))
        assert first[1] == second[1], name
        for key, value in first[0].state_dict().items():
            assert torch.equal(value, second[0].state_dict()[key]), (name, key)


def test_early_stopping_refits_on_all_of_training_for_the_best_epochs() -> None:
    """The final model is a fresh one trained on the whole split for the epoch count the holdout picked."""
    train, val, n_users, n_items = encoded_low_rank()
    raw = make_params(lr=0.05, l2=0.0, holdout_frac=0.3, patience=2, epochs=200)
    params = ModelParams.load(raw, "mf")
    model, record = train_model(params, train, val, n_users, n_items, SCALE)
    best = record["epochs"]
    losses = [row["holdout_loss"] for row in record["history"]]
    assert record["searched_epochs"] == best + params.engine.patience < 200
    assert losses.index(min(losses)) == best - 1  # the best holdout epoch is the last one refit
    refit, _ = train_model(
        ModelParams.load({**raw, "holdout_frac": 0.0, "epochs": best}, "mf"), train, val, n_users, n_items, SCALE
    )
    for key, value in refit.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_min_improvement_stops_once_gains_are_smaller_than_it() -> None:
    """The search stops `patience` epochs after the last epoch that beat the best by more than min_improvement
    of it, and the refit still takes the epoch of the lowest holdout loss."""
    train, val, n_users, n_items = encoded_low_rank()
    raw = make_params(lr=0.01, l2=0.0, holdout_frac=0.3, patience=2, epochs=200, min_improvement=0.02)
    _, record = train_model(ModelParams.load(raw, "mf"), train, val, n_users, n_items, SCALE)
    _, plain = train_model(ModelParams.load({**raw, "min_improvement": 0}, "mf"), train, val, n_users, n_items, SCALE)
    losses = [row["holdout_loss"] for row in plain["history"]][: record["searched_epochs"]]
    best, last_gain = losses[0], 1
    for epoch, loss in enumerate(losses[1:], 2):
        if loss < best * 0.98:
            best, last_gain = loss, epoch
    assert record["searched_epochs"] == last_gain + 2 < plain["searched_epochs"]
    assert record["epochs"] == losses.index(min(losses)) + 1


def test_validation_split_never_steers_training() -> None:
    train, val, n_users, n_items = encoded_low_rank()
    params = ModelParams.load(make_params(holdout_frac=0.2, patience=2, epochs=30), "mf_bias")
    other = Ratings(val.users, val.items, val.ratings.flip(0))
    first, second = (train_model(params, train, v, n_users, n_items, SCALE)[0] for v in (val, other))
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key]), key


def block_preferences(n_users: int = 90, n_items: int = 60, blocks: int = 3, seed: int = 0) -> tuple[Ratings, Ratings]:
    """Users of block b rate mostly items of block b, and a movie's popularity varies within its block, so
    ranking by count alone finds a user's block only by chance. Training and held-out pairs share the structure."""
    rng = np.random.default_rng(seed)
    user_block, item_block = np.arange(n_users) % blocks, np.arange(n_items) % blocks
    appeal = rng.uniform(0.5, 1.5, n_items)
    p = np.where(user_block[:, None] == item_block[None, :], 0.3, 0.03) * appeal[None, :]
    u, i = np.nonzero(rng.random((n_users, n_items)) < p)
    data = Ratings.from_arrays(u, i, np.full(len(u), 4.0))
    return carve_holdout(data, 0.25, seed)


@pytest.mark.parametrize("name", ["bpr", "ials"])
def test_ranking_models_rank_better_than_popularity_where_preferences_have_structure(name: str) -> None:
    train, held_out = block_preferences()
    n_users, n_items = 90, 60
    seen = SeenItems(train, n_users)
    users = torch.unique(held_out.users)

    def hit_rate(model: torch.nn.Module) -> float:
        _, top = top_unseen(model, users, seen, 5)
        hits = [
            bool(set(top[k].tolist()) & set(held_out.items[held_out.users == u].tolist()))
            for k, u in enumerate(users.tolist())
        ]
        return sum(hits) / len(hits)

    popularity, _ = train_model(model_params("popularity"), train, held_out, n_users, n_items, SCALE)
    raw = make_params(lr=0.05, epochs=100, l2=0.05, batch_size=128)
    ranker, _ = train_model(ModelParams.load(raw, name), train, held_out, n_users, n_items, SCALE)
    assert hit_rate(ranker) > hit_rate(popularity) + 0.1


def test_popularity_counts_and_damps() -> None:
    data = Ratings.from_arrays(np.array([0, 1, 2, 0]), np.array([0, 0, 0, 1]), np.array([5.0, 5.0, 5.0, 1.0]))
    model, record = train_model(model_params("popularity", damping=2), data, data, 3, 2, SCALE)
    assert record is None  # counted: no engine, no epochs
    mean = 4.0
    assert model.count.tolist() == [3, 1]
    # item 0: three ratings 1 above μ shrunk by 2 phantom ratings of μ -> 3 / 5; item 1: -3 / 3
    assert model(torch.tensor([0, 0]), torch.tensor([0, 1])).tolist() == pytest.approx([mean + 0.6, mean - 1.0])


def test_global_mean_trains_nothing() -> None:
    data = Ratings.from_arrays(np.array([0, 1]), np.array([1, 0]), np.array([3.0, 3.5]))
    model, record = train_model(model_params("global_mean"), data, data, 2, 2, SCALE)
    assert record is None and not list(model.parameters())
    assert model(torch.tensor([0, 1]), torch.tensor([1, 1])).tolist() == [3.25, 3.25]


def test_penalty_counts_each_row_once_per_rating() -> None:
    model = randomised("biases", n_users=2, n_items=2)
    u, i = torch.tensor([0, 0]), torch.tensor([0, 1])
    without = objective(model, u, i, torch.zeros(2), 0.0)
    with_l2 = objective(model, u, i, torch.zeros(2), 1.0)
    b_u, b_i = model.biases()
    expected = (2 * b_u[0] ** 2 + b_i[0] ** 2 + b_i[1] ** 2) / 2
    assert (with_l2 - without).item() == pytest.approx(expected.item(), rel=1e-5)
    assert math.isfinite(without.item())


def test_row_l2_weighs_each_row_once_whatever_its_ratings() -> None:
    """Over all of a fit's ratings, row_l2 adds row_l2 times each row's sum of squares once: user 0 has two
    ratings and counts once, like user 1 with one."""
    model = randomised("mf", n_users=2, n_items=2)
    data = Ratings(torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1]), torch.zeros(3))
    args = (model, data.users, data.items, data.ratings, 0.0)
    without = objective(*args)
    got = objective(*args, None, 2.0, fit_ratings(data, 2, 2)) - without
    squares = model.user_emb.weight.pow(2).sum() + model.item_emb.weight.pow(2).sum()
    assert got.item() == pytest.approx((2.0 * squares / 3).item(), rel=1e-5)


def test_a_fits_batches_share_out_each_rows_prior_once_per_epoch() -> None:
    """Summed over an epoch's batches, each row's shares of row_l2's prior make one, wherever its ratings fall; a
    row without ratings in the fit carries none."""
    data = random_ratings(n_items=60, n=100)  # a catalogue that some items of are never rated
    model = randomised("mf", n_items=60)
    trainer = DotRatings(model, data, engine("mf", batch_size=16), torch.Generator().manual_seed(0))
    total = torch.zeros(len(trainer.table))
    for prepared in trainer.batches:
        total.index_add_(0, prepared["batch"].rows, prepared["batch"].shares.squeeze(1))
    rated = torch.cat(fit_ratings(data, n_items=60)) > 0
    assert len(trainer.batches) > 5 and rated.any() and not rated.all()
    torch.testing.assert_close(total[rated], torch.ones(int(rated.sum())))
    assert (total[~rated] == 0).all()


def test_bias_l2_weighs_the_bias_tables_and_l2_the_embeddings() -> None:
    model = randomised("mf_bias", n_users=2, n_items=2)
    u, i = torch.tensor([0, 1]), torch.tensor([1, 1])
    without = objective(model, u, i, torch.zeros(2), 0.0, 0.0)
    embeddings = (model.user_emb(u).pow(2).sum() + model.item_emb(i).pow(2).sum()) / 2
    biases = (model.user_bias(u).pow(2).sum() + model.item_bias(i).pow(2).sum()) / 2
    for l2, bias_l2, expected in [
        (1.0, 0.0, embeddings),
        (0.0, 1.0, biases),
        (0.5, 2.0, 0.5 * embeddings + 2 * biases),
    ]:
        got = objective(model, u, i, torch.zeros(2), l2, bias_l2) - without
        assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    # Without bias_l2, l2 weighs every table.
    same = objective(model, u, i, torch.zeros(2), 0.5) - without
    assert same.item() == pytest.approx((0.5 * (embeddings + biases)).item(), rel=1e-5)
