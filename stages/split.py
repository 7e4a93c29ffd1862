"""Stage split: hold out validation ratings, by the notebook's coin flip or by time per user."""

import argparse
from pathlib import Path

import numpy as np
import pyarrow as pa

from lenscf.artifacts import read_table, write_table
from lenscf.errors import run_stage
from lenscf.params import SplitParams, load_params

IN = Path("data/raw/ratings.parquet")
OUT = Path("data/split")
KEPT = ["userId", "movieId", "rating"]  # what encode needs; the timestamp only decides a temporal split


def random_split(n: int, seed: int, val_frac: float) -> np.ndarray:
    """The notebook's split: one uniform draw per rating in file order, `rand < 1 - val_frac` trains."""
    np.random.seed(seed)  # the legacy global generator is what reproduces the notebook's 80,450 / 20,386
    return np.random.rand(n) >= 1 - val_frac


def temporal_split(users: np.ndarray, timestamps: np.ndarray, val_frac: float) -> np.ndarray:
    """Each user's latest floor(val_frac * n) ratings validate: the future is predicted from the past."""
    order = np.lexsort((np.arange(len(users)), timestamps, users))
    sorted_users = users[order]
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    counts = np.diff(np.r_[starts, len(users)])
    position = np.arange(len(users)) - np.repeat(starts, counts)
    count = np.repeat(counts, counts)
    is_val = np.zeros(len(users), dtype=bool)
    is_val[order] = position >= count - np.floor(val_frac * count)
    return is_val


def main() -> None:
    argparse.ArgumentParser(description=__doc__).parse_args()
    params = SplitParams.load(load_params())
    if params.method == "random":
        ratings = read_table(IN, KEPT)
        is_val = random_split(len(ratings), params.seed, params.val_frac)
    else:
        ratings = read_table(IN, [*KEPT, "timestamp"])
        is_val = temporal_split(ratings["userId"].to_numpy(), ratings["timestamp"].to_numpy(), params.val_frac)
        ratings = ratings.select(KEPT)
    write_table(OUT / "train.parquet", ratings.filter(pa.array(~is_val)))
    write_table(OUT / "val.parquet", ratings.filter(pa.array(is_val)))


if __name__ == "__main__":
    run_stage(main)
