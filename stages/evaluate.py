"""Stage evaluate@<model>: score a trained model on the validation split, apart from any training code."""

import argparse
from pathlib import Path

import numpy as np

from lenscf.artifacts import table_of, write_json, write_table
from lenscf.checkpoints import load_checkpoint
from lenscf.errors import run_stage
from lenscf.evaluation import calibration, error_by_activity, evaluate
from lenscf.params import MODEL_NAMES, EvaluateParams, load_params
from lenscf.splits import load_encoded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", choices=MODEL_NAMES, help="which trained model to score")
    name = parser.parse_args().model
    params = EvaluateParams.load(load_params())
    data = load_encoded(with_ids=True)
    model, baseline = load_checkpoint(Path(f"models/{name}.pt")), load_checkpoint(Path("models/biases.pt"))
    metrics, prediction = evaluate(model, baseline, data, params)
    write_json(Path(f"metrics/{name}.json"), metrics)
    warm = data.val.warm_mask().numpy()
    user_ids, movie_ids = data.val_ids
    predictions = table_of(
        {
            "userId": user_ids,
            "movieId": movie_ids,
            "rating": data.val.ratings.numpy(),
            "prediction": prediction.astype(np.float32),
            "warm": warm,
        }
    )
    write_table(Path(f"data/predictions/{name}.parquet"), predictions)
    write_json(Path(f"plots/calibration/{name}.json"), calibration(name, data.val.ratings.numpy(), prediction))
    write_json(Path(f"plots/activity/{name}.json"), error_by_activity(name, data, prediction, warm))


if __name__ == "__main__":
    run_stage(main)
