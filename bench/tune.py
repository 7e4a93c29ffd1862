"""Score candidate settings on a slice of the training split, never on validation.

The defaults in params.yaml were chosen with this script. It holds out 10% of the encoded training ratings,
fits the model on the rest exactly as the train stage would (early stopping on its own slice of that rest,
then a refit), and prints the MSE on the held-out 10% (for bpr: ndcg@10 over it).

    dvc repro encode && python bench/tune.py mf_bias l2=0.05 emb_size=64 lr=0.01
"""

import sys
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "stages"))

from lenscf.engine import carve_holdout, fit, fit_counts, rating_mse
from lenscf.metrics import ranking_metrics
from lenscf.models import build_model
from lenscf.params import ModelParams, load_params
from lenscf.scoring import SeenItems, top_unseen
from lenscf.splits import load_encoded

TUNE_FRAC, TUNE_SEED = 0.1, 12345


def main() -> None:
    name, overrides = sys.argv[1], dict(arg.split("=", 1) for arg in sys.argv[2:])
    raw = load_params()
    # Overrides go in as models.<name> keys, so params.py checks them as it checks params.yaml.
    raw["models"][name] = {**(raw["models"].get(name) or {}), **{k: yaml.safe_load(v) for k, v in overrides.items()}}
    params = ModelParams.load(raw, name)
    data = load_encoded()
    fit_part, scored = carve_holdout(data.train, TUNE_FRAC, TUNE_SEED)
    mean = fit_part.ratings.double().mean().item()

    def build() -> torch.nn.Module:
        torch.manual_seed(params.engine.seed if params.engine else 0)
        return build_model(name, data.n_users, data.n_items, mean, params.args)

    start = time.perf_counter()
    if params.engine is None:
        model, record = build(), {"epochs": 0}
        fit_counts(model, fit_part)
    else:
        model, record = fit(build, fit_part, scored, data.rating_scale, params.engine)
    wall = time.perf_counter() - start
    relevant = scored.subset(scored.ratings >= 4.0)
    users = torch.unique(relevant.users)
    _, top = top_unseen(model, users, SeenItems(fit_part, data.n_users), 10)
    ranking = ranking_metrics(top.numpy(), users.numpy(), relevant.users.numpy(), relevant.items.numpy(), 10)
    mse = rating_mse(model, scored, data.rating_scale) if model.predicts_ratings else float("nan")
    print(
        f"{name} {overrides} tune mse {mse:.4f} ndcg@10 {ranking['ndcg'].mean():.4f} "
        f"epochs {record['epochs']} ({record.get('searched_epochs', 0)} searched) {wall:.1f}s"
    )


if __name__ == "__main__":
    main()
