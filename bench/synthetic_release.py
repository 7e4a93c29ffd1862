"""Write a MovieLens-shaped archive of any size, whose ratings come from a known low-rank model.

    python bench/synthetic_release.py --ratings 25000000 --layout ml-25m --out /tmp/mirror

writes /tmp/mirror/ml-25m.zip, its .md5 in md5sum's format (as GroupLens publishes them) and ml-25m.truth.json,
which holds the generating model's facts and the best MSE any model can reach. Point MOVIELENS_MIRROR at the
folder and set data.dataset to the layout (with no pins under data.sha256, so the .md5 is checked instead).

- Layouts: ml-25m (ratings.csv, movies.csv; half stars 0.5-5) and ml-1m (ratings.dat, movies.dat; whole stars).
- Users and movies scale with the ratings as in ml-25m (25 M ratings, 162,541 users, 59,047 movies). User
  activity and movie popularity are heavy-tailed; every user has at least 20 ratings; no pair repeats.
- A rating is s = μ + b_u + b_i + p_u·q_i plus Gaussian noise, rounded to the scale's step and clipped. The
  best achievable MSE is that of predicting E[rating | s] knowing s exactly: the noise floor, printed and saved.
- Deterministic by seed and vectorised: 25 M ratings take about a minute here.
"""

import argparse
import hashlib
import json
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import torch

ML25M_RATINGS, ML25M_USERS, ML25M_MOVIES = 25_000_000, 162_541, 59_047
MIN_PER_USER, RANK, NOISE = 20, 8, 0.8
LAYOUTS = {  # folder and member names, delimiter, rating step and range, movies' encoding
    "ml-25m": {"ratings": "ratings.csv", "movies": "movies.csv", "step": 0.5, "scale": (0.5, 5.0)},
    "ml-1m": {"ratings": "ratings.dat", "movies": "movies.dat", "step": 1.0, "scale": (1.0, 5.0)},
}
ZIP_TIME = (2019, 11, 21, 0, 0, 0)


