"""Implicit ALS: its conjugate-gradient solve against the closed form, its objective against the sum over every
cell of the catalogue, and each sweep lowering that objective."""

import itertools

import pytest
import torch

from lenscf.als import Rated, objective, solve

N_USERS, N_ITEMS, K = 7, 11, 3


def rated_pairs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    keys = torch.unique(torch.randint(0, N_USERS * N_ITEMS, (30,), generator=g))
    return keys // N_ITEMS, keys % N_ITEMS


def tables(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(n, K, generator=g, dtype=torch.float64) for n in (N_USERS, N_ITEMS))


def dense_objective(
    users: torch.Tensor, items: torch.Tensor, rated: torch.Tensor, alpha: float, reg: float
) -> torch.Tensor:
    """The objective as its definition states it: every cell, 1 + alpha on a rated one, per cell."""
    weight = 1 + alpha * rated
    loss = (weight * (rated - users @ items.T).square()).sum() + reg * (users.square().sum() + items.square().sum())
    return loss / rated.numel()


def dense_rated(users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    out = torch.zeros(N_USERS, N_ITEMS, dtype=torch.float64)
    out[users, items] = 1.0
    return out


def test_a_pair_rated_twice_counts_once() -> None:
    rated = Rated.of(torch.tensor([0, 0, 1, 0]), torch.tensor([2, 2, 0, 1]), 3, 4)
    assert rated.crow.tolist() == [0, 2, 3, 3] and rated.col.tolist() == [1, 2, 0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_enough_cg_steps_give_the_closed_form_solution(seed: int) -> None:
    users, items = rated_pairs(seed)
    start, fixed = tables(seed)
    alpha, reg = 4.0, 0.7
    got = solve(start, fixed, Rated.of(users, items, N_USERS, N_ITEMS), alpha, reg, steps=2 * K)
    r = dense_rated(users, items)
    for u in range(N_USERS):
        q_u = fixed[r[u] > 0]
        a = fixed.T @ fixed + alpha * q_u.T @ q_u + reg * torch.eye(K, dtype=torch.float64)
        torch.testing.assert_close(got[u], torch.linalg.solve(a, (1 + alpha) * q_u.sum(0)))


def test_the_solution_is_where_autograds_gradient_of_the_objective_vanishes() -> None:
    users, items = rated_pairs()
    start, fixed = tables()
    solved = solve(start, fixed, Rated.of(users, items, N_USERS, N_ITEMS), 4.0, 0.7, steps=2 * K).requires_grad_()
    dense_objective(solved, fixed, dense_rated(users, items), 4.0, 0.7).backward()
    assert solved.grad.abs().max() < 1e-10
    moved = start.clone().requires_grad_()
    dense_objective(moved, fixed, dense_rated(users, items), 4.0, 0.7).backward()
    assert moved.grad.abs().max() > 1e-3


@pytest.mark.parametrize("seed", [0, 1])
def test_objective_is_the_sum_over_every_cell(seed: int) -> None:
    users, items = rated_pairs(seed)
    p, q = tables(seed)
    got = objective(p, q, Rated.of(users, items, N_USERS, N_ITEMS), 2.5, 0.3)
    assert got == pytest.approx(dense_objective(p, q, dense_rated(users, items), 2.5, 0.3).item(), rel=1e-12)


def test_each_exact_sweep_lowers_the_objective() -> None:
    users, items = rated_pairs()
    by_user, by_item = Rated.of(users, items, N_USERS, N_ITEMS), Rated.of(items, users, N_ITEMS, N_USERS)
    p, q = tables()
    losses = [objective(p, q, by_user, 4.0, 0.7)]
    for _ in range(5):
        p = solve(p, q, by_user, 4.0, 0.7, steps=2 * K)
        losses.append(objective(p, q, by_user, 4.0, 0.7))
        q = solve(q, p, by_item, 4.0, 0.7, steps=2 * K)
        losses.append(objective(p, q, by_user, 4.0, 0.7))
    assert all(later <= earlier + 1e-12 for earlier, later in itertools.pairwise(losses))
    assert losses[-1] < 0.5 * losses[0]
