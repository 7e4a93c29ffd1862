"""The encoded splits as tensors, read through one function, so every stage sees the same tables the same way."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lenscf.artifacts import column_values, read_json, read_table

ENCODED = Path("data/encoded")


def row_pointers(counts: torch.Tensor) -> torch.Tensor:
    """Where each row's ratings start, and after the last where they end, for ratings grouped by row with
    these counts: a CSR matrix's row pointers."""
    return torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])


@dataclass
class Ratings:
    """One split as three aligned tensors, so a batch is three index operations, not a DataLoader."""

    users: torch.Tensor
    items: torch.Tensor
    ratings: torch.Tensor

    @classmethod
    def from_arrays(
        cls, users: np.ndarray, items: np.ndarray, ratings: np.ndarray, device: torch.device | str = "cpu"
    ) -> "Ratings":
        def column(values: np.ndarray, dtype: np.dtype, torch_dtype: torch.dtype) -> torch.Tensor:
            # Arrow hands out read-only arrays; a writable copy in the tensor's own dtype is what torch wants.
            return torch.from_numpy(np.array(values, dtype=dtype)).to(device=device, dtype=torch_dtype)

        return cls(
            column(users, np.int64, torch.long),
            column(items, np.int64, torch.long),
            column(ratings, np.float32, torch.float32),
        )

    def __len__(self) -> int:
        return len(self.ratings)

    def subset(self, index: torch.Tensor) -> "Ratings":
        return Ratings(self.users[index], self.items[index], self.ratings[index])

    def warm_mask(self) -> torch.Tensor:
        """Which ratings have a user and an item that training saw (encode marks the others with -1)."""
        return (self.users >= 0) & (self.items >= 0)

    def warm(self) -> "Ratings":
        return self.subset(self.warm_mask())


@dataclass
class Encoded:
    train: Ratings
    val: Ratings  # every validation rating; user or item is -1 where training never saw it
    n_users: int
    n_items: int
    rating_scale: tuple[float, float]
    val_ids: tuple[np.ndarray, np.ndarray] | None  # MovieLens userId and movieId of each validation rating
    catalogue: dict[str, np.ndarray] | None  # userId by user index; movieId and title by item index


def load_encoded(device: torch.device | str = "cpu", with_ids: bool = False, with_catalogue: bool = False) -> Encoded:
    """The encode stage's splits and table sizes; `with_ids` adds the validation ratings' MovieLens ids, and
    `with_catalogue` the MovieLens ids and titles behind the user and item indices."""
    info = read_json(ENCODED / "info.json")
    catalogue = None
    if with_catalogue:
        users = read_table(ENCODED / "users.parquet", ["userId"])
        items = read_table(ENCODED / "items.parquet", ["movieId", "title"])
        catalogue = {
            "userId": column_values(users, "userId"),
            "movieId": column_values(items, "movieId"),
            "title": items["title"].to_numpy(zero_copy_only=False),
        }
    train = read_table(ENCODED / "train.parquet", ["user", "item", "rating"])
    val = read_table(ENCODED / "val.parquet", ["user", "item", "rating", *(["userId", "movieId"] if with_ids else [])])
    return Encoded(
        train=Ratings.from_arrays(*(column_values(train, c) for c in ("user", "item", "rating")), device=device),
        val=Ratings.from_arrays(*(column_values(val, c) for c in ("user", "item", "rating")), device=device),
        n_users=info["n_users"],
        n_items=info["n_items"],
        rating_scale=tuple(info["rating_scale"]),
        val_ids=(column_values(val, "userId"), column_values(val, "movieId")) if with_ids else None,
        catalogue=catalogue,
    )
