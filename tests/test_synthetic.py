"""The synthetic-release generator, and the whole pipeline on a small synthetic release in each layout."""

import hashlib
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest

import download
import encode
import evaluate
import split
import train as train_stage
from conftest import ROOT, run_main, write_params
from lenscf.archive import MIRROR_VARIABLE
from lenscf.errors import PipelineError

GENERATOR = ROOT / "bench" / "synthetic_release.py"


def generate(out: Path, layout: str, n: int = 6000, seed: int = 0) -> dict:
    subprocess.run(
        [
            sys.executable,
            str(GENERATOR),
            "--ratings",
            str(n),
            "--layout",
            layout,
            "--out",
            str(out),
            "--seed",
            str(seed),
        ],
        check=True,
        capture_output=True,
    )
    return json.loads((out / f"{layout}.truth.json").read_text())


def ratings_of(archive: Path, layout: str) -> pd.DataFrame:
    with zipfile.ZipFile(archive) as zf:
        if layout == "ml-25m":
            return pd.read_csv(io.BytesIO(zf.read("ml-25m/ratings.csv")))
        text = zf.read("ml-1m/ratings.dat").decode().replace("::", ",")
        return pd.read_csv(io.StringIO(text), names=["userId", "movieId", "rating", "timestamp"])


@pytest.mark.parametrize("layout", ["ml-25m", "ml-1m"])
def test_generator_writes_a_movielens_shaped_archive(layout: str, tmp_path: Path) -> None:
    truth = generate(tmp_path, layout)
    ratings = ratings_of(tmp_path / f"{layout}.zip", layout)
    assert len(ratings) == truth["ratings"] == 6000
    assert ratings["userId"].nunique() == truth["users"] and ratings["movieId"].nunique() <= truth["movies"]
    assert not ratings.duplicated(["userId", "movieId"]).any()
    assert ratings.groupby("userId").size().min() >= 20
    low, step = (0.5, 0.5) if layout == "ml-25m" else (1.0, 1.0)
    assert ratings["rating"].between(low, 5.0).all() and ((ratings["rating"] - low) % step == 0).all()
    assert 0 < truth["best_mse"] < truth["mse_of_the_true_score"]  # E[r | s] beats the clipped score itself
    digest = hashlib.md5((tmp_path / f"{layout}.zip").read_bytes()).hexdigest()
    assert (tmp_path / f"{layout}.zip.md5").read_text() == f"{digest}  {layout}.zip\n"


def test_generator_is_deterministic_by_seed(tmp_path: Path) -> None:
    generate(tmp_path / "a", "ml-25m", seed=4)
    generate(tmp_path / "b", "ml-25m", seed=4)
    generate(tmp_path / "c", "ml-25m", seed=5)
    archive = (tmp_path / "a" / "ml-25m.zip").read_bytes()
    assert archive == (tmp_path / "b" / "ml-25m.zip").read_bytes() != (tmp_path / "c" / "ml-25m.zip").read_bytes()


@pytest.mark.parametrize("layout", ["ml-25m", "ml-1m"])
def test_pipeline_runs_end_to_end_on_a_synthetic_release(
    layout: str, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror = tmp_path / "mirror"
    truth = generate(mirror, layout, n=8000)
    monkeypatch.setenv(MIRROR_VARIABLE, str(mirror))
    write_params(project, data={"dataset": layout, "sha256": {}}, holdout_frac=0.1, epochs=5)
    for stage in (download, split, encode):
        run_main(stage, monkeypatch)
    info = json.loads(Path("data/encoded/info.json").read_text())
    assert info["rating_scale"] == ([0.5, 5.0] if layout == "ml-25m" else [1.0, 5.0])
    models = ("popularity", "biases", "mf_bias", "bpr")
    for name in models:
        run_main(train_stage, monkeypatch, name)
    for name in models:
        run_main(evaluate, monkeypatch, name)
    metrics = {m: json.loads(Path(f"metrics/{m}.json").read_text()) for m in ("popularity", "biases", "mf_bias")}
    assert metrics["mf_bias"]["all"]["n_ratings"] == json.loads(Path("metrics/data.json").read_text())["n_val_all"]
    assert metrics["biases"]["warm"]["mse"] < metrics["popularity"]["warm"]["mse"]
    assert metrics["mf_bias"]["warm"]["mse"] > truth["best_mse"] - 0.05  # no model beats the noise floor


def test_a_corrupt_synthetic_archive_fails_its_md5(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror = tmp_path / "mirror"
    generate(mirror, "ml-1m")
    archive = mirror / "ml-1m.zip"
    archive.write_bytes(archive.read_bytes()[:-10] + b"0123456789")
    monkeypatch.setenv(MIRROR_VARIABLE, str(mirror))
    write_params(project, data={"dataset": "ml-1m", "sha256": {}})
    with pytest.raises(PipelineError, match=r"ml-1m\.zip: MD5 does not match"):
        run_main(download, monkeypatch)
    assert not Path("data").exists()
