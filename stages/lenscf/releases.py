"""The MovieLens releases: where each keeps its ratings and titles, its rating scale, and how to read them.

Ratings are parsed by pyarrow's multi-threaded CSV reader (25 M rows in a few seconds). Only when that
fails does a slower pass look for the offending cell, so that the message can name its line.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from lenscf.errors import PipelineError

RATING_COLUMNS = ("userId", "movieId", "rating", "timestamp")
_NUMBER = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"  # what a numeric cell looks like
_INT32_MAX = 2**31 - 1


@dataclass(frozen=True)
class TextLayout:
    """How a ratings file is laid out: the delimiter, the header, and which fields hold the four columns."""

    delimiter: str
    header: bool
    fields: tuple[str, ...]  # every field of a line in order; "" marks one that is always empty

    def read_options(self) -> pcsv.ReadOptions:
        names = None if self.header else [name or f"_empty{k}" for k, name in enumerate(self.fields)]
        return pcsv.ReadOptions(column_names=names, block_size=1 << 24)

    @property
    def first_line(self) -> int:
        """The line of the file that holds the first row, so messages name the line a user would open."""
        return 2 if self.header else 1


CSV_LAYOUT = TextLayout(",", True, RATING_COLUMNS)
TAB_LAYOUT = TextLayout("\t", False, RATING_COLUMNS)
# `::` is two delimiters to pyarrow: every other field is empty, which keeps the fast C parser.
DAT_LAYOUT = TextLayout(":", False, ("userId", "", "movieId", "", "rating", "", "timestamp"))


def _read(path: Path, layout: TextLayout, column_type: pa.DataType) -> pa.Table:
    options = pcsv.ConvertOptions(
        column_types={name: column_type for name in RATING_COLUMNS}, include_columns=list(RATING_COLUMNS)
    )
    parse = pcsv.ParseOptions(delimiter=layout.delimiter)
    return pcsv.read_csv(path, read_options=layout.read_options(), parse_options=parse, convert_options=options)


def _check_header(path: Path, layout: TextLayout) -> None:
    if not layout.header:
        return
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            names = [name.strip().strip('"') for name in f.readline().rstrip("\r\n").split(layout.delimiter)]
    except OSError as err:
        raise PipelineError(f"{path}: cannot read: {err.strerror}") from err
    missing = [c for c in RATING_COLUMNS if c not in names]
    if missing:
        raise PipelineError(f"{path}: missing column(s) {', '.join(missing)}")


def _locate_non_numeric(path: Path, layout: TextLayout, err: Exception) -> PipelineError:
    """Re-read as text and find the first cell that is not a number; only runs once parsing has failed."""
    try:
        table = _read(path, layout, pa.string())
    except pa.ArrowInvalid as text_err:
        return PipelineError(f"{path}: cannot parse: {text_err}")
    for name in RATING_COLUMNS:
        column = table[name]
        numeric = pc.fill_null(pc.match_substring_regex(column, _NUMBER), True).to_numpy(zero_copy_only=False)
        if not numeric.all():
            row = int(np.argmin(numeric))
            return PipelineError(
                f"{path}, line {row + layout.first_line}: {name} is non-numeric ({column[row].as_py()!r})"
            )
    return PipelineError(f"{path}: cannot parse: {err}")


def _first(bad: np.ndarray) -> int:
    return int(np.flatnonzero(bad)[0])


def validate_ratings(table: pa.Table, source: str, first_line: int, scale: tuple[float, float]) -> pa.Table:
    """The four rating columns in compact types, or a PipelineError naming the first bad row and why."""
    low, high = scale
    clean = {}
    for name in RATING_COLUMNS:
        column = table[name]
        values = column.to_numpy(zero_copy_only=False).astype(np.float64)  # nulls become NaN
        missing = np.isnan(values)
        if missing.any():
            row = _first(missing)
            what = "empty" if column[row].as_py() is None else "non-numeric (nan)"
            raise PipelineError(f"{source}, line {row + first_line}: {name} is {what}")
        if name == "rating":
            outside = (values < low) | (values > high)
            if outside.any():
                row = _first(outside)
                line = row + first_line
                raise PipelineError(f"{source}, line {line}: rating {values[row]} is outside [{low}, {high}]")
            clean[name] = pa.array(values.astype(np.float32))
            continue
        fractional = values % 1 != 0
        if fractional.any():
            row = _first(fractional)
            raise PipelineError(f"{source}, line {row + first_line}: {name} {values[row]} is not whole")
        if name != "timestamp" and ((values < 0) | (values > _INT32_MAX)).any():
            row = _first((values < 0) | (values > _INT32_MAX))
            line = row + first_line
            raise PipelineError(f"{source}, line {line}: {name} {values[row]:.0f} is not an id in [0, 2**31)")
        clean[name] = pa.array(values.astype(np.int64 if name == "timestamp" else np.int32))
    return pa.table(clean)


def read_ratings(path: Path, layout: TextLayout, scale: tuple[float, float]) -> pa.Table:
    """A release's ratings file as userId, movieId (int32), rating (float32) and timestamp (int64)."""
    _check_header(path, layout)
    try:
        table = _read(path, layout, pa.float64())
    except FileNotFoundError as err:
        raise PipelineError(f"{path}: not found") from err
    except pa.ArrowInvalid as err:
        raise _locate_non_numeric(path, layout, err) from err
    return validate_ratings(table, str(path), layout.first_line, scale)


