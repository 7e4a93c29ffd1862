"""Stages train@, solve@ and count@<model>: fit one model on the encoded training split; save it and its history."""

import argparse
from pathlib import Path

import torch

from lenscf.artifacts import write_json
from lenscf.checkpoints import save_checkpoint
from lenscf.engine import pick_device, train_model
from lenscf.errors import run_stage
from lenscf.params import MODEL_NAMES, ModelParams, load_params
from lenscf.splits import load_encoded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", choices=MODEL_NAMES, help="which model to fit")
    name = parser.parse_args().model
    params = ModelParams.load(load_params(), name)
    fitter = params.fitter
    if fitter is not None and fitter.threads:
        torch.set_num_threads(fitter.threads)
    device = pick_device(fitter.device) if fitter is not None else torch.device("cpu")
    data = load_encoded(device)
    model, record = train_model(params, data.train, data.val.warm(), data.n_users, data.n_items, data.rating_scale)
    if record is not None:
        record["history"] = [{"model": name, **row} for row in record["history"]]
        write_json(Path(f"plots/history/{name}.json"), record)
    save_checkpoint(Path(f"models/{name}.pt"), name, model)


if __name__ == "__main__":
    run_stage(main)
