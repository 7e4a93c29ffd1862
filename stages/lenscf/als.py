"""Implicit ALS, ials's fit: alternating closed-form solves for the user table and the item table.

The target is every (user, movie) cell of the catalogue: 1 where the user rated the movie, weighted 1 + alpha,
and 0 everywhere else, weighted 1. With λ = reg on every row the objective is

    L = Σ_u Σ_i c_ui (t_ui − p_u · q_i)² + λ (‖P‖² + ‖Q‖²).

Holding the item table Q fixed, each user's row is a ridge regression with a closed-form solution,

    (QᵀQ + alpha · Q_uᵀ Q_u + λ I) p_u = (1 + alpha) Σ_{i rated by u} q_i,

where QᵀQ is shared by every user and Q_u holds the rows of the movies u rated. The unrated cells enter only
through QᵀQ, so a sweep costs O(ratings · k + (users + items) · k²), never users × movies. Items likewise.

The systems are solved by conjugate gradient, warm-started from the last sweep (Takács, Pilászy & Tikk, RecSys
2011), every user's system advancing at once: a product with their matrices is one dense product with QᵀQ plus,
over the rated pairs only, a sampled product and a sparse one, the two kernels the Adam engine also uses. With
as many steps as the rank, CG solves exactly (a test holds it to torch.linalg.solve); a few steps per sweep
suffice once the start is close.
"""

import warnings
from dataclasses import dataclass

import torch
from tqdm import tqdm

from lenscf.models import IALS
from lenscf.params import SolverParams
from lenscf.splits import Ratings, row_pointers

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")


@dataclass
class Rated:
    """Which movies each user rated (or, transposed, which users rated each movie), as a CSR pattern."""

    crow: torch.Tensor
    col: torch.Tensor
    size: tuple[int, int]

    @classmethod
    def of(cls, rows: torch.Tensor, cols: torch.Tensor, n_rows: int, n_cols: int) -> "Rated":
        """A pair rated twice is rated once: the target says only whether it was."""
        key = torch.unique(rows * n_cols + cols)  # sorted by row, then column
        counts = torch.bincount(key // n_cols, minlength=n_rows)
        return cls(row_pointers(counts).int(), (key % n_cols).int(), (n_rows, n_cols))

    def matrix(self, values: torch.Tensor) -> torch.Tensor:
        return torch.sparse_csr_tensor(self.crow, self.col, values, size=self.size, check_invariants=False)

    def dots(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """rows[r] · cols[c] for every rated (r, c), in the pattern's order."""
        zeros = self.matrix(rows.new_zeros(len(self.col)))
        return torch.sparse.sampled_addmm(zeros, rows, cols.T).values()


def solve(start: torch.Tensor, fixed: torch.Tensor, rated: Rated, alpha: float, reg: float, steps: int) -> torch.Tensor:
    """The rows that minimise L with the other side's table `fixed`, by `steps` of conjugate gradient from
    `start`, one system per row, all advanced together."""
    gram = fixed.T @ fixed

    def product(v: torch.Tensor) -> torch.Tensor:
        """Each row's (QᵀQ + alpha · Q_uᵀ Q_u + λ I) v_u."""
        return torch.addmm(rated.matrix(rated.dots(v, fixed) * alpha) @ fixed, v, gram).add_(v, alpha=reg)

    tiny = torch.finfo(start.dtype).tiny
    x = start.clone()
    residual = rated.matrix(torch.full_like(rated.col, 1 + alpha, dtype=start.dtype)) @ fixed - product(x)
    direction = residual.clone()
    norm = residual.square().sum(1, keepdim=True)
    for _ in range(steps):
        moved = product(direction)
        step = norm / (direction * moved).sum(1, keepdim=True).clamp_min(tiny)
        x.addcmul_(step, direction)
        residual.addcmul_(step, moved, value=-1.0)
        new_norm = residual.square().sum(1, keepdim=True)
        direction = residual + direction * (new_norm / norm.clamp_min(tiny))
        norm = new_norm
    return x


def objective(users: torch.Tensor, items: torch.Tensor, rated: Rated, alpha: float, reg: float) -> float:
    """L per cell of the catalogue. Σ over every cell of x̂² is the sum of (PᵀP) ∘ (QᵀQ); the rated cells then
    swap their x̂² for (1 + alpha)(1 − x̂)²."""
    everything = ((users.T @ users).double() * (items.T @ items).double()).sum()
    x = rated.dots(users, items).double()
    swap = ((1 + alpha) * (1 - x).square() - x.square()).sum()
    penalty = reg * (users.double().square().sum() + items.double().square().sum())
    return ((everything + swap + penalty) / (users.shape[0] * items.shape[0])).item()


def fit_als(model: IALS, train: Ratings, params: SolverParams) -> dict:
    """Alternate the users' and the items' solves `sweeps` times from the model's initial tables; returns the
    record of L after each sweep."""
    by_user = Rated.of(train.users, train.items, model.n_users, model.n_items)
    by_item = Rated.of(train.items, train.users, model.n_items, model.n_users)
    users, items = model.user_emb.weight.detach().clone(), model.item_emb.weight.detach().clone()
    history = []
    for sweep in tqdm(range(1, params.sweeps + 1), desc="IALS sweeps", leave=False, disable=None):
        users = solve(users, items, by_user, params.alpha, params.reg, params.cg_steps)
        items = solve(items, users, by_item, params.alpha, params.reg, params.cg_steps)
        history.append({"sweep": sweep, "objective": objective(users, items, by_user, params.alpha, params.reg)})
    with torch.no_grad():
        model.user_emb.weight.copy_(users)
        model.item_emb.weight.copy_(items)
    return {"sweeps": params.sweeps, "history": history}
