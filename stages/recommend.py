"""Print a user's top-N unseen movies under a trained model:  python stages/recommend.py ials 1 -n 10

Recommend with ials, the best of the two models trained to rank; the rating models rank worse than popularity
(see README). The score is a predicted rating for rating models, and a ranking score for ials, bpr and
popularity.
"""

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lenscf.checkpoints import load_checkpoint
from lenscf.errors import PipelineError, run_stage
from lenscf.params import MODEL_NAMES
from lenscf.scoring import SeenItems, top_unseen
from lenscf.splits import load_encoded


def positive_int(text: str) -> int:
    if not text.lstrip("-").isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a whole number > 0")
    return int(text)


def recommend(model_name: str, user_id: int, n: int) -> pd.DataFrame:
    """The n highest-scored movies the user has not rated in training, with titles."""
    model = load_checkpoint(Path(f"models/{model_name}.pt"))
    data = load_encoded(with_catalogue=True)
    user_ids = data.catalogue["userId"]
    match = np.flatnonzero(user_ids == user_id)
    if len(match) == 0:
        raise PipelineError(
            f"userId {user_id} has no training ratings, so no model knows them "
            f"(known userIds run from {user_ids.min()} to {user_ids.max()})"
        )
    scores, top = top_unseen(model, torch.tensor([int(match[0])]), SeenItems(data.train, data.n_users), n)
    picked = top[0].numpy()
    return pd.DataFrame(
        {
            "movieId": data.catalogue["movieId"][picked],
            "title": data.catalogue["title"][picked],
            "score": scores[0].numpy().round(3),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=MODEL_NAMES, help="which model ranks (ials and bpr are trained to)")
    parser.add_argument("user_id", type=int, help="a MovieLens userId")
    parser.add_argument("-n", type=positive_int, default=10, help="how many movies (default 10)")
    args = parser.parse_args()
    print(recommend(args.model, args.user_id, args.n).to_string(index=False))


if __name__ == "__main__":
    run_stage(main)
