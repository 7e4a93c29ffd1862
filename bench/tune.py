"""Score candidate settings on a holdout slice of the training split, never on validation.

The defaults in params.yaml were chosen with this script. It trains on (1 - frac) of the
encoded training ratings and prints the MSE on the held-out rest after each epoch.

    python bench/tune.py mf_bias l2=0.05 emb_size=64 lr=0.01 epochs=20
"""

import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "stages"))

from models import build_model
from params import TrainParams, load_params
from training import carve_holdout, fit, load_encoded

HOLDOUT_FRAC = 0.1


def main() -> None:
    model_name, overrides = sys.argv[1], dict(arg.split("=", 1) for arg in sys.argv[2:])
    raw = load_params()
    # Overrides go in as models.<name> keys, so params.py checks them as it checks params.yaml;
    # holdout_frac is 0 because this script carves its own holdout.
    own = {**(raw["models"].get(model_name) or {}), **{k: yaml.safe_load(v) for k, v in overrides.items()}}
    raw["models"][model_name] = {**own, "holdout_frac": 0.0}
    params = TrainParams.load(raw, model_name)
    train, _, n_users, n_items = load_encoded()
    fit_part, holdout = carve_holdout(train, HOLDOUT_FRAC, seed=12345)
    model = build_model(params, n_users, n_items, mean=float(fit_part.ratings.mean()))
    history = fit(model, fit_part, holdout, params)  # the "val" fit() records is our holdout here
    best = min(history, key=lambda row: row["val_loss"])
    print(
        f"{model_name} {overrides} holdout best {best['val_loss']:.4f} at epoch {best['epoch']}, "
        f"last {history[-1]['val_loss']:.4f}"
    )


if __name__ == "__main__":
    main()
