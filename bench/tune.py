"""Score candidate settings on a slice of the training split, never on validation.

The defaults in params.yaml were chosen with this script. It holds out 10% of the encoded training ratings,
fits the model on the rest exactly as the train stage would (early stopping on its own slice of that rest,
then a refit), and prints the MSE on the held-out 10% (for bpr: ndcg@10 over it).

    dvc repro encode && python bench/tune.py mf_bias l2=0.05 emb_size=64 lr=0.01 [--seeds 8]

With --seeds N it fits once per seed 1..N and ends with the mean and sd over them: one seed's MSE there moves by
about ±0.003 (collab_fnet's and bpr's by more), so two settings closer than that need several seeds to tell apart.
"""

import argparse
import dataclasses
import math
import statistics
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "stages"))

from lenscf.engine import carve_holdout, rating_mse, train_model
from lenscf.evaluation import ranking_section
from lenscf.params import MODEL_NAMES, EvaluateParams, ModelParams, load_params
from lenscf.splits import Encoded, load_encoded

TUNE_FRAC, TUNE_SEED = 0.1, 12345


def tune(raw: dict, name: str, overrides: dict[str, object], data: Encoded) -> tuple[float, float, str]:
    """(MSE on the scored slice, ndcg@top_n there, the fit's epochs) of one fit with `overrides`."""
    # Overrides go in as models.<name> keys, so params.py checks them as it checks params.yaml.
    raw = {**raw, "models": {**raw["models"], name: {**(raw["models"].get(name) or {}), **overrides}}}
    params, evaluate = ModelParams.load(raw, name), EvaluateParams.load(raw)
    fit_part, scored = carve_holdout(data.train, TUNE_FRAC, TUNE_SEED)  # every scored pair is warm
    model, record = train_model(params, fit_part, scored, data.n_users, data.n_items, data.rating_scale)
    # Ranking as the evaluate stage ranks, with the fitted part as training and the scored slice as validation.
    ranking = ranking_section(model, dataclasses.replace(data, train=fit_part, val=scored), evaluate)
    mse = rating_mse(model, scored, data.rating_scale) if model.predicts_ratings else float("nan")
    if record is None:
        epochs = "counted"
    elif "sweeps" in record:
        epochs = f"sweeps {record['sweeps']}"
    else:
        epochs = f"epochs {record['epochs']} ({record['searched_epochs']} searched)"
    return mse, ranking[f"ndcg@{evaluate.top_n}"], epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=MODEL_NAMES)
    parser.add_argument("overrides", nargs="*", help="key=value: a models.<model> key, as YAML")
    parser.add_argument(
        "--seeds", type=int, default=0, help="fit with seeds 1..N and print their mean (0: params' seed)"
    )
    args = parser.parse_args()
    overrides = {k: yaml.safe_load(v) for k, v in (arg.split("=", 1) for arg in args.overrides)}
    raw, data = load_params(), load_encoded()
    top = f"ndcg@{EvaluateParams.load(raw).top_n}"
    runs = []
    for seed in range(1, args.seeds + 1) if args.seeds else [None]:
        start = time.perf_counter()
        seeded = overrides if seed is None else {**overrides, "seed": seed}
        mse, ndcg, epochs = tune(raw, args.model, seeded, data)
        runs.append((mse, ndcg))
        wall = time.perf_counter() - start
        print(f"{args.model} {seeded} tune mse {mse:.4f} {top} {ndcg:.4f} {epochs} {wall:.1f}s", flush=True)
    if len(runs) > 1:  # a ranking model's MSE is nan: only the columns it has
        columns = {"tune mse": [mse for mse, _ in runs], top: [ndcg for _, ndcg in runs]}
        summary = [
            f"{label} {statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"
            for label, values in columns.items()
            if all(math.isfinite(value) for value in values)
        ]
        print(f"{args.model} {overrides} over {len(runs)} seeds: {' '.join(summary)}")


if __name__ == "__main__":
    main()
