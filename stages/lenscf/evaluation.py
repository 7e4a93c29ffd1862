"""One trained model's evaluation on the validation split: the sections of its metrics file and its plot data.

Rating error covers every validation rating: the warm ones (user and movie both seen in training) and all of
them, with cold-start fallbacks. Ranking covers every movie a user did not rate in training (the full
catalogue: sampled candidates give inconsistent metrics, Krichene & Rendle, KDD 2020).
"""

import numpy as np
import torch

from lenscf.errors import PipelineError
from lenscf.metrics import bootstrap_intervals, coverage, error_metrics, popularity_percentile, ranking_metrics
from lenscf.models import Recommender
from lenscf.params import EvaluateParams
from lenscf.scoring import SeenItems, predict_ratings, top_unseen
from lenscf.splits import Encoded

ACTIVITY_BINS = [1, 10, 20, 50, 100, 200, 500, 1000]  # lower edges of "training ratings per user" buckets


def _interval(low_high: tuple[float, float]) -> dict[str, float]:
    return {"low": low_high[0], "high": low_high[1]}


def error_section(prediction: np.ndarray, rating: np.ndarray, params: EvaluateParams) -> dict:
    """mse, rmse and mae with a bootstrap interval for mse over the ratings; just the count when there are none."""
    if len(rating) == 0:
        return {"n_ratings": 0}
    section = error_metrics(prediction, rating)
    squared = (prediction.astype(np.float64) - rating) ** 2
    (mse_interval,) = bootstrap_intervals(squared, params.bootstrap_samples, params.seed)
    return section | {"mse_ci95": _interval(mse_interval)}


def ranking_section(model: Recommender, data: Encoded, params: EvaluateParams) -> dict:
    """Top-n metrics over the users with a relevant warm validation rating, with intervals over those users."""
    n = params.top_n
    if n > data.n_items:
        raise PipelineError(f"params.yaml: evaluate.top_n ({n}) is larger than the catalogue ({data.n_items} movies)")
    val = data.val.warm()
    relevant = val.subset(val.ratings >= params.relevant_rating)
    eligible = torch.unique(relevant.users)
    section: dict = {"n_users_eligible": len(eligible), "sampled_users": False}
    users = eligible
    if params.max_users is not None and len(eligible) > params.max_users:
        pick = np.random.default_rng(params.seed).choice(len(eligible), params.max_users, replace=False)
        users = eligible[torch.as_tensor(np.sort(pick))]
        section["sampled_users"] = True
    section["n_users_ranked"] = len(users)
    if len(users) == 0:
        return section
    _, top = top_unseen(model, users, SeenItems(data.train, data.n_users), n, progress=True)
    keep = torch.isin(relevant.users, users)
    per_user = ranking_metrics(
        top.numpy(), users.numpy(), relevant.users[keep].numpy(), relevant.items[keep].numpy(), n
    )
    item_counts = torch.bincount(data.train.items, minlength=data.n_items).numpy()
    per_user["novelty"] = popularity_percentile(item_counts)[top.numpy()].mean(1)
    names = [f"{name}@{n}" for name in per_user]
    columns = np.column_stack(list(per_user.values()))
    intervals = bootstrap_intervals(columns, params.bootstrap_samples, params.seed)
    section |= {name: float(column.mean()) for name, column in zip(names, columns.T, strict=True)}
    section[f"coverage@{n}"] = coverage(top.numpy(), data.n_items)
    section["ci95"] = {name: _interval(interval) for name, interval in zip(names, intervals, strict=True)}
    return section


def calibration(model: str, rating: np.ndarray, prediction: np.ndarray) -> list[dict]:
    """Mean prediction for each actual rating: a well-calibrated model lies on the diagonal."""
    levels, index = np.unique(rating, return_inverse=True)
    count = np.bincount(index)
    mean = np.bincount(index, weights=prediction) / count
    return [
        {"model": model, "rating": float(r), "prediction": float(p), "n": int(c)}
        for r, p, c in zip(levels, mean, count, strict=True)
    ]


def error_by_activity(model: str, data: Encoded, prediction: np.ndarray, warm: np.ndarray) -> list[dict]:
    """Warm validation MSE by how many training ratings the user has: cold users are where models differ."""
    activity = torch.bincount(data.train.users, minlength=data.n_users).numpy()[data.val.users.numpy()[warm]]
    bucket = np.searchsorted(ACTIVITY_BINS, activity, side="right") - 1
    squared = (prediction[warm] - data.val.ratings.numpy()[warm]) ** 2
    count = np.bincount(bucket, minlength=len(ACTIVITY_BINS))
    total = np.bincount(bucket, weights=squared, minlength=len(ACTIVITY_BINS))
    return [
        {"model": model, "user_train_ratings": edge, "mse": float(total[k] / count[k]), "n": int(count[k])}
        for k, edge in enumerate(ACTIVITY_BINS)
        if count[k]
    ]


def evaluate(
    model: Recommender, baseline: Recommender, data: Encoded, params: EvaluateParams
) -> tuple[dict, np.ndarray]:
    """The metrics file's three sections, and every validation rating's prediction."""
    prediction = predict_ratings(model, baseline, data.val, data.rating_scale).numpy().astype(np.float64)
    rating = data.val.ratings.numpy().astype(np.float64)
    warm = data.val.warm_mask().numpy()
    metrics = {
        "warm": error_section(prediction[warm], rating[warm], params),
        "all": error_section(prediction, rating, params) | {"n_cold": int((~warm).sum())},
        "ranking": ranking_section(model, data, params),
    }
    return metrics, prediction
