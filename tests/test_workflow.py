"""The experiment workflow end to end, as a user runs it, on a tiny dataset served from 127.0.0.1.

One test, several steps, because each step needs the state the last one left: a fresh `dvc repro`, a no-op
repeat, `dvc exp run -S`, going back to the earlier params from the run-cache, a queued grid sweep,
`dvc metrics diff` and `dvc plots diff` between branches without the cache, and a push/pull round trip.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, Server, TinyRelease, low_rank_ratings, make_params
from lenscf.params import COUNTED, MODEL_NAMES, SOLVED, TRAINED, stage_of

DATA_STAGES = {"download", "split", "encode"}
COUNT_STAGES = {stage_of(m) for m in COUNTED}
TRAIN_STAGES = {stage_of(m) for m in TRAINED}
SOLVE_STAGES = {stage_of(m) for m in SOLVED}
EVALUATE_STAGES = {f"evaluate@{m}" for m in MODEL_NAMES}

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="the workflow needs git")


class Repo:
    """A temporary git + DVC repository holding a copy of the pipeline."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # stages run this python
            "DVC_NO_ANALYTICS": "1",
            "GIT_AUTHOR_NAME": "test",
            "GIT_AUTHOR_EMAIL": "test@example.com",
            "GIT_COMMITTER_NAME": "test",
            "GIT_COMMITTER_EMAIL": "test@example.com",
        }
        self.env.pop("MOVIELENS_MIRROR", None)

    def run(self, *command: str) -> str:
        """Run a command to its end; a hang fails the test instead of stalling CI."""
        result = subprocess.run(
            command, cwd=self.path, env=self.env, capture_output=True, text=True, check=False, timeout=600
        )
        assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout + result.stderr

    def dvc(self, *args: str) -> str:
        return self.run(sys.executable, "-m", "dvc", *args)

    def commit(self, message: str) -> None:
        self.run("git", "add", "-A")
        self.run("git", "commit", "-q", "-m", message)

    def params(self) -> dict:
        return yaml.safe_load((self.path / "params.yaml").read_text())


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def experiments(repo: Repo) -> dict[str, dict]:
    """`dvc exp show --json` as {experiment name: its data (params, metrics)}."""
    shown = json.loads(repo.dvc("exp", "show", "--json"))
    return {e["name"]: e["revs"][0]["data"] for entry in shown for e in entry.get("experiments") or []}


