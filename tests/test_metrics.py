"""Each metric on hand-built lists whose answers are worked out in the comments, and the bootstrap."""

import math

import numpy as np
import pytest

from lenscf import metrics

# Two users, lists of 3. User 0's relevant items are {7, 9}; user 1's is {4}.
TOP = np.array([[7, 2, 9], [1, 3, 5]])
USERS = np.array([0, 1])
RELEVANT_USERS, RELEVANT_ITEMS = np.array([0, 0, 1]), np.array([7, 9, 4])


def hit() -> np.ndarray:
    return metrics.hits(TOP, USERS, RELEVANT_USERS, RELEVANT_ITEMS)


def test_hits_mark_each_listed_relevant_item() -> None:
    assert hit().tolist() == [[True, False, True], [False, False, False]]


def test_precision_and_recall() -> None:
    assert metrics.precision(hit(), 3).tolist() == [2 / 3, 0.0]
    assert metrics.recall(hit(), np.array([2, 1])).tolist() == [1.0, 0.0]


def test_ndcg_against_the_ideal_list() -> None:
    # user 0: hits at ranks 1 and 3: (1 + 1/log2(4)) over the ideal (1 + 1/log2(3)); user 1: no hit
    expected = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert metrics.ndcg(hit(), np.array([2, 1]), 3).tolist() == [pytest.approx(expected), 0.0]


def test_ndcg_of_a_perfect_list_is_one_and_ideal_is_capped_at_n() -> None:
    perfect = np.array([[True, True]])
    assert metrics.ndcg(perfect, np.array([5]), 2).tolist() == [pytest.approx(1.0)]


def test_hit_rate_average_precision_and_reciprocal_rank() -> None:
    assert metrics.hit_rate(hit()).tolist() == [1.0, 0.0]
    # AP@3 for user 0: (P@1 * 1 + P@3 * 1) / min(3, 2) = (1 + 2/3) / 2
    assert metrics.average_precision(hit(), np.array([2, 1]), 3).tolist() == [pytest.approx(5 / 6), 0.0]
    late = np.array([[False, False, True]])
    assert metrics.reciprocal_rank(late).tolist() == [pytest.approx(1 / 3)]
    assert metrics.reciprocal_rank(hit()).tolist() == [1.0, 0.0]


def test_ranking_metrics_bundle_and_refuse_users_without_relevant_items() -> None:
    got = metrics.ranking_metrics(TOP, USERS, RELEVANT_USERS, RELEVANT_ITEMS, 3)
    assert set(got) == {"precision", "recall", "ndcg", "hit_rate", "map", "mrr"}
    assert got["recall"].tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="at least one relevant"):
        metrics.ranking_metrics(TOP, np.array([0, 2]), RELEVANT_USERS[:2], RELEVANT_ITEMS[:2], 3)


def test_coverage_counts_distinct_listed_items() -> None:
    assert metrics.coverage(TOP, n_items=12) == 6 / 12


def test_popularity_percentile_is_the_share_of_the_catalogue_less_rated() -> None:
    counts = np.array([5, 1, 1, 9])
    assert metrics.popularity_percentile(counts).tolist() == [50.0, 0.0, 0.0, 75.0]


def test_error_metrics() -> None:
    got = metrics.error_metrics(np.array([3.0, 4.0]), np.array([4.0, 2.0]))
    assert got == {"mse": 2.5, "rmse": math.sqrt(2.5), "mae": 1.5, "n_ratings": 2}


def test_bootstrap_is_seeded_and_brackets_the_mean() -> None:
    values = np.random.default_rng(0).normal(1.0, 2.0, 5000)
    first = metrics.bootstrap_intervals(values, 500, seed=3)
    assert first == metrics.bootstrap_intervals(values, 500, seed=3)
    assert first != metrics.bootstrap_intervals(values, 500, seed=4)
    ((low, high),) = first
    assert low < values.mean() < high
    # a 95% interval of a mean is about ±1.96 standard errors wide
    assert high - low == pytest.approx(2 * 1.96 * values.std() / math.sqrt(len(values)), rel=0.15)


def test_bootstrap_resamples_columns_together() -> None:
    values = np.column_stack([np.arange(100.0), np.arange(100.0) * 2])
    (low_a, high_a), (low_b, high_b) = metrics.bootstrap_intervals(values, 300, seed=0)
    assert (low_b, high_b) == (pytest.approx(2 * low_a), pytest.approx(2 * high_a))


def test_bootstrap_of_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="nothing to bootstrap"):
        metrics.bootstrap_intervals(np.array([]), 100, seed=0)


def test_bootstrap_of_many_rows_rescales_a_subsample(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past BOOTSTRAP_ROWS the interval comes from a subsample, scaled to the full size's standard error."""
    monkeypatch.setattr(metrics, "BOOTSTRAP_ROWS", 2000)
    values = np.random.default_rng(1).exponential(1.0, 50_000)
    ((low, high),) = metrics.bootstrap_intervals(values, 400, seed=0)
    assert low < values.mean() < high
    assert high - low == pytest.approx(2 * 1.96 * values.std() / math.sqrt(len(values)), rel=0.2)
