"""Score candidate settings on a holdout slice of the training split, never on validation.

The defaults in params.yaml were chosen with this script. It trains on (1 - frac) of the
encoded training ratings and prints the MSE on the held-out rest after each epoch.

    python bench/tune.py mf_bias l2=0.05 emb_size=64 lr=0.01 epochs=20
"""

import sys
from dataclasses import replace
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "stages"))

from models import build_model
from params import TrainParams, load_params
from ratings import read_csv
from training import Ratings, carve_holdout, fit

HOLDOUT_FRAC = 0.1


def main() -> None:
    model_name, overrides = sys.argv[1], dict(arg.split("=", 1) for arg in sys.argv[2:])
    params = TrainParams.load(load_params(), model_name)
    params = replace(params, **{k: yaml.safe_load(v) for k, v in overrides.items()}, holdout_frac=0.0)
    if params.y_range is not None:
        params = replace(params, y_range=tuple(params.y_range))
    train = read_csv("data/encoded/train.csv")
    n_users, n_items = len(read_csv("data/encoded/users.csv")), len(read_csv("data/encoded/items.csv"))
    fit_part, holdout = carve_holdout(Ratings.from_frame(train), HOLDOUT_FRAC, seed=12345)
    model = build_model(params, n_users, n_items, mean=float(fit_part.ratings.mean()))
    history = fit(model, fit_part, holdout, params)  # the "val" fit() records is our holdout here
    best = min(history, key=lambda row: row["val_loss"])
    print(
        f"{model_name} {overrides} holdout best {best['val_loss']:.4f} at epoch {best['epoch']}, "
        f"last {history[-1]['val_loss']:.4f}"
    )


if __name__ == "__main__":
    main()
