"""Reading and checking rating tables, so every stage rejects bad rows the same way."""

from pathlib import Path

import numpy as np
import pandas as pd

from errors import PipelineError

RATING_COLUMNS = ["userId", "movieId", "rating", "timestamp"]
MIN_RATING, MAX_RATING = 0.5, 5.0


def _first_bad_row(bad: np.ndarray) -> int:
    return int(np.flatnonzero(bad)[0])


def _as_numbers(frame: pd.DataFrame, column: str, source: str, first_line: int) -> pd.Series:
    """Coerce one column to numbers, naming the first empty or non-numeric cell with its line in `source`."""
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna().to_numpy()
    if bad.any():
        row = _first_bad_row(bad)
        raw = frame[column].iloc[row]
        what = "empty" if pd.isna(raw) or not str(raw).strip() else f"non-numeric ({raw!r})"
        raise PipelineError(f"{source}, line {row + first_line}: {column} is {what}")
    return values


def validate_ratings(frame: pd.DataFrame, source: str, first_line: int = 2) -> pd.DataFrame:
    """Return the four rating columns with clean dtypes, or stop at the first bad row.

    `first_line` is the line of `source` that holds the frame's first row (2 under a header),
    so that the message points at the line a user would open.
    """
    missing = [c for c in RATING_COLUMNS if c not in frame.columns]
    if missing:
        raise PipelineError(f"{source}: missing column(s) {', '.join(missing)}")
    clean = {c: _as_numbers(frame, c, source, first_line) for c in RATING_COLUMNS}
    for column in ("userId", "movieId", "timestamp"):
        fractional = (clean[column] % 1 != 0).to_numpy()
        if fractional.any():
            row = _first_bad_row(fractional)
            raise PipelineError(f"{source}, line {row + first_line}: {column} {clean[column].iloc[row]} is not whole")
    rating = clean["rating"]
    outside = ((rating < MIN_RATING) | (rating > MAX_RATING)).to_numpy()
    if outside.any():
        row = _first_bad_row(outside)
        raise PipelineError(
            f"{source}, line {row + first_line}: rating {rating.iloc[row]} is outside [{MIN_RATING}, {MAX_RATING}]"
        )
    return pd.DataFrame(
        {
            "userId": clean["userId"].astype(np.int64),
            "movieId": clean["movieId"].astype(np.int64),
            "rating": rating.astype(np.float32),
            "timestamp": clean["timestamp"].astype(np.int64),
        }
    )


def read_csv(path: str | Path, **kwargs) -> pd.DataFrame:
    """pd.read_csv with the file named in any parse error."""
    try:
        return pd.read_csv(path, **kwargs)
    except FileNotFoundError as err:
        raise PipelineError(f"{path}: not found; run the stage that writes it (dvc repro)") from err
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as err:
        raise PipelineError(f"{path}: cannot parse: {err}") from err


def read_ratings(path: str | Path) -> pd.DataFrame:
    """A normalised ratings.csv (userId, movieId, rating, timestamp), checked row by row."""
    return validate_ratings(read_csv(path), str(path))
