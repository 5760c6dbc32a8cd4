"""Spark ingest of Pushshift dumps: RC_/RS_ files -> bucketed, typed, deduplicated Parquet.

Output (the contract other stages rely on)::

    OUT/comments/bucket=<k>/part-*.parquet      schemas.COMMENTS, k = schemas.link_bucket(link_id, n)
    OUT/submissions/bucket=<k>/part-*.parquet   schemas.SUBMISSIONS (a thread and its submission share k)
    OUT/quarantine/part-*.parquet               schemas.QUARANTINE
    OUT/stats.json                              StageStats(stage="extract"), counts add up exactly
    OUT/_SUCCESS

Design (measured, see ../shared/specs/performance-notes.md): Spark only schedules Python tasks and
collects small stats dicts; the tasks decode, parse (Arrow's C++ JSON reader, see dumps.py) and write
Arrow/Parquet themselves, because handing rows to the JVM (mapInArrow + DataFrame.write) is ~4x slower.

- Phase 1, one task per (file, slice): a slice is a range of decoded bytes; the task decodes the
  stream up to the end of its range, parses the blocks that start in it, hashes rows to buckets and
  appends them to one staging Arrow IPC file per kind (one record batch per bucket per flush), and
  writes quarantine rows straight to Parquet. A big month is cut into slices so that it does not
  serialize the job; cuts balance work (parsing the range + decoding up to its end, see plan()).
  Concurrent decoders per machine are bounded by an flock semaphore (``--max-decoders``): each open
  zstd decoder may hold a 2 GiB window.
- Phase 2, one task per group of buckets: read the bucket's batches from every staging file, drop
  duplicate ids (keeping the first by (source, line)), write the final bucket Parquet files.
Output is committed atomically (fsutil.atomic_output_dir): a failed run leaves the previous output.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import glob
import math
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from dialogsmith import fastjson, fsutil, outputs
from dialogsmith.extract import dumps
from dialogsmith.formats import schemas
from dialogsmith.formats.stats import StageStats, finish
from dialogsmith.idkeys import References, base36_keys
from dialogsmith.outputs import add_safety_flags

STAGE = "extract"
DUPLICATE_ID = "duplicate_id"
# Expected decoded/compressed size ratio per compression, to size buckets and slices before reading.
_RATIO = {"zst": 8.0, "bz2": 6.0, "xz": 7.0, "gz": 5.0, "plain": 1.0}
BUCKET_TARGET_BYTES = 512 << 20  # decoded JSON per bucket (~0.7M comments): a later task holds one bucket
MAX_BUCKETS = 8192
MIN_BUCKETS = 4
SLICE_MIN_BYTES = 64 << 20  # decoded bytes; smaller files are never sliced (decoding twice is not worth it)
MAX_SLICES = 8  # beyond this, decoding the stream's prefix in every slice costs more than parsing a slice
# Decoding (+ counting lines) CPU per decoded byte, relative to parsing + staging it. Measured on a
# 1M-comment 2016 month: 0.75-0.96 with the C line parser, ~0.2 with Arrow's JSON reader (the driver's
# parser stands for the executors': a heuristic for where to cut slices).
DECODE_COST = 0.8 if fastjson.AVAILABLE else 0.2
# Cores one phase-1 task keeps busy: its decoder thread (dumps.Prefetched) and its parsing and staging
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
    staged = decoded_bytes * (0.3 if projected else 0.8)
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return "lz4"
    return None if staged < STAGING_PAGE_CACHE_SHARE * memory else "lz4"


FLUSH_ROWS = 200_000  # rows buffered per kind in a phase-1 task before they go to staging
PARQUET_ROWS_PER_FILE = 2_000_000
PARQUET_ROW_GROUP = 128 * 1024
DUMP_SUFFIXES = (".ndjson", ".jsonl")  # plus RC_/RS_ names; other names only when listed explicitly


# --- planning (driver) --------------------------------------------------------------------------


CHECKSUM_SUFFIXES = (".md5", ".sha1", ".sha256", ".sha512", ".sig", ".asc", ".torrent")
# Why a file found in an input directory is not read (stable identifiers, listed in stats.json).
SKIP_NOT_A_DUMP = "not_a_dump_name"  # neither RC_/RS_YYYY-MM[.ext] nor *.ndjson / *.jsonl
SKIP_CHECKSUM = "checksum_file"  # RC_2016-01.zst.md5 and the like
SKIP_BAD_MONTH = "invalid_month"  # RC_2099-13.zst: not a month between 2005-06 and today


@dataclass
class InputScan:
    """The dump files an ``--input`` names, with the name each is known by, and what was skipped."""

    files: list[str]
    sources: dict[str, str]  # file (read or skipped) -> its path relative to the input directory
    skipped: dict[str, str]  # file -> skip reason
    roots: list[str]  # the directories given

    @property
    def paths(self) -> list[str]:
        """Everything the input consists of (for the OUT-is-not-an-input check)."""
        return [*self.roots, *self.files]


def scan_inputs(spec: str | list[str]) -> InputScan:
    """Dump files from a directory, a glob, or a comma-separated list of any of those.

    A path that exists is taken as it is, even when it holds ``,`` or ``[``; other parts are split on
    commas and globbed. Directories are scanned recursively; every file that is not read is listed with
    its reason. An explicitly named file with an impossible month is an error."""
    if isinstance(spec, list):
        parts = [str(p) for p in spec]
    elif fsutil.exists(str(spec)):
        parts = [str(spec)]
    else:
        parts = [p.strip() for p in str(spec).split(",") if p.strip()]
    files: list[str] = []
    skipped: dict[str, str] = {}
    roots: list[str] = []
    for part in parts:
        if not fsutil.exists(part) and any(ch in part for ch in "*?[") and "://" not in part:
            matched = sorted(glob.glob(part))
            if not matched:
                raise FileNotFoundError(f"--input: no file matches {part!r}")
            files.extend(m for m in matched if os.path.isfile(m))
        elif not fsutil.exists(part):
            raise FileNotFoundError(f"--input: {part!r} does not exist")
        elif os.path.isdir(part) or ("://" in part and _is_dir(part)):
            roots.append(part)
            found = []
            for f in _all_files(part):
                reason = skip_reason(f)
                if reason:
                    skipped[f] = reason
                else:
                    found.append(f)
            if not found:
                raise FileNotFoundError(
                    f"--input: no dump files in {part!r} (expected RC_YYYY-MM.zst, RS_YYYY-MM.bz2, *.ndjson, …)"
                    + (f"; skipped {_skipped_text(skipped)}" if skipped else "")
                )
            files.extend(found)
        else:
            kind, month = dumps.parse_dump_name(part)
            if kind and not dumps.valid_month(month):
                raise ValueError(
                    f"--input: {part}: {month} is not a month of the Pushshift dumps "
                    f"({dumps.FIRST_MONTH} .. this month)"
                )
            files.append(part)
    seen, out = set(), []
    for f in files:
        if f not in seen:
            seen.add(f)
            out.append(f)
    root = roots[0] if len(parts) == 1 and roots else None
    return InputScan(out, source_names([*out, *skipped], root), skipped, roots)


def list_inputs(spec: str | list[str]) -> list[str]:
    """The dump files of ``scan_inputs`` (paths only)."""
    return scan_inputs(spec).files


def skip_reason(path: str) -> str | None:
    """Why a file found in an input directory is not a dump to read (None: read it)."""
    name = os.path.basename(path)
    if name.lower().endswith(CHECKSUM_SUFFIXES):
        return SKIP_CHECKSUM
    kind, month = dumps.parse_dump_name(name)
    if kind:
        return None if dumps.valid_month(month) else SKIP_BAD_MONTH
    stem = name
    if dumps.compression_of(name) != "plain":
        stem = os.path.splitext(name)[0]
    if stem.lower().endswith(DUMP_SUFFIXES) and not name.startswith((".", "_")):
        return None
    return SKIP_NOT_A_DUMP


def _all_files(root: str) -> list[str]:
    import pyarrow.fs as pafs

    fs, path = fsutil.resolve(root)
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    out = []
    for info in infos:
        if info.type != pafs.FileType.File:
            continue
        rel = info.path[len(path) :].lstrip("/")
        if rel.split("/")[-1] in ("_SUCCESS", "_dialogsmith.json", "synth_report.json"):
            continue  # the sample stage's own files
        out.append(info.path if "://" not in root else fsutil.join(root, rel))
    return sorted(out)


def source_names(files: list[str], root: str | None) -> dict[str, str]:
    """Each file's name in the output (``source``) and in stats: its path relative to ``root`` (the one
    input directory), else to the deepest directory holding every file; unique by construction."""
    if not files:
        return {}
    if root is None:
        dirs = [f.rsplit("/", 1)[0] if "/" in f else "." for f in files]
        root = os.path.commonpath(dirs) if all("://" not in d for d in dirs) else _common_prefix(dirs)
    base = root.rstrip("/") + "/"
    out = {}
    for f in files:
        out[f] = f[len(base) :] if f.startswith(base) else os.path.relpath(f, root)
    return out


def _common_prefix(dirs: list[str]) -> str:
    parts = [d.split("/") for d in dirs]
    common = []
    for level in zip(*parts, strict=False):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    return "/".join(common)


def _skipped_text(skipped: dict[str, str]) -> str:
    items = [f"{os.path.basename(f)} ({r})" for f, r in sorted(skipped.items())]
    return ", ".join(items[:5]) + (f" and {len(items) - 5} more" if len(items) > 5 else "")


def _is_dir(uri: str) -> bool:
    import pyarrow.fs as pafs

    fs, path = fsutil.resolve(uri)
    return fs.get_file_info(path).type == pafs.FileType.Directory


def _file_size(uri: str) -> int:
    fs, path = fsutil.resolve(uri)
    return fs.get_file_info(path).size or 0


def estimated_bytes(uri: str) -> int:
    return int(_file_size(uri) * _RATIO[dumps.compression_of(uri)])


def sampled_bytes(uri: str, sample: int = SAMPLE_BYTES) -> int:
    """Decoded size of a file: a .zst file's ratio is measured on its first ``sample`` compressed bytes.

    Slices cut a file at decoded byte offsets, so their balance rests on this estimate (the assumed
    ratio 8 is off by 15% on the generator's months, and by more on real ones). Other formats, and
    files whose start does not decode, use the assumed ratio."""
    size = _file_size(uri)
    if dumps.compression_of(uri) != "zst" or size <= 0:
        return estimated_bytes(uri)
    fs, path = fsutil.resolve(uri)
    try:
        with fs.open_input_stream(path, compression=None) as raw:
            data = raw.read(sample)
        dobj = dumps.zstandard.ZstdDecompressor(max_window_size=dumps.ZSTD_MAX_WINDOW).decompressobj()
        out = len(dobj.decompress(data))
    except (OSError, dumps.zstandard.ZstdError):
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

    A task keeps ~TASK_CORES cores busy (its decoder runs in a thread, dumps.Prefetched), so files are cut
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
        name_kind, month = dumps.parse_dump_name(f)
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


# --- decoder semaphore (per machine) ------------------------------------------------------------


@contextlib.contextmanager
def decoder_slot(max_decoders: int, poll_s: float = 0.05):
    """Hold one of ``max_decoders`` machine-wide slots (flock on files in the temp dir)."""
    if max_decoders <= 0:
        yield
        return
    lock_dir = os.path.join(tempfile.gettempdir(), f"dialogsmith-decoders-{os.getuid()}")
    os.makedirs(lock_dir, exist_ok=True)
    while True:
        for i in range(max_decoders):
            fd = os.open(os.path.join(lock_dir, f"slot-{i}.lock"), os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
            return
        time.sleep(poll_s)


# --- bucketing ----------------------------------------------------------------------------------


def _crc_table() -> np.ndarray:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        table.append(c)
    return np.array(table, dtype=np.uint32)


_CRC_TABLE = _crc_table()


def crc32_strings(arr: pa.Array) -> np.ndarray:
    """zlib.crc32 of each UTF-8 string: the C module's loop (~10x the numpy code below, which serves
    executors without it: table-driven, one byte column at a time)."""
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    if fastjson.AVAILABLE and not arr.null_count and hasattr(fastjson._fastjson, "crc32"):
        buffers = fastjson._native_buffers(arr, None)
        if buffers is not None:
            offsets, raw = buffers
            out = np.empty(len(arr), np.uint32)
            if len(out):
                fastjson._fastjson.crc32(offsets, raw if len(raw) else np.zeros(1, np.uint8), out)
            return out
    return _crc32_numpy(arr)


def _crc32_numpy(arr: pa.Array) -> np.ndarray:
    n = len(arr)
    if n == 0:
        return np.zeros(0, dtype=np.uint32)
    if arr.null_count:
        arr = pc.fill_null(arr, "")
    arr = arr.cast(pa.large_string()) if arr.type == pa.string() else arr
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset : arr.offset + n + 1]
    data = (
        np.frombuffer(arr.buffers()[2], dtype=np.uint8)
        if arr.buffers()[2] is not None
        else np.zeros(1, np.uint8)
    )
    starts = offsets[:-1]
    lengths = offsets[1:] - starts
    crc = np.full(n, 0xFFFFFFFF, dtype=np.uint32)
    for j in range(int(lengths.max()) if n else 0):
        live = lengths > j
        if live.all():
            b = data[starts + j]
            crc = _CRC_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
        else:
            idx = np.flatnonzero(live)
            c = crc[idx]
            crc[idx] = _CRC_TABLE[(c ^ data[starts[idx] + j]) & 0xFF] ^ (c >> 8)
    return crc ^ np.uint32(0xFFFFFFFF)


def bucket_of(link_ids: pa.Array, n_buckets: int) -> np.ndarray:
    """schemas.link_bucket for every row, vectorized."""
    return (crc32_strings(link_ids) % np.uint32(n_buckets)).astype(np.int32)


# --- phase 1: decode, parse, stage ---------------------------------------------------------------


def _staging_path(staging: str, kind: str, item: dict) -> str:
    return fsutil.join(staging, kind, f"{item['file_idx']:06d}-{item['slice']:03d}.arrow")


class _Stager:
    """Buffers one kind's rows, then appends them to a staging IPC file as one batch per bucket."""

    def __init__(self, path: str, schema: pa.Schema, n_buckets: int, compression: str | None = "lz4"):
        self.path, self.schema, self.n_buckets = path, schema, n_buckets
        self.compression = compression
        self.pending: list[pa.Table] = []
        self.pending_buckets: list[np.ndarray] = []
        self.pending_rows = 0
        self.writer = None
        self.sink = None
        self.batches: dict[int, list[int]] = {}
        self.n_batches = 0
        self.rows = 0

    def add(self, table: pa.Table, buckets: np.ndarray | None = None) -> None:
        self.pending.append(table)
        self.pending_buckets.append(
            buckets if buckets is not None else bucket_of(table["link_id"], self.n_buckets)
        )
        self.pending_rows += table.num_rows
        if self.pending_rows >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.pending_rows:
            return
        table = pa.concat_tables(self.pending)  # take() below copies once; combine_chunks would copy twice
        buckets = np.concatenate(self.pending_buckets)
        self.pending, self.pending_buckets, self.pending_rows = [], [], 0
        order = np.argsort(buckets, kind="stable")
        table = table.take(pa.array(order))
        sorted_b = buckets[order]
        cuts = np.flatnonzero(np.diff(sorted_b)) + 1
        bounds = np.concatenate(([0], cuts, [len(sorted_b)]))
        if self.writer is None:
            fs, path = fsutil.resolve(self.path)
            fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
            self.sink = fs.open_output_stream(path)
            self.writer = ipc.new_file(
                self.sink, self.schema, options=ipc.IpcWriteOptions(compression=self.compression)
            )
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            if hi <= lo:
                continue
            for batch in table.slice(lo, hi - lo).to_batches():
                self.writer.write_batch(batch)
                self.batches.setdefault(int(sorted_b[lo]), []).append(self.n_batches)
                self.n_batches += 1
        self.rows += table.num_rows

    def close(self) -> None:
        self.flush()
        if self.writer is not None:
            self.writer.close()
            self.sink.close()


