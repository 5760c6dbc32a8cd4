"""Python face of the C kernels (``_fastjson.c``): the dump line parser (lines -> Arrow columns),
newline offsets, token counts, crc32 and 64-bit hashes of strings.

The C parser accepts the ordinary lines and declines anything unusual; the caller runs
``extract.parse.parse_line`` (the reference semantics) on the declined ones. ``AVAILABLE`` is False when
the extension was not built (no C compiler at install time, or the package was shipped to Spark
executors as a zip, from which Python cannot load compiled modules); the callers then take their
Python or numpy paths, which give the same results.
"""

from __future__ import annotations

import os
import threading

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

try:
    from dialogsmith import _fastjson
except ImportError:  # not built: the callers' Python and numpy paths serve
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

    Arrays are as long as the accepted lines; the other lines need ``extract.parse.parse_line``."""
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


# --- 64-bit string hashes (the filter's bland trigrams and duplicate pairs) ---------------------------
#
# hash64(s) = fmix64(sum_k fmix64(w_k + k * H_POS + H_SEED) + len(s) * H_LEN + H_SEED)  (mod 2**64), w_k the
# little-endian uint64 of bytes s[8k:8k+8] zero-padded, fmix64 MurmurHash3's finalizer. The C module
# computes it (~1 ns/byte); without the module (the package shipped to executors as a zip) the numpy
# code below gives the same bits (tests/test_filter_engine.py compares both), several times slower.
# Not cryptographic: for n distinct strings the chance that any two share a hash is about n**2 / 2**65
# (1e-9 for 200K strings, 6e-4 for 146M), the level of the 8-byte blake2b keys it replaced.

H_POS = np.uint64(0x9E3779B97F4A7C15)
H_LEN = np.uint64(0xD6E8FEB86659FD93)
H_SEED = np.uint64(0x2545F4914F6CDD1D)
H_TRI = np.uint64(0x8EBC6AF09C88C6E3)
_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_S33 = np.uint64(33)


def fmix64(x: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finalizer, elementwise on a uint64 array (wraps mod 2**64)."""
    x = np.asarray(x, dtype=np.uint64)
    x = x ^ (x >> _S33)
    x = x * _M1
    x = x ^ (x >> _S33)
    x = x * _M2
    return x ^ (x >> _S33)


def string_buffers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(int64 offsets, uint8 data) of a string array (large_string and chunked arrays accepted)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    if pa.types.is_large_string(arr.type):
        dtype = np.int64
    elif pa.types.is_string(arr.type):
        dtype = np.int32
    else:
        raise TypeError(f"expected a string array, got {arr.type}")
    n = len(arr)
    offsets = np.frombuffer(arr.buffers()[1], dtype=dtype)[arr.offset : arr.offset + n + 1]
    data = arr.buffers()[2]
    raw = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    return offsets, raw


def native_buffers(arr: pa.Array, native: bool | None):
    """(int32 offsets, data) for the C functions, or None for the numpy code: ``native`` False, or None
    with the C module off (not built, or DIALOGSMITH_NATIVE=0), or an array the C code cannot take."""
    if native is False or _fastjson is None or (native is None and not AVAILABLE):
        return None
    offsets, raw = string_buffers(arr)
    if offsets.dtype != np.int32:
        if len(offsets) and offsets[-1] >= 2**31:
            return None
        offsets = offsets.astype(np.int32)
    return np.ascontiguousarray(offsets), raw


_CHUNK_WORDS = 1 << 18  # words hashed per numpy step (bounds the temporaries to ~20 MB)


def _hash_segments(raw: np.ndarray, starts: np.ndarray, lens: np.ndarray, ascii_lower: bool) -> np.ndarray:
    """hash64 of raw[starts[i] : starts[i] + lens[i]] for every i, in numpy."""
    n = len(starts)
    out = np.empty(n, np.uint64)
    starts = starts.astype(np.int64, copy=False)
    lens = lens.astype(np.int64, copy=False)
    words = (lens + 7) // 8
    ends = np.cumsum(words)
    lane = np.arange(8, dtype=np.int64)
    i = 0
    while i < n:
        # segments i..j-1: at most _CHUNK_WORDS words (or one longer segment)
        base = ends[i - 1] if i else 0
        j = max(i + 1, int(np.searchsorted(ends, base + _CHUNK_WORDS, side="right")))
        nw = words[i:j]
        total = int(nw.sum())
        acc = np.zeros(j - i, np.uint64)
        if total:
            seg = np.repeat(np.arange(j - i), nw)
            first = np.cumsum(nw) - nw
            k = np.arange(total, dtype=np.int64) - first[seg]
            byte = 8 * k[:, None] + lane  # (total, 8) byte index inside its segment
            valid = byte < lens[i:j][seg][:, None]
            b = raw[np.where(valid, starts[i:j][seg][:, None] + byte, 0)]
            b[~valid] = 0
            if ascii_lower:
                b += np.uint8(32) * ((b >= 65) & (b <= 90)).astype(np.uint8)
            w = np.ascontiguousarray(b).view("<u8").reshape(total).astype(np.uint64)
            x = fmix64(w + k.astype(np.uint64) * H_POS + H_SEED)
            nonempty = nw > 0
            acc[nonempty] = np.add.reduceat(x, first[nonempty])
        out[i:j] = fmix64(acc + lens[i:j].astype(np.uint64) * H_LEN + H_SEED)
        i = j
    return out


