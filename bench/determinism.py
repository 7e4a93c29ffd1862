"""Does training give the same bits in every process? Runs a model's first lazy-Adam steps in fresh processes.

    dvc repro encode && python bench/determinism.py [--model mf] [--processes 48]

Each process trains the first few batches of the model's early-stopping search from the same seed and prints a hash of
the table after every step; the bench counts the distinct sequences. One sequence is what the pipeline needs:
DVC's run-cache and `dvc status` rely on byte-identical outputs. A rare second sequence once came from MKL's
first sqrt call racing on two threads (see lenscf/engine.py).
"""

import argparse
import collections
import hashlib
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "stages"))

from lenscf.params import TRAINED  # noqa: E402

STEPS = 3


def child(name: str) -> None:
    import torch

    from lenscf.engine import TRAINERS, carve_holdout, model_builder
    from lenscf.params import ModelParams, load_params
    from lenscf.splits import load_encoded

    data = load_encoded()
    params = ModelParams.load(load_params(), name)
    kept, _ = carve_holdout(data.train, params.engine.holdout_frac, params.engine.seed)  # as `fit`'s search does
    model = model_builder(params, data.train, data.n_users, data.n_items)()
    generator = torch.Generator().manual_seed(params.engine.seed)
    trainer = TRAINERS[type(model)](model, kept, params.engine, generator)
    hashes = []
    for k in range(min(STEPS, len(trainer.batches))):
        trainer.step(trainer.batches[k])
        hashes.append(hashlib.md5(trainer.table.numpy().tobytes()).hexdigest()[:8])
    print(" ".join(hashes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mf", choices=TRAINED)
    parser.add_argument("--processes", type=int, default=48)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.model)
        return
    seen: collections.Counter[str] = collections.Counter()
    for _ in range(args.processes):
        command = [sys.executable, __file__, "--child", "--model", args.model]
        run = subprocess.run(command, capture_output=True, text=True, check=True)
        seen[run.stdout.strip()] += 1
    for hashes, count in seen.most_common():
        print(f"{count:>4} processes: table after each step {hashes}")
    print(f"{len(seen)} distinct sequence(s) in {args.processes} processes")


if __name__ == "__main__":
    main()