def phase1_task(item: dict, conf: dict) -> dict:
    """Decode one file (slice), stage its rows by bucket, write its quarantine rows. Returns stats."""
    started = time.time()
    t0, c0 = time.perf_counter(), time.process_time()
    # a projection (dialogpt-tsv reads 7 comment fields): the required fields are always typed
    columns = (conf.get("columns") or {}).get(item["kind"])
    parser = dumps.BlockParser(item["source"], item["kind"], item["month"], columns=columns)
    reader = dumps.DumpReader(item["file"], conf["block_size"], item.get("byte_range"))
    s = item["slice"]
    stagers: dict[str, _Stager] = {}
    refs = None  # who names whom across buckets (dialogpt-tsv: dialogsmith.instances.dialogpt)
    if conf.get("references") and item["kind"] == dumps.COMMENTS:
        r = conf["references"]
        refs = References(r["root"], f"{item['file_idx']:06d}-{s:03d}", r["parts"])
    quarantine: list[dict] = []
    counts: Counter = Counter()
    parsed = lines = 0
    # The decoder runs in a thread (dumps.Prefetched), ahead of parsing and staging here. (Parsing in
    # more threads, the C parser without the GIL, was slower: 5.2 -> 6.6-7.3 s for a 5.1M-line file; the
    # Python between the C calls then waits for the GIL.)
    with decoder_slot(conf["max_decoders"]):
        for block in reader:  # only this slice's blocks
            res = parser.parse(block)
            lines += block.n_lines
            parsed += res.parsed
            counts.update(res.quarantined)
            quarantine.extend(res.quarantine)
            for table in res.tables:
                kind = parser.kind
                if kind not in stagers:
                    stagers[kind] = _Stager(
                        _staging_path(conf["staging"], kind, item),
                        parser.output_schema,
                        conf["n_buckets"],
                        conf.get("staging_compression", "lz4"),
                    )
                buckets = bucket_of(table.column("link_id"), conf["n_buckets"])
                stagers[kind].add(table, buckets)
                if refs is not None:
                    refs.add(table, buckets)
    error = None
    if reader.error and reader.owns(reader.error_offset):  # the slice holding the break records it once
        reason, message = reader.error
        quarantine.append(parser.error_record(reader.error_line, reason, message, reader.tail))
        counts[reason] += 1
        lines += 1
        error = f"{reason}: {message}"
    for stager in stagers.values():
        stager.close()
    references = refs.close() if refs is not None else {}
    if quarantine:
        qpath = fsutil.join(conf["out"], "quarantine", f"part-{item['file_idx']:06d}-{s:03d}.parquet")
        _write_parquet(qpath, dumps.quarantine_table(quarantine), "quarantine", schemas.QUARANTINE_VERSION)
    return {
        "file": item["file"],
        "source": item["source"],
        "slice": s,
        "kind": parser.kind,
        "lines": lines,
        "parsed": parsed,
        "quarantined": dict(counts),
        "error": error,
        "staged": {
            kind: {"path": st.path, "batches": st.batches, "rows": st.rows} for kind, st in stagers.items()
        },
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": time.process_time() - c0,
        "parser": "native" if parser.native else "arrow",
        "references": references,
        "started": started,  # wall clock, to see the job's start-up from the driver
    }


