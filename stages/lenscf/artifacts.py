"""Atomic, byte-deterministic outputs, so that DVC never caches a half-written or drifting file; and reading them back.

Tables are Parquet (compact types, and a stage reads only the columns it needs); metrics and plot data are JSON,
because DVC's metrics and plots read JSON.
"""

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from lenscf.errors import PipelineError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of `path` and move it into place only if the block succeeds.

    mkstemp creates its file with mode 0600; the output gets the mode a plain open() would give it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | Path, obj: Any) -> None:
    write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n").encode())


def read_json(path: str | Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError as err:
        raise PipelineError(f"{path}: not found; run the stage that writes it (dvc repro)") from err
    except (OSError, ValueError) as err:
        raise PipelineError(f"{path}: cannot read: {err}") from err


def write_table(path: str | Path, table: pa.Table) -> None:
    """Parquet with fixed settings: the same table always gives the same bytes."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", row_group_size=1 << 20)


def read_table(path: str | Path, columns: list[str]) -> pa.Table:
    """Only `columns` of a Parquet file, naming the file and the column in any failure."""
    try:
        schema = pq.read_schema(path)
    except FileNotFoundError as err:
        raise PipelineError(f"{path}: not found; run the stage that writes it (dvc repro)") from err
    except (OSError, pa.ArrowInvalid) as err:
        raise PipelineError(f"{path}: not a Parquet file this pipeline wrote ({err})") from err
    missing = [c for c in columns if c not in schema.names]
    if missing:
        raise PipelineError(f"{path}: missing column(s) {', '.join(missing)}")
    # ParquetFile rather than pq.read_table, which imports pyarrow.dataset: 0.2 s of every stage's start-up.
    return pq.ParquetFile(path).read(columns=columns)
