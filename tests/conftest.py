"""Shared fixtures: tiny MovieLens-shaped datasets, their archives, a local HTTP server, and fixed params.

No test reads the repository's params.yaml: a user's `dvc exp run -S ...` changes that file, and the suite
must pass all the same. Tests start from tests/params.yaml and change copies of it.
"""

import hashlib
import io
import os
import sys
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import yaml

from lenscf import archive

ROOT = Path(__file__).resolve().parents[1]
TEST_PARAMS = Path(__file__).with_name("params.yaml")
sys.path.insert(0, str(ROOT / "bench"))  # the synthetic-release generator

# The real archive's mirror, read before any fixture clears the variable; a folder is made absolute
# because the tests run in temporary directories.
REAL_MIRROR = os.environ.get(archive.MIRROR_VARIABLE, "")
if REAL_MIRROR and "://" not in REAL_MIRROR:
    REAL_MIRROR = str(Path(REAL_MIRROR).resolve())
needs_real_archive = pytest.mark.skipif(
    not REAL_MIRROR, reason=f"{archive.MIRROR_VARIABLE} is not set: no real archive"
)


def make_params(**changes: object) -> dict:
    """tests/params.yaml with top-level keys replaced, or merged into where both are sections."""
    params = yaml.safe_load(TEST_PARAMS.read_text())
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(params.get(key), dict):
            params[key] = {**params[key], **value}
        else:
            params[key] = value
    return params


def write_params(project: Path, **changes: object) -> dict:
    """`project`'s params.yaml (at first tests/params.yaml) with some sections changed or merged into."""
    source = project / "params.yaml"
    params = yaml.safe_load(source.read_text()) if source.exists() else make_params()
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(params.get(key), dict):
            params[key] = {**params[key], **value}
        else:
            params[key] = value
    source.write_text(yaml.safe_dump(params, sort_keys=False))
    return params


def low_rank_ratings(
    n_users: int = 40, n_items: int = 30, rank: int = 2, density: float = 0.6, seed: int = 0
) -> pd.DataFrame:
    """Ratings that a rank-`rank` model explains well, so a working MF must beat the global mean."""
    rng = np.random.default_rng(seed)
    users, items = rng.normal(size=(n_users, rank)), rng.normal(size=(n_items, rank))
    scores = 3.0 + users @ items.T
    u, i = np.nonzero(rng.random((n_users, n_items)) < density)
    rating = np.clip(np.round(scores[u, i] * 2) / 2, 0.5, 5.0)
    return pd.DataFrame(
        {
            "userId": u * 3 + 1,  # sparse, non-contiguous ids, as in MovieLens
            "movieId": i * 7 + 2,
            "rating": rating,
            "timestamp": 1_000_000_000 + rng.integers(0, 10**6, len(u)),
        }
    )


def movies_for(ratings: pd.DataFrame) -> pd.DataFrame:
    ids = np.unique(ratings["movieId"])
    return pd.DataFrame({"movieId": ids, "title": [f"Movie {m} (2000)" for m in ids], "genres": "Drama"})


def arrow(frame: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(frame, preserve_index=False)


def make_zip(files: dict[str, bytes]) -> bytes:
    """A zip with fixed timestamps, so the same files give the same archive."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(2018, 9, 26, 0, 0, 0)), data)
    return buffer.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class TinyRelease:
    """An ml-latest-small-shaped archive built from low-rank ratings, with its members' checksums."""

    def __init__(self, ratings: pd.DataFrame | None = None) -> None:
        self.ratings = low_rank_ratings() if ratings is None else ratings
        self.ratings_csv = self.ratings.to_csv(index=False).encode()
        self.movies_csv = movies_for(self.ratings).to_csv(index=False).encode()
        self.archive = make_zip(
            {
                "ml-latest-small/ratings.csv": self.ratings_csv,
                "ml-latest-small/movies.csv": self.movies_csv,
            }
        )
        self.pins = {"ratings.csv": sha256(self.ratings_csv), "movies.csv": sha256(self.movies_csv)}


class Server:
    """Serves byte strings on 127.0.0.1; `fail[path] = n` answers the next n requests for path with 503."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.fail: dict[str, int] = {}
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                if server.fail.get(self.path, 0) > 0:
                    server.fail[self.path] -= 1
                    self.send_error(503)
                elif self.path in server.files:
                    body = server.files[self.path]
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                else:
                    self.send_error(404)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.httpd.shutdown()


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive, "BACKOFF_S", 0.0)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory holding tests/params.yaml; stages use paths relative to it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(archive.MIRROR_VARIABLE, raising=False)
    write_params(tmp_path)
    return tmp_path


@pytest.fixture
def real_project(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project whose download stage reads the real ml-latest-small archive from the mirror."""
    monkeypatch.setenv(archive.MIRROR_VARIABLE, REAL_MIRROR)
    return project


def serve_release(server: Server, project: Path, release: TinyRelease, dataset: str = "ml-latest-small") -> None:
    """Put the archive on the server and point params.yaml's data section at it."""
    server.files[f"/{dataset}.zip"] = release.archive
    write_params(
        project,
        data={
            "dataset": dataset,
            "url": server.url + "/{dataset}.zip",
            "sha256": {dataset: release.pins},
            "retries": 2,
            "timeout_s": 5,
        },
    )


def run_main(module: object, monkeypatch: pytest.MonkeyPatch, *args: str) -> None:
    """Call a stage script's main() as `python stages/<script>.py args...` would."""
    monkeypatch.setattr(sys, "argv", [f"{module.__name__}.py", *args])
    module.main()
