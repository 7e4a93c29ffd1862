"""The notebook's three models and two baselines, one small module each, with their checkpoint format."""

import io
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from artifacts import write_bytes
from errors import PipelineError
from params import TrainParams

# The notebook's uniform(0, 0.05) makes every starting dot product positive; a small centred
# normal scored better on a holdout slice of training (bench/tune.py).
INIT_STD = 0.01
ROWS_PER_BLOCK = 1 << 17  # (user, item) rows scored at once at inference: bounds memory on the larger releases


def _embedding(n: int, dim: int, std: float = INIT_STD) -> nn.Embedding:
    """Sparse, so each step's gradient and optimiser update touch only the rows in the batch."""
    table = nn.Embedding(n, dim, sparse=True)
    nn.init.normal_(table.weight, 0.0, std)
    return table


def _bias(n: int) -> nn.Embedding:
    table = nn.Embedding(n, 1, sparse=True)
    nn.init.zeros_(table.weight)
    return table


class Recommender(nn.Module):
    """What every model shares: the output's form and the L2 penalty of the rows a batch touches."""

    def __init__(self, mean: float, mean_offset: bool, y_range: tuple[float, float] | None) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(float(mean) if mean_offset else 0.0))
        self.y_range = y_range

    def output(self, x: torch.Tensor) -> torch.Tensor:
        """A raw score plus the optional global-mean offset, squashed into y_range when one is set."""
        x = x + self.mean
        if self.y_range is None:
            return x
        low, high = self.y_range
        return low + (high - low) * torch.sigmoid(x)

    def penalty(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        """Sum of squares of the embedding rows this batch reads, counted once per rating."""
        total = torch.zeros((), device=self.mean.device)
        for name, table in self.named_children():
            if isinstance(table, nn.Embedding):
                total = total + table(u if name.startswith("user") else i).pow(2).sum()
        return total


class GlobalMean(Recommender):
    """r̂ = μ: the floor any model must clear."""

    def __init__(self, n_users: int, n_items: int, mean: float, **_: Any) -> None:
        super().__init__(mean, mean_offset=True, y_range=None)

    def forward(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return self.mean.repeat(len(u))


class Biases(Recommender):
    """r̂ = μ + b_u + b_i: how far MF's interactions get beyond who is generous and what is liked."""

    def __init__(self, n_users: int, n_items: int, mean: float, y_range=None, **_: Any) -> None:
        super().__init__(mean, mean_offset=True, y_range=y_range)
        self.user_bias = _bias(n_users)
        self.item_bias = _bias(n_items)

    def forward(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return self.output(self.user_bias(u).squeeze(1) + self.item_bias(i).squeeze(1))


class MF(Recommender):
    """r̂ = p_u · q_i."""

    def __init__(
        self, n_users: int, n_items: int, mean: float, emb_size: int, mean_offset=False, y_range=None, **_: Any
    ) -> None:
        super().__init__(mean, mean_offset, y_range)
        self.user_emb = _embedding(n_users, emb_size)
        self.item_emb = _embedding(n_items, emb_size)

    def dot(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return (self.user_emb(u) * self.item_emb(i)).sum(1)

    def forward(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return self.output(self.dot(u, i))


class MFBias(MF):
    """r̂ = p_u · q_i + b_u + b_i."""

    def __init__(self, n_users: int, n_items: int, mean: float, emb_size: int, **options: Any) -> None:
        super().__init__(n_users, n_items, mean, emb_size, **options)
        self.user_bias = _bias(n_users)
        self.item_bias = _bias(n_items)

    def forward(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return self.output(self.dot(u, i) + self.user_bias(u).squeeze(1) + self.item_bias(i).squeeze(1))


class CollabFNet(Recommender):
    """r̂ = W₂ · relu(W₁ · dropout(relu([p_u; q_i])) + c₁) + c₂."""

    def __init__(
        self,
        n_users: int,
        n_items: int,
        mean: float,
        emb_size: int,
        n_hidden: int,
        dropout: float,
        mean_offset=False,
        y_range=None,
        **_: Any,
    ) -> None:
        super().__init__(mean, mean_offset, y_range)
        self.user_emb = _embedding(n_users, emb_size)
        self.item_emb = _embedding(n_items, emb_size)
        self.drop = nn.Dropout(dropout)
        self.lin1 = nn.Linear(2 * emb_size, n_hidden)
        self.lin2 = nn.Linear(n_hidden, 1)

    def forward(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        x = self.drop(torch.relu(torch.cat([self.user_emb(u), self.item_emb(i)], dim=1)))
        return self.output(self.lin2(torch.relu(self.lin1(x))).squeeze(1))


MODELS: dict[str, type[Recommender]] = {
    "global_mean": GlobalMean,
    "biases": Biases,
    "mf": MF,
    "mf_bias": MFBias,
    "collab_fnet": CollabFNet,
}


def build_model(params: TrainParams, n_users: int, n_items: int, mean: float) -> Recommender:
    """Seeded, so the same params give the same initial weights (and the same dropout masks after)."""
    torch.manual_seed(params.seed)
    return MODELS[params.model](n_users, n_items, mean, **params.as_dict())


def save_checkpoint(path: Path, model: Recommender, params: TrainParams, n_users: int, n_items: int) -> None:
    """A state_dict plus what rebuilds the model; through a buffer because torch.save names records after the file."""
    buffer = io.BytesIO()
    torch.save(
        {"params": params.as_dict(), "n_users": n_users, "n_items": n_items, "state_dict": model.state_dict()}, buffer
    )
    write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path, device: str | torch.device = "cpu") -> Recommender:
    """weights_only refuses pickled code, so a tampered checkpoint cannot run anything."""
    if not path.exists():
        raise PipelineError(f"{path}: no trained model; run `dvc repro train@{path.stem}` first")
    checkpoint = torch.load(path, map_location=device, weights_only=True)
    params = TrainParams(**checkpoint["params"])
    model = build_model(params, checkpoint["n_users"], checkpoint["n_items"], mean=0.0)
    model.load_state_dict(checkpoint["state_dict"])
    return model.to(device).eval()


@torch.no_grad()
def predict(model: Recommender, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """Predicted ratings of (user, item) pairs, scored in blocks of rows so memory stays bounded."""
    model.eval()
    blocks = zip(users.split(ROWS_PER_BLOCK), items.split(ROWS_PER_BLOCK), strict=True)
    return torch.cat([model(u, i) for u, i in blocks])


@torch.no_grad()
def top_unseen(
    model: Recommender, users: torch.Tensor, seen_rows: torch.Tensor, seen_items: torch.Tensor, n_items: int, n: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores and indices of each user's n best items among those not seen in training.

    Row k of the result is for users[k]; (seen_rows, seen_items) are the pairs to leave out.
    """
    items = torch.arange(n_items, device=users.device)
    scores = predict(model, users.repeat_interleave(n_items), items.repeat(len(users))).view(len(users), n_items)
    scores[seen_rows, seen_items] = -math.inf
    top = scores.topk(min(n, n_items), dim=1)
    return top.values, top.indices
