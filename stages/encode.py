"""Stage encode: contiguous user and item indices, learned from the training split alone."""

import argparse
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lenscf.artifacts import read_json, read_table, write_json, write_table
from lenscf.errors import run_stage

SPLIT, RAW = Path("data/split"), Path("data/raw")
OUT, METRICS = Path("data/encoded"), Path("metrics/data.json")
RATINGS = ["userId", "movieId", "rating"]


def _index(ids: pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """Each id's index in order of first appearance (as the notebook's unique() does), and the ids by index."""
    encoded = pc.dictionary_encode(ids.combine_chunks())
    return encoded.indices.to_numpy().astype(np.int32), encoded.dictionary


def _lookup(ids: pa.ChunkedArray, known: pa.Array) -> np.ndarray:
    """The training index of each id, or -1 for an id that training never saw."""
    return pc.fill_null(pc.index_in(ids, value_set=known), -1).to_numpy().astype(np.int32)


def encode(train: pa.Table, val: pa.Table) -> dict[str, pa.Table]:
    """Index users and movies from training. Validation keeps every rating; an unseen user or movie is -1,
    so evaluation can score the pair with a fallback and report warm and all ratings apart."""
    users, user_ids = _index(train["userId"])
    items, movie_ids = _index(train["movieId"])
    return {
        "train": pa.table({"user": users, "item": items, "rating": train["rating"]}),
        "val": pa.table(
            {
                "userId": val["userId"],
                "movieId": val["movieId"],
                "user": _lookup(val["userId"], user_ids),
                "item": _lookup(val["movieId"], movie_ids),
                "rating": val["rating"],
            }
        ),
        "users": pa.table({"user": np.arange(len(user_ids), dtype=np.int32), "userId": user_ids}),
        "items": pa.table({"item": np.arange(len(movie_ids), dtype=np.int32), "movieId": movie_ids}),
    }


def main() -> None:
    argparse.ArgumentParser(description=__doc__).parse_args()
    train, val = read_table(SPLIT / "train.parquet", RATINGS), read_table(SPLIT / "val.parquet", RATINGS)
    movies = read_table(RAW / "movies.parquet", ["movieId", "title"])
    scale = read_json(RAW / "source.json")["rating_scale"]
    tables = encode(train, val)
    position = pc.index_in(tables["items"]["movieId"], value_set=movies["movieId"].combine_chunks())
    tables["items"] = tables["items"].append_column("title", pc.fill_null(pc.take(movies["title"], position), ""))
    for name, table in tables.items():
        write_table(OUT / f"{name}.parquet", table)
    warm = int(np.count_nonzero((tables["val"]["user"].to_numpy() >= 0) & (tables["val"]["item"].to_numpy() >= 0)))
    counts = {"n_train": len(train), "n_users": len(tables["users"]), "n_items": len(tables["items"])}
    write_json(OUT / "info.json", {**counts, "rating_scale": scale})
    write_json(METRICS, {**counts, "n_val": warm, "n_val_all": len(val), "n_val_dropped": len(val) - warm})


if __name__ == "__main__":
    run_stage(main)