def fold_files(p1: list[dict]) -> tuple[dict[str, dict], Counter]:
    """Phase-1 results per input file (slices summed): lines, parsed, quarantined per reason, error;
    and the quarantined lines per reason over all files."""
    per_file: dict[str, dict] = {}
    quarantined: Counter = Counter()
    for r in p1:
        f = per_file.setdefault(
            r["source"], {"lines": 0, "parsed": 0, "quarantined": Counter(), "error": None, "kind": r["kind"]}
        )
        f["lines"] += r["lines"]
        f["parsed"] += r["parsed"]
        f["quarantined"].update(r["quarantined"])
        f["error"] = f["error"] or r["error"]
        f["kind"] = f["kind"] or r["kind"]
        quarantined.update(r["quarantined"])
    for f in per_file.values():
        f["quarantined"] = dict(sorted(f["quarantined"].items()))
    return dict(sorted(per_file.items())), quarantined


def staged_sources(p1: list[dict]) -> dict[tuple[str, int], list[tuple[str, list[int]]]]:
    """(kind, bucket) -> the staging files and batch numbers holding its rows, in file order."""
    sources: dict[tuple[str, int], list] = {}
    for r in sorted(p1, key=lambda r: (r["file"], r["slice"])):
        for kind, st in r["staged"].items():
            for b, ids in st["batches"].items():
                sources.setdefault((kind, int(b)), []).append((st["path"], ids))
    return sources


