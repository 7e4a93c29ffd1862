"""How long the encode stage's vectorised encoding takes on a synthetic ml-25m-sized split.

python bench/encode_speed.py [n_ratings]
"""

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "stages"))

from encode import encode


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 25_000_000
    rng = np.random.default_rng(0)
    ratings = pd.DataFrame(
        {
            "userId": rng.integers(1, 162_542, n),  # ml-25m: 162,541 users, 59,047 movies
            "movieId": rng.integers(1, 209_172, n),
            "rating": rng.integers(1, 11, n) / 2,
            "timestamp": rng.integers(789_652_009, 1_574_327_703, n),
        }
    )
    is_val = rng.random(n) >= 0.8
    train, val = ratings[~is_val], ratings[is_val]
    start = time.perf_counter()
    tables = encode(train, val)
    wall = time.perf_counter() - start
    print(
        f"encoded {len(train):,} training and {len(val):,} validation ratings "
        f"({len(tables['users']):,} users, {len(tables['items']):,} items) in {wall:.2f} s "
        f"= {n / wall:,.0f} ratings/s"
    )


if __name__ == "__main__":
    main()