def hash64(arr: pa.Array, ascii_lower: bool = False, native: bool | None = None) -> np.ndarray:
    """hash64 of every string of ``arr`` (uint64; a null slot hashes as its bytes, i.e. as ""). With
    ``ascii_lower`` the bytes A-Z hash as a-z.

    ``native``: None = the C module when built and on, True = the C module, False = the numpy code
    (same bits)."""
    buffers = native_buffers(arr, native)
    if buffers is not None:
        offsets, raw = buffers
        out = np.empty(len(offsets) - 1, np.uint64)
        if len(out):
            _fastjson.hash64(offsets, raw, ascii_lower, out)
        return out
    if native:
        raise RuntimeError("dialogsmith._fastjson is not built (or the array holds over 2 GiB)")
    offsets, raw = string_buffers(arr)
    offsets = offsets.astype(np.int64)
    return _hash_segments(raw, offsets[:-1], np.diff(offsets), ascii_lower)


def _space_bytes(raw: np.ndarray) -> np.ndarray:
    """Bytes of str.isspace() characters in valid UTF-8: 9-13, 28-32, U+0085, U+00A0, U+1680,
    U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000 (the C module's space_len)."""
    space = (raw <= 32) & ((raw >= 28) | ((raw >= 9) & (raw <= 13)))
    lead = np.flatnonzero((raw >= 0xC2) & (raw <= 0xE3))  # the first bytes those characters can have
    if not len(lead):
        return space
    last = len(raw) - 1
    b0, b1, b2 = raw[lead], raw[np.minimum(lead + 1, last)], raw[np.minimum(lead + 2, last)]
    two = (b0 == 0xC2) & ((b1 == 0x85) | (b1 == 0xA0))
    three = (
        ((b0 == 0xE1) & (b1 == 0x9A) & (b2 == 0x80))
        | (
            (b0 == 0xE2)
            & (
                ((b1 == 0x80) & (((b2 >= 0x80) & (b2 <= 0x8A)) | (b2 == 0xA8) | (b2 == 0xA9) | (b2 == 0xAF)))
                | ((b1 == 0x81) & (b2 == 0x9F))
            )
        )
        | ((b0 == 0xE3) & (b1 == 0x80) & (b2 == 0x80))
    ) & (lead + 2 <= last)
    two &= lead + 1 <= last
    for shift, at in ((0, two | three), (1, two | three), (2, three)):
        space[lead[at] + shift] = True
    return space


