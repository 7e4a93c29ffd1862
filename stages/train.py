"""Stage train@<model>: fit one model on the encoded training split and save its weights and history."""

import sys
from pathlib import Path

import pandas as pd

from artifacts import write_csv
from errors import run_stage
from models import build_model, save_checkpoint
from params import TrainParams, load_params
from ratings import read_csv
from training import Ratings, fit, pick_device

ENCODED = Path("data/encoded")


def main() -> None:
    params = TrainParams.load(load_params(), sys.argv[1])
    device = pick_device(params.device)
    train = read_csv(ENCODED / "train.csv")
    n_users, n_items = len(read_csv(ENCODED / "users.csv")), len(read_csv(ENCODED / "items.csv"))
    model = build_model(params, n_users, n_items, mean=float(train["rating"].mean())).to(device)
    history = fit(
        model, Ratings.from_frame(train, device), Ratings.from_frame(read_csv(ENCODED / "val.csv"), device), params
    )
    save_checkpoint(Path(f"models/{params.model}.pt"), model, params, n_users, n_items)
    write_csv(Path(f"plots/history/{params.model}.csv"), pd.DataFrame(history), float_format="%.6f")


if __name__ == "__main__":
    run_stage(main)
