"""How fast each model trains, beside Surprise's SVD on the same split.

    dvc repro encode && python bench/train_speed.py [--project DIR] [--models mf_bias ...]

For each model it prints the train stage's wall time as a whole process, the part of that which is start-up
(the interpreter and the stage's imports: `python stages/train.py --help`), the median of three fits in this
process, ratings per second per epoch over that median (the epochs of the early-stopping search and of the
refit, over the ratings each saw), and the validation MSE (warm ratings, clipped, as metrics/*.json reports
it). The whole process, first fit included, is the first column.

When scikit-surprise is installed (pip install -r bench/requirements.txt), Surprise's SVD with k=100 and 20
epochs runs on the same encoded split in the same run, both as a whole process and its fit alone, and the
table ends with our mf_bias time divided by Surprise's. Timings belong here, never in the tests.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "stages"))

import torch  # noqa: E402

from lenscf.engine import carve_holdout, rating_mse, train_model  # noqa: E402
from lenscf.params import MODEL_NAMES, TRAINED, ModelParams, load_params  # noqa: E402
from lenscf.splits import load_encoded  # noqa: E402

SVD_FACTORS, SVD_EPOCHS = 100, 20
FITS = 3  # fits timed per model, of which the median is reported: one fit on two busy cores varies by 10-20%
FIVE = ("global_mean", "biases", "mf", "mf_bias", "collab_fnet")  # the notebook's three, and two baselines


def timed(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def surprise_svd(project: Path, fits: int) -> None:
    """Child process: Surprise's SVD on the encoded split; prints its median fit time and validation MSE as JSON."""
    import pandas as pd
    from surprise import SVD, Dataset, Reader

    os.chdir(project)
    data = load_encoded()
    scale = data.rating_scale
    frame = pd.DataFrame(
        {"user": data.train.users.numpy(), "item": data.train.items.numpy(), "rating": data.train.ratings.numpy()}
    )
    trainset = Dataset.load_from_df(frame, Reader(rating_scale=scale)).build_full_trainset()
    fit_times = []
    for _ in range(fits):
        algo = SVD(n_factors=SVD_FACTORS, n_epochs=SVD_EPOCHS, random_state=0)
        start = time.perf_counter()
        algo.fit(trainset)
        fit_times.append(time.perf_counter() - start)
    fit_s = statistics.median(fit_times)
    val = data.val.warm()
    pairs = zip(val.users.tolist(), val.items.tolist(), val.ratings.tolist(), strict=True)
    estimates = [algo.predict(u, i, r).est for u, i, r in pairs]
    mse = float(((torch.tensor(estimates) - val.ratings) ** 2).mean())
    print(json.dumps({"fit_s": fit_s, "mse": mse, "n_train": len(data.train)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=ROOT, help="a folder holding params.yaml and data/encoded")
    parser.add_argument("--models", nargs="+", choices=MODEL_NAMES, default=list(MODEL_NAMES))
    parser.add_argument("--surprise", type=int, help=argparse.SUPPRESS)  # the child process, and its number of fits
    args = parser.parse_args()
    project = args.project.resolve()
    if args.surprise:
        surprise_svd(project, args.surprise)
        return

    os.chdir(project)
    raw = load_params()
    data = load_encoded()
    sizes = f"{len(data.train):,} training ratings, {data.n_users:,} users, {data.n_items:,} items"
    print(f"{sizes}; {torch.get_num_threads()} threads")
    header = f"{'model':<12} {'process s':>9} {'start-up s':>10} {'fit s':>6} {'epochs':>7} {'ratings/s/epoch':>16}"
    print(f"{header} {'val MSE':>8}")
    times, fits = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)  # the stage writes its model and history here, not into the project
        shutil.copy(project / "params.yaml", work / "params.yaml")
        (work / "data").mkdir()
        (work / "data" / "encoded").symlink_to(project / "data" / "encoded")
        startup = timed([sys.executable, str(ROOT / "stages" / "train.py"), "--help"], work)
        for name in args.models:
            process = timed([sys.executable, str(ROOT / "stages" / "train.py"), name], work)
            params = ModelParams.load(raw, name)
            fit_times = []
            for _ in range(FITS):  # the same model every time: training is deterministic
                start = time.perf_counter()
                model, record = train_model(
                    params, data.train, data.val.warm(), data.n_users, data.n_items, data.rating_scale
                )
                fit_times.append(time.perf_counter() - start)
            fit_s = statistics.median(fit_times)
            times[name], fits[name] = process, fit_s
            rate, epochs = "", ""
            if params.solver is not None:  # a sweep reads every rating twice, once per side
                rate, epochs = f"{2 * record['sweeps'] * len(data.train) / fit_s:,.0f}", f"{record['sweeps']} sw"
            elif record is not None:
                engine = params.engine
                kept = len(carve_holdout(data.train, engine.holdout_frac, engine.seed)[0]) if engine.holdout_frac else 0
                seen = record["searched_epochs"] * kept + record["epochs"] * len(data.train)
                rate, epochs = f"{seen / fit_s:,.0f}", f"{record['searched_epochs']}+{record['epochs']}"
            mse = f"{rating_mse(model, data.val.warm(), data.rating_scale):.4f}" if model.predicts_ratings else "-"
            print(f"{name:<12} {process:>9.2f} {startup:>10.2f} {fit_s:>6.2f} {epochs:>7} {rate:>16} {mse:>8}")
    trained = [n for n in args.models if n in TRAINED]
    print(
        f"{'trained':<12} {sum(times[n] for n in trained):>9.2f}  ({len(trained)} processes, of which start-up "
        f"{startup * len(trained):.2f} s)"
    )
    if set(FIVE) <= set(fits):
        print(f"{'fit of five':<12} {sum(fits[n] for n in FIVE):>26.2f}  ({', '.join(FIVE)})")
    try:
        import surprise  # noqa: F401
    except ImportError:
        print("scikit-surprise is not installed: pip install -r bench/requirements.txt for the comparison")
        return

    def surprise_child(fits: int) -> dict[str, float]:
        child = [sys.executable, __file__, "--surprise", str(fits), "--project", str(project)]
        return json.loads(subprocess.run(child, capture_output=True, text=True, check=True).stdout)

    start = time.perf_counter()
    surprise_child(1)  # the whole process, with one fit as a stage has
    process = time.perf_counter() - start
    svd = surprise_child(FITS)  # its fit timed as ours are
    rate = svd["n_train"] * SVD_EPOCHS / svd["fit_s"]
    row = f"{'Surprise SVD':<12} {process:>9.2f} {'':>10} {svd['fit_s']:>6.2f} {SVD_EPOCHS:>7} {rate:>16,.0f}"
    print(f"{row} {svd['mse']:>8.4f}")
    if "mf_bias" in times:
        print(f"mf_bias / Surprise SVD, whole process: {times['mf_bias'] / process:.2f}")


if __name__ == "__main__":
    main()
