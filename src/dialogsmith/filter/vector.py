"""Column helpers the vectorized rules are built from: list offsets, masks, whitespace tokens, Python's
lower-casing, case-insensitive patterns for RE2, and blocklists on whole columns.

Each helper gives, on every string, what the per-instance Python of a rule computes; the facts this
rests on (each checked by a test in tests/test_filter_engine.py):

- ``str.split()``/``str.strip()`` whitespace is the 29 characters of ``PY_WHITESPACE``; the C token
  functions (``fastjson``), Arrow's ``utf8_trim_whitespace`` and the RE2 class ``WS_CLASS`` use exactly
  that set (Arrow's ``ascii_trim_whitespace`` does not: it keeps \\x1c-\\x1f, so it is not used);
- RE2 (Arrow's regex engine) and Python ``re`` read ASCII-only patterns alike, except case folding:
  RE2's ``(?i)`` also folds k to U+212A (Kelvin sign) and s to U+017F (long s), and so do classes like
  ``[sS]`` (RE2 turns them into folded literals). The case-insensitive patterns therefore run, in lower
  case and without ``(?i)``, on the text lower-cased byte-wise (``ascii_case_pattern``); RE2's ``\\b``
  is an ASCII word boundary, like Python's with ``re.ASCII``;
- Python's ``str.lower()`` and Arrow's ``utf8_lower`` differ on ~76 characters (U+0130, final sigma,
  letters of newer Unicode versions), so lower-casing is vectorized for ASCII strings only
  (``python_lower``); non-ASCII strings take Python's ``str.lower`` in one list comprehension per batch
  (~3% of turns in generated 2016 data);
- ``Blocklist.contains`` (flashtext semantics) on ASCII text is one RE2 pattern built from the list
  (``blocklist_hits``); non-ASCII strings, and every string when RE2 refuses the pattern, go through
  ``contains``.
"""

from __future__ import annotations

import weakref

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dialogsmith import fastjson

# The characters str.isspace() is true for: str.split() and str.strip() separate and strip these.
PY_WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
# The same set as an RE2 class body.
WS_CLASS = (
    r"\x{9}-\x{d}\x{1c}-\x{20}\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}"
)
RE2_REPEAT_MAX = 1000


# --- list columns ------------------------------------------------------------------------------------


def list_offsets(lists: pa.ListArray) -> np.ndarray:
    """Offsets (int64, n + 1) of a list array, null lists counting as empty."""
    lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False)
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    return out


def list_array(offsets: np.ndarray, values: pa.Array) -> pa.ListArray:
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), values)


def list_values(lists: pa.ListArray) -> pa.Array:
    """The values of ``lists`` that its offsets cover, null lists counting as empty."""
    if lists.null_count:
        lists = list_array(list_offsets(lists), lists.flatten())
    return lists.flatten()


def drop_last(lists: pa.ListArray) -> pa.ListArray:
    """Each list without its last value (the context turns of each instance)."""
    offsets = list_offsets(lists)
    flat = lists.flatten()
    not_last = np.ones(len(flat), dtype=bool)
    not_last[offsets[1:] - 1] = False
    return list_array(offsets - np.arange(len(offsets)), flat.filter(pa.array(not_last)))


# --- masks -------------------------------------------------------------------------------------------


def mask(a) -> np.ndarray:
    """Arrow boolean (nulls = False) → numpy bool."""
    if isinstance(a, pa.ChunkedArray):
        a = a.combine_chunks()
    return pc.fill_null(a, False).to_numpy(zero_copy_only=False).astype(bool, copy=False)


def any_rows(per_item: np.ndarray, parents: np.ndarray, n: int) -> np.ndarray:
    """Per-row OR of a per-item mask (``parents``: the row of each item)."""
    out = np.zeros(n, dtype=bool)
    out[parents[per_item]] = True
    return out


