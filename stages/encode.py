"""Stage encode: contiguous user and item indices, learned from the training split alone."""

from pathlib import Path

import numpy as np
import pandas as pd

from artifacts import write_csv, write_json
from errors import run_stage
from ratings import read_csv, read_ratings

SPLIT, MOVIES = Path("data/split"), Path("data/raw/movies.csv")
OUT, METRICS = Path("data/encoded"), Path("metrics/data.json")


def encode(train: pd.DataFrame, val: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Index ids in order of first appearance in training (as the notebook's unique() does).

    Validation ratings of users or movies unseen in training cannot be scored, so they are dropped.
    """
    train_users, user_ids = pd.factorize(train["userId"])
    train_items, movie_ids = pd.factorize(train["movieId"])
    val_users = user_ids.get_indexer(val["userId"])
    val_items = movie_ids.get_indexer(val["movieId"])
    known = (val_users >= 0) & (val_items >= 0)
    return {
        "train": pd.DataFrame({"user": train_users, "item": train_items, "rating": train["rating"].to_numpy()}),
        "val": pd.DataFrame({"user": val_users[known], "item": val_items[known], "rating": val["rating"][known]}),
        "users": pd.DataFrame({"user": np.arange(len(user_ids)), "userId": user_ids}),
        "items": pd.DataFrame({"item": np.arange(len(movie_ids)), "movieId": movie_ids}),
    }


def main() -> None:
    train, val = read_ratings(SPLIT / "train.csv"), read_ratings(SPLIT / "val.csv")
    titles = read_csv(MOVIES).set_index("movieId")["title"]
    tables = encode(train, val)
    tables["items"]["title"] = tables["items"]["movieId"].map(titles).fillna("")
    for name, table in tables.items():
        write_csv(OUT / f"{name}.csv", table)
    write_json(
        METRICS,
        {
            "n_train": len(tables["train"]),
            "n_val": len(tables["val"]),
            "n_val_dropped": len(val) - len(tables["val"]),
            "n_users": len(tables["users"]),
            "n_items": len(tables["items"]),
        },
    )


if __name__ == "__main__":
    run_stage(main)
