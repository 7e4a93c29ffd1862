"""The training engine: every model's fit, fast enough for ml-25m on a two-core laptop.

What makes it fast, and why it still trains the notebook's models with Adam:

- Minibatches are drawn once per fit (a seeded shuffle cut into `batch_size` ratings, or a share of them) and
  visited in a fresh random order every epoch, so each batch's sparse structure is built once: the table rows
  it touches and the CSR index arrays its gradients need.
- biases, mf, mf_bias and bpr are all dot products of one table W: user rows [p_u, b_u, 1] and item rows
  [q_i, 1, b_i], so that offset + W_u · W_i = offset + p_u · q_i + b_u + b_i (a model without a bias leaves
  out its columns). For the squared error the batch's predictions are one sampled matrix product, and the
  gradients of the rows it touches are two sparse-dense products, E · Q and Eᵀ · P, E holding its errors.
- collab_fnet's network has its gradients written out as well, on one gather of the batch's rows; the engine
  sums the input's gradient per table row with a sparse product, as above.
- Rows are updated by lazy Adam: only the rows a batch touches step, as with torch.optim.SparseAdam. With
  `row_scaling: sqrt` a row's step is multiplied by √(its ratings in the batch): Adam's square-root scaling
  rule for larger batches (Malladi et al., NeurIPS 2022) applied per row, whose own batch is its count. It
  lets batches of thousands train nearly as well as batches of hundreds, at a fraction of the cost. With
  full batches and no scaling every row steps every epoch, and this is torch.optim.Adam. A batch that touches most
  of the table's rows (`spans_table`) steps all of them in place and puts the untouched ones back: the same lazy
  Adam without copying each row and its moments out and back, which was a third of mf_bias's fit on a synthetic
  ml-1m.

`objective` and `pairwise_objective` state in autograd terms what each fit minimises; tests hold every
closed-form gradient here equal to autograd's gradient of them.
"""

import ctypes
import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm import tqdm

from lenscf.als import fit_als
from lenscf.errors import PipelineError
from lenscf.models import (
    BPR,
    MF,
    Biases,
    CollabFNet,
    GlobalMean,
    MFBias,
    Popularity,
    Recommender,
    build_model,
    dropout_keep,
)
from lenscf.params import EngineParams, ModelParams
from lenscf.scoring import predict
from lenscf.splits import Ratings, row_pointers

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
# On the CPU torch takes sqrt from MKL's vector maths, which sets itself up on its first call. When that first call
# came from two threads at once (lazy Adam's first step), one of them sometimes rounded it differently, and one
# process in ten to twenty trained a model that differed in the last bits. Making the first call here, on one
# thread, ended it: `python bench/determinism.py` found 6 such processes in 60 without this line, none in 108 with it.
torch.sqrt(torch.ones(1))
EPS = 1e-8  # torch.optim.Adam's default, which the notebook used (its betas are params: beta1, beta2)
ROWS_PER_CHUNK = 2048  # rows of 100 numbers: a chunk's Adam state is 1.6 MB, within a 2 MB L2 cache
EVERY_ROW_FROM = 0.75  # a batch touching this share of the table's rows steps all of them (see spans_table)
PAIRS_PER_CHUNK = 8192  # BPR pairs scored at a time, so that a batch of any size reuses its temporaries from cache


def keep_freed_memory() -> None:
    """Let the process reuse the memory one step frees for the next step, as glibc alone does not.

    Every step allocates and frees temporaries of the same few sizes. glibc hands a freed block back to the system
    once more than twice the largest recent block is free, and a fresh block costs a page fault per 4 kB page as
    it is first written: a tenth of collab_fnet's step and of mf's, timed by hand. Blocks up to 32 MB now come
    from the heap, which keeps up to 64 MB free: glibc's own ceilings for the two limits, which it reaches slowly.
    """
    if "CS_GNU_LIBC_VERSION" not in getattr(os, "confstr_names", {}):
        return  # not glibc: its allocator keeps its own counsel
    libc = ctypes.CDLL("libc.so.6")
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    libc.mallopt(m_mmap_threshold, 32 << 20)
    libc.mallopt(m_trim_threshold, 64 << 20)


