"""Stage train@<model>: fit one model on the encoded training split and save its weights and history."""

import sys
from pathlib import Path

import pandas as pd

from artifacts import write_csv
from errors import run_stage
from models import build_model, save_checkpoint
from params import TrainParams, load_params
from training import fit, load_encoded, pick_device


def main() -> None:
    params = TrainParams.load(load_params(), sys.argv[1])
    device = pick_device(params.device)
    train, val, n_users, n_items = load_encoded(device)
    model = build_model(params, n_users, n_items, mean=train.ratings.double().mean().item()).to(device)
    history = fit(model, train, val, params)
    save_checkpoint(Path(f"models/{params.model}.pt"), model, params, n_users, n_items)
    write_csv(Path(f"plots/history/{params.model}.csv"), pd.DataFrame(history), float_format="%.6f")


if __name__ == "__main__":
    run_stage(main)
