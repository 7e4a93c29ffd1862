"""How the pipeline's cost grows with the data: a whole `dvc repro` on synthetic releases of several sizes.

    python bench/scale.py [--sizes 1000000 5000000 25000000] [--skip train@bpr evaluate@bpr | --only STAGE ...]
                          [--out FILE]

For each size it writes a synthetic release (bench/synthetic_release.py, ml-25m layout), copies the pipeline
into a temporary git + DVC repository, and runs every stage there with `dvc repro --single-item` in pipeline
order, printing each stage's wall time and peak RSS (of the stage and DVC together). It then prints, per stage,
the exponent of cost against ratings (the slope on a log-log scale) and what ml-32m would take, the models'
validation MSE beside the synthetic data's noise floor, and each trained model's epochs (search + refit).
Results go to --out for bench/readme_plots.py.
"""

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "stages"))

from lenscf.params import COUNTED, MODEL_NAMES, SOLVED, TRAINED, stage_of  # noqa: E402

STAGES = ["download", "split", "encode"]
STAGES += [stage_of(m) for m in (*COUNTED, *TRAINED, *SOLVED)] + [f"evaluate@{m}" for m in MODEL_NAMES]
ML32M = 32_000_000


def run(command: list[str], cwd: Path, env: dict) -> tuple[float, int]:
    """Wall seconds and peak RSS in bytes of a command and everything it waits for."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{process.stderr.read().decode()}")
    return wall, usage.ru_maxrss * 1024


def project(work: Path, mirror: Path) -> dict:
    """A git + DVC repository holding the pipeline, reading the synthetic release through the mirror."""
    shutil.copytree(ROOT / "stages", work / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", ".gitignore"):
        shutil.copy(ROOT / name, work / name)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"] |= {"dataset": "ml-25m", "sha256": {}}  # unpinned: checked against the .md5
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "MOVIELENS_MIRROR": str(mirror), "DVC_NO_ANALYTICS": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    for command in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(command, cwd=work, env=env, check=True)
    shutil.copytree(ROOT / ".dvc" / "plots", work / ".dvc" / "plots")
    return env


def measure(n: int, tmp: Path, skip: set[str]) -> dict:
    mirror = tmp / f"mirror-{n}"
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "synthetic_release.py"), "--ratings", str(n), "--out", str(mirror)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    generate_s = time.perf_counter() - start
    work = tmp / f"project-{n}"
    work.mkdir()
    env = project(work, mirror)
    stages = {}
    for stage in (s for s in STAGES if s not in skip):
        wall, rss = run([sys.executable, "-m", "dvc", "repro", "--single-item", stage], work, env)
        stages[stage] = {"wall_s": round(wall, 2), "peak_rss_gb": round(rss / 2**30, 3)}
        print(f"  {n:>11,} {stage:<22} {wall:8.1f} s {rss / 2**30:6.2f} GB", flush=True)
    truth = json.loads((mirror / "ml-25m.truth.json").read_text())
    mse = {}
    for name in MODEL_NAMES:
        if f"evaluate@{name}" not in skip:
            mse[name] = json.loads((work / "metrics" / f"{name}.json").read_text())["warm"].get("mse")
    epochs = {}  # a train stage's time is its epochs times their cost: the record tells the two apart
    for name in TRAINED:
        if f"train@{name}" not in skip:
            record = json.loads((work / "plots" / "history" / f"{name}.json").read_text())
            epochs[name] = [record["searched_epochs"], record["epochs"]]
    shutil.rmtree(work)
    shutil.rmtree(mirror)
    return {
        "ratings": n,
        "generate_s": round(generate_s, 1),
        "stages": stages,
        "best_mse": truth["best_mse"],
        "mse": mse,
        "epochs": epochs,  # per trained model: [the early-stopping search's, the refit's]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 5_000_000, 25_000_000])
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument("--skip", nargs="+", default=[], choices=STAGES, metavar="STAGE", help="stages not to run")
    chosen.add_argument("--only", nargs="+", choices=STAGES, metavar="STAGE", help="the only stages to run")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "scale.json")
    args = parser.parse_args()
    if args.only:  # a stage's dependencies are not added: name them too (evaluate@m reads models/biases.pt)
        args.skip = [s for s in STAGES if s not in args.only]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            results.append(measure(n, Path(tmp), set(args.skip)))
            # Written after every size, so that a long run keeps what it has.
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\n{'stage':<22}" + "".join(f"{r['ratings']:>13,}" for r in results) + f"{'exponent':>10}{'ml-32m s':>10}")
    for stage in [*(s for s in STAGES if s not in args.skip), "total"]:
        walls = [
            sum(s["wall_s"] for s in r["stages"].values()) if stage == "total" else r["stages"][stage]["wall_s"]
            for r in results
        ]
        line = f"{stage:<22}" + "".join(f"{w:>11.1f} s" for w in walls)
        if len(results) > 1:
            slope = math.log(walls[-1] / walls[-2]) / math.log(results[-1]["ratings"] / results[-2]["ratings"])
            line += f"{slope:>10.2f}{walls[-1] * (ML32M / results[-1]['ratings']) ** slope:>10.0f}"
        print(line)
    print(
        f"{'peak RSS, GB':<22}"
        + "".join(f"{max(s['peak_rss_gb'] for s in r['stages'].values()):>13.2f}" for r in results)
    )
    print(f"\n{'validation MSE':<22}" + "".join(f"{r['ratings']:>13,}" for r in results))
    for name in [*MODEL_NAMES, "noise floor"]:
        values = [r["best_mse"] if name == "noise floor" else r["mse"].get(name) for r in results]
        print(f"{name:<22}" + "".join(f"{v:>13.4f}" if v is not None else f"{'-':>13}" for v in values))
    print(f"\n{'epochs, search + refit':<22}" + "".join(f"{r['ratings']:>13,}" for r in results))
    for name in TRAINED:
        counts = [r.get("epochs", {}).get(name) for r in results]
        print(f"{name:<22}" + "".join(f"{f'{c[0]} + {c[1]}' if c else '-':>13}" for c in counts))


if __name__ == "__main__":
    main()
