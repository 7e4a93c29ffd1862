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

import numpy as np
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


# pyarrow imports pandas the first time it converts to or from NumPy (pa.table, pa.array, to_numpy), which costs a
# stage 0.18 s of start-up. These two move numeric and boolean columns through Arrow's buffers instead.


def table_of(columns: dict[str, np.ndarray]) -> pa.Table:
    """A table of NumPy columns (numbers or booleans, no nulls), as pa.table(columns) would build it."""
    arrays = []
    for values in columns.values():
        values = np.ascontiguousarray(values)
        if values.dtype == np.bool_:  # Arrow packs booleans eight to a byte
            data, kind = np.packbits(values, bitorder="little"), pa.bool_()
        else:
            data, kind = values, pa.from_numpy_dtype(values.dtype)
        arrays.append(pa.Array.from_buffers(kind, len(values), [None, pa.py_buffer(data)]))
    return pa.Table.from_arrays(arrays, names=list(columns))


def column_values(table: pa.Table, name: str) -> np.ndarray:
    """A numeric column without nulls as one NumPy array, read from its buffers (see table_of)."""
    column = table[name]
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        raise TypeError(f"column {name} is {column.type}, not a number")
    if column.null_count:
        raise ValueError(f"column {name} has {column.null_count} null(s)")
    dtype = np.dtype(column.type.to_pandas_dtype())
    parts = [
        np.frombuffer(chunk.buffers()[1], dtype=dtype, count=len(chunk), offset=chunk.offset * dtype.itemsize)
        for chunk in column.chunks
    ]
    return np.concatenate(parts) if len(parts) != 1 else parts[0]