def sizes(n_ratings: int) -> tuple[int, int]:
    """Users grow with the ratings; movies more slowly, as across the MovieLens releases."""
    users = max(5, round(ML25M_USERS * n_ratings / ML25M_RATINGS))
    movies = round(ML25M_MOVIES * (n_ratings / ML25M_RATINGS) ** 0.7)
    return users, max(movies, 3 * -(-n_ratings // users))  # small releases: room for every user's ratings


def activity(rng: np.random.Generator, n_ratings: int, n_users: int, cap: int) -> np.ndarray:
    """Ratings per user: at least 20, heavy-tailed above that, at most `cap`, summing to n_ratings."""
    if n_users * MIN_PER_USER > n_ratings or n_users * cap < n_ratings:
        raise SystemExit(f"{n_ratings:,} ratings cannot give {n_users:,} users between {MIN_PER_USER} and {cap} each")
    counts = np.full(n_users, MIN_PER_USER, dtype=np.int64)
    weight = rng.pareto(1.3, n_users) + 0.05
    while (spare := n_ratings - counts.sum()) > 0:
        room = counts < cap
        counts[room] += rng.multinomial(spare, weight[room] / weight[room].sum())
        counts = np.minimum(counts, cap)
    return counts


def pairs(rng: np.random.Generator, counts: np.ndarray, n_movies: int) -> tuple[np.ndarray, np.ndarray]:
    """Each user's distinct movies, drawn by popularity (Zipf-like, mixed with uniform so rare movies appear)."""
    rank = rng.permutation(n_movies)  # movie k is the rank[k]-th most popular
    popularity = 0.8 / (rank + 1.0) ** 0.9
    popularity = popularity / popularity.sum() + 0.2 / n_movies
    cumulative = np.cumsum(popularity / popularity.sum())
    users = np.empty(0, dtype=np.int64)
    movies = np.empty(0, dtype=np.int64)
    need = counts.copy()
    while need.any():
        who = np.repeat(np.arange(len(counts)), need + need // 2 + 1)
        drawn = np.minimum(np.searchsorted(cumulative, rng.random(len(who))), n_movies - 1)
        users, movies = np.concatenate([users, who]), np.concatenate([movies, drawn])
        _, first = np.unique(users * n_movies + movies, return_index=True)
        keep = np.sort(first)  # drop repeats, keeping draw order so the trim below is random
        users, movies = users[keep], movies[keep]
        rank_in_user = _rank_within(users)
        users, movies = users[rank_in_user < counts[users]], movies[rank_in_user < counts[users]]
        need = counts - np.bincount(users, minlength=len(counts))
    order = np.lexsort((movies, users))
    return users[order], movies[order]


def _rank_within(groups: np.ndarray) -> np.ndarray:
    """Each element's position among the elements of its group, in array order."""
    order = np.argsort(groups, kind="stable")
    sorted_groups = groups[order]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    position = np.arange(len(groups)) - np.repeat(starts, np.diff(np.r_[starts, len(groups)]))
    rank = np.empty(len(groups), dtype=np.int64)
    rank[order] = position
    return rank


def noise_floor(score: np.ndarray, step: float, scale: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """E[r | s] and Var[r | s] for r = clip(round(s + noise)), from the normal CDF at each level's edges."""
    levels = np.arange(scale[0], scale[1] + step / 2, step)
    edges = np.r_[-np.inf, (levels[:-1] + levels[1:]) / 2, np.inf]
    s = torch.as_tensor(score, dtype=torch.float64)[:, None]
    cdf = torch.special.ndtr((torch.as_tensor(edges)[None, :] - s) / NOISE)
    probability = (cdf[:, 1:] - cdf[:, :-1]).numpy()
    mean = probability @ levels
    return mean, probability @ levels**2 - mean**2


def ratings(
    rng: np.random.Generator, users: np.ndarray, movies: np.ndarray, n_users: int, n_movies: int, layout: dict
) -> tuple[np.ndarray, dict]:
    user_factor = rng.normal(0, 0.35, (n_users, RANK))
    movie_factor = rng.normal(0, 0.35, (n_movies, RANK))
    user_bias, movie_bias = rng.normal(0, 0.35, n_users), rng.normal(0, 0.45, n_movies)
    score = np.empty(len(users))
    for start in range(0, len(users), 1 << 22):  # bounded memory
        u, m = users[start : start + (1 << 22)], movies[start : start + (1 << 22)]
        score[start : start + len(u)] = (
            3.5 + user_bias[u] + movie_bias[m] + np.einsum("ij,ij->i", user_factor[u], movie_factor[m])
        )
    step, (low, high) = layout["step"], layout["scale"]
    rating = np.clip(np.round((score + rng.normal(0, NOISE, len(score))) / step) * step, low, high)
    sample = rng.choice(len(score), min(len(score), 2_000_000), replace=False)
    expected, variance = noise_floor(score[sample], step, (low, high))
    truth = {
        "rank": RANK,
        "noise_sd": NOISE,
        "best_mse": float(variance.mean()),  # predicting E[r | s]: no model can do better on average
        # predicting the clipped true score instead: the floor plus that guess's squared bias
        "mse_of_the_true_score": float((variance + (expected - np.clip(score[sample], low, high)) ** 2).mean()),
        "mean_rating": float(rating.mean()),
        "expected_rating_check": float(expected.mean()),
    }
    return rating, truth


def write_csv(path: Path, table: pa.Table, delimiter: str, header: bool) -> None:
    """Unquoted, as GroupLens writes them (pyarrow quotes a header it writes itself)."""
    with path.open("wb") as f:
        if header:
            f.write((delimiter.join(table.column_names) + "\n").encode())
        pcsv.write_csv(table, f, pcsv.WriteOptions(include_header=False, delimiter=delimiter, quoting_style="none"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratings", type=int, default=1_000_000, help="how many ratings (default 1,000,000)")
    parser.add_argument("--layout", choices=LAYOUTS, default="ml-25m")
    parser.add_argument("--out", type=Path, required=True, help="folder for the archive, its .md5 and truth.json")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.perf_counter()
    layout = LAYOUTS[args.layout]
    rng = np.random.default_rng(args.seed)
    n_users, n_movies = sizes(args.ratings)
    counts = activity(rng, args.ratings, n_users, cap=max(MIN_PER_USER, n_movies // 2))
    users, movies = pairs(rng, counts, n_movies)
    rating, truth = ratings(rng, users, movies, n_users, n_movies, layout)
    movie_ids = np.sort(rng.choice(np.arange(1, 3 * n_movies + 1), n_movies, replace=False)).astype(np.int32)
    timestamps = 1_000_000_000 + rng.integers(0, 300_000_000, len(users))
    levels = np.arange(layout["scale"][0], layout["scale"][1] + layout["step"] / 2, layout["step"])
    text = pa.DictionaryArray.from_arrays(
        np.searchsorted(levels, rating).astype(np.int32),
        pa.array([f"{v:.1f}" if layout["step"] < 1 else f"{v:.0f}" for v in levels]),
    )
    columns = {"userId": pa.array((users + 1).astype(np.int32)), "movieId": pa.array(movie_ids[movies])}
    titles = pa.array([f"Synthetic movie {m}: part {m % 7} ({1950 + m % 70})" for m in movie_ids.tolist()])
    folder = "ml-25m" if args.layout == "ml-25m" else "ml-1m"
    args.out.mkdir(parents=True, exist_ok=True)
    archive = args.out / f"{args.layout}.zip"
    with tempfile.TemporaryDirectory() as tmp:
        ratings_path, movies_path = Path(tmp) / layout["ratings"], Path(tmp) / layout["movies"]
        if args.layout == "ml-25m":
            write_csv(ratings_path, pa.table({**columns, "rating": text, "timestamp": timestamps}), ",", True)
            listing = pa.table({"movieId": movie_ids, "title": titles, "genres": pa.array(["Drama"] * n_movies)})
            pcsv.write_csv(listing, movies_path)  # titles with commas get quoted, as in the real file
        else:
            empty = pa.array([""] * len(users))
            table = pa.table(
                {
                    "u": columns["userId"],
                    "a": empty,
                    "m": columns["movieId"],
                    "b": empty,
                    "r": text,
                    "c": empty,
                    "t": timestamps,
                }
            )
            write_csv(ratings_path, table, ":", False)
            lines = [f"{m}::{t}::Drama\n" for m, t in zip(movie_ids.tolist(), titles.to_pylist(), strict=True)]
            movies_path.write_text("".join(lines), encoding="latin-1")
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            for path in (ratings_path, movies_path):
                info = zipfile.ZipInfo(f"{folder}/{path.name}", date_time=ZIP_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                with path.open("rb") as src, zf.open(info, "w") as dst:
                    while chunk := src.read(1 << 24):
                        dst.write(chunk)
    with archive.open("rb") as f:
        digest = hashlib.file_digest(f, "md5").hexdigest()
    (args.out / f"{archive.name}.md5").write_text(f"{digest}  {archive.name}\n")
    truth |= {"layout": args.layout, "ratings": len(users), "users": n_users, "movies": n_movies, "seed": args.seed}
    (args.out / f"{args.layout}.truth.json").write_text(json.dumps(truth, indent=2, sort_keys=True) + "\n")
    print(
        f"{archive}: {len(users):,} ratings, {n_users:,} users, {n_movies:,} movies, {archive.stat().st_size:,} bytes "
        f"in {time.perf_counter() - start:.1f} s; best achievable MSE {truth['best_mse']:.4f}"
    )


if __name__ == "__main__":
    main()
