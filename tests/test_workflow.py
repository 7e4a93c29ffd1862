"""The experiment workflow end to end, as a user runs it, on a tiny dataset served from 127.0.0.1.

One test, several steps, because each step needs the state the last one left: a fresh
`dvc repro`, a no-op repeat, `dvc exp run -S`, a queued sweep, `dvc metrics diff` between
branches without the cache, and a push/pull round trip through a local remote.
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

from conftest import ROOT, Server, TinyRelease, low_rank_ratings
from params import MODEL_NAMES

DATA_STAGES = {"download", "split", "encode"}
MODEL_STAGES = {f"{stage}@{m}" for stage in ("train", "evaluate") for m in MODEL_NAMES}

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
        result = subprocess.run(command, cwd=self.path, env=self.env, capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout + result.stderr

    def dvc(self, *args: str) -> str:
        return self.run(sys.executable, "-m", "dvc", *args)

    def commit(self, message: str) -> None:
        self.run("git", "add", "-A")
        self.run("git", "commit", "-q", "-m", message)

    def set_params(self, **changes: object) -> None:
        path = self.path / "params.yaml"
        params = yaml.safe_load(path.read_text())
        params.update(changes)
        path.write_text(yaml.safe_dump(params, sort_keys=False))


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
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update(url=server.url + "/{dataset}.zip", sha256={"ml-latest-small": release.pins})
    params.update(epochs=2, emb_size=8, batch_size=64)
    params["models"] = {name: {"mean_offset": True} for name in MODEL_NAMES if name not in ("global_mean", "biases")}
    params["models"].update(global_mean={}, biases={}, collab_fnet={"n_hidden": 4, "dropout": 0.1})
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    r = Repo(path)
    r.run("git", "init", "-q", "-b", "main")
    r.dvc("init", "-q")
    r.commit("pipeline")
    return r


def test_workflow(repo: Repo, tmp_path: Path) -> None:
    # A fresh clone runs every stage; a second repro runs none.
    assert stages_run(repo.dvc("repro")) == DATA_STAGES | MODEL_STAGES
    repo.commit("baseline results")
    assert stages_run(repo.dvc("repro")) == set()
    assert "up to date" in repo.dvc("status")

    # Forcing a stage rebuilds identical bytes, so git sees no change.
    assert stages_run(repo.dvc("repro", "--force", "--single-item", "train@mf_bias")) == {"train@mf_bias"}
    assert repo.run("git", "status", "--porcelain") == ""

    # A shared training parameter reruns training and evaluation only.
    assert stages_run(repo.dvc("exp", "run", "-n", "lr-high", "-S", "lr=0.005")) == MODEL_STAGES
    data = experiments(repo)["lr-high"]
    assert data["params"]["params.yaml"]["data"]["lr"] == 0.005
    assert set(data["metrics"]) >= {f"metrics/{m}.json" for m in MODEL_NAMES}

    # A queued sweep, run two at a time.
    repo.run("git", "checkout", "-q", "--", "params.yaml", "dvc.lock", "metrics", "plots")
    for lr in ("0.002", "0.02"):
        repo.dvc("exp", "run", "--queue", "-S", f"lr={lr}")
    repo.dvc("queue", "start", "-j", "2")
    deadline = time.monotonic() + 600
    while True:
        status = repo.dvc("queue", "status")
        if "Queued" not in status and "Running" not in status:
            break
        assert time.monotonic() < deadline, status
        time.sleep(3)
    assert status.count("Success") == 2, status
    lrs = {data["params"]["params.yaml"]["data"]["lr"] for data in experiments(repo).values()}
    assert lrs == {0.005, 0.002, 0.02}

    # A branch that changes a parameter; metrics diff needs no cache because metrics live in git.
    repo.run("git", "checkout", "-q", "-b", "wider")
    repo.set_params(emb_size=16)
    assert stages_run(repo.dvc("repro")) == MODEL_STAGES
    repo.commit("emb_size 16")
    repo.dvc("remote", "add", "-d", "store", str(tmp_path / "remote"))
    repo.dvc("push")
    shutil.rmtree(repo.path / ".dvc" / "cache")
    diff = json.loads(repo.dvc("metrics", "diff", "main", "wider", "--json"))
    for model in ("mf", "mf_bias", "collab_fnet"):
        assert diff[f"metrics/{model}.json"]["mse"]["diff"] != 0
    assert "metrics/global_mean.json" not in diff  # nothing there depends on emb_size
    assert "metrics/data.json" not in diff

    # The artifacts round-trip through the remote.
    shutil.rmtree(repo.path / "data")
    shutil.rmtree(repo.path / "models")
    repo.dvc("pull")
    assert (repo.path / "models" / "mf_bias.pt").exists()
    assert "up to date" in repo.dvc("status")
