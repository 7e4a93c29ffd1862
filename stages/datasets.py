"""The MovieLens releases: where each keeps its ratings and titles, and how to read them."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from errors import PipelineError
from ratings import RATING_COLUMNS, read_csv, validate_ratings


def _csv_ratings(path: Path) -> pd.DataFrame:
    return validate_ratings(read_csv(path), str(path), first_line=2)


def _tab_ratings(path: Path) -> pd.DataFrame:
    frame = read_csv(path, sep="\t", header=None, names=RATING_COLUMNS, dtype=str)
    return validate_ratings(frame, str(path), first_line=1)


def _dat_ratings(path: Path) -> pd.DataFrame:
    """`::` needs pandas' slow Python parser; splitting on ':' keeps the C parser and every other field is empty."""
    frame = read_csv(path, sep=":", header=None, usecols=[0, 2, 4, 6], dtype=str)
    frame.columns = RATING_COLUMNS
    return validate_ratings(frame, str(path), first_line=1)


def _csv_movies(path: Path) -> pd.DataFrame:
    return read_csv(path, usecols=["movieId", "title"])


def _pipe_movies(path: Path) -> pd.DataFrame:
    return read_csv(path, sep="|", header=None, usecols=[0, 1], names=["movieId", "title"], encoding="latin-1")


def _dat_movies(path: Path, encoding: str) -> pd.DataFrame:
    """Titles hold ':' themselves, so split each line on the first two '::' only."""
    try:
        lines = path.read_text(encoding=encoding).splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise PipelineError(f"{path}: cannot read: {err}") from err
    parts = pd.Series(lines, dtype=str).str.split("::", n=2, expand=True, regex=False)
    if parts.shape[1] < 2:
        raise PipelineError(f"{path}: expected MovieID::Title::Genres lines")
    return pd.DataFrame({"movieId": parts[0], "title": parts[1]})


@dataclass(frozen=True)
class Release:
    folder: str  # the archive's top folder
    ratings_member: str
    movies_member: str
    read_ratings: Callable[[Path], pd.DataFrame]
    read_movies: Callable[[Path], pd.DataFrame]

    def load_movies(self, path: Path) -> pd.DataFrame:
        """movieId and title, with ids checked like the ratings' so the two tables join."""
        movies = self.read_movies(path)
        ids = pd.to_numeric(movies["movieId"], errors="coerce")
        bad = ids.isna().to_numpy()
        if bad.any():
            raise PipelineError(f"{path}: movie {movies['movieId'].iloc[bad.argmax()]!r} is not a numeric id")
        return pd.DataFrame({"movieId": ids.astype("int64"), "title": movies["title"].fillna("").astype(str)})


_CSV = {
    "ratings_member": "ratings.csv",
    "movies_member": "movies.csv",
    "read_ratings": _csv_ratings,
    "read_movies": _csv_movies,
}

RELEASES: dict[str, Release] = {
    "ml-latest-small": Release("ml-latest-small", **_CSV),
    "ml-100k": Release("ml-100k", "u.data", "u.item", _tab_ratings, _pipe_movies),
    "ml-1m": Release("ml-1m", "ratings.dat", "movies.dat", _dat_ratings, lambda p: _dat_movies(p, "latin-1")),
    "ml-10m": Release("ml-10M100K", "ratings.dat", "movies.dat", _dat_ratings, lambda p: _dat_movies(p, "utf-8")),
    "ml-20m": Release("ml-20m", **_CSV),
    "ml-25m": Release("ml-25m", **_CSV),
    "ml-32m": Release("ml-32m", **_CSV),
}