def _phase1_partition(items):
    items = list(items)
    for item in items:
        yield phase1_task(item, item["conf"])


# --- phase 2: dedup and write buckets ------------------------------------------------------------


def later_duplicates(ids, sources, lines: np.ndarray) -> np.ndarray:
    """Mask of the rows whose id occurred before, by (source, line): every copy of an id but the first.

    The ids as base-36 numbers (or, for ids that are not, a 32-bit crc32) find the candidate rows, ids
    that share a key; only those (the duplicates, plus ~n²/2³³ crc collisions) are compared exactly."""
    n = len(lines)
    later = np.zeros(n, dtype=bool)
    if n == 0:
        return later
    keys = base36_keys(ids)  # reddit ids as numbers: exact, and cheaper than hashing strings
    if keys is None:
        keys = crc32_strings(ids)
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    cand = np.flatnonzero(counts[inverse] > 1)
    if not len(cand):
        return later
    take = pa.array(cand)
    sub = pa.table({"id": ids.take(take), "source": sources.take(take), "line": pa.array(lines[cand])})
    order = pc.sort_indices(
        sub, [("id", "ascending"), ("source", "ascending"), ("line", "ascending")]
    ).to_numpy()
    sorted_ids = sub.column("id").take(pa.array(order)).to_numpy(zero_copy_only=False)
    again = np.zeros(len(order), dtype=bool)
    again[1:] = sorted_ids[1:] == sorted_ids[:-1]  # same id as the row before: not the first copy
    later[cand[order[again]]] = True
    return later


