"""Score candidate settings on a slice of the training split, never on validation.

The defaults in params.yaml were chosen with this script. It holds out 10% of the encoded training ratings,
fits the model on the rest exactly as the train stage would (early stopping on its own slice of that rest,
then a refit), and prints the MSE on the held-out 10% (for bpr: ndcg@10 over it).

    dvc repro encode && python bench/tune.py mf_bias l2=0.05 emb_size=64 lr=0.01
"""

import dataclasses
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "stages"))

from lenscf.engine import carve_holdout, rating_mse, train_model
from lenscf.evaluation import ranking_section
from lenscf.params import EvaluateParams, ModelParams, load_params
from lenscf.splits import load_encoded

TUNE_FRAC, TUNE_SEED = 0.1, 12345


def main() -> None:
    name, overrides = sys.argv[1], dict(arg.split("=", 1) for arg in sys.argv[2:])
    raw = load_params()
    # Overrides go in as models.<name> keys, so params.py checks them as it checks params.yaml.
    raw["models"][name] = {**(raw["models"].get(name) or {}), **{k: yaml.safe_load(v) for k, v in overrides.items()}}
    params, evaluate = ModelParams.load(raw, name), EvaluateParams.load(raw)
    data = load_encoded()
    fit_part, scored = carve_holdout(data.train, TUNE_FRAC, TUNE_SEED)  # every scored pair is warm
    start = time.perf_counter()
    model, record = train_model(params, fit_part, scored, data.n_users, data.n_items, data.rating_scale)
    wall = time.perf_counter() - start
    # Ranking as the evaluate stage ranks, with the fitted part as training and the scored slice as validation.
    ranking = ranking_section(model, dataclasses.replace(data, train=fit_part, val=scored), evaluate)
    mse = rating_mse(model, scored, data.rating_scale) if model.predicts_ratings else float("nan")
    if record is None:
        epochs = "counted"
    elif "sweeps" in record:
        epochs = f"sweeps {record['sweeps']}"
    else:
        epochs = f"epochs {record['epochs']} ({record['searched_epochs']} searched)"
    top = f"ndcg@{evaluate.top_n}"
    print(f"{name} {overrides} tune mse {mse:.4f} {top} {ranking[top]:.4f} {epochs} {wall:.1f}s")


if __name__ == "__main__":
    main()