def pick_device(name: str) -> torch.device:
    """`auto` takes CUDA when there is one; everything else runs unchanged on the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _penalty(
    model: Recommender,
    u: torch.Tensor,
    i: torch.Tensor,
    l2: float,
    bias_l2: float | None = None,
    row_l2: float = 0.0,
    ratings: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """l2 times the sum of squares of the table rows each pair reads, once per pair: tables of users and of items.
    With bias_l2, the bias tables (user_bias, item_bias) weigh that instead. row_l2 is each row's weight once per
    epoch, whatever its number of ratings (a Gaussian prior on the row): each pair reading a row adds row_l2 / (the
    row's ratings in the fit, `ratings`: per user, per item)."""
    total = torch.zeros((), device=u.device)
    for name, table in model.named_children():
        if isinstance(table, torch.nn.Embedding):
            weight = bias_l2 if bias_l2 is not None and name.endswith("_bias") else l2
            index = u if name.startswith("user") else i
            squares = table(index).pow(2).sum(1)  # one per pair
            total = total + weight * squares.sum()
            if row_l2:
                per_row = ratings[0] if name.startswith("user") else ratings[1]
                total = total + row_l2 * (squares / per_row[index]).sum()
    return total


def objective(
    model: Recommender,
    u: torch.Tensor,
    i: torch.Tensor,
    r: torch.Tensor,
    l2: float,
    bias_l2: float | None = None,
    row_l2: float = 0.0,
    ratings: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """What a rating model's fit minimises on a batch: the mean squared error plus the mean penalty."""
    return F.mse_loss(model(u, i), r) + _penalty(model, u, i, l2, bias_l2, row_l2, ratings) / len(r)


def pairwise_objective(
    model: Recommender, u: torch.Tensor, i: torch.Tensor, j: torch.Tensor, l2: float
) -> torch.Tensor:
    """What BPR's fit minimises: -log σ(x̂_ui - x̂_uj) for a rated item i and a sampled item j, plus the penalty."""
    loss = F.softplus(model(u, j) - model(u, i)).mean()
    return loss + (_penalty(model, u, i, l2) + _penalty(model, u[:0], j, l2)) / len(u)


def carve_holdout(train: Ratings, frac: float, seed: int) -> tuple[Ratings, Ratings]:
    """Set aside a random slice of training for early stopping, so the validation split stays untouched."""
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed)).to(train.users.device)
    n_holdout = round(frac * len(train))
    kept, holdout = train.subset(order[n_holdout:]), train.subset(order[:n_holdout])
    # As in encode: a rating whose user or item is left without training ratings cannot be judged.
    seen_users = torch.bincount(kept.users, minlength=int(train.users.max()) + 1) > 0
    seen_items = torch.bincount(kept.items, minlength=int(train.items.max()) + 1) > 0
    return kept, holdout.subset(seen_users[holdout.users] & seen_items[holdout.items])


# --- batches ----------------------------------------------------------------------------------------------


@dataclass
class Batch:
    """A batch's ratings sorted by user, and the table rows they touch: its users, then its items. A batch that
    spans the table (see spans_table) holds every row instead, those it does not touch counted 0."""

    ratings: torch.Tensor
    rows: torch.Tensor  # table rows, ascending: users as they are, items offset by the number of users
    n_users: int  # how many of `rows` are users
    user_of: torch.Tensor  # each rating's user, as a position among the batch's users
    item_of: torch.Tensor  # each rating's item, as a position among the batch's items
    counts: torch.Tensor  # ratings per row, as a column
    shares: torch.Tensor  # counts over the row's ratings in the whole fit: the part of row_l2's prior it carries
    user_ptr: torch.Tensor  # CSR pointers of the ratings grouped by user
    item_ptr: torch.Tensor  # CSR pointers of the ratings grouped by item
    by_item: torch.Tensor  # the ratings' order when grouped by item
    idle: torch.Tensor  # the rows counted 0, which a batch that spans the table puts back: found once per fit,
    # since nonzero() waits for the GPU


def spans_table(touched: int, table_rows: int) -> bool:
    """Whether a step that touches `touched` rows takes every row of the table instead: no gather and scatter of
    each row, one Adam pass over the table in place, and the untouched rows put back (RowAdam.step). That costs
    less once most rows are touched, as nearly all are by the 10% batches of a synthetic ml-1m or ml-25m; those
    of ml-latest-small touch 40%, and gathering them costs less there."""
    return touched >= EVERY_ROW_FROM * table_rows


def untouched(counts: torch.Tensor) -> torch.Tensor:
    """The rows a step's counts (a column) leave at 0, which a step that spans the table puts back."""
    return (counts.squeeze(1) == 0).nonzero().squeeze(1)


def ratings_per_row(user_of: torch.Tensor, item_of: torch.Tensor, n_users: int, n_items: int) -> torch.Tensor:
    """Each table row's ratings among the pairs (user_of, item_of): the users' rows, then the items'."""
    return torch.cat([torch.bincount(user_of, minlength=n_users), torch.bincount(item_of, minlength=n_items)])


