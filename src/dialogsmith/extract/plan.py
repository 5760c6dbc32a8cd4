"""Planning the extract stage on the driver: sizes, buckets, and the (file, slice) work items.

A slice is a range of a file's decoded bytes: its task decodes the stream up to the end of its range and
parses the blocks that start in it. A big month is cut into slices so that it does not serialize the
job; cuts balance work (parsing the range + decoding up to its end).
"""

from __future__ import annotations

import math
import os

import zstandard

from dialogsmith import fastjson, fsutil
from dialogsmith.extract.decode import ZSTD_MAX_WINDOW, compression_of
from dialogsmith.extract.dumps import parse_dump_name

# Expected decoded/compressed size ratio per compression, to size buckets and slices before reading.
_RATIO = {"zst": 8.0, "bz2": 6.0, "xz": 7.0, "gz": 5.0, "plain": 1.0}
BUCKET_TARGET_BYTES = 512 << 20  # decoded JSON per bucket (~0.7M comments): a later task holds one bucket
MAX_BUCKETS = 8192
MIN_BUCKETS = 4
SLICE_MIN_BYTES = 64 << 20  # decoded bytes; smaller files are never sliced (decoding twice is not worth it)
MAX_SLICES = 8  # beyond this, decoding the stream's prefix in every slice costs more than parsing a slice
# Decoding (+ counting lines) CPU per decoded byte, relative to parsing + staging it. Measured on a
# 1M-comment 2016 month: 0.75-0.96 with the C line parser. Without it, ~0.15: decoding and cutting
# blocks ~1.2 us per 2016 comment line against ~7 us for parse_line and ~0.6 for staging (measured
# per step). The driver's parser stands for the executors': a heuristic for where to cut slices.
DECODE_COST = 0.8 if fastjson.AVAILABLE else 0.15
# Cores one phase-1 task keeps busy: its decoder thread (decode.Prefetched) and its parsing and staging
# (the C parser releases the GIL). Measured on a 5.1M-line month, one task for the whole file: 5.6 s
# wall for 8.4 s CPU.
TASK_CORES = 1.5
MIN_LAST_SLICE = 0.25  # a file gets another slice only for at least this share of a core's work
SAMPLE_BYTES = 1 << 20  # compressed bytes decoded by the planner to measure a .zst file's ratio
# Staging is uncompressed while it fits easily in the page cache (lz4 cost the first phase's critical
# path 1.3 s per 5M comments: 5.8 -> 4.5 s for one file), lz4 beyond (big months: the writes would reach
# the disk). Staged bytes per decoded byte: ~0.3 with a projection (dialogpt-tsv), ~0.8 for every field.
STAGING_PAGE_CACHE_SHARE = 0.2


def staging_compression(decoded_bytes: int, projected: bool) -> str | None:
    """The staging files' IPC compression: None (uncompressed) or "lz4"."""
    staged = decoded_bytes * (0.3 if projected else 0.8)
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return "lz4"
    return None if staged < STAGING_PAGE_CACHE_SHARE * memory else "lz4"


def file_size(uri: str) -> int:
    fs, path = fsutil.resolve(uri)
    return fs.get_file_info(path).size or 0


def estimated_bytes(uri: str) -> int:
    return int(file_size(uri) * _RATIO[compression_of(uri)])


def sampled_bytes(uri: str, sample: int = SAMPLE_BYTES) -> int:
    """Decoded size of a file: a .zst file's ratio is measured on its first ``sample`` compressed bytes.

    Slices cut a file at decoded byte offsets, so their balance rests on this estimate (the assumed
    ratio 8 is off by 15% on the generator's months, and by more on real ones). Other formats, and
    files whose start does not decode, use the assumed ratio."""
    size = file_size(uri)
    if compression_of(uri) != "zst" or size <= 0:
        return estimated_bytes(uri)
    fs, path = fsutil.resolve(uri)
    try:
        with fs.open_input_stream(path, compression=None) as raw:
            data = raw.read(sample)
        dobj = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW).decompressobj()
        out = len(dobj.decompress(data))
    except (OSError, zstandard.ZstdError):
        return estimated_bytes(uri)
    if out <= 0:
        return estimated_bytes(uri)
    return int(out * size / len(data)) if len(data) < size else out


def default_buckets(total_decoded_bytes: int, parallelism: int = 1) -> int:
    """About 512 MiB of decoded JSON (~0.7M comments) per bucket, between 4 and 8192; with more than a
    few buckets, a multiple of the cores: the later stages run one task per bucket, and equal rounds keep
    every core busy to the end (5 buckets on 2 cores left one core idle for a fifth of the stage)."""
    n = int(min(MAX_BUCKETS, max(MIN_BUCKETS, math.ceil(total_decoded_bytes / BUCKET_TARGET_BYTES))))
    if n > MIN_BUCKETS and parallelism > 1:
        n = min(MAX_BUCKETS, math.ceil(n / parallelism) * parallelism)
    return n