def _movies_table(ids: list[str] | pa.Array, titles: list[str] | pa.Array, path: Path) -> pa.Table:
    """movieId and title, with ids checked like the ratings' so the two tables join."""
    text = pc.utf8_trim_whitespace(pa.array(ids, pa.string()))
    numeric = pc.fill_null(pc.match_substring_regex(text, r"^\d+$"), False).to_numpy(zero_copy_only=False)
    if not numeric.all():
        raise PipelineError(f"{path}: movie {text[int(np.argmin(numeric))].as_py()!r} is not a numeric id")
    title = pc.fill_null(pa.array(titles, pa.string()), "")
    return pa.table({"movieId": pc.cast(text, pa.int32()), "title": title})


def _delimited_movies(path: Path, delimiter: str, header: bool, encoding: str) -> pa.Table:
    names = None if header else ["movieId", "title"]
    read = pcsv.ReadOptions(column_names=names, encoding=encoding)
    try:
        table = pcsv.read_csv(
            path,
            read_options=read,
            parse_options=pcsv.ParseOptions(delimiter=delimiter),
            convert_options=pcsv.ConvertOptions(
                include_columns=["movieId", "title"], column_types={"movieId": pa.string(), "title": pa.string()}
            ),
        )
    except (pa.ArrowInvalid, KeyError) as err:
        raise PipelineError(f"{path}: cannot parse: {err}") from err
    return _movies_table(table["movieId"], table["title"], path)


def _pipe_movies(path: Path) -> pa.Table:
    """u.item: movie id|title|date|..., in Latin-1; pyarrow needs every line to have the same field count."""
    try:
        lines = path.read_text(encoding="latin-1").splitlines()
    except OSError as err:
        raise PipelineError(f"{path}: cannot read: {err.strerror}") from err
    parts = [line.split("|", 2) for line in lines if line]
    return _movies_table([p[0] for p in parts], [p[1] if len(p) > 1 else "" for p in parts], path)


def _dat_movies(path: Path, encoding: str) -> pa.Table:
    """Titles hold ':' themselves, so split each MovieID::Title::Genres line on its first two '::' only."""
    try:
        lines = path.read_text(encoding=encoding).splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise PipelineError(f"{path}: cannot read: {err}") from err
    parts = [line.split("::", 2) for line in lines if line]
    if any(len(p) < 2 for p in parts):
        raise PipelineError(f"{path}: expected MovieID::Title::Genres lines")
    return _movies_table([p[0] for p in parts], [p[1] for p in parts], path)


@dataclass(frozen=True)
class Release:
    folder: str  # the archive's top folder
    ratings_member: str
    movies_member: str
    layout: TextLayout
    read_movies: Callable[[Path], pa.Table]
    rating_scale: tuple[float, float]  # lowest and highest rating the release allows

    def load_ratings(self, path: Path) -> pa.Table:
        return read_ratings(path, self.layout, self.rating_scale)

    def load_movies(self, path: Path) -> pa.Table:
        return self.read_movies(path)


HALF_STARS, WHOLE_STARS = (0.5, 5.0), (1.0, 5.0)


def _csv_release(folder: str) -> Release:
    return Release(
        folder, "ratings.csv", "movies.csv", CSV_LAYOUT, lambda p: _delimited_movies(p, ",", True, "utf8"), HALF_STARS
    )


RELEASES: dict[str, Release] = {
    "ml-latest-small": _csv_release("ml-latest-small"),
    "ml-100k": Release("ml-100k", "u.data", "u.item", TAB_LAYOUT, _pipe_movies, WHOLE_STARS),
    "ml-1m": Release(
        "ml-1m", "ratings.dat", "movies.dat", DAT_LAYOUT, lambda p: _dat_movies(p, "latin-1"), WHOLE_STARS
    ),
    "ml-10m": Release(
        "ml-10M100K", "ratings.dat", "movies.dat", DAT_LAYOUT, lambda p: _dat_movies(p, "utf-8"), HALF_STARS
    ),
    "ml-20m": _csv_release("ml-20m"),
    "ml-25m": _csv_release("ml-25m"),
    "ml-32m": _csv_release("ml-32m"),
}
