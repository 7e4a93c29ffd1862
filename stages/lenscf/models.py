"""The notebook's three models, three baselines and two models trained to rank, each a small nn.Module.

forward(u, i) is the model's formula for a batch of (user, item) pairs. ranker() returns the fast scorer that
top-N evaluation uses to score blocks of users against the whole catalogue at once; a test holds it equal to
forward() wherever the model ranks by what it predicts. Every constructor argument is kept as an attribute
of the same name, which is what a checkpoint records to rebuild the model.
"""

import math
from collections.abc import Callable
from inspect import signature
from typing import Any

import numpy as np
import torch
from torch import nn

# The notebook's uniform(0, 0.05) makes every starting dot product positive; a small centred normal scored
# better on a holdout slice of training (bench/tune.py).
INIT_STD = 0.01

Ranker = Callable[[torch.Tensor, torch.Tensor], None]  # (users, out): fill out[k, i] with user k's score of item i


def _embedding(n: int, dim: int) -> nn.Embedding:
    table = nn.Embedding(n, dim)
    nn.init.normal_(table.weight, 0.0, INIT_STD)
    return table


def dropout_keep(shape: torch.Size, p: float, device: torch.device) -> torch.Tensor:
    """Dropout's mask as floats: 0 with probability p (rounded to a multiple of 2⁻¹⁶), else 1.

    Drawn as 16-bit integers, four from each random 64-bit word, and compared once into floats. On the CPU the
    words come from NumPy's SFC64 seeded by one draw of torch's generator, so that torch.manual_seed still fixes
    the mask: torch's CPU generator is a serial Mersenne Twister, and its draws were a fifth of collab_fnet's
    training step; SFC64's take 40% of that time. On a GPU torch's own generator is the fast one.
    """
    n = math.prod(shape)
    words = (n + 3) // 4
    if device.type == "cpu":
        seed = int(torch.randint(2**62, ()))
        bits = torch.from_numpy(np.random.SFC64(seed).random_raw(words).view(np.int16))
    else:
        bits = torch.randint(-(2**63), 2**63 - 1, (words,), dtype=torch.int64, device=device).view(torch.int16)
    threshold = round(p * 2**16) - 2**15  # an int16 below it has probability p
    if threshold >= 2**15:  # p rounds to 1, and the threshold would not fit an int16
        return torch.zeros(shape, device=device)
    return torch.ge(bits[:n], threshold, out=torch.empty(n, device=device)).view(shape)


class Dropout(nn.Module):
    """nn.Dropout's semantics (zero with probability p, scale the rest by 1/(1 - p)), with the mask drawn by
    dropout_keep, as the training engine draws it."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        return x * dropout_keep(x.shape, self.p, x.device) * (1.0 / (1.0 - self.p))


def _bias(n: int) -> nn.Embedding:
    table = nn.Embedding(n, 1)
    nn.init.zeros_(table.weight)
    return table


class Recommender(nn.Module):
    """What every model shares: its table sizes, and what evaluation may ask of it."""

    predicts_ratings = True  # False for a model whose scores only rank

    def __init__(self, n_users: int, n_items: int) -> None:
        super().__init__()
        self.n_users, self.n_items = n_users, n_items

    def biases(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(b_u, b_i) in rating units, for pairs one of whose sides training never saw; None where it has none."""
        return None, None

    def ranker(self) -> Ranker:
        raise NotImplementedError