@pytest.fixture
def repo(tmp_path: Path, server: Server) -> Repo:
    release = TinyRelease(low_rank_ratings(n_users=30, n_items=25, seed=1))
    server.files["/ml-latest-small.zip"] = release.archive
    path = tmp_path / "project"
    path.mkdir()
    shutil.copytree(ROOT / "stages", path / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", ".gitignore"):
        shutil.copy(ROOT / name, path / name)
    params = make_params(epochs=2)
    params["data"] |= {"url": server.url + "/{dataset}.zip", "sha256": {"ml-latest-small": release.pins}}
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    r = Repo(path)
    r.run("git", "init", "-q", "-b", "main")
    r.dvc("init", "-q")
    shutil.copytree(ROOT / ".dvc" / "plots", path / ".dvc" / "plots")  # the per-model colour templates
    r.commit("pipeline")
    return r


def test_workflow(repo: Repo, tmp_path: Path) -> None:
    # A fresh clone runs every stage; a second repro runs none.
    assert stages_run(repo.dvc("repro")) == DATA_STAGES | COUNT_STAGES | TRAIN_STAGES | SOLVE_STAGES | EVALUATE_STAGES
    repo.commit("baseline results")
    assert stages_run(repo.dvc("repro")) == set()
    assert "up to date" in repo.dvc("status")

    # Forcing a stage rebuilds identical bytes, so git sees no change.
    assert stages_run(repo.dvc("repro", "--force", "--single-item", "train@mf_bias")) == {"train@mf_bias"}
    assert repo.run("git", "status", "--porcelain") == ""

    # A shared engine parameter retrains the trained models and re-evaluates all (biases is the cold-start
    # fallback of every evaluation); the counted baselines and the solved ials do not read it and stay.
    assert stages_run(repo.dvc("exp", "run", "-n", "lr-high", "-S", "lr=0.005")) == TRAIN_STAGES | EVALUATE_STAGES
    data = experiments(repo)["lr-high"]
    assert data["params"]["params.yaml"]["data"]["lr"] == 0.005
    assert set(data["metrics"]) >= {f"metrics/{m}.json" for m in MODEL_NAMES}

    # Going back to the earlier value restores every stage from the run-cache: a -> b -> a runs nothing.
    back = repo.dvc("exp", "run", "-n", "lr-back", "-S", "lr=0.01")
    assert stages_run(back) == set(), back
    assert back.count("is cached - skipping run") == len(TRAIN_STAGES | EVALUATE_STAGES)
    # the baseline's results, byte for byte (DVC rewrites params.yaml in its own YAML style)
    assert repo.run("git", "status", "--porcelain", "--", ".", ":!params.yaml") == ""
    assert repo.params()["lr"] == 0.01

    # A Hydra-style grid sweep, queued and run two at a time, then only what changed.
    repo.dvc("exp", "run", "--queue", "-S", "lr=0.002,0.02")
    # `dvc queue start` waits for its workers, and a celery worker can linger idle after the queue empties;
    # so it runs in the background, the queue's own status says when the sweep is done, and stragglers go.
    starter = subprocess.Popen(
        [sys.executable, "-m", "dvc", "queue", "start", "-j", "2"],
        cwd=repo.path,
        env=repo.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 600
    try:
        while True:
            status = repo.dvc("queue", "status")
            if "Queued" not in status and "Running" not in status:
                break
            assert time.monotonic() < deadline, status
            time.sleep(3)
    finally:
        starter.kill()
        starter.wait()
        repo.dvc("queue", "stop", "--kill")
    assert status.count("Success") == 2, status
    lrs = {data["params"]["params.yaml"]["data"]["lr"] for data in experiments(repo).values()}
    assert {0.002, 0.02} <= lrs
    changed = repo.dvc("exp", "show", "--only-changed", "--csv")
    assert "lr" in changed.splitlines()[0] and "warm.mse" in changed.splitlines()[0]

    # A branch that changes one model's key: only that model reruns, and metrics diff needs no cache.
    repo.run("git", "checkout", "-q", "-b", "wider")
    params = repo.params()
    params["models"]["mf"]["emb_size"] = 16
    (repo.path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert stages_run(repo.dvc("repro")) == {"train@mf", "evaluate@mf"}
    repo.commit("mf emb_size 16")
    repo.dvc("remote", "add", "-d", "store", str(tmp_path / "remote"))
    repo.dvc("push")
    shutil.rmtree(repo.path / ".dvc" / "cache")
    diff = json.loads(repo.dvc("metrics", "diff", "main", "wider", "--json"))
    assert diff["metrics/mf.json"]["warm.mse"]["diff"] != 0
    assert not {f"metrics/{m}.json" for m in MODEL_NAMES if m != "mf"} & set(diff)

    # Plot data live in git too, so plots diff shows both branches without the cache, one colour per model.
    plots = json.loads(repo.dvc("plots", "diff", "main", "wider", "--json"))["data"]
    curve = plots["Validation MSE by epoch"][0]
    assert set(curve["revisions"]) == {"main", "wider"}
    assert curve["content"]["encoding"]["color"]["field"] == "model"
    assert {row["model"] for row in curve["content"]["data"]["values"]} == {"biases", "mf", "mf_bias", "collab_fnet"}

    # The artifacts round-trip through the remote.
    shutil.rmtree(repo.path / "data")
    shutil.rmtree(repo.path / "models")
    repo.dvc("pull")
    assert (repo.path / "models" / "mf_bias.pt").exists()
    assert "up to date" in repo.dvc("status")