def dedup_first(table: pa.Table) -> pa.Table:
    """Rows with distinct ids, keeping for each id the first by (source, line); order otherwise kept."""
    if table.num_rows == 0:
        return table
    later = later_duplicates(table.column("id"), table.column("source"), table.column("line").to_numpy())
    return table.filter(pa.array(~later)) if later.any() else table


def phase2_task(task: dict, conf: dict) -> dict:
    """One bucket of one kind: gather staged batches, drop duplicate ids, write Parquet."""
    t0, c0 = time.perf_counter(), time.process_time()
    kind, bucket = task["kind"], task["bucket"]
    schema = dumps.OUTPUT_SCHEMA[kind]
    tables = []
    for path, batch_ids in task["sources"]:
        fs, p = fsutil.resolve(path)
        with fs.open_input_file(p) as f:
            reader = ipc.open_file(f)
            tables.append(pa.Table.from_batches([reader.get_batch(i) for i in batch_ids], schema=schema))
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    rows_in = table.num_rows
    table = dedup_first(table)
    version = schemas.COMMENTS_VERSION if kind == dumps.COMMENTS else schemas.SUBMISSIONS_VERSION
    base = fsutil.join(conf["out"], kind, f"bucket={bucket}")
    n_parts = max(1, math.ceil(table.num_rows / PARQUET_ROWS_PER_FILE))
    for part in range(n_parts):
        piece = table.slice(part * PARQUET_ROWS_PER_FILE, PARQUET_ROWS_PER_FILE)
        _write_parquet(fsutil.join(base, f"part-{part:05d}.parquet"), piece, kind, version)
    return {
        "kind": kind,
        "bucket": bucket,
        "rows_in": rows_in,
        "rows_out": table.num_rows,
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": time.process_time() - c0,
    }