class GlobalMean(Recommender):
    """r̂ = μ: the floor any model must clear. Its biases are zero, so cold pairs get μ too."""

    def __init__(self, n_users: int, n_items: int, mean: float) -> None:
        super().__init__(n_users, n_items)
        self.register_buffer("mean", torch.tensor(float(mean)))

    def forward(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return self.mean.repeat(len(u))

    def biases(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros(self.n_users, device=self.mean.device), torch.zeros(self.n_items, device=self.mean.device)

    def ranker(self) -> Ranker:
        return lambda users, out: out.fill_(self.mean)  # every item ties: top-N is the order of first appearance


class Popularity(Recommender):
    """Ranks movies by their number of training ratings; predicts r̂ = μ + b_i with b_i = Σ(r − μ) / (n_i + damping),
    the movie's mean rating shrunk toward μ by `damping` phantom ratings of μ."""

    def __init__(self, n_users: int, n_items: int, mean: float, damping: float) -> None:
        super().__init__(n_users, n_items)
        self.damping = damping
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("count", torch.zeros(n_items))
        self.register_buffer("item_bias", torch.zeros(n_items))

    def forward(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return self.mean + self.item_bias[i]

    def biases(self) -> tuple[None, torch.Tensor]:
        return None, self.item_bias

    def ranker(self) -> Ranker:
        return lambda users, out: out.copy_(self.count.expand_as(out))


class Biases(Recommender):
    """r̂ = μ + b_u + b_i: how far the models with interactions get beyond who is generous and what is liked."""

    def __init__(self, n_users: int, n_items: int, mean: float) -> None:
        super().__init__(n_users, n_items)
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.user_bias = _bias(n_users)
        self.item_bias = _bias(n_items)

    def forward(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return self.mean + self.user_bias(u).squeeze(1) + self.item_bias(i).squeeze(1)

    def biases(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.user_bias.weight.squeeze(1), self.item_bias.weight.squeeze(1)

    def ranker(self) -> Ranker:
        b_u, b_i = self.biases()

        def rank(users: torch.Tensor, out: torch.Tensor) -> None:
            out.copy_((b_i + self.mean).expand_as(out)).add_(b_u[users].unsqueeze(1))

        return rank


class MF(Recommender):
    """r̂ = μ + p_u · q_i; with mean_offset false, the notebook's r̂ = p_u · q_i."""

    def __init__(self, n_users: int, n_items: int, mean: float, emb_size: int, mean_offset: bool) -> None:
        super().__init__(n_users, n_items)
        self.emb_size, self.mean_offset = emb_size, mean_offset
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.user_emb = _embedding(n_users, emb_size)
        self.item_emb = _embedding(n_items, emb_size)

    @property
    def offset(self) -> torch.Tensor:
        return self.mean if self.mean_offset else torch.zeros_like(self.mean)

    def forward(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return self.offset + (self.user_emb(u) * self.item_emb(i)).sum(1)

    def ranker(self) -> Ranker:
        """p_u · q_i for every item is one matrix product per block of users."""

        def rank(users: torch.Tensor, out: torch.Tensor) -> None:
            torch.matmul(self.user_emb.weight[users], self.item_emb.weight.T, out=out)
            out.add_(self.offset)

        return rank


class MFBias(MF):
    """r̂ = μ + p_u · q_i + b_u + b_i; with mean_offset false, the notebook's p_u · q_i + b_u + b_i."""

    def __init__(self, n_users: int, n_items: int, mean: float, emb_size: int, mean_offset: bool) -> None:
        super().__init__(n_users, n_items, mean, emb_size, mean_offset)
        self.user_bias = _bias(n_users)
        self.item_bias = _bias(n_items)

    def forward(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return super().forward(u, i) + self.user_bias(u).squeeze(1) + self.item_bias(i).squeeze(1)

    def biases(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.user_bias.weight.squeeze(1), self.item_bias.weight.squeeze(1)

    def ranker(self) -> Ranker:
        dot = super().ranker()
        b_u, b_i = self.biases()

        def rank(users: torch.Tensor, out: torch.Tensor) -> None:
            dot(users, out)
            out.add_(b_i).add_(b_u[users].unsqueeze(1))

        return rank


class CollabFNet(Recommender):
    """r̂ = μ + W₂ · relu(W₁ · dropout(relu([p_u; q_i])) + c₁) + c₂."""

    def __init__(
        self, n_users: int, n_items: int, mean: float, emb_size: int, n_hidden: int, dropout: float, mean_offset: bool
    ) -> None:
        super().__init__(n_users, n_items)
        self.emb_size, self.n_hidden, self.dropout, self.mean_offset = emb_size, n_hidden, dropout, mean_offset
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.user_emb = _embedding(n_users, emb_size)
        self.item_emb = _embedding(n_items, emb_size)
        self.drop = Dropout(dropout)
        self.lin1 = nn.Linear(2 * emb_size, n_hidden)
        self.lin2 = nn.Linear(n_hidden, 1)

    def forward(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        x = self.drop(torch.relu(torch.cat([self.user_emb(u), self.item_emb(i)], dim=1)))
        offset = self.mean if self.mean_offset else 0.0
        return offset + self.lin2(torch.relu(self.lin1(x))).squeeze(1)

    def ranker(self) -> Ranker:
        """At evaluation dropout is the identity, so W₁·[relu(p); relu(q)] = W_u·relu(p) + W_i·relu(q): the item
        half is computed once per movie, the user half once per user, and each pair costs an add, a ReLU and a
        dot product of n_hidden numbers."""
        w_user, w_item = self.lin1.weight.split(self.emb_size, dim=1)
        item_part = torch.relu(self.item_emb.weight) @ w_item.T  # (n_items, n_hidden)
        w2, c2 = self.lin2.weight.squeeze(0), self.lin2.bias + (self.mean if self.mean_offset else 0.0)
        chunk = max(1, (1 << 21) // (self.n_hidden * self.n_items))  # users per (users, items, hidden) block

        def rank(users: torch.Tensor, out: torch.Tensor) -> None:
            user_part = torch.relu(self.user_emb.weight[users]) @ w_user.T + self.lin1.bias
            for start in range(0, len(users), chunk):
                hidden = torch.relu(user_part[start : start + chunk, None, :] + item_part[None, :, :])
                torch.matmul(hidden, w2, out=out[start : start + chunk])
            out.add_(c2)

        return rank


class Ranking(Recommender):
    """x̂_ui = p_u · q_i, a ranking score: what the two models trained to rank share. They predict no ratings;
    evaluation scores their rating error with the biases baseline."""

    predicts_ratings = False

    def __init__(self, n_users: int, n_items: int, emb_size: int) -> None:
        super().__init__(n_users, n_items)
        self.emb_size = emb_size
        self.user_emb = _embedding(n_users, emb_size)
        self.item_emb = _embedding(n_items, emb_size)

    def forward(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return (self.user_emb(u) * self.item_emb(i)).sum(1)

    def ranker(self) -> Ranker:
        def rank(users: torch.Tensor, out: torch.Tensor) -> None:
            torch.matmul(self.user_emb.weight[users], self.item_emb.weight.T, out=out)

        return rank


class BPR(Ranking):
    """x̂_ui = p_u · q_i + b_i, trained so that a movie the user rated outscores one they did not (Rendle et al.,
    2009). The bias lets a sampled pair learn a movie's general appeal apart from the user's taste."""

    def __init__(self, n_users: int, n_items: int, emb_size: int) -> None:
        super().__init__(n_users, n_items, emb_size)
        self.item_bias = _bias(n_items)

    def forward(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return super().forward(u, i) + self.item_bias(i).squeeze(1)

    def ranker(self) -> Ranker:
        dot = super().ranker()

        def rank(users: torch.Tensor, out: torch.Tensor) -> None:
            dot(users, out)
            out.add_(self.item_bias.weight.squeeze(1))

        return rank


class IALS(Ranking):
    """x̂_ui = p_u · q_i fit to whether the user rated the movie at all: 1 for each rated pair, weighted 1 + alpha,
    and 0 for every other pair of the catalogue, weighted 1 (implicit ALS: Hu, Koren & Volinsky, ICDM 2008).
    Its fit, in als.py, needs no bias: the zeros of every unrated pair already say how popular a movie is."""


MODELS: dict[str, type[Recommender]] = {
    "global_mean": GlobalMean,
    "popularity": Popularity,
    "biases": Biases,
    "mf": MF,
    "mf_bias": MFBias,
    "collab_fnet": CollabFNet,
    "bpr": BPR,
    "ials": IALS,
}


def build_model(name: str, n_users: int, n_items: int, mean: float, args: dict[str, Any]) -> Recommender:
    """A fresh model from its own keys; μ goes to the models whose formula has it."""
    cls = MODELS[name]
    extra = {"mean": mean} if "mean" in signature(cls).parameters else {}
    return cls(n_users, n_items, **extra, **args)
