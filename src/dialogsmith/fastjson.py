"""Python face of the native line parser (``_fastjson.c``): dump lines -> Arrow columns.

The C parser accepts the ordinary lines and declines anything unusual; the caller runs
``dumps.parse_line`` (the reference semantics) on the declined ones. ``AVAILABLE`` is False when the
extension was not built (no C compiler at install time, or the package was shipped to Spark
executors as a zip, from which Python cannot load compiled modules); callers then use the Arrow path.
"""

from __future__ import annotations

import os
import threading

import numpy as np
import pyarrow as pa

try:
    from dialogsmith import _fastjson
except ImportError:  # not built: the Arrow path serves
    _fastjson = None

# DIALOGSMITH_NATIVE=0 turns the native parser off (to compare engines, or to rule it out).
AVAILABLE = _fastjson is not None and os.environ.get("DIALOGSMITH_NATIVE", "1") != "0"

_KIND_CODE = {"str": b"s", "int": b"i", "bool": b"b", "edited": b"e"}


def newlines(data: bytes) -> np.ndarray:
    """Offsets of the ``\\n`` bytes of ``data`` (int64)."""
    if _fastjson is None:
        return np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
    return np.frombuffer(_fastjson.newlines(data), dtype=np.int64)


def token_counts(arr: pa.Array, skip_backslash: bool = False) -> np.ndarray | None:
    """``len(s.split())`` per string (``len(s.replace("\\\\", "").split())`` with skip_backslash), as
    int64; null slots count their bytes like any string. None when the C module is missing or ``arr``
    is not a ``pa.string()`` array (the caller then takes its own path)."""
    if _fastjson is None or not pa.types.is_string(arr.type):
        return None
    n = len(arr)
    out = np.empty(n, np.int64)
    if n == 0:
        return out
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset : arr.offset + n + 1]
    data = arr.buffers()[2]
    _fastjson.token_counts(offsets, data if data is not None else b"", skip_backslash, out)
    return out


def _validity(valid: np.ndarray) -> tuple[pa.Buffer | None, int]:
    nulls = len(valid) - int(np.count_nonzero(valid))
    if not nulls:
        return None, 0
    return pa.py_buffer(np.packbits(valid.view(bool), bitorder="little")), nulls


# Per string field, a buffer the C parser decodes into (capacity >= len(data): unescaping never grows a
# string), reused from block to block; the bytes it fills are copied out. Fresh 4 MiB buffers per field
# and block cost ~1000 page faults each (measured: ~0.2 s per 0.9M-comment month) and kept whole pages
# of every block alive in the tables built on them.
# One set per thread: a buffer is read back after the C call returns.
_SCRATCH = threading.local()


def _scratch(field: int, size: int) -> np.ndarray:
    buffers = _SCRATCH.__dict__.setdefault("buffers", {})
    buf = buffers.get(field)
    if buf is None or len(buf) < size:
        buf = buffers[field] = np.empty(max(size, 1), np.uint8)
    return buf


def parse_lines(
    data: bytes,
    starts: np.ndarray,
    ends: np.ndarray,
    fields: list[tuple[str, str]],
    required: tuple[str, ...],
) -> tuple[np.ndarray, dict[str, pa.Array]]:
    """Parse lines ``data[starts[i]:ends[i]]``; (indices of the accepted lines, one Array per field).

    Arrays are as long as the accepted lines; the other lines need ``dumps.parse_line``."""
    if _fastjson is None:
        raise RuntimeError(
            "dialogsmith._fastjson is not built (no C compiler when the package was installed)"
        )
    names = [name for name, _ in fields]
    missing = set(required) - set(names)
    if missing:
        raise ValueError(f"required fields must be read: {sorted(missing)}")
    if any(ftype != "str" for name, ftype in fields if name in required):
        raise ValueError("required fields are strings (parse_line quarantines any other type as bad_type)")
    starts = np.ascontiguousarray(starts, dtype=np.int64)
    ends = np.ascontiguousarray(ends, dtype=np.int64)
    n = len(starts)
    # strings of line ranges that share bytes can need more than len(data) (BlockParser's never do)
    capacity = max(len(data), int((ends - starts).sum()) if n else 0)
    outputs = []
    for i, (_, ftype) in enumerate(fields):
        if ftype == "str":
            outputs.append((np.empty(n + 1, np.int32), _scratch(i, capacity), np.empty(n, np.uint8)))
        else:
            outputs.append((np.empty(n, np.int64), np.empty(n, np.uint8)))
    rows = np.empty(n, np.int64)
    accepted = _fastjson.parse_lines(
        data,
        starts,
        ends,
        tuple(name.encode() for name in names),
        b"".join(_KIND_CODE[ftype] for _, ftype in fields),
        bytes(name in required for name in names),
        tuple(outputs),
        rows,
    )
    columns = {}
    for (name, ftype), out in zip(fields, outputs, strict=True):
        valid = out[-1][:accepted]
        bitmap, nulls = _validity(valid)
        if ftype == "str":
            offsets, chars = out[0][: accepted + 1], out[1][: out[0][accepted]].copy()  # scratch is reused
            columns[name] = pa.Array.from_buffers(
                pa.string(), accepted, [bitmap, pa.py_buffer(offsets), pa.py_buffer(chars)], nulls
            )
        elif ftype == "bool":
            values = pa.py_buffer(np.packbits(out[0][:accepted].astype(bool), bitorder="little"))
            columns[name] = pa.Array.from_buffers(pa.bool_(), accepted, [bitmap, values], nulls)
        else:
            columns[name] = pa.Array.from_buffers(
                pa.int64(), accepted, [bitmap, pa.py_buffer(out[0][:accepted])], nulls
            )
    return rows[:accepted], columns