def _phase2_partition(tasks):
    for task in tasks:
        yield phase2_task(task, task["conf"])


# Columns whose values repeat (threads, authors, subreddits, months): dictionary-encoded in Parquet.
# The others (ids, text, numbers) are written plain: trying a dictionary on a unique column and
# falling back doubled the Parquet write time (measured: 0.38 -> 0.17 s per 276k comments, same size).
DICTIONARY_COLUMNS = ("link_id", "author", "subreddit", "subreddit_id", "distinguished", "domain", "month")
DICTIONARY_COLUMNS += ("source", "reason")


def _write_parquet(uri: str, table: pa.Table, name: str, version: int) -> None:
    schema = schemas.with_metadata(table.schema, name, version)
    fs, path = fsutil.resolve(uri)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    dict_cols = [
        c for c in schema.names if c in DICTIONARY_COLUMNS and not (name == "submissions" and c == "link_id")
    ]
    with (
        fs.open_output_stream(path) as sink,
        pq.ParquetWriter(sink, schema, compression="snappy", use_dictionary=dict_cols) as writer,
    ):
        writer.write_table(table.cast(schema), row_group_size=PARQUET_ROW_GROUP)


# --- driver -------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="extract/ingest.py",
        description="Ingest Pushshift Reddit dumps (RC_/RS_ .zst/.bz2/.xz/.gz/plain NDJSON) into typed, "
        "bucketed, deduplicated Parquet: OUT/comments, OUT/submissions, OUT/quarantine, OUT/stats.json.",
    )
    p.add_argument(
        "--input", required=True, help="dump directory, glob, or comma-separated list of files/dirs"
    )
    p.add_argument("--output", required=True, help="output directory (replaced atomically on success)")
    add_safety_flags(p)
    p.add_argument(
        "--kind",
        choices=dumps.KINDS,
        help="kind of files whose name is not RC_/RS_YYYY-MM (default: sniffed: rows with parent_id are comments)",
    )
    p.add_argument(
        "--buckets",
        type=int,
        help="number of link_id buckets (default: ~1 per 512 MiB of decoded input, 4..8192)",
    )
    p.add_argument(
        "--slices",
        type=int,
        help="parse each file in this many slices (default: auto, by file size and cores)",
    )
    p.add_argument(
        "--max-decoders",
        type=int,
        default=os.cpu_count() or 1,
        help="concurrent decoders per machine (each zstd decoder may hold 2 GiB); default: cores",
    )
    p.add_argument("--block-size", type=int, default=dumps.DEFAULT_BLOCK_SIZE, help=argparse.SUPPRESS)
    p.add_argument("--master", help="Spark master (default: local[*], or what spark-submit sets)")
    return p


