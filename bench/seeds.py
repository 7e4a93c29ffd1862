"""How much of a metric is the training seed: retrain each model with N seeds and print mean ± sd.

    dvc repro encode && python bench/seeds.py [--seeds 5] [--models mf_bias bpr ...]

Each seed changes the model's initial weights, its batches, its dropout masks and its early-stopping holdout
slice (for ials, only its initial tables); the validation split stays the notebook's. The counted baselines
have no seed, so their sd is 0. A difference between two models smaller than these spreads says little. The
same runs as DVC experiments:
`dvc exp run --queue -S seed=1,2,3,4,5 && dvc queue start -j 2`.
"""

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "stages"))

from lenscf.engine import train_model  # noqa: E402
from lenscf.evaluation import evaluate  # noqa: E402
from lenscf.params import COUNTED, MODEL_NAMES, EvaluateParams, ModelParams, load_params  # noqa: E402
from lenscf.splits import load_encoded  # noqa: E402


def spread(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="how many training seeds (default 5)")
    parser.add_argument("--models", nargs="+", choices=MODEL_NAMES, default=list(MODEL_NAMES))
    args = parser.parse_args()
    raw = load_params()
    data = load_encoded()
    evaluate_params = EvaluateParams.load(raw)
    top = f"ndcg@{evaluate_params.top_n}"
    print(f"{args.seeds} seeds; mean ± sd over seeds")
    print(f"{'model':<12} {'warm MSE':>17} {'all-ratings MSE':>17} {top:>17}")
    baseline = None
    for name in ["biases", *[m for m in args.models if m != "biases"]]:
        runs = []
        for seed in [0] if name in COUNTED else range(1, args.seeds + 1):
            raw["models"][name] = {**(raw["models"][name] or {}), **({} if name in COUNTED else {"seed": seed})}
            model, _ = train_model(
                ModelParams.load(raw, name), data.train, data.val.warm(), data.n_users, data.n_items, data.rating_scale
            )
            if name == "biases" and baseline is None:
                baseline = model  # the cold-start fallback, as the pipeline's evaluate stages use models/biases.pt
            metrics, _ = evaluate(model, baseline, data, evaluate_params)
            runs.append(metrics)
        if name not in args.models:
            continue
        warm = [r["warm"]["mse"] for r in runs]
        every = [r["all"]["mse"] for r in runs]
        ndcg = [r["ranking"][top] for r in runs]
        print(f"{name:<12} {spread(warm):>17} {spread(every):>17} {spread(ndcg):>17}", flush=True)


if __name__ == "__main__":
    main()