def slice_bounds(est: int, core_work: float, max_slices: int) -> list[float]:
    """Cut points (fractions of the decoded bytes) of one file's slices, for ``core_work`` per core.

    Slice ``i`` covers decoded bytes ``[b_i, b_i+1)``: it decodes the stream up to ``b_i+1`` (zstd is
    sequential) and parses its own range, so its work is ``est * (b_i+1 * DECODE_COST + (b_i+1 - b_i))``
    in parse units. The first slices take one core's share each; the last takes the rest (a lighter
    task that leaves room for small files). When capped at ``max_slices``, all cost the same."""
    if est < SLICE_MIN_BYTES or max_slices <= 1 or core_work <= 0:
        return []
    work = est * (1 + DECODE_COST)
    share = work / core_work
    if share <= 1 + MIN_LAST_SLICE:
        return []
    k = min(max_slices, math.ceil(share - MIN_LAST_SLICE))
    c, b = core_work / est, 0.0
    cuts = []
    for _ in range(k - 1):
        b = (c + b) / (1 + DECODE_COST)
        cuts.append(b)
    last_cost = DECODE_COST + (1 - cuts[-1]) if cuts else 0
    if not cuts or cuts[-1] >= 1 or last_cost > c:  # capped (or the greedy cut overshoots): equal cost
        unit, b = [], 0.0
        for _ in range(k):
            b = (1 + b) / (1 + DECODE_COST)
            unit.append(b)
        cuts = [u / unit[-1] for u in unit[:-1]]
    return cuts


def auto_slices(est: int, total: int, parallelism: int) -> int:
    """Slices for one file: its share of the cores, 1 for small files, at most MAX_SLICES."""
    core_work = total * (1 + DECODE_COST) / max(1, parallelism)
    return len(slice_bounds(est, core_work, min(MAX_SLICES, parallelism))) + 1


def plan(
    files: list[str],
    kind: str | None,
    slices: int | None,
    parallelism: int,
    sources: dict[str, str] | None = None,
) -> list[dict]:
    """Work items: one per (file, slice); a slice is a decoded byte range ``[start, stop)`` of its file.
    ``sources``: each file's name in the output (default: its base name).

    A task keeps ~TASK_CORES cores busy (its decoder runs in a thread, decode.Prefetched), so files are cut
    for ``parallelism / TASK_CORES`` concurrent tasks, not one per core."""
    parallelism = max(1, round(parallelism / TASK_CORES))
    sizes = {f: estimated_bytes(f) for f in files}
    for f in files:  # files that may be sliced: measure their ratio (one small read each)
        if (slices or 1) > 1 or (not slices and parallelism > 1 and sizes[f] >= SLICE_MIN_BYTES):
            sizes[f] = sampled_bytes(f)
    total = sum(sizes.values())
    max_k = min(MAX_SLICES, parallelism)
    # one core's work: everything over the cores, plus the extra decoding that slicing adds (fixed point)
    extra = 0.0
    cuts: dict[str, list[float]] = {}
    for _ in range(3):
        core_work = (total * (1 + DECODE_COST) + extra) / max(1, parallelism)
        if slices:
            cuts = {f: [(i + 1) / slices for i in range(slices - 1)] for f in files}
        else:
            cuts = {f: slice_bounds(sizes[f], core_work, max_k) for f in files}
        extra = sum(sizes[f] * DECODE_COST * sum(c) for f, c in cuts.items())
    items = []
    for idx, f in enumerate(files):
        name_kind, month = parse_dump_name(f)
        bounds = [0, *(int(c * sizes[f]) for c in cuts[f]), None]
        k = len(bounds) - 1
        for s in range(k):
            start, stop = bounds[s], bounds[s + 1]
            frac = ((stop if stop is not None else sizes[f]) - start) / max(1, sizes[f])
            items.append(
                {
                    "file": f,
                    "file_idx": idx,
                    "source": (sources or {}).get(f) or os.path.basename(f),
                    "kind": name_kind or kind,
                    "month": month,
                    "slice": s,
                    "slices": k,
                    "byte_range": None if k == 1 else (start, stop),
                    "work": sizes[f]
                    * (frac + DECODE_COST * (stop if stop is not None else sizes[f]) / max(1, sizes[f])),
                }
            )
    # biggest work first so that a huge month does not start last
    items.sort(key=lambda it: (-it["work"], it["file_idx"], it["slice"]))
    return items