def run(args: argparse.Namespace, input: list[str] | None = None, spark=None) -> StageStats:
    """Run the ingest. ``input`` overrides ``args.input`` (a list of paths); ``spark`` a session to use."""
    from dialogsmith.spark import get_spark

    timer0 = time.perf_counter()
    phases: dict[str, float] = {}
    for name in ("buckets", "slices", "max_decoders"):
        v = getattr(args, name, None)
        if v is not None and v < (0 if name == "max_decoders" else 1):
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {v}")
    scan = scan_inputs(input if input is not None else args.input)
    files = scan.files
    force = bool(getattr(args, "force", False))
    outputs.check_target(args.output, STAGE, scan.paths, force)  # before Spark starts: fail fast
    spark = (
        spark
        or getattr(args, "spark", None)
        or get_spark("dialogsmith-extract", master=getattr(args, "master", None))
    )
    phases["spark_start"] = round(time.perf_counter() - timer0, 3)
    sc = spark.sparkContext
    parallelism = max(1, sc.defaultParallelism)

    t = time.perf_counter()
    total_est = sum(estimated_bytes(f) for f in files)
    n_buckets = args.buckets or default_buckets(total_est, parallelism)
    items = plan(files, getattr(args, "kind", None), getattr(args, "slices", None), parallelism, scan.sources)
    max_decoders = (
        args.max_decoders if getattr(args, "max_decoders", None) is not None else (os.cpu_count() or 1)
    )
    phases["plan"] = round(time.perf_counter() - t, 3)

    stats = StageStats(stage=STAGE)
    with outputs.stage_output(args.output, STAGE, scan.paths, force) as tmp:
        staging = fsutil.join(tmp, "_staging")
        conf = {
            "out": tmp,
            "staging": staging,
            "staging_compression": staging_compression(total_est, projected=False),
            "n_buckets": n_buckets,
            "max_decoders": max_decoders,
            "block_size": getattr(args, "block_size", None) or dumps.DEFAULT_BLOCK_SIZE,
        }
        t = time.perf_counter()
        work = [{**it, "conf": conf} for it in items]
        p1 = (
            sc.parallelize(work, max(1, len(work))).mapPartitions(_phase1_partition).collect() if work else []
        )
        phases["decode_parse"] = round(time.perf_counter() - t, 3)

        t = time.perf_counter()
        sources = staged_sources(p1)
        tasks = [
            {"kind": kind, "bucket": b, "sources": sources.get((kind, b), []), "conf": conf}
            for kind in dumps.KINDS
            for b in range(n_buckets)
        ]
        n_groups = max(1, min(len(tasks), parallelism * 4))
        p2 = sc.parallelize(tasks, n_groups).mapPartitions(_phase2_partition).collect()
        phases["dedup_write"] = round(time.perf_counter() - t, 3)

        t = time.perf_counter()
        fsutil.remove(staging)
        if not any(r["quarantined"] for r in p1):  # the dataset always exists, with its schema
            _write_parquet(
                fsutil.join(tmp, "quarantine", "part-000000-000.parquet"),
                schemas.QUARANTINE.empty_table(),
                "quarantine",
                schemas.QUARANTINE_VERSION,
            )
        per_file, quarantined = fold_files(p1)
        written = {kind: sum(r["rows_out"] for r in p2 if r["kind"] == kind) for kind in dumps.KINDS}
        dups = {
            kind: sum(r["rows_in"] - r["rows_out"] for r in p2 if r["kind"] == kind) for kind in dumps.KINDS
        }
        stats.rows_in = sum(f["lines"] for f in per_file.values())
        stats.rows_out = sum(written.values())
        stats.merged = {DUPLICATE_ID: sum(dups.values())}
        stats.quarantined = dict(sorted(quarantined.items()))
        stats.extra = {
            "n_buckets": n_buckets,
            "comments": written[dumps.COMMENTS],
            "submissions": written[dumps.SUBMISSIONS],
            "duplicates": dups,
            "input_files": len(files),
            "input_bytes": sum(_file_size(f) for f in files),
            "decoded_bytes_estimate": total_est,
            "work_items": len(items),
            "slices": {it["source"]: it["slices"] for it in items},
            "max_decoders": max_decoders,
            "parallelism": parallelism,
            "files": per_file,
            "skipped_inputs": {scan.sources.get(f) or f: r for f, r in sorted(scan.skipped.items())},
            "phase_seconds": phases,
            "task_seconds": {
                "decode_parse": round(sum(r["seconds"] for r in p1), 3),
                "dedup_write": round(sum(r["seconds"] for r in p2), 3),
            },
            # CPU time of the Python tasks (process_time): robust to other load on the machine
            "task_cpu_seconds": {
                "decode_parse": round(sum(r["cpu_seconds"] for r in p1), 3),
                "dedup_write": round(sum(r["cpu_seconds"] for r in p2), 3),
            },
            # phase-1 tasks per line parser: "native" (the C module) or "arrow" (executors without it,
            # e.g. the package shipped as a zip: same rows, slower; docs/cluster.md)
            "parser": dict(sorted(Counter(r["parser"] for r in p1).items())),
        }
        stats.seconds = round(time.perf_counter() - timer0, 3)
        stats.check()
        stats.write(fsutil.join(tmp, "stats.json"))
        phases["commit"] = round(time.perf_counter() - t, 3)
    stats.seconds = round(time.perf_counter() - timer0, 3)
    return stats


def summary(stats: StageStats) -> str:
    x = stats.extra
    q = ", ".join(f"{k}={v}" for k, v in stats.quarantined.items()) or "none"
    return (
        f"extract: {stats.rows_in} lines -> {x['comments']} comments + {x['submissions']} submissions "
        f"in {x['n_buckets']} buckets; duplicates {stats.merged.get(DUPLICATE_ID, 0)}; quarantined {q}; "
        f"{stats.seconds:.1f} s"
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        stats = run(args)
    except (FileNotFoundError, ValueError, outputs.OutputRefused) as e:
        print(f"extract: error: {e}", file=sys.stderr)
        return 2
    print(summary(stats))
    skipped = stats.extra.get("skipped_inputs") or {}
    if skipped:
        print(f"  skipped {len(skipped)} file(s) that are not dumps:")
        for name, reason in skipped.items():
            print(f"    {name}: {reason}")
    print(f"  output: {args.output}")
    return finish(stats, args.strict)