def row_sums(per_item: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    cs = np.zeros(len(per_item) + 1, dtype=np.int64)
    np.cumsum(per_item, out=cs[1:])
    return cs[offsets[1:]] - cs[offsets[:-1]]


# --- strings -----------------------------------------------------------------------------------------


def token_counts(arr: pa.Array) -> np.ndarray:
    """len(s.split()) per string (int64), in C when built, else numpy (same numbers)."""
    native = fastjson.token_counts(arr) if fastjson.AVAILABLE else None
    return native if native is not None else fastjson.token_spans(arr)[0]


def python_lower(arr: pa.Array, is_ascii: np.ndarray | None = None, ascii_too: bool = True) -> pa.Array:
    """``str.lower()`` of every string: ``ascii_lower`` for ASCII strings (left as they are with
    ``ascii_too=False``, for callers that lower-case ASCII bytes themselves), Python for the others."""
    if is_ascii is None:
        is_ascii = mask(pc.string_is_ascii(arr))
    out = pc.ascii_lower(arr) if ascii_too else arr
    other = np.flatnonzero(~is_ascii)
    if len(other):
        low = [s.lower() if s is not None else None for s in arr.take(pa.array(other)).to_pylist()]
        where = np.zeros(len(arr), dtype=bool)
        where[other] = True
        out = pc.replace_with_mask(out, pa.array(where), pa.array(low, pa.string()))
    return out


def strings_with_bytes(arr: pa.Array, values: bytes) -> np.ndarray:
    """Per string: it holds one of the bytes ``values`` (a numpy scan of the data buffer: ~10x Arrow's
    match_substring, whose cost is per string). Null slots: False."""
    offsets, raw = fastjson.string_buffers(arr)
    out = np.zeros(len(arr), dtype=bool)
    if not len(arr):
        return out
    lo, hi = int(offsets[0]), int(offsets[-1])
    seg = raw[lo:hi]
    hit = seg == values[0]
    for v in values[1:]:
        hit |= seg == v
    pos = np.flatnonzero(hit) + lo
    if len(pos):
        out[np.searchsorted(offsets, pos, side="right") - 1] = True
    if arr.null_count:
        out &= mask(pc.is_valid(arr))
    return out


def ascii_case_pattern(pattern: str) -> str:
    """The pattern that, run on ``pc.ascii_lower(text)``, finds what ``re.compile(pattern, re.IGNORECASE |
    re.ASCII)`` finds in ``text``: the leading ``(?i)`` dropped, letters outside escapes lower-cased.

    Not RE2's ``(?i)``, nor explicit classes ``[sS]``: RE2 turns those into case-folded literals that also
    match U+017F (long s) and U+212A (Kelvin sign). Byte-wise lower-casing keeps every character's
    place and word-character class, so ``\\b`` and positions are unchanged. Character classes are
    refused (none of our patterns has one)."""
    if pattern.startswith("(?i)"):
        pattern = pattern[4:]
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if c == "[" or (c == "(" and pattern.startswith("(?", i) and not pattern.startswith("(?:", i)):
            raise ValueError(f"ascii_case_pattern: only literals, escapes and (?: groups: {pattern!r}")
        out.append(c.lower() if c.isascii() else c)
        i += 1
    return "".join(out)


def re2_literal(text: str) -> str:
    return "".join(c if (c.isascii() and (c.isalnum() or c == "_")) else f"\\x{{{ord(c):x}}}" for c in text)


# --- blocklists (flashtext semantics, text/blocklist.py) on whole columns ----------------------------

_WORD = "A-Za-z0-9_"
_BLOCKLIST_PATTERNS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _blocklist_pattern(words) -> str | None:
    """One RE2 pattern equivalent to ``words.contains`` on ASCII text lower-cased byte-wise: a keyword
    between non-word characters (or the ends). None when the keywords cannot be read."""
    try:
        return _BLOCKLIST_PATTERNS[words]
    except (KeyError, TypeError):
        pass
    keys = sorted(k for k in words.keywords() if k.isascii()) if hasattr(words, "keywords") else None
    pattern = None
    if keys is not None:  # "" = no ASCII keyword: no ASCII text can match
        body = "|".join(re2_literal(k) for k in keys)
        pattern = f"(?:^|[^{_WORD}])(?:{body})(?:[^{_WORD}]|$)" if keys else ""
    try:
        _BLOCKLIST_PATTERNS[words] = pattern
    except TypeError:
        pass
    return pattern


def blocklist_hits(words, texts: pa.Array, is_ascii: np.ndarray | None = None) -> np.ndarray:
    """``words.contains(t)`` for every string (null: False). ASCII strings: one RE2 pass over the
    byte-wise lower-cased text; the others (and every string when the list's pattern cannot be built or
    compiled): ``words.contains`` per string."""
    n = len(texts)
    out = np.zeros(n, dtype=bool)
    if words is None or not len(words) or n == 0:
        return out
    if is_ascii is None:
        is_ascii = mask(pc.string_is_ascii(texts))
    pattern = _blocklist_pattern(words)
    slow = np.ones(n, dtype=bool)
    if pattern is not None:
        slow = ~is_ascii
        if pattern:
            try:
                out = mask(pc.match_substring_regex(pc.ascii_lower(texts), pattern)) & is_ascii
            except pa.ArrowException:  # RE2 refused the pattern (size): the per-row path serves
                slow = np.ones(n, dtype=bool)
                out = np.zeros(n, dtype=bool)
    rows = np.flatnonzero(slow)
    if len(rows):
        out[rows] = [t is not None and words.contains(t) for t in texts.take(pa.array(rows)).to_pylist()]
    return out
