"""Stage split: the notebook's coin flip, the per-user temporal hold-out, and bad parameters."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import split
from conftest import arrow, low_rank_ratings, needs_real_archive, run_main, write_params
from lenscf.artifacts import write_table
from lenscf.errors import PipelineError


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch):
    return lambda: run_main(split, monkeypatch)


def write_raw(ratings: pd.DataFrame) -> None:
    frame = ratings.astype({"userId": "int32", "movieId": "int32", "rating": "float32", "timestamp": "int64"})
    write_table("data/raw/ratings.parquet", arrow(frame))


def test_random_split_is_the_notebooks_formula() -> None:
    ratings = low_rank_ratings()
    np.random.seed(3)
    notebook_train = np.random.rand(len(ratings)) < 0.8  # In [5] of the notebook
    assert (split.random_split(len(ratings), seed=3, val_frac=0.2) == ~notebook_train).all()


def test_split_stage_writes_both_parts_in_file_order(project: Path, run) -> None:
    ratings = low_rank_ratings()
    write_raw(ratings)
    run()
    train, val = pd.read_parquet("data/split/train.parquet"), pd.read_parquet("data/split/val.parquet")
    assert list(train.columns) == ["userId", "movieId", "rating"]  # what encode needs, and no more
    assert len(train) + len(val) == len(ratings)
    assert 0.1 < len(val) / len(ratings) < 0.3
    is_val = split.random_split(len(ratings), 3, 0.2)
    assert train["userId"].tolist() == ratings["userId"][~is_val].tolist()
    assert val["movieId"].tolist() == ratings["movieId"][is_val].tolist()


def test_temporal_split_holds_out_each_users_latest() -> None:
    users = np.array([1, 1, 1, 1, 1, 2, 2, 3])
    timestamps = np.array([50, 10, 40, 20, 30, 7, 3, 1])
    is_val = split.temporal_split(users, timestamps, val_frac=0.4)
    # user 1: floor(0.4 * 5) = 2 latest (t=50, 40); user 2: floor(0.8) = 0; user 3: none
    assert is_val.tolist() == [True, False, True, False, False, False, False, False]


def test_temporal_split_never_validates_on_the_past() -> None:
    ratings = low_rank_ratings(n_users=20, seed=4)
    is_val = split.temporal_split(ratings["userId"].to_numpy(), ratings["timestamp"].to_numpy(), val_frac=0.25)
    latest_train = ratings[~is_val].groupby("userId")["timestamp"].max()
    earliest_val = ratings[is_val].groupby("userId")["timestamp"].min()
    assert (earliest_val >= latest_train[earliest_val.index]).all()
    assert 0.2 < is_val.mean() <= 0.25


def test_temporal_split_stage_runs(project: Path, run) -> None:
    write_raw(low_rank_ratings())
    write_params(project, split={"method": "temporal"})
    run()
    assert len(pd.read_parquet("data/split/val.parquet")) > 0


@pytest.mark.parametrize("val_frac", [0, 1, 1.5, -0.1, "0.2"])
def test_val_frac_outside_open_unit_interval_is_refused(project: Path, val_frac: object, run) -> None:
    write_raw(low_rank_ratings())
    write_params(project, split={"val_frac": val_frac})
    with pytest.raises(PipelineError, match=r"split.val_frac must be a number in \(0, 1\)"):
        run()
    assert not Path("data/split").exists()


def test_unknown_method_is_refused(project: Path, run) -> None:
    write_params(project, split={"method": "leave-one-out"})
    with pytest.raises(PipelineError, match=r"split\.method must be one of random, temporal"):
        run()


def test_missing_input_names_the_stage_to_run(project: Path, run) -> None:
    with pytest.raises(PipelineError, match=r"data/raw/ratings.parquet: not found; run the stage that writes it"):
        run()


@needs_real_archive
def test_real_split_matches_the_notebooks_counts(real_project: Path, run, monkeypatch: pytest.MonkeyPatch) -> None:
    import download

    run_main(download, monkeypatch)
    run()
    assert len(pd.read_parquet("data/split/train.parquet")) == 80_450
    assert len(pd.read_parquet("data/split/val.parquet")) == 20_386
