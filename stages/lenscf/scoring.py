"""A trained model's rating predictions, with cold-start fallbacks and clipping, and its top-N lists.

Both work in bounded blocks: pairs for predictions, users for top-N, whose scores go into one buffer that is
reused block after block, so that memory and page faults stay flat however large the release.
"""

import math

import torch
from tqdm import tqdm

from lenscf.models import Recommender
from lenscf.splits import Ratings, row_pointers

PAIRS_PER_BLOCK = 1 << 12  # (user, item) pairs per forward() call: its gathered rows stay in cache (2¹⁷ was 3× slower)
SCORES_PER_BLOCK = 1 << 22  # user-by-item scores held at once by top-N


@torch.no_grad()
def predict(model: Recommender, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """model(u, i) for pairs whose user and item both have training ratings, in bounded blocks."""
    model.eval()
    blocks = zip(users.split(PAIRS_PER_BLOCK), items.split(PAIRS_PER_BLOCK), strict=True)
    return torch.cat([model(u, i) for u, i in blocks]) if len(users) else torch.zeros(0, device=users.device)


@torch.no_grad()
def predict_ratings(
    model: Recommender, baseline: Recommender, pairs: Ratings, scale: tuple[float, float]
) -> torch.Tensor:
    """Every pair's predicted rating, clipped to the release's rating scale (as Surprise does).

    A warm pair gets the model's prediction; a model that predicts no ratings (a ranking model) hands every
    pair to `baseline`, the biases model. A pair with an unknown side gets μ plus the bias of the side that is
    known: an unknown user gets μ + b_i, an unknown movie μ + b_u, both unknown μ. The biases are the model's
    own where it has them, and the baseline's otherwise.
    """
    source = model if model.predicts_ratings else baseline
    warm = pairs.warm_mask()
    prediction = torch.empty(len(pairs), device=pairs.ratings.device)
    prediction[warm] = predict(source, pairs.users[warm], pairs.items[warm])
    cold = ~warm
    if cold.any():
        own, fallback = source.biases(), baseline.biases()
        b_u, b_i = (mine if mine is not None else theirs for mine, theirs in zip(own, fallback, strict=True))
        u, i = pairs.users[cold], pairs.items[cold]
        user_term = torch.where(u >= 0, b_u[u.clamp(min=0)], 0.0)
        item_term = torch.where(i >= 0, b_i[i.clamp(min=0)], 0.0)
        prediction[cold] = source.mean + user_term + item_term
    return prediction.clamp_(*scale)


class SeenItems:
    """Each user's training items grouped by user, so that a block of users' seen pairs is a few index operations."""

    def __init__(self, train: Ratings, n_users: int) -> None:
        order = torch.argsort(train.users, stable=True)
        self.items = train.items[order]
        self.starts = row_pointers(torch.bincount(train.users, minlength=n_users))

    def count(self) -> torch.Tensor:
        return self.starts.diff()

    def pairs(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(row in `users`, item) for every training rating of `users`."""
        lengths = self.starts[users + 1] - self.starts[users]
        rows = torch.repeat_interleave(torch.arange(len(users), device=users.device), lengths)
        shift = torch.repeat_interleave(self.starts[users] - (torch.cumsum(lengths, 0) - lengths), lengths)
        return rows, self.items[torch.arange(len(rows), device=users.device) + shift]


@torch.no_grad()
def top_unseen(
    model: Recommender, users: torch.Tensor, seen: SeenItems, n: int, progress: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores and indices of each user's n best items among those the user did not rate in training.

    Row k of the result is for users[k]. Users are scored in blocks against the whole catalogue by the model's
    ranker; an item the user has already rated scores -inf, so it ranks last.
    """
    model.eval()
    rank = model.ranker()
    block = max(1, SCORES_PER_BLOCK // model.n_items)
    buffer = torch.empty(min(block, max(len(users), 1)), model.n_items, device=users.device)
    values, indices = [], []
    starts = range(0, len(users), block)
    for start in tqdm(starts, desc="top-N by user block", leave=False, disable=None if progress else True):
        block_users = users[start : start + block]
        scores = buffer[: len(block_users)]
        rank(block_users, scores)
        scores[seen.pairs(block_users)] = -math.inf
        top = scores.topk(min(n, model.n_items), dim=1)
        values.append(top.values)
        indices.append(top.indices)
    if not values:
        empty = torch.zeros(0, min(n, model.n_items), device=users.device)
        return empty, empty.long()
    return torch.cat(values), torch.cat(indices)
