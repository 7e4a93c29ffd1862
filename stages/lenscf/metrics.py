"""Rating-error and ranking metrics, one function each on plain arrays, and bootstrap intervals for their means.

Ranking metrics are computed per user, over each user's top-n list against the user's relevant validation
items, so that their means can be bootstrapped over users.
"""

import math

import numpy as np


def error_metrics(prediction: np.ndarray, rating: np.ndarray) -> dict[str, float]:
    """mse, rmse and mae of predictions against ratings (float64 sums, so large splits stay exact)."""
    error = prediction.astype(np.float64) - rating.astype(np.float64)
    mse = float(np.mean(error**2))
    return {"mse": mse, "rmse": math.sqrt(mse), "mae": float(np.mean(np.abs(error))), "n_ratings": len(rating)}


def hits(top: np.ndarray, users: np.ndarray, relevant_users: np.ndarray, relevant_items: np.ndarray) -> np.ndarray:
    """hits[k, j]: whether the j-th item of users[k]'s list is one of that user's relevant items."""
    base = int(max(top.max(initial=0), relevant_items.max(initial=0))) + 1
    listed = users.astype(np.int64)[:, None] * base + top.astype(np.int64)
    return np.isin(listed, relevant_users.astype(np.int64) * base + relevant_items)


def precision(hit: np.ndarray, n: int) -> np.ndarray:
    return hit.sum(1) / n


def recall(hit: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    return hit.sum(1) / n_relevant


def hit_rate(hit: np.ndarray) -> np.ndarray:
    """1 where the list holds at least one relevant item."""
    return hit.any(1).astype(np.float64)


def ndcg(hit: np.ndarray, n_relevant: np.ndarray, n: int) -> np.ndarray:
    """Binary-relevance DCG over the ideal DCG of a list that puts min(n, relevant) hits first."""
    discount = 1.0 / np.log2(np.arange(2, n + 2))
    ideal = np.cumsum(discount)[np.minimum(n_relevant, n) - 1]
    return (hit * discount[: hit.shape[1]]).sum(1) / ideal


def average_precision(hit: np.ndarray, n_relevant: np.ndarray, n: int) -> np.ndarray:
    """AP@n: the mean of precision@k at each rank k that is a hit, over min(n, relevant); its mean is MAP@n."""
    precision_at = np.cumsum(hit, 1) / np.arange(1, hit.shape[1] + 1)
    return (precision_at * hit).sum(1) / np.minimum(n_relevant, n)


def reciprocal_rank(hit: np.ndarray) -> np.ndarray:
    """1 / rank of the first hit, 0 without one; its mean is MRR@n."""
    first = hit.argmax(1)
    return np.where(hit.any(1), 1.0 / (first + 1), 0.0)


def coverage(top: np.ndarray, n_items: int) -> float:
    """The share of the catalogue that appears in at least one user's list."""
    return len(np.unique(top)) / n_items


def popularity_percentile(item_counts: np.ndarray) -> np.ndarray:
    """Per item, the percentage of the catalogue with fewer training ratings: 0 for the rarest, ~100 for hits."""
    return 100.0 * np.searchsorted(np.sort(item_counts), item_counts, side="left") / len(item_counts)


def ranking_metrics(
    top: np.ndarray, users: np.ndarray, relevant_users: np.ndarray, relevant_items: np.ndarray, n: int
) -> dict[str, np.ndarray]:
    """Per-user precision, recall, ndcg, hit rate, AP and RR at n, for `users`, each with a relevant item."""
    hit = hits(top, users, relevant_users, relevant_items)
    n_relevant = np.bincount(np.searchsorted(users, relevant_users), minlength=len(users))
    if (n_relevant == 0).any():
        raise ValueError("every ranked user needs at least one relevant item")
    return {
        "precision": precision(hit, n),
        "recall": recall(hit, n_relevant),
        "ndcg": ndcg(hit, n_relevant, n),
        "hit_rate": hit_rate(hit),
        "map": average_precision(hit, n_relevant, n),
        "mrr": reciprocal_rank(hit),
    }


BOOTSTRAP_ROWS = 1 << 18  # above this many rows, resample a subsample and rescale (see bootstrap_intervals)


def bootstrap_intervals(values: np.ndarray, samples: int, seed: int, level: float = 0.95) -> list[tuple[float, float]]:
    """Percentile intervals for the mean of each column of `values` (rows are resampled together).

    Rows (ratings, or users) are drawn with replacement `samples` times from a seeded generator, so the same
    values give the same intervals. With more than BOOTSTRAP_ROWS rows (ml-25m's 5 M validation ratings), the
    bootstrap runs on a seeded subsample of that many rows and its spread around the subsample's mean is scaled
    by sqrt(subsample / rows), since a mean's spread shrinks as 1/sqrt(rows): the m-out-of-n bootstrap, which
    costs seconds where resampling every row a thousand times would cost minutes.
    """
    values = np.asarray(values, dtype=np.float64)
    values = values[:, None] if values.ndim == 1 else values
    if len(values) == 0:
        raise ValueError("nothing to bootstrap")
    rng = np.random.default_rng(seed)
    full_mean, scale = values.mean(0), 1.0
    if len(values) > BOOTSTRAP_ROWS:
        scale = math.sqrt(BOOTSTRAP_ROWS / len(values))
        values = values[rng.choice(len(values), BOOTSTRAP_ROWS, replace=False)]
    chunk = max(1, (1 << 22) // len(values))
    means = np.empty((samples, values.shape[1]))
    for start in range(0, samples, chunk):
        stop = min(samples, start + chunk)
        rows = rng.integers(0, len(values), size=(stop - start, len(values)))
        means[start:stop] = values[rows].mean(1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail], axis=0)
    centre = values.mean(0)
    low, high = full_mean + (low - centre) * scale, full_mean + (high - centre) * scale
    return [(float(lo), float(hi)) for lo, hi in zip(low, high, strict=True)]
