"""Wall time and throughput of training each model with the params.yaml defaults on the encoded data.

    dvc repro encode && python bench/train_speed.py

Run it after the encode stage. Timings belong here, never in tests.
"""

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "stages"))

from models import build_model
from params import MODEL_NAMES, TrainParams, load_params
from training import fit, load_encoded, pick_device


def main() -> None:
    params = load_params()
    print(f"{torch.get_num_threads()} torch threads")
    print(f"{'model':<12} {'device':>6} {'epochs':>6} {'batch':>6} {'wall s':>7} {'ratings/s/epoch':>16}")
    total = 0.0
    for name in MODEL_NAMES:
        p = TrainParams.load(params, name)
        device = pick_device(p.device)
        train, val, n_users, n_items = load_encoded(device)
        start = time.perf_counter()
        model = build_model(p, n_users, n_items, mean=train.ratings.double().mean().item()).to(device)
        history = fit(model, train, val, p)
        wall = time.perf_counter() - start
        total += wall
        rate = len(train) * len(history) / wall if history else float("nan")
        print(f"{name:<12} {device.type:>6} {len(history):>6} {p.batch_size:>6} {wall:>7.2f} {rate:>16,.0f}")
    print(f"{'all five':<12} {'':>6} {'':>6} {'':>6} {total:>7.2f}")


if __name__ == "__main__":
    main()
