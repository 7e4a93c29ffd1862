"""Stage evaluate and the recommend command: metrics by hand, outputs in MovieLens ids, clear refusals."""

import json
import math
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

import evaluate
import recommend
import train as train_stage
from errors import PipelineError
from test_train import prepare_encoded
from training import Ratings


class ItemIndexScorer(torch.nn.Module):
    """Scores item i as i for user 0 and as -i for everyone else: a ranking known in advance."""

    def forward(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return torch.where(u == 0, i, -i).float()


def ratings(*rows: tuple[int, int, float]) -> Ratings:
    u, i, r = zip(*rows, strict=True)
    return Ratings(torch.tensor(u), torch.tensor(i), torch.tensor(r, dtype=torch.float32))


def test_top_n_metrics_by_hand() -> None:
    train = ratings((0, 4, 3.0), (1, 0, 4.0))
    # user 0: relevant items 3 and 0; user 1: relevant item 1; item 2 is rated but not relevant
    val = ratings((0, 3, 5.0), (0, 0, 4.0), (0, 2, 2.0), (1, 1, 4.5), (1, 3, 1.0))
    got = evaluate.top_n_metrics(ItemIndexScorer(), train, val, n_users=2, n_items=5, n=2, relevant_rating=4.0)
    # user 0 ranks 3, 2 (item 4 was seen): one hit at rank 1 -> p 1/2, r 1/2, ndcg 1 / (1 + 1/log2(3))
    # user 1 ranks 1, 2 (item 0 was seen): one hit at rank 1 of one relevant -> p 1/2, r 1, ndcg 1
    assert got["precision@2"] == pytest.approx(0.5)
    assert got["recall@2"] == pytest.approx((0.5 + 1.0) / 2)
    assert got["ndcg@2"] == pytest.approx((1 / (1 + 1 / math.log2(3)) + 1.0) / 2)
    assert got["n_users_ranked"] == 2


def test_users_without_relevant_ratings_are_not_ranked() -> None:
    train = ratings((0, 4, 3.0))
    val = ratings((0, 3, 5.0), (1, 1, 2.0))
    got = evaluate.top_n_metrics(ItemIndexScorer(), train, val, n_users=2, n_items=5, n=1, relevant_rating=4.0)
    assert got == {"precision@1": 1.0, "recall@1": 1.0, "ndcg@1": 1.0, "n_users_ranked": 1}


def test_error_metrics() -> None:
    got = evaluate.error_metrics(torch.tensor([3.0, 4.0]).numpy(), torch.tensor([4.0, 2.0]).numpy())
    assert got == {"mse": 2.5, "rmse": math.sqrt(2.5), "mae": 1.5, "n_ratings": 2}


@pytest.fixture
def trained(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    prepare_encoded(project)
    monkeypatch.setattr(sys, "argv", ["train.py", "mf_bias"])
    train_stage.main()
    return project


def test_evaluate_stage_writes_metrics_predictions_and_plots(trained: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["evaluate.py", "mf_bias"])
    evaluate.main()
    metrics = json.loads(Path("metrics/mf_bias.json").read_text())
    assert set(metrics) == {"mse", "rmse", "mae", "n_ratings", "precision@10", "recall@10", "ndcg@10", "n_users_ranked"}
    predictions = pd.read_csv("data/predictions/mf_bias.csv")
    assert predictions.columns.tolist() == ["userId", "movieId", "rating", "prediction"]
    assert len(predictions) == metrics["n_ratings"] == len(pd.read_csv("data/encoded/val.csv"))
    assert metrics["mse"] == pytest.approx(((predictions["prediction"] - predictions["rating"]) ** 2).mean(), abs=1e-4)
    # original MovieLens ids: the test data's users are 1, 4, 7, ... and its movies 2, 9, 16, ...
    assert ((predictions["userId"] - 1) % 3 == 0).all() and ((predictions["movieId"] - 2) % 7 == 0).all()
    calibration = pd.read_csv("plots/calibration/mf_bias.csv")
    assert calibration["n"].sum() == len(predictions)
    activity = pd.read_csv("plots/activity/mf_bias.csv")
    assert activity["n"].sum() == len(predictions)
    assert activity["mse"].mul(activity["n"]).sum() / len(predictions) == pytest.approx(metrics["mse"], abs=1e-3)


def test_recommend_lists_unseen_movies_with_titles(trained: Path) -> None:
    pd.read_csv("data/encoded/items.csv").assign(title=lambda f: "Film " + f["movieId"].astype(str)).to_csv(
        "data/encoded/items.csv", index=False
    )
    top = recommend.recommend("mf_bias", user_id=1, n=5)
    assert len(top) == 5 and top["title"].str.startswith("Film ").all()
    assert top["predicted"].is_monotonic_decreasing
    train, items = pd.read_csv("data/encoded/train.csv"), pd.read_csv("data/encoded/items.csv")
    seen = set(items["movieId"][train.loc[train["user"] == 0, "item"]])
    assert not seen & set(top["movieId"])


def test_recommend_refuses_an_unknown_user(trained: Path) -> None:
    with pytest.raises(PipelineError, match="userId 2 has no training ratings"):
        recommend.recommend("mf_bias", user_id=2, n=5)


def test_recommend_refuses_an_untrained_model(trained: Path) -> None:
    with pytest.raises(PipelineError, match=r"models/mf.pt: no trained model; run `dvc repro train@mf` first"):
        recommend.recommend("mf", user_id=1, n=5)
