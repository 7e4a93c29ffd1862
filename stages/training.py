"""The training loop every model shares: minibatches over index tensors, lazy Adam, optional early stopping."""

import copy
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from models import Recommender, predict
from params import TrainParams
from ratings import read_csv

ENCODED = Path("data/encoded")


@dataclass
class Ratings:
    """One split as three aligned tensors, so a batch is three index operations, not a DataLoader."""

    users: torch.Tensor
    items: torch.Tensor
    ratings: torch.Tensor

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, device: torch.device | str = "cpu") -> "Ratings":
        return cls(
            torch.as_tensor(frame["user"].to_numpy(), dtype=torch.long, device=device),
            torch.as_tensor(frame["item"].to_numpy(), dtype=torch.long, device=device),
            torch.as_tensor(frame["rating"].to_numpy(), dtype=torch.float32, device=device),
        )

    def __len__(self) -> int:
        return len(self.ratings)

    def subset(self, index: torch.Tensor) -> "Ratings":
        return Ratings(self.users[index], self.items[index], self.ratings[index])


def load_encoded(device: torch.device | str = "cpu") -> tuple[Ratings, Ratings, int, int]:
    """The encode stage's training and validation splits as tensors, and the table sizes models are built for."""
    train, val = (Ratings.from_frame(read_csv(ENCODED / f"{split}.csv"), device) for split in ("train", "val"))
    return train, val, len(read_csv(ENCODED / "users.csv")), len(read_csv(ENCODED / "items.csv"))


def pick_device(name: str) -> torch.device:
    """`auto` takes CUDA when there is one; everything else runs unchanged on the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def carve_holdout(train: Ratings, frac: float, seed: int) -> tuple[Ratings, Ratings | None]:
    """Set aside a random slice of training for early stopping, so the validation split stays untouched."""
    if frac == 0:
        return train, None
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed)).to(train.users.device)
    n_holdout = round(frac * len(train))
    kept, holdout = train.subset(order[n_holdout:]), train.subset(order[:n_holdout])
    # As in encode: a rating whose user or item is left without training ratings cannot be judged.
    seen_users = torch.bincount(kept.users, minlength=int(train.users.max()) + 1) > 0
    seen_items = torch.bincount(kept.items, minlength=int(train.items.max()) + 1) > 0
    return kept, holdout.subset(seen_users[holdout.users] & seen_items[holdout.items])


def make_optimizers(model: Recommender, lr: float) -> list[torch.optim.Optimizer]:
    """SparseAdam for embeddings (work proportional to the rows touched), Adam for the few dense weights."""
    sparse = [p for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()]
    dense = [p for p in model.parameters() if all(p is not s for s in sparse)]
    groups = [(torch.optim.SparseAdam, sparse), (torch.optim.Adam, dense)]
    return [make(params, lr=lr) for make, params in groups if params]


def mse(model: Recommender, data: Ratings) -> float:
    return F.mse_loss(predict(model, data.users, data.items), data.ratings).item()


def fit(model: Recommender, train: Ratings, val: Ratings, params: TrainParams) -> list[dict[str, float]]:
    """Train in place and return per-epoch history. Validation loss is recorded, never acted on."""
    train, holdout = carve_holdout(train, params.holdout_frac, params.seed)
    optimizers = make_optimizers(model, params.lr)
    shuffle = torch.Generator().manual_seed(params.seed)
    history: list[dict[str, float]] = []
    best_loss, best_epoch, best_state = float("inf"), 0, None
    for epoch in range(1, params.epochs + 1):
        model.train()
        order = torch.randperm(len(train), generator=shuffle).to(train.users.device)
        batches = tqdm(
            torch.split(order, params.batch_size or len(train)),
            desc=f"{params.model} epoch {epoch}",
            leave=False,
            disable=None,
        )
        seen, total = 0, 0.0
        for index in batches:
            batch = train.subset(index)
            loss = F.mse_loss(model(batch.users, batch.items), batch.ratings)
            if optimizers:
                objective = loss + params.l2 * model.penalty(batch.users, batch.items) / len(index)
                for optimizer in optimizers:
                    optimizer.zero_grad()
                objective.backward()
                for optimizer in optimizers:
                    optimizer.step()
            seen, total = seen + len(index), total + loss.item() * len(index)
            batches.set_postfix(loss=f"{total / seen:.4f}", refresh=False)
        row = {"epoch": epoch, "train_loss": total / seen}
        if holdout is not None:
            row["holdout_loss"] = mse(model, holdout)
        row["val_loss"] = mse(model, val)
        history.append(row)
        if holdout is not None:
            if row["holdout_loss"] < best_loss:
                best_loss, best_epoch, best_state = row["holdout_loss"], epoch, copy.deepcopy(model.state_dict())
            elif epoch - best_epoch >= params.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    return history
