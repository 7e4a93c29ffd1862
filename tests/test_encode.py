"""Stage encode: ids indexed from training alone; unseen validation rows kept, marked and counted."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import encode
from conftest import arrow, needs_real_archive, run_main
from lenscf.artifacts import column_values, read_table, table_of, write_json, write_table
from lenscf.errors import PipelineError

# The notebook's own check (In [8]): its tiny training frame and the encoding it printed.
TINY_TRAIN = pd.DataFrame(
    {
        "userId": [11, 11, 2, 2, 31, 31, 4, 4, 52, 52, 61, 7, 7],
        "movieId": [1, 23, 23, 4, 1, 23, 1, 3, 1, 3, 3, 23, 3],
        "rating": [4.0, 5, 5, 3, 4, 4, 5, 2, 1, 4, 5, 1, 3],
    }
).astype({"userId": "int32", "movieId": "int32", "rating": "float32"})
NOTEBOOK_USERS = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 6, 6]
NOTEBOOK_ITEMS = [0, 1, 1, 2, 0, 1, 0, 3, 0, 3, 3, 1, 3]


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch):
    return lambda: run_main(encode, monkeypatch)


def test_training_ids_are_indexed_as_the_notebook_does() -> None:
    tables = encode.encode(arrow(TINY_TRAIN), arrow(TINY_TRAIN.iloc[:0]))
    assert tables["train"]["user"].to_pylist() == NOTEBOOK_USERS
    assert tables["train"]["item"].to_pylist() == NOTEBOOK_ITEMS
    assert tables["users"]["userId"].to_pylist() == [11, 2, 31, 4, 52, 61, 7]
    assert tables["items"]["movieId"].to_pylist() == [1, 23, 4, 3]


def test_validation_uses_the_training_index_and_marks_the_unseen() -> None:
    val = pd.DataFrame({"userId": [7, 99, 11, 2], "movieId": [4, 1, 77, 23], "rating": [2.0, 3, 4, 5]})
    tables = encode.encode(arrow(TINY_TRAIN), arrow(val.astype({"userId": "int32", "movieId": "int32"})))
    got = tables["val"].to_pydict()
    assert got["user"] == [6, -1, 0, 1] and got["item"] == [2, 0, -1, 1]
    assert got["userId"] == [7, 99, 11, 2] and got["rating"] == [2.0, 3, 4, 5]


def write_split(train: pd.DataFrame, val: pd.DataFrame) -> None:
    write_table("data/split/train.parquet", arrow(train))
    write_table("data/split/val.parquet", arrow(val))
    write_table("data/raw/movies.parquet", pa.table({"movieId": [1, 23, 4, 3], "title": ["A", "B", "C", "D"]}))
    write_json("data/raw/source.json", {"rating_scale": [0.5, 5.0]})


def test_encode_stage_writes_tables_titles_counts_and_scale(project: Path, run) -> None:
    val = pd.DataFrame({"userId": [7, 99, 11], "movieId": [4, 1, 77], "rating": [2.0, 3, 4]})
    write_split(TINY_TRAIN, val.astype({"userId": "int32", "movieId": "int32", "rating": "float32"}))
    run()
    assert json.loads(Path("metrics/data.json").read_text()) == {
        "n_train": 13,
        "n_val": 1,
        "n_val_all": 3,
        "n_val_dropped": 2,
        "n_users": 7,
        "n_items": 4,
    }
    assert json.loads(Path("data/encoded/info.json").read_text())["rating_scale"] == [0.5, 5.0]
    items = pd.read_parquet("data/encoded/items.parquet")
    assert items.to_dict("list") == {"item": [0, 1, 2, 3], "movieId": [1, 23, 4, 3], "title": ["A", "B", "C", "D"]}
    users = pd.read_parquet("data/encoded/users.parquet")
    train = pd.read_parquet("data/encoded/train.parquet")
    assert train.dtypes.astype(str).tolist() == ["int32", "int32", "float32"]
    # the mappings turn every encoded rating back into its MovieLens ids
    assert users["userId"][train["user"]].tolist() == TINY_TRAIN["userId"].tolist()
    assert items["movieId"][train["item"]].tolist() == TINY_TRAIN["movieId"].tolist()


def test_parquet_round_trip_keeps_values_and_types(project: Path) -> None:
    table = pa.table({"user": pa.array([0, 5], pa.int32()), "rating": pa.array([0.5, 4.5], pa.float32())})
    write_table("t.parquet", table)
    assert read_table("t.parquet", ["user", "rating"]).equals(table)
    first = Path("t.parquet").read_bytes()
    write_table("t.parquet", table)
    assert Path("t.parquet").read_bytes() == first
    with pytest.raises(PipelineError, match=r"t.parquet: missing column\(s\) item"):
        read_table("t.parquet", ["user", "item"])


def test_table_of_builds_what_pa_table_builds() -> None:
    columns = {
        "user": np.array([3, 1, 2], np.int32),
        "movieId": np.arange(6, dtype=np.int64)[::2],  # not contiguous
        "rating": np.array([0.5, 5, 3.5], np.float32),
        "warm": np.array([True, False, True]),
    }
    assert table_of(columns).equals(pa.table(columns))


def test_column_values_reads_every_chunk_at_its_offset_in_its_type() -> None:
    """Chunks and slices (an offset into a buffer) are how Arrow hands out columns read from row groups."""
    chunks = [pa.array([1, 2, 3, 4], pa.int32()).slice(1), pa.array([7, 8], pa.int32())]
    table = pa.table({"user": pa.chunked_array(chunks), "rating": pa.array([0.5, 1, 1.5, 2, 4.5], pa.float32())})
    users, ratings = column_values(table, "user"), column_values(table, "rating")
    assert users.dtype == np.int32 and users.tolist() == [2, 3, 4, 7, 8]
    assert ratings.dtype == np.float32 and ratings.tolist() == [0.5, 1, 1.5, 2, 4.5]
    with pytest.raises(TypeError, match="column warm is bool, not a number"):
        column_values(pa.table({"warm": [True, False]}), "warm")
    with pytest.raises(ValueError, match="column user has 1 null"):
        column_values(pa.table({"user": pa.array([1, None], pa.int32())}), "user")


def test_encode_stage_checks_its_input(project: Path, run) -> None:
    write_split(TINY_TRAIN.drop(columns="rating"), TINY_TRAIN)
    with pytest.raises(PipelineError, match=r"data/split/train.parquet: missing column\(s\) rating"):
        run()
    assert not Path("data/encoded").exists() and not Path("metrics").exists()


@needs_real_archive
def test_real_encoding_matches_the_notebooks_counts(real_project: Path, run, monkeypatch: pytest.MonkeyPatch) -> None:
    import download
    import split

    run_main(download, monkeypatch)
    run_main(split, monkeypatch)
    run()
    assert json.loads(Path("metrics/data.json").read_text()) == {
        "n_train": 80_450,
        "n_val": 19_591,
        "n_val_all": 20_386,
        "n_val_dropped": 795,
        "n_users": 610,
        "n_items": 8_998,
    }
