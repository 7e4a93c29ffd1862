"""Stage split: hold out validation ratings, by the notebook's coin flip or by time per user."""

from pathlib import Path

import numpy as np
import pandas as pd

from artifacts import write_csv
from errors import run_stage
from params import SplitParams, load_params
from ratings import read_ratings

IN = Path("data/raw/ratings.csv")
OUT = Path("data/split")


def random_split(ratings: pd.DataFrame, seed: int, val_frac: float) -> np.ndarray:
    """The notebook's split: one uniform draw per rating in file order, `rand < 1 - val_frac` trains."""
    np.random.seed(seed)  # the legacy global generator is what reproduces the notebook's 80,450 / 20,386
    return np.random.rand(len(ratings)) >= 1 - val_frac


def temporal_split(ratings: pd.DataFrame, val_frac: float) -> np.ndarray:
    """Each user's latest floor(val_frac * n) ratings validate: the future is predicted from the past."""
    order = np.lexsort((np.arange(len(ratings)), ratings["timestamp"].to_numpy(), ratings["userId"].to_numpy()))
    users = pd.Series(ratings["userId"].to_numpy()[order])
    per_user = users.groupby(users.to_numpy())
    position, count = per_user.cumcount().to_numpy(), per_user.transform("size").to_numpy()
    is_val = np.zeros(len(ratings), dtype=bool)
    is_val[order] = position >= count - np.floor(val_frac * count)
    return is_val


def main() -> None:
    params = SplitParams.load(load_params())
    ratings = read_ratings(IN)
    if params.method == "random":
        is_val = random_split(ratings, params.seed, params.val_frac)
    else:
        is_val = temporal_split(ratings, params.val_frac)
    write_csv(OUT / "train.csv", ratings[~is_val])
    write_csv(OUT / "val.csv", ratings[is_val])


if __name__ == "__main__":
    run_stage(main)
