"""Text helpers of the instances stage, on Arrow arrays: whitespace token counts (the word limit and
dialogpt's ``too_few_tokens``), the default profile's light normalization, Python's ``str.lower``."""

from __future__ import annotations

import html
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dialogsmith import fastjson


def contiguous(a: pa.Array | pa.ChunkedArray) -> pa.Array:
    return a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a


def whitespace_token_counts(texts: pa.ChunkedArray | pa.Array, skip_backslash: bool = False) -> pa.Array:
    """``len(t.split())`` for every string, vectorized (null stays null); with ``skip_backslash``,
    ``len(t.replace("\\", "").split())``.

    The C module counts in one pass over the bytes (``fastjson.token_counts``: ~4x the numpy code, and
    no copy for the backslashes); without it, ``fastjson.token_spans`` (numpy, every one of Python's
    29 whitespace characters, tested against ``str.split``)."""
    arr = contiguous(texts)
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = arr.cast(pa.string())
    mask = None if not arr.null_count else ~pc.is_valid(arr).to_numpy(zero_copy_only=False)
    counts = fastjson.token_counts(arr, skip_backslash) if fastjson.AVAILABLE else None
    if counts is None:
        if skip_backslash:
            arr = pc.replace_substring(arr, "\\", "")
        counts = fastjson.token_spans(arr)[0]
    return pa.array(counts, pa.int64(), mask=mask)


_MD_LINK_RE = re.compile(r"\[([^\]\n]*)\]\((?:[^()\s]|\([^()\s]*\))+\)")


def light_normalize(body: str) -> str:
    """Default profile: HTML entities unescaped once, quoted lines removed, markdown links reduced to
    their text, whitespace collapsed. No character stripping, no tokenization."""
    text = html.unescape(body)
    if ">" in text:
        text = "\n".join(line for line in text.split("\n") if not line.lstrip().startswith(">"))
    if "](" in text:
        text = _MD_LINK_RE.sub(r"\1", text)
    return " ".join(text.split())


def light_normalize_array(bodies: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``light_normalize`` of every string (nulls stay null): bodies with ``&``, ``>`` or ``](`` (entities,
    quotes, markdown links) one by one in Python, the others (the great majority) with Arrow: Python's
    ``" ".join(text.split())`` is a trim + a split on whitespace runs + a join (Arrow's whitespace is
    Python's, tested)."""
    from dialogsmith.text.dialogpt import NOT_SINGLE_SPACED, collapse_whitespace

    bodies = contiguous(bodies)
    joined = collapse_whitespace(bodies, pc.match_substring_regex(bodies, NOT_SINGLE_SPACED))
    special = pc.or_(
        pc.or_(pc.match_substring(bodies, "&"), pc.match_substring(bodies, ">")),
        pc.match_substring(bodies, "]("),
    )
    rows = np.flatnonzero(pc.fill_null(special, False).to_numpy(zero_copy_only=False))
    if not len(rows):
        return joined
    fixed = [light_normalize(b) for b in bodies.take(pa.array(rows)).to_pylist()]
    return _replace_rows(joined, rows, pa.array(fixed, pa.string()))


def python_lower(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Python's ``str.lower`` per string: Arrow's ASCII lowering, Python for the others (they differ)."""
    values = contiguous(values)
    out = pc.ascii_lower(values)
    other = np.flatnonzero(~pc.fill_null(pc.string_is_ascii(values), True).to_numpy(zero_copy_only=False))
    if not len(other):
        return out
    fixed = [v.lower() for v in values.take(pa.array(other)).to_pylist()]
    return _replace_rows(out, other, pa.array(fixed, pa.string()))


def _replace_rows(values: pa.Array, rows: np.ndarray, new: pa.Array) -> pa.Array:
    mask = np.zeros(len(values), dtype=bool)
    mask[rows] = True
    return pc.replace_with_mask(values, pa.array(mask), new)
