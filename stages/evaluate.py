"""Stage evaluate@<model>: score a trained model on the validation split, apart from any training code."""

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from artifacts import write_csv, write_json
from errors import run_stage
from models import ROWS_PER_BLOCK, Recommender, load_checkpoint, predict, top_unseen
from params import EvaluateParams, load_params
from ratings import read_csv
from training import ENCODED, Ratings

ACTIVITY_BINS = [1, 10, 20, 50, 100, 200, 500, 1000]  # lower edges of "training ratings per user" buckets


def error_metrics(prediction: np.ndarray, rating: np.ndarray) -> dict[str, float]:
    error = prediction - rating
    mse = float(np.mean(error**2))
    return {"mse": mse, "rmse": math.sqrt(mse), "mae": float(np.mean(np.abs(error))), "n_ratings": len(rating)}


def by_user(data: Ratings, n_users: int) -> tuple[Ratings, list[int]]:
    """Ratings sorted by user, with where each user's rows start: a block of users is then one slice."""
    starts = torch.zeros(n_users + 1, dtype=torch.long)
    starts[1:] = torch.cumsum(torch.bincount(data.users, minlength=n_users), 0)
    return data.subset(torch.argsort(data.users, stable=True)), starts.tolist()


def top_n_metrics(
    model: Recommender, train: Ratings, val: Ratings, n_users: int, n_items: int, n: int, relevant_rating: float
) -> dict[str, float]:
    """precision, recall and ndcg at n, averaged over users with at least one relevant validation rating.

    Candidates are all items the user did not rate in training; relevant ones are validation ratings
    of at least `relevant_rating`. Users are scored in blocks so memory stays bounded.
    """
    discount = 1.0 / torch.log2(torch.arange(2, n + 2, dtype=torch.float64))
    ideal = torch.cumsum(discount, 0)
    seen, seen_starts = by_user(train, n_users)
    relevant, relevant_starts = by_user(val.subset(val.ratings >= relevant_rating), n_users)
    sums, n_ranked = torch.zeros(3, dtype=torch.float64), 0
    block = max(1, ROWS_PER_BLOCK // n_items)
    for start in range(0, n_users, block):
        stop = min(start + block, n_users)
        rows = slice(seen_starts[start], seen_starts[stop])
        _, top = top_unseen(model, torch.arange(start, stop), seen.users[rows] - start, seen.items[rows], n_items, n)
        rows = slice(relevant_starts[start], relevant_starts[stop])
        is_relevant = torch.zeros(stop - start, n_items, dtype=torch.bool)
        is_relevant[relevant.users[rows] - start, relevant.items[rows]] = True
        hits = is_relevant.gather(1, top).double()
        n_relevant = is_relevant.sum(1)
        ranked = n_relevant > 0
        hits, n_relevant = hits[ranked], n_relevant[ranked]
        sums += torch.stack(
            [
                (hits.sum(1) / n).sum(),
                (hits.sum(1) / n_relevant).sum(),
                ((hits * discount[: hits.shape[1]]).sum(1) / ideal[n_relevant.clamp(max=n) - 1]).sum(),
            ]
        )
        n_ranked += int(ranked.sum())
    precision, recall, ndcg = (sums / max(n_ranked, 1)).tolist()
    return {f"precision@{n}": precision, f"recall@{n}": recall, f"ndcg@{n}": ndcg, "n_users_ranked": n_ranked}


def calibration(rating: np.ndarray, prediction: np.ndarray) -> pd.DataFrame:
    """Mean prediction for each actual rating: a well-calibrated model lies on the diagonal."""
    frame = pd.DataFrame({"rating": rating, "prediction": prediction})
    return frame.groupby("rating", as_index=False).agg(prediction=("prediction", "mean"), n=("prediction", "size"))


def error_by_activity(val: Ratings, prediction: np.ndarray, train: Ratings, n_users: int) -> pd.DataFrame:
    """Validation MSE by how many training ratings the user has: cold users are where models differ."""
    activity = torch.bincount(train.users, minlength=n_users)[val.users].numpy()
    bucket = np.asarray(ACTIVITY_BINS)[np.searchsorted(ACTIVITY_BINS, activity, side="right") - 1]
    frame = pd.DataFrame({"user_train_ratings": bucket, "squared_error": (prediction - val.ratings.numpy()) ** 2})
    return frame.groupby("user_train_ratings", as_index=False).agg(
        mse=("squared_error", "mean"), n=("squared_error", "size")
    )


def main() -> None:
    name = sys.argv[1]
    params = EvaluateParams.load(load_params())
    model = load_checkpoint(Path(f"models/{name}.pt"))
    train, val_frame = Ratings.from_frame(read_csv(ENCODED / "train.csv")), read_csv(ENCODED / "val.csv")
    val = Ratings.from_frame(val_frame)
    users, items = read_csv(ENCODED / "users.csv"), read_csv(ENCODED / "items.csv")
    prediction = predict(model, val.users, val.items).numpy().astype(np.float64)
    rating = val.ratings.numpy().astype(np.float64)
    metrics = error_metrics(prediction, rating)
    metrics |= top_n_metrics(model, train, val, len(users), len(items), params.top_n, params.relevant_rating)
    write_json(Path(f"metrics/{name}.json"), {k: round(v, 6) for k, v in metrics.items()})
    predictions = pd.DataFrame(
        {
            "userId": users["userId"].to_numpy()[val_frame["user"]],
            "movieId": items["movieId"].to_numpy()[val_frame["item"]],
            "rating": rating,
            "prediction": prediction,
        }
    )
    write_csv(Path(f"data/predictions/{name}.csv"), predictions, float_format="%.4f")
    write_csv(Path(f"plots/calibration/{name}.csv"), calibration(rating, prediction), float_format="%.4f")
    write_csv(
        Path(f"plots/activity/{name}.csv"), error_by_activity(val, prediction, train, len(users)), float_format="%.4f"
    )


if __name__ == "__main__":
    run_stage(main)
