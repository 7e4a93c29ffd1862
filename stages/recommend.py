"""Print a user's top-N unseen movies under a trained model:  python stages/recommend.py mf_bias 1 -n 10"""

import argparse
from pathlib import Path

import pandas as pd
import torch

from errors import PipelineError, run_stage
from models import load_checkpoint, top_unseen
from params import MODEL_NAMES
from ratings import read_csv
from training import ENCODED


def recommend(model_name: str, user_id: int, n: int) -> pd.DataFrame:
    """The n highest-scored movies the user has not rated in training, with titles and predicted ratings."""
    if model_name not in MODEL_NAMES:
        raise PipelineError(f"unknown model {model_name!r}; choose one of {', '.join(MODEL_NAMES)}")
    model = load_checkpoint(Path(f"models/{model_name}.pt"))
    users, items = read_csv(ENCODED / "users.csv"), read_csv(ENCODED / "items.csv")
    index = users.index[users["userId"] == user_id]
    if len(index) == 0:
        raise PipelineError(
            f"userId {user_id} has no training ratings, so no model knows them "
            f"(known userIds run from {users['userId'].min()} to {users['userId'].max()})"
        )
    user = int(users["user"].iloc[index[0]])
    train = read_csv(ENCODED / "train.csv")
    seen = torch.as_tensor(train.loc[train["user"] == user, "item"].to_numpy())
    scores, top = top_unseen(model, torch.tensor([user]), torch.zeros_like(seen), seen, len(items), n)
    picked = items.iloc[top[0].numpy()]
    return pd.DataFrame(
        {
            "movieId": picked["movieId"].to_numpy(),
            "title": picked["title"].to_numpy(),
            "predicted": scores[0].numpy().round(2),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", help=f"one of {', '.join(MODEL_NAMES)}")
    parser.add_argument("user_id", type=int, help="a MovieLens userId")
    parser.add_argument("-n", type=int, default=10, help="how many movies (default 10)")
    args = parser.parse_args()
    print(recommend(args.model, args.user_id, args.n).to_string(index=False))


if __name__ == "__main__":
    run_stage(main)