def make_batch(data: Ratings, n_users: int, n_items: int, fit_ratings: torch.Tensor) -> Batch:
    """The batch of `data`'s ratings; `fit_ratings` holds each table row's ratings in the whole fit, at least 1."""
    order = torch.argsort(data.users * n_items + data.items)
    u, i = data.users[order], data.items[order]
    users, user_of = torch.unique_consecutive(u, return_inverse=True)
    items, item_of = torch.unique(i, return_inverse=True)
    if spans_table(len(users) + len(items), n_users + n_items):  # each user and item is its own position
        users, user_of = torch.arange(n_users, device=u.device), u
        items, item_of = torch.arange(n_items, device=i.device), i
    user_counts = torch.bincount(user_of, minlength=len(users))
    item_counts = torch.bincount(item_of, minlength=len(items))
    counts = torch.cat([user_counts, item_counts]).float().unsqueeze(1)
    rows = torch.cat([users, items + n_users])
    return Batch(
        ratings=data.ratings[order],
        rows=rows,
        n_users=len(users),
        user_of=user_of,
        item_of=item_of,
        counts=counts,
        shares=counts / fit_ratings[rows].unsqueeze(1),
        user_ptr=row_pointers(user_counts),
        item_ptr=row_pointers(item_counts),
        by_item=torch.argsort(item_of * len(users) + user_of),
        idle=untouched(counts),
    )


def distinct_indices(items: torch.Tensor, n_items: int) -> tuple[torch.Tensor, torch.Tensor]:
    """torch.unique(items, return_inverse=True) for indices below n_items, by marking them rather than sorting:
    BPR meets a fresh set of items every step."""
    touched = torch.zeros(n_items, dtype=torch.bool, device=items.device)
    touched[items] = True
    return touched.nonzero().squeeze(1), (touched.cumsum(0) - 1)[items]


def make_batches(data: Ratings, batch_size: int, n_users: int, n_items: int, generator: torch.Generator) -> list[Batch]:
    order = torch.randperm(len(data), generator=generator).to(data.users.device)
    fit_ratings = ratings_per_row(data.users, data.items, n_users, n_items).clamp_min(1).float()
    return [make_batch(data.subset(index), n_users, n_items, fit_ratings) for index in order.split(batch_size)]


# --- lazy Adam on table rows ------------------------------------------------------------------------------


class RowAdam:
    """Adam for the rows of one table, stepping only the rows a batch touches (see the module's docstring).

    The update is torch.optim.Adam's own fused kernel (what Adam(fused=True) runs), applied to the rows gathered
    from the table and its moments, and scattered back; `sqrt_scaling` multiplies each row's step by the square
    root of its count in the batch. The rows step in chunks of ROWS_PER_CHUNK, whose moments, gradients and
    temporaries stay in a core's cache from the gather to the scatter: at ml-25m's sizes a whole batch's do not.
    """

    def __init__(self, table: torch.Tensor, lr: float, betas: tuple[float, float], sqrt_scaling: bool) -> None:
        self.table, self.lr, self.betas, self.sqrt_scaling = table, lr, betas, sqrt_scaling
        self.exp_avg, self.exp_avg_sq = torch.zeros_like(table), torch.zeros_like(table)
        self.steps = torch.zeros((), device=table.device)  # a tensor, as the kernel reads it

    def _adam(self, value: torch.Tensor, grad: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor) -> None:
        """One Adam step of `value`, in place, with its moments updated in place; self.steps already counts it."""
        beta1, beta2 = self.betas
        torch._fused_adam_(
            [value], [grad], [exp_avg], [exp_avg_sq], [], [self.steps],
            lr=self.lr, beta1=beta1, beta2=beta2, weight_decay=0.0, eps=EPS, amsgrad=False, maximize=False,
        )  # fmt: skip

    def _step_rows(
        self,
        value: torch.Tensor,
        grad: torch.Tensor,
        exp_avg: torch.Tensor,
        exp_avg_sq: torch.Tensor,
        counts: torch.Tensor | None,
    ) -> None:
        """One lazy-Adam step of some rows, in place, with their moments; with sqrt_scaling, Adam's move taken
        √count times."""
        if self.sqrt_scaling:
            move = torch.zeros_like(value)
            self._adam(move, grad, exp_avg, exp_avg_sq)
            value.addcmul_(move, counts.sqrt())
        else:
            self._adam(value, grad, exp_avg, exp_avg_sq)

    def step(
        self,
        rows: torch.Tensor,
        current: torch.Tensor,
        grad: torch.Tensor,
        counts: torch.Tensor | None,
        idle: torch.Tensor | None = None,
    ) -> None:
        """`rows` are distinct and ascending, and `current` holds table[rows]: it is updated in place and written
        back. `counts` (the rows' ratings in the batch) is read only with sqrt_scaling, and when `rows` are the
        whole table (see spans_table): then the rows counted 0 are put back as they were, `idle` if given."""
        if len(rows) == len(self.table):
            self._step_every_row(grad, counts, untouched(counts) if idle is None else idle)
            return
        self.steps += 1
        for start in range(0, len(rows), ROWS_PER_CHUNK):
            chunk = slice(start, start + ROWS_PER_CHUNK)
            at, value = rows[chunk], current[chunk]
            exp_avg, exp_avg_sq = self.exp_avg.index_select(0, at), self.exp_avg_sq.index_select(0, at)
            self._step_rows(value, grad[chunk], exp_avg, exp_avg_sq, None if counts is None else counts[chunk])
            self.exp_avg.index_copy_(0, at, exp_avg)
            self.exp_avg_sq.index_copy_(0, at, exp_avg_sq)
            self.table.index_copy_(0, at, value)

    def _step_every_row(self, grad: torch.Tensor, counts: torch.Tensor, idle: torch.Tensor) -> None:
        """`step` when the rows are the whole table: the same lazy Adam, without a gather and a scatter of each row.
        The table steps in place, and the `idle` rows, which the batch does not touch, are put back."""
        self.steps += 1
        state = (self.table, self.exp_avg, self.exp_avg_sq)
        kept = [t.index_select(0, idle) for t in state]
        self._step_rows(self.table, grad, self.exp_avg, self.exp_avg_sq, counts)
        for t, saved in zip(state, kept, strict=True):
            t.index_copy_(0, idle, saved)

    def step_all(self, grad: torch.Tensor) -> None:
        """Every row steps, in place: torch.optim.Adam on the whole table."""
        self.steps += 1
        self._adam(self.table, grad, self.exp_avg, self.exp_avg_sq)