def _native_split_hashes(kernel, offsets: np.ndarray, raw: np.ndarray, ascii_lower: bool):
    """(int64 counts per string, uint64 hashes) of the C kernel ``token_hash64`` or ``trigram_hash64``."""
    n = len(offsets) - 1
    counts = np.empty(n, np.int64)
    size = int(offsets[-1]) - int(offsets[0]) if n else 0
    # Room for a token every 4 bytes (text averages one per 5-6); a denser text is hashed again.
    hashes = np.empty(size // 4 + 16, np.uint64)
    used = kernel(offsets, raw, ascii_lower, counts, hashes) if n else 0
    if used > len(hashes):
        hashes = np.empty(used, np.uint64)
        kernel(offsets, raw, ascii_lower, counts, hashes)
    return counts, hashes[:used]


def token_hash64(arr: pa.Array, ascii_lower: bool = False, native: bool | None = None):
    """The ``str.split()`` tokens of every string of ``arr``: (int64 tokens per string, uint64 hash64 of
    each token, string after string). With ``ascii_lower`` the bytes A-Z hash as a-z (the tokens of
    ``s.lower()`` for an ASCII ``s``). ``native`` as in ``hash64``."""
    buffers = native_buffers(arr, native)
    if buffers is not None:
        return _native_split_hashes(_fastjson.token_hash64, *buffers, ascii_lower)
    if native:
        raise RuntimeError("dialogsmith._fastjson is not built (or the array holds over 2 GiB)")
    counts, seg, starts, ends = token_spans(arr)
    return counts, _hash_segments(seg, starts, ends - starts, ascii_lower)


def token_spans(arr: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """numpy: (tokens per string, the strings' bytes, token start and end offsets in those bytes) of
    ``str.split()`` on every string (the C module's space_len separators)."""
    offsets, raw = string_buffers(arr)
    offsets = offsets.astype(np.int64)
    n = len(offsets) - 1
    if n == 0:
        empty = np.zeros(0, np.int64)
        return empty, np.zeros(0, np.uint8), empty, empty
    lo, hi = int(offsets[0]), int(offsets[-1])
    seg = raw[lo:hi]
    rel = offsets - lo
    space = _space_bytes(seg)
    prev_space = np.empty(len(seg), bool)
    prev_space[1:] = space[:-1]
    next_space = np.empty(len(seg), bool)
    next_space[:-1] = space[1:]
    nonempty = rel[:-1] < rel[1:]
    prev_space[rel[:-1][nonempty]] = True  # a string starts after a "space" and ends before one
    next_space[rel[1:][nonempty] - 1] = True
    starts = np.flatnonzero(~space & prev_space)
    ends = np.flatnonzero(~space & next_space) + 1
    counts = np.diff(np.searchsorted(starts, rel)).astype(np.int64)
    return counts, seg, starts, ends


def trigram_hash64(arr: pa.Array, ascii_lower: bool = False, native: bool | None = None):
    """The consecutive token triples (a, b, c) of every string's ``str.split()`` tokens: (int64 trigrams
    per string, uint64 ``fmix64(fmix64(fmix64(a ^ H_TRI) + b) + c)`` of the tokens' hash64, string after
    string). Tokens hold no whitespace, so a trigram's hash is that of the string "a b c"."""
    buffers = native_buffers(arr, native)
    if buffers is not None:
        return _native_split_hashes(_fastjson.trigram_hash64, *buffers, ascii_lower)
    if native:
        raise RuntimeError("dialogsmith._fastjson is not built (or the array holds over 2 GiB)")
    counts, tokens = token_hash64(arr, ascii_lower, native=False)
    grams = np.maximum(counts - 2, 0)
    if len(tokens) < 3:
        return grams, np.zeros(0, np.uint64)
    ends = np.cumsum(counts)
    valid = np.ones(len(tokens) - 2, dtype=bool)  # a triple starting at a string's last two tokens spans two
    for back in (1, 2):
        pos = ends[counts >= back] - back
        valid[pos[pos < len(valid)]] = False
    a, b, c = tokens[:-2][valid], tokens[1:-1][valid], tokens[2:][valid]
    return grams, fmix64(fmix64(fmix64(a ^ H_TRI) + b) + c)


# --- crc32 of strings (the extract stage's link_id buckets, = schemas.link_bucket) --------------------


def _crc_table() -> np.ndarray:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        table.append(c)
    return np.array(table, dtype=np.uint32)


_CRC_TABLE = _crc_table()


def crc32(arr: pa.Array, native: bool | None = None) -> np.ndarray:
    """``zlib.crc32`` of every UTF-8 string of ``arr`` (uint32; a null slot as ""). The C loop is ~10x
    the numpy code, which serves without the C module: table-driven, one byte column at a time.
    ``native`` as in ``hash64``."""
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    buffers = None
    if not arr.null_count and hasattr(_fastjson, "crc32"):
        buffers = native_buffers(arr, native)
    if buffers is not None:
        offsets, raw = buffers
        out = np.empty(len(arr), np.uint32)
        if len(out):
            _fastjson.crc32(offsets, raw if len(raw) else np.zeros(1, np.uint8), out)
        return out
    return _crc32_numpy(arr)


def _crc32_numpy(arr: pa.Array) -> np.ndarray:
    n = len(arr)
    if n == 0:
        return np.zeros(0, dtype=np.uint32)
    if arr.null_count:
        arr = pc.fill_null(arr, "")
    offsets, data = string_buffers(arr)
    offsets = offsets.astype(np.int64)
    if not len(data):
        data = np.zeros(1, np.uint8)
    starts = offsets[:-1]
    lengths = offsets[1:] - starts
    crc = np.full(n, 0xFFFFFFFF, dtype=np.uint32)
    for j in range(int(lengths.max())):
        live = lengths > j
        if live.all():
            b = data[starts + j]
            crc = _CRC_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
        else:
            idx = np.flatnonzero(live)
            c = crc[idx]
            crc[idx] = _CRC_TABLE[(c ^ data[starts[idx] + j]) & 0xFF] ^ (c >> 8)
    return crc ^ np.uint32(0xFFFFFFFF)
