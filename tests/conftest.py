"""Shared fixtures: a tiny MovieLens-shaped dataset, its archive, and a local HTTP server to serve it."""

import hashlib
import io
import os
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import fetch

ROOT = Path(__file__).resolve().parents[1]

# The real archive's mirror, read before any fixture clears the variable; a folder is made absolute
# because the tests run in temporary directories.
REAL_MIRROR = os.environ.get(fetch.MIRROR_VARIABLE, "")
if REAL_MIRROR and "://" not in REAL_MIRROR:
    REAL_MIRROR = str(Path(REAL_MIRROR).resolve())
needs_real_archive = pytest.mark.skipif(not REAL_MIRROR, reason=f"{fetch.MIRROR_VARIABLE} is not set: no real archive")


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
    monkeypatch.setattr(fetch, "BACKOFF_S", 0.0)


def write_params(project: Path, **changes: dict) -> dict:
    """`project`'s params.yaml (at first the repository's) with some sections changed or merged into."""
    source = project / "params.yaml" if (project / "params.yaml").exists() else ROOT / "params.yaml"
    params = yaml.safe_load(source.read_text())
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(params.get(key), dict):
            params[key] = {**params[key], **value}
        else:
            params[key] = value
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return params


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory holding the repository's params.yaml; stages use paths relative to it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(fetch.MIRROR_VARIABLE, raising=False)
    write_params(tmp_path)
    return tmp_path


@pytest.fixture
def real_project(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project whose download stage reads the real ml-latest-small archive from the mirror."""
    monkeypatch.setenv(fetch.MIRROR_VARIABLE, REAL_MIRROR)
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
