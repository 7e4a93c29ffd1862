"""Stage encode: ids indexed from training alone, unseen validation rows dropped and counted."""

import json
from pathlib import Path

import pandas as pd
import pytest

import encode
from conftest import needs_real_archive
from errors import PipelineError

# The notebook's own check (In [8]): its tiny training frame and the encoding it printed.
TINY_TRAIN = pd.DataFrame(
    {
        "userId": [11, 11, 2, 2, 31, 31, 4, 4, 52, 52, 61, 7, 7],
        "movieId": [1, 23, 23, 4, 1, 23, 1, 3, 1, 3, 3, 23, 3],
        "rating": [4, 5, 5, 3, 4, 4, 5, 2, 1, 4, 5, 1, 3],
        "timestamp": 0,
    }
)
NOTEBOOK_USERS = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 6, 6]
NOTEBOOK_ITEMS = [0, 1, 1, 2, 0, 1, 0, 3, 0, 3, 3, 1, 3]


def test_training_ids_are_indexed_as_the_notebook_does() -> None:
    tables = encode.encode(TINY_TRAIN, TINY_TRAIN.iloc[:0])
    assert tables["train"]["user"].tolist() == NOTEBOOK_USERS
    assert tables["train"]["item"].tolist() == NOTEBOOK_ITEMS
    assert tables["users"]["userId"].tolist() == [11, 2, 31, 4, 52, 61, 7]
    assert tables["items"]["movieId"].tolist() == [1, 23, 4, 3]


def test_validation_uses_the_training_index_and_drops_the_unseen() -> None:
    val = pd.DataFrame({"userId": [7, 99, 11, 2], "movieId": [4, 1, 77, 23], "rating": [2.0, 3, 4, 5], "timestamp": 0})
    tables = encode.encode(TINY_TRAIN, val)
    assert tables["val"].to_dict("list") == {"user": [6, 1], "item": [2, 1], "rating": [2.0, 5.0]}


def write_split(train: pd.DataFrame, val: pd.DataFrame) -> None:
    Path("data/split").mkdir(parents=True)
    Path("data/raw").mkdir(parents=True)
    train.to_csv("data/split/train.csv", index=False)
    val.to_csv("data/split/val.csv", index=False)
    pd.DataFrame({"movieId": [1, 23, 4, 3], "title": ["A", "B", "C", "D"]}).to_csv("data/raw/movies.csv", index=False)


def test_encode_stage_writes_tables_titles_and_counts(project: Path) -> None:
    val = pd.DataFrame({"userId": [7, 99, 11], "movieId": [4, 1, 77], "rating": [2.0, 3, 4], "timestamp": 0})
    write_split(TINY_TRAIN, val)
    encode.main()
    assert json.loads(Path("metrics/data.json").read_text()) == {
        "n_train": 13,
        "n_val": 1,
        "n_val_dropped": 2,
        "n_users": 7,
        "n_items": 4,
    }
    items = pd.read_csv("data/encoded/items.csv")
    assert items.to_dict("list") == {"item": [0, 1, 2, 3], "movieId": [1, 23, 4, 3], "title": ["A", "B", "C", "D"]}
    users = pd.read_csv("data/encoded/users.csv")
    train = pd.read_csv("data/encoded/train.csv")
    # the mappings turn every encoded rating back into its MovieLens ids
    assert users["userId"][train["user"]].tolist() == TINY_TRAIN["userId"].tolist()
    assert items["movieId"][train["item"]].tolist() == TINY_TRAIN["movieId"].tolist()


def test_encode_stage_checks_its_input(project: Path) -> None:
    write_split(TINY_TRAIN.drop(columns="rating"), TINY_TRAIN)
    with pytest.raises(PipelineError, match=r"data/split/train.csv: missing column\(s\) rating"):
        encode.main()
    assert not Path("data/encoded").exists() and not Path("metrics").exists()


@needs_real_archive
def test_real_encoding_matches_the_notebooks_counts(real_project: Path) -> None:
    import download
    import split

    download.main()
    split.main()
    encode.main()
    assert json.loads(Path("metrics/data.json").read_text()) == {
        "n_train": 80_450,
        "n_val": 19_591,
        "n_val_dropped": 795,
        "n_users": 610,
        "n_items": 8_998,
    }