def _current(table: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """table[rows], for a step's gradient to read and RowAdam.step to update; when `rows` are the whole table, the
    table itself, which the gradient only reads and Adam steps in place."""
    return table if len(rows) == len(table) else table.index_select(0, rows)


# --- the dot-product models as one table ------------------------------------------------------------------


class PackedTable:
    """A dot-product model's embeddings and biases as one table W (see the module's docstring).

    Columns: the embedding, then b_u (user rows) with its constant partner 1 (item rows), then the constant 1
    (user rows) partnering b_i (item rows). The constant columns are frozen: their gradient is set to zero.
    """

    def __init__(self, model: Recommender) -> None:
        n_users, n_items = model.n_users, model.n_items
        self.emb_size = model.user_emb.weight.shape[1] if hasattr(model, "user_emb") else 0
        self.user_bias_col = self.emb_size if hasattr(model, "user_bias") else None
        self.item_bias_col = self.emb_size + (self.user_bias_col is not None) if hasattr(model, "item_bias") else None
        width = self.emb_size + (self.user_bias_col is not None) + (self.item_bias_col is not None)
        self.n_users = n_users
        self.offset = float(model.mean) if _adds_mean(model) else 0.0
        self.weight = torch.zeros(n_users + n_items, width, device=_device(model))
        with torch.no_grad():
            if self.emb_size:
                self.weight[:n_users, : self.emb_size] = model.user_emb.weight
                self.weight[n_users:, : self.emb_size] = model.item_emb.weight
            if self.user_bias_col is not None:
                self.weight[:n_users, self.user_bias_col] = model.user_bias.weight.squeeze(1)
                self.weight[n_users:, self.user_bias_col] = 1.0
            if self.item_bias_col is not None:
                self.weight[:n_users, self.item_bias_col] = 1.0
                self.weight[n_users:, self.item_bias_col] = model.item_bias.weight.squeeze(1)

    def freeze(self, grad: torch.Tensor, n_users: int) -> torch.Tensor:
        """Zero the gradient of the constant columns: 1 in item rows beside b_u, 1 in user rows beside b_i."""
        if self.user_bias_col is not None:
            grad[n_users:, self.user_bias_col] = 0.0
        if self.item_bias_col is not None:
            grad[:n_users, self.item_bias_col] = 0.0
        return grad

    def write_back(self, model: Recommender) -> None:
        n = self.n_users
        with torch.no_grad():
            if self.emb_size:
                model.user_emb.weight.copy_(self.weight[:n, : self.emb_size])
                model.item_emb.weight.copy_(self.weight[n:, : self.emb_size])
            if self.user_bias_col is not None:
                model.user_bias.weight.copy_(self.weight[:n, self.user_bias_col, None])
            if self.item_bias_col is not None:
                model.item_bias.weight.copy_(self.weight[n:, self.item_bias_col, None])

    def parameter_grads(self, rows: torch.Tensor, grad: torch.Tensor) -> dict[str, torch.Tensor]:
        """Row gradients spread back onto the model's parameters, dense, for comparing with autograd."""
        full = torch.zeros_like(self.weight).index_add_(0, rows, grad)
        n = self.n_users
        out = {}
        if self.emb_size:
            out["user_emb.weight"], out["item_emb.weight"] = full[:n, : self.emb_size], full[n:, : self.emb_size]
        if self.user_bias_col is not None:
            out["user_bias.weight"] = full[:n, self.user_bias_col, None]
        if self.item_bias_col is not None:
            out["item_bias.weight"] = full[n:, self.item_bias_col, None]
        return out


def _adds_mean(model: Recommender) -> bool:
    return isinstance(model, Biases) or getattr(model, "mean_offset", False)


def _device(model: Recommender) -> torch.device:
    return next(model.parameters()).device


# --- trainers: one epoch of each kind of fit --------------------------------------------------------------


class Trainer:
    """What every fit shares: a table of rows that lazy Adam steps, fixed batches, and the epoch loop.

    A subclass says what a step needs of each batch (`prepare`), the gradient of the batch's rows (`gradient`,
    which the default `step` applies; BPR's rows depend on the negatives each step draws, so it has a step of its
    own), and how the table goes back into the model (`sync`).
    """

    def __init__(
        self, model: Recommender, table: torch.Tensor, train: Ratings, params: EngineParams, generator: torch.Generator
    ) -> None:
        self.model, self.table, self.l2 = model, table, params.l2
        self.row_l2 = params.row_l2 or 0.0  # None for a model without the key (bpr)
        betas = (params.beta1, params.beta2)
        self.adam = RowAdam(table, params.lr, betas, sqrt_scaling=params.row_scaling == "sqrt")
        batches = make_batches(train, params.batch_ratings(len(train)), model.n_users, model.n_items, generator)
        self.batches = [self.prepare(b) for b in batches]

    def prepare(self, b: Batch) -> dict[str, object]:
        return {"batch": b}

    def penalise(
        self,
        grad: torch.Tensor,
        current: torch.Tensor,
        counts: torch.Tensor,
        n: int,
        shares: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Add the L2 penalty's gradient: l2 on each row once per rating of the batch that reads it, and row_l2
        on each row times its `shares` (see Batch) of the prior; in one pass over the rows either way."""
        if self.row_l2:
            return grad.addcmul_(current, counts * self.l2 + shares * self.row_l2, value=2.0 / n)
        return grad.addcmul_(current, counts, value=2.0 * self.l2 / n)

    def gradient(self, prepared: dict, current: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the gradient of the batch's rows, whose values are `current`; the batch's summed loss)."""
        raise NotImplementedError

    def step(self, prepared: dict) -> torch.Tensor:
        """One lazy-Adam step of the batch's rows; returns the batch's summed loss."""
        b: Batch = prepared["batch"]
        current = _current(self.table, b.rows)
        grad, loss = self.gradient(prepared, current)
        self.adam.step(b.rows, current, grad, b.counts, b.idle)
        return loss

    def sync(self) -> None:
        raise NotImplementedError

    def epoch(self, order: list[int], desc: str) -> torch.Tensor:
        """One pass over the batches in `order`; the summed loss stays on the device (no sync per batch)."""
        total = torch.zeros((), device=self.table.device)
        for k in tqdm(order, desc=desc, leave=False, disable=None):
            total += self.step(self.batches[k])
        return total


class DotRatings(Trainer):
    """Squared error of biases, mf and mf_bias, with closed-form gradients on the packed table."""

    def __init__(self, model: Recommender, train: Ratings, params: EngineParams, generator: torch.Generator) -> None:
        self.packed = PackedTable(model)
        super().__init__(model, self.packed.weight, train, params, generator)
        self.bias_l2 = params.bias_l2

    def prepare(self, b: Batch) -> dict[str, object]:
        """What each step needs of a batch, built once: the CSR layouts of its errors by user and by item."""
        n_items = len(b.rows) - b.n_users
        return {
            "batch": b,
            "targets": b.ratings - self.packed.offset,
            "by_user": (b.user_ptr.int(), b.item_of.int(), (b.n_users, n_items)),
            "by_item": (b.item_ptr.int(), b.user_of[b.by_item].int(), (n_items, b.n_users)),
        }

    def gradient(self, prepared: dict, current: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(gradient of `objective` for the batch's rows, the batch's summed squared error).

        With E the batch's errors as a users-by-items sparse matrix, the gradient of the user rows is E · Q and
        that of the item rows Eᵀ · P (the squared error's factor 2/n folded into E), plus the penalty's.
        """
        b: Batch = prepared["batch"]
        n = len(b.ratings)
        users, items = current[: b.n_users], current[b.n_users :]
        crow, col, size = prepared["by_user"]
        pattern = torch.sparse_csr_tensor(crow, col, prepared["targets"], size=size, check_invariants=False)
        error = torch.sparse.sampled_addmm(pattern, users, items.T, beta=-1.0).values()  # p·q - target
        scaled = error * (2.0 / n)
        by_user = torch.sparse_csr_tensor(crow, col, scaled, size=size, check_invariants=False)
        crow, col, size = prepared["by_item"]
        by_item = torch.sparse_csr_tensor(crow, col, scaled[b.by_item], size=size, check_invariants=False)
        grad = torch.empty_like(current)
        torch.mm(by_user, items, out=grad[: b.n_users])
        torch.mm(by_item, users, out=grad[b.n_users :])
        grad = self.penalise(grad, current, b.counts, n, b.shares)
        # mf_bias's bias_l2 instead of l2 in the bias columns (those after the embedding; row_l2's prior covers the
        # whole row): two columns mended, rather than a weighted copy of all of them.
        if self.bias_l2 is not None:
            k = self.packed.emb_size
            grad[:, k:].addcmul_(current[:, k:], b.counts, value=2.0 * (self.bias_l2 - self.l2) / n)
        return self.packed.freeze(grad, b.n_users), error.dot(error)

    def sync(self) -> None:
        self.packed.write_back(self.model)


def _where_positive(grad: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """grad where a ReLU's output is positive, else 0: relu's backward, in one pass rather than a sign and a product."""
    return torch.ops.aten.threshold_backward(grad, output, 0)


class NetRatings(Trainer):
    """Squared error of collab_fnet, with the network's gradients written out (see `gradient`)."""

    def __init__(self, model: CollabFNet, train: Ratings, params: EngineParams, generator: torch.Generator) -> None:
        table = torch.cat([model.user_emb.weight, model.item_emb.weight]).detach().clone()
        super().__init__(model, table, train, params, generator)
        self.layers = [model.lin1.weight, model.lin1.bias, model.lin2.weight, model.lin2.bias]
        # Adam for the network's layers, every row stepping every batch: that is torch.optim.Adam (tested), and
        # it spares the process the second torch.optim.Adam takes to import torch._dynamo.
        self.dense = [
            RowAdam(t.detach().view(len(t), -1), params.dense_lr, self.adam.betas, sqrt_scaling=False)
            for t in self.layers
        ]

    def prepare(self, b: Batch) -> dict[str, object]:
        n, device = len(b.ratings), b.ratings.device
        # Each rating's two rows interleaved, [p_u; q_i] for rating 0, then for rating 1...: one gather of the
        # batch's rows, viewed as n rows of 2k, is the network's input, and its gradient comes back the same way.
        pairs = torch.stack([b.user_of, b.item_of + b.n_users], dim=1).flatten()
        # Sums each looked-up row's gradient into its table row: users' rows first, then items'.
        incidence = torch.sparse_csr_tensor(
            torch.cat([b.user_ptr, b.item_ptr[1:] + n]),
            torch.cat([2 * torch.arange(n, device=device), 2 * b.by_item + 1]),
            torch.ones(2 * n, device=device),
            size=(len(b.rows), 2 * n),
            check_invariants=False,
        )
        return {"batch": b, "pairs": pairs, "incidence": incidence}

    def gradient(self, prepared: dict, current: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(gradient of `objective` for the batch's rows, the batch's summed squared error); the network's
        own gradients are left in its parameters' .grad.

        Forward as forward(): x = relu([p; q]) · mask · s, h = relu(W₁x + c₁), r̂ = w₂·h + c₂ (+ μ). Backward, with
        g = 2(r̂ - r)/n: ∂w₂ = hᵀg, ∂c₂ = Σg, g_h = g w₂ where h > 0, ∂W₁ = g_hᵀx, ∂c₁ = Σg_h, and the input's
        gradient is g_h W₁ where x > 0; s = 1/(1 - p), dropout's scale, is applied to W₁ rather than to x.
        """
        b: Batch = prepared["batch"]
        model: CollabFNet = self.model
        n = len(b.ratings)
        w1, c1, w2, c2 = (t.detach() for t in self.layers)
        x = current.clamp_min(0).index_select(0, prepared["pairs"]).view(n, -1)  # relu on rows, not on pairs
        p = model.drop.p
        if p > 0:
            x.mul_(dropout_keep(x.shape, p, x.device))
        w1 = w1 * (1.0 / (1.0 - p))  # dropout's scale of the kept inputs, moved onto the weights they meet
        hidden = torch.addmm(c1, x, w1.T).clamp_min_(0)
        error = torch.addmv(c2 + (model.mean if model.mean_offset else 0.0) - b.ratings, hidden, w2[0])
        g = error * (2.0 / n)
        g_hidden = _where_positive(torch.outer(g, w2[0]), hidden)
        g_w1 = (g_hidden.T @ x).mul_(1.0 / (1.0 - p))
        grads = (g_w1, g_hidden.sum(0), (hidden.T @ g).unsqueeze(0), g.sum().unsqueeze(0))
        for param, grad in zip(self.layers, grads, strict=True):
            param.grad = grad
        g_x = _where_positive(g_hidden @ w1, x)  # x > 0 exactly where relu passed and dropout kept
        grad = self.penalise(prepared["incidence"] @ g_x.view(2 * n, -1), current, b.counts, n, b.shares)
        return grad, error.dot(error)

    def step(self, prepared: dict) -> torch.Tensor:
        """The rows' step, then the layers', from the gradients `gradient` left in them."""
        squared = super().step(prepared)
        for adam, layer in zip(self.dense, self.layers, strict=True):
            adam.step_all(layer.grad.view_as(adam.table))
        return squared

    def epoch(self, order: list[int], desc: str) -> torch.Tensor:
        self.model.train()  # dropout on
        return super().epoch(order, desc)

    def sync(self) -> None:
        with torch.no_grad():
            self.model.user_emb.weight.copy_(self.table[: self.model.n_users])
            self.model.item_emb.weight.copy_(self.table[self.model.n_users :])


class DotPairs(Trainer):
    """BPR on the packed table: each rated (user, item) against an item drawn uniformly at random."""

    def __init__(self, model: BPR, train: Ratings, params: EngineParams, generator: torch.Generator) -> None:
        self.packed = PackedTable(model)
        super().__init__(model, self.packed.weight, train, params, generator)
        self.negatives = torch.Generator().manual_seed(params.seed + 1)

    def prepare(self, b: Batch) -> dict[str, object]:
        """The rated item of each pair, as an item index; its negative is drawn anew every step."""
        return {"batch": b, "positive": b.rows[b.n_users :][b.item_of] - self.model.n_users}

    def gradient(self, prepared: dict, negative: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(the touched rows, the gradient of `pairwise_objective` for them, their current values, their counts,
        the batch's summed loss). A step whose rows, with its drawn items, span the table takes every row."""
        b: Batch = prepared["batch"]
        n = len(b.ratings)
        users, user_of = b.rows[: b.n_users], b.user_of
        items, item_of = distinct_indices(torch.cat([prepared["positive"], negative]), self.model.n_items)
        if spans_table(len(users) + len(items), len(self.table)):
            users, user_of = torch.arange(self.model.n_users, device=users.device), users[user_of]
            items, item_of = torch.arange(self.model.n_items, device=items.device), items[item_of]
        rows = torch.cat([users, items + self.model.n_users])
        current = _current(self.table, rows)
        user_rows, item_rows = current[: len(users)], current[len(users) :]
        grad = torch.zeros_like(current)
        user_grad, item_grad = grad[: len(users)], grad[len(users) :]
        loss = torch.zeros((), device=current.device)
        # The pairs in chunks, whose gathered rows and temporaries stay in cache however large the batch; in
        # place where a temporary is used once.
        for start in range(0, n, PAIRS_PER_CHUNK):
            chunk = slice(start, start + PAIRS_PER_CHUNK)
            pair_user, rated_of, drawn_of = user_of[chunk], item_of[:n][chunk], item_of[n:][chunk]
            p = user_rows.index_select(0, pair_user)
            difference = item_rows.index_select(0, rated_of).sub_(item_rows.index_select(0, drawn_of))
            x = (p * difference).sum(1)
            g = (-torch.sigmoid(-x) / n).unsqueeze(1)
            user_grad.index_add_(0, pair_user, difference.mul_(g))
            p_g = p.mul_(g)
            item_grad.index_add_(0, rated_of, p_g)
            item_grad.index_add_(0, drawn_of, p_g.neg_())
            loss += F.softplus(-x).sum()
        counts = ratings_per_row(user_of, item_of, len(users), len(items)).float().unsqueeze(1)
        grad = self.penalise(grad, current, counts, n)
        return rows, self.packed.freeze(grad, len(users)), current, counts, loss

    def step(self, prepared: dict) -> torch.Tensor:
        n = len(prepared["batch"].ratings)
        negative = torch.randint(self.model.n_items, (n,), generator=self.negatives).to(self.table.device)
        rows, grad, current, counts, loss = self.gradient(prepared, negative)
        self.adam.step(rows, current, grad, counts)
        return loss

    def sync(self) -> None:
        self.packed.write_back(self.model)


TRAINERS: dict[type[Recommender], type] = {
    Biases: DotRatings,
    MF: DotRatings,
    MFBias: DotRatings,
    CollabFNet: NetRatings,
    BPR: DotPairs,
}


# --- losses a fit watches ---------------------------------------------------------------------------------


def rating_mse(model: Recommender, data: Ratings, scale: tuple[float, float]) -> float:
    """Clipped squared error on pairs known to training: what early stopping watches and history records."""
    return F.mse_loss(predict(model, data.users, data.items).clamp(*scale), data.ratings).item()


def watched_loss(model: Recommender, data: Ratings, scale: tuple[float, float], seed: int) -> float:
    """What early stopping watches and the history records: BPR's pairwise loss, else the clipped squared error."""
    return pair_loss(model, data, seed) if isinstance(model, BPR) else rating_mse(model, data, scale)


def pair_loss(model: Recommender, data: Ratings, seed: int) -> float:
    """BPR's loss on fixed random negatives (the same every epoch), so that epochs can be compared."""
    negative = torch.randint(model.n_items, (len(data),), generator=torch.Generator().manual_seed(seed))
    negative = negative.to(data.items.device)
    return F.softplus(predict(model, data.users, negative) - predict(model, data.users, data.items)).mean().item()


# --- fitting ----------------------------------------------------------------------------------------------


def fit_counts(model: Recommender, train: Ratings) -> None:
    """The counted baselines: global_mean has nothing to learn beyond μ; popularity counts and averages."""
    if isinstance(model, GlobalMean):
        return
    if not isinstance(model, Popularity):
        raise TypeError(f"{type(model).__name__} is trained by fit(), not counted")
    count = torch.bincount(train.items, minlength=model.n_items).float()
    residual = torch.bincount(
        train.items, weights=train.ratings.double() - model.mean.double(), minlength=model.n_items
    )
    model.count.copy_(count)
    model.item_bias.copy_((residual / (count.double() + model.damping)).float())


def _run(
    model: Recommender,
    train: Ratings,
    watch: dict[str, Ratings],
    params: EngineParams,
    scale: tuple[float, float],
    epochs: int,
    stop_on: str | None,
) -> list[dict[str, float]]:
    """Train `model` in place for up to `epochs` epochs, recording the watched loss of each split in `watch`
    after every epoch. With `stop_on`, stop once `patience` epochs have passed without lowering that loss by
    more than `min_improvement` of its best so far."""
    generator = torch.Generator().manual_seed(params.seed)
    trainer = TRAINERS[type(model)](model, train, params, generator)
    history: list[dict[str, float]] = []
    best, best_epoch = math.inf, 0
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(trainer.batches), generator=generator).tolist()
        total = trainer.epoch(order, f"{type(model).__name__} epoch {epoch}")
        trainer.sync()
        row = {"epoch": epoch, "train_loss": total.item() / len(train)}
        row |= {key: watched_loss(model, data, scale, params.seed) for key, data in watch.items()}
        history.append(row)
        if stop_on is not None:
            if row[stop_on] < best * (1 - params.min_improvement):
                best, best_epoch = row[stop_on], epoch
            if epoch - best_epoch >= params.patience:
                break
    return history


def fit(
    build: Callable[[], Recommender], train: Ratings, val: Ratings, scale: tuple[float, float], params: EngineParams
) -> tuple[Recommender, dict]:
    """Train a fresh model from `build` and return it with its training record.

    With holdout_frac > 0 the number of epochs adapts to the data: a first model trains on the rest of the
    training split while the held-out slice is scored after each epoch, until `patience` epochs pass without
    an improvement of more than `min_improvement` (a fraction of the best loss: large data gains a little every
    epoch for a long time); then a fresh model is refit on the whole training split for the number of epochs
    whose holdout loss was lowest.
    The validation split is scored after every epoch for the plots and never acted on.
    """
    keep_freed_memory()
    epochs, search = params.epochs, []
    if params.holdout_frac > 0:
        kept, holdout = carve_holdout(train, params.holdout_frac, params.seed)
        if len(holdout) == 0:
            raise PipelineError(
                f"params.yaml: holdout_frac {params.holdout_frac} leaves no rating to stop on; raise it"
            )
        search = _run(build(), kept, {"holdout_loss": holdout}, params, scale, params.epochs, "holdout_loss")
        epochs = min(search, key=lambda row: row["holdout_loss"])["epoch"]
    model = build()
    watch = {"val_loss": val} if len(val) else {}  # no warm validation pair: nothing to record
    history = _run(model, train, watch, params, scale, epochs, None)
    for row, searched in zip(history, search, strict=False):  # the search ran at least as many epochs
        row["holdout_loss"] = searched["holdout_loss"]
    return model, {"searched_epochs": len(search), "epochs": len(history), "history": history}


def model_builder(params: ModelParams, train: Ratings, n_users: int, n_items: int) -> Callable[[], Recommender]:
    """What makes a fresh model for `train`, with the same initial weights every call: the same params give the
    same weights, in the search, in the refit and in every process."""
    seed = params.fitter.seed if params.fitter is not None else 0
    mean = train.ratings.double().mean().item()

    def build() -> Recommender:
        torch.manual_seed(seed)
        return build_model(params.model, n_users, n_items, mean, params.args).to(train.users.device)

    return build


def train_model(
    params: ModelParams, train: Ratings, val: Ratings, n_users: int, n_items: int, scale: tuple[float, float]
) -> tuple[Recommender, dict | None]:
    """A model fit from its params: counted in one pass, solved by alternating least squares, or trained by `fit`
    (the last two with their training record).

    `val` holds warm pairs only; it is scored for the record and never steers the fit.
    """
    build = model_builder(params, train, n_users, n_items)
    if params.solver is not None:
        model = build()
        return model, fit_als(model, train, params.solver)
    if params.engine is None:
        model = build()
        fit_counts(model, train)
        return model, None
    return fit(build, train, val, scale, params.engine)
