"""Stage split: the notebook's coin flip, the per-user temporal hold-out, and bad parameters."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import split
from conftest import low_rank_ratings, needs_real_archive, write_params
from errors import PipelineError


def write_raw(ratings: pd.DataFrame) -> None:
    Path("data/raw").mkdir(parents=True)
    ratings.to_csv("data/raw/ratings.csv", index=False)


def test_random_split_is_the_notebooks_formula() -> None:
    ratings = low_rank_ratings()
    np.random.seed(3)
    notebook_train = np.random.rand(len(ratings)) < 0.8  # In [5] of the notebook
    assert (split.random_split(ratings, seed=3, val_frac=0.2) == ~notebook_train).all()


def test_split_stage_writes_both_parts_in_file_order(project: Path) -> None:
    ratings = low_rank_ratings()
    write_raw(ratings)
    split.main()
    train, val = pd.read_csv("data/split/train.csv"), pd.read_csv("data/split/val.csv")
    assert len(train) + len(val) == len(ratings)
    assert 0.1 < len(val) / len(ratings) < 0.3
    together = pd.concat([train, val])
    assert sorted(map(tuple, together.to_numpy())) == sorted(map(tuple, ratings.to_numpy()))
    assert train["timestamp"].tolist() == ratings["timestamp"][~split.random_split(ratings, 3, 0.2)].tolist()


def test_temporal_split_holds_out_each_users_latest() -> None:
    ratings = pd.DataFrame(
        {
            "userId": [1, 1, 1, 1, 1, 2, 2, 3],
            "movieId": [1, 2, 3, 4, 5, 1, 2, 1],
            "rating": 4.0,
            "timestamp": [50, 10, 40, 20, 30, 7, 3, 1],
        }
    )
    is_val = split.temporal_split(ratings, val_frac=0.4)
    # user 1: floor(0.4 * 5) = 2 latest (t=50, 40); user 2: floor(0.8) = 0; user 3: none
    assert is_val.tolist() == [True, False, True, False, False, False, False, False]


def test_temporal_split_never_validates_on_the_past() -> None:
    ratings = low_rank_ratings(n_users=20, seed=4)
    is_val = split.temporal_split(ratings, val_frac=0.25)
    latest_train = ratings[~is_val].groupby("userId")["timestamp"].max()
    earliest_val = ratings[is_val].groupby("userId")["timestamp"].min()
    assert (earliest_val >= latest_train[earliest_val.index]).all()
    assert 0.2 < is_val.mean() <= 0.25


@pytest.mark.parametrize("val_frac", [0, 1, 1.5, -0.1, "0.2"])
def test_val_frac_outside_open_unit_interval_is_refused(project: Path, val_frac: object) -> None:
    write_raw(low_rank_ratings())
    write_params(project, split={"val_frac": val_frac})
    with pytest.raises(PipelineError, match=r"split.val_frac must be a number in \(0, 1\)"):
        split.main()
    assert not Path("data/split").exists()


def test_unknown_method_is_refused(project: Path) -> None:
    write_params(project, split={"method": "leave-one-out"})
    with pytest.raises(PipelineError, match=r"split\.method must be one of random, temporal"):
        split.main()


def test_bad_input_row_is_named_before_anything_is_written(project: Path) -> None:
    ratings = low_rank_ratings().astype({"rating": object})
    ratings.loc[5, "rating"] = "five"
    write_raw(ratings)
    with pytest.raises(PipelineError, match=r"data/raw/ratings.csv, line 7: rating is non-numeric \('five'\)"):
        split.main()
    assert not Path("data/split").exists()


@needs_real_archive
def test_real_split_matches_the_notebooks_counts(real_project: Path) -> None:
    import download

    download.main()
    split.main()
    assert len(pd.read_csv("data/split/train.csv")) == 80_450
    assert len(pd.read_csv("data/split/val.csv")) == 20_386
