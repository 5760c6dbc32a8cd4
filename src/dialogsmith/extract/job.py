"""The extract stage: Pushshift dumps (RC_/RS_ files) -> bucketed, typed, deduplicated Parquet.

Output (the contract other stages rely on)::

    OUT/comments/bucket=<k>/part-*.parquet      schemas.COMMENTS_SCHEMA, k = schemas.link_bucket(link_id, n)
    OUT/submissions/bucket=<k>/part-*.parquet   schemas.SUBMISSIONS_SCHEMA (a thread and its submission share k)
    OUT/quarantine/part-*.parquet               schemas.QUARANTINE
    OUT/stats.json                              StageStats(stage="extract"), counts add up exactly
    OUT/_SUCCESS

Spark only schedules Python tasks and collects small stats dicts; the tasks decode, parse and write
Arrow/Parquet themselves, because handing rows to the JVM (mapInArrow + DataFrame.write) was measured
~4x slower (docs/extract.md).

- Phase 1, one task per (file, slice) of plan.py: the task decodes the stream up to the end of its
  range, parses the blocks that start in it (dumps.read_tables), hashes rows to buckets and appends
  them to one staging Arrow IPC file per kind (staging.py), and writes quarantine rows straight to
  Parquet. Concurrent decoders per machine are bounded by an flock semaphore (``--max-decoders``):
  each open zstd decoder may hold a 2 GiB window.
- Phase 2, one task per group of buckets: read the bucket's batches from every staging file, drop
  duplicate ids (keeping the first by (source, line)), write the final bucket Parquet files.
Output is committed atomically (stage.committed): a failed run leaves the previous output.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import tempfile
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dialogsmith import fastjson, fsutil, outputs, stage
from dialogsmith.extract.blocks import DEFAULT_BLOCK_SIZE, DumpReader
from dialogsmith.extract.dumps import FileStats, quarantine_table, read_tables, scan_inputs
from dialogsmith.extract.parse import COMMENTS, KINDS, OUTPUT_SCHEMA, SUBMISSIONS, BlockParser
from dialogsmith.extract.plan import default_buckets, estimated_bytes, file_size, plan, staging_compression
from dialogsmith.extract.staging import Stager, bucket_of, read_bucket, staged_sources, staging_path
from dialogsmith.formats import parquet
from dialogsmith.formats.schemas import COMMENTS_TABLE, QUARANTINE_TABLE, SUBMISSIONS_TABLE
from dialogsmith.formats.stats import StageStats
from dialogsmith.idkeys import References, base36_keys
from dialogsmith.stage import Stage, StageConfig, StageError, option

NAME = "extract"
DUPLICATE_ID = "duplicate_id"
PARQUET_ROWS_PER_FILE = 2_000_000
PARQUET_ROW_GROUP = 128 * 1024
TABLE_FORMATS = {COMMENTS: COMMENTS_TABLE, SUBMISSIONS: SUBMISSIONS_TABLE}


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


# --- phase 1: decode, parse, stage ---------------------------------------------------------------


def phase1_task(item: dict, conf: dict) -> dict:
    """Decode one file (slice), stage its rows by bucket, write its quarantine rows. Returns stats.

    ``conf``: out, staging, n_buckets, max_decoders, block_size, staging_compression; optionally
    ``columns`` ({kind: fields read}, a projection: dialogpt-tsv reads 7 comment fields; the required
    fields are always typed) and ``references`` (who names whom across buckets, for dialogpt-tsv)."""
    started = time.time()
    t0, c0 = time.perf_counter(), time.process_time()
    columns = (conf.get("columns") or {}).get(item["kind"])
    parser = BlockParser(item["source"], item["kind"], item["month"], columns=columns)
    reader = DumpReader(item["file"], conf["block_size"], item.get("byte_range"))
    s = item["slice"]
    stagers: dict[str, Stager] = {}
    refs = None
    if conf.get("references") and item["kind"] == COMMENTS:
        r = conf["references"]
        refs = References(r["root"], f"{item['file_idx']:06d}-{s:03d}", r["parts"])
    stats, quarantine = FileStats(), []
    # The decoder runs in a thread (decode.Prefetched), ahead of parsing and staging here. (Parsing in
    # more threads, the C parser without the GIL, was slower: 5.2 -> 6.6-7.3 s for a 5.1M-line file; the
    # Python between the C calls then waits for the GIL.)
    with decoder_slot(conf["max_decoders"]):
        for table in read_tables(reader, parser, stats, quarantine):  # only this slice's blocks
            kind = parser.kind
            if kind not in stagers:
                path = staging_path(conf["staging"], kind, item)
                compression = conf.get("staging_compression", "lz4")
                stagers[kind] = Stager(path, parser.output_schema, compression)
            buckets = bucket_of(table.column("link_id"), conf["n_buckets"])
            stagers[kind].add(table, buckets)
            if refs is not None:
                refs.add(table, buckets)
    for stager in stagers.values():
        stager.close()
    references = refs.close() if refs is not None else {}
    if quarantine:
        qpath = fsutil.join(conf["out"], "quarantine", f"part-{item['file_idx']:06d}-{s:03d}.parquet")
        parquet.write(qpath, quarantine_table(quarantine), QUARANTINE_TABLE, row_group_size=PARQUET_ROW_GROUP)
    return {
        "file": item["file"],
        "source": item["source"],
        "slice": s,
        "kind": parser.kind,
        "lines": stats.lines,
        "parsed": stats.parsed,
        "quarantined": dict(stats.quarantined),
        "error": stats.error,
        "staged": {
            kind: {"path": st.path, "batches": st.batches, "rows": st.rows} for kind, st in stagers.items()
        },
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": time.process_time() - c0,
        "parser": parser.engine,
        "references": references,
        "started": started,  # wall clock, to see the job's start-up from the driver
    }


def phase1_partition(items):
    """A Spark partition of work items (each with its ``conf``) -> their phase-1 results."""
    for item in list(items):
        yield phase1_task(item, item["conf"])


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
        keys = fastjson.crc32(ids)
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
    table = read_bucket(task["sources"], OUTPUT_SCHEMA[kind])
    rows_in = table.num_rows
    table = dedup_first(table)
    base = fsutil.join(conf["out"], kind, f"bucket={bucket}")
    n_parts = max(1, math.ceil(table.num_rows / PARQUET_ROWS_PER_FILE))
    for part in range(n_parts):
        piece = table.slice(part * PARQUET_ROWS_PER_FILE, PARQUET_ROWS_PER_FILE)
        uri = fsutil.join(base, f"part-{part:05d}.parquet")
        parquet.write(uri, piece, TABLE_FORMATS[kind], row_group_size=PARQUET_ROW_GROUP)
    return {
        "kind": kind,
        "bucket": bucket,
        "rows_in": rows_in,
        "rows_out": table.num_rows,
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": time.process_time() - c0,
    }


def phase2_partition(tasks):
    for task in tasks:
        yield phase2_task(task, task["conf"])


# --- the stage ----------------------------------------------------------------------------------


@dataclass
class ExtractConfig(StageConfig):
    input: str = option("", "dump directory, glob, or comma-separated list of files/dirs")
    kind: str | None = option(
        None,
        "kind of files whose name is not RC_/RS_YYYY-MM (default: sniffed: rows with parent_id are comments)",
        choices=KINDS,
    )
    buckets: int | None = option(
        None, "number of link_id buckets (default: ~1 per 512 MiB of decoded input, 4..8192)"
    )
    slices: int | None = option(
        None, "parse each file in this many slices (default: auto, by file size and cores)"
    )
    max_decoders: int | None = option(
        None,
        "concurrent decoders per machine (each zstd decoder may hold 2 GiB; 0: no limit); default: cores",
    )
    block_size: int = option(DEFAULT_BLOCK_SIZE, "decoded bytes per block", hidden=True)

    def validate(self) -> ExtractConfig:
        super().validate()
        for flag, value, least in (
            ("--buckets", self.buckets, 1),
            ("--slices", self.slices, 1),
            ("--max-decoders", self.max_decoders, 0),
            ("--block-size", self.block_size, 1),
        ):
            if value is not None and value < least:
                raise StageError(f"{flag} must be >= {least}, got {value}")
        return self


def build_parser() -> stage.ConfigParser:
    return STAGE.parser()


def run(cfg: ExtractConfig, input: list[str] | None = None, spark=None) -> StageStats:
    """Run the stage. ``input`` overrides ``cfg.input`` (a list of paths); ``spark`` a session to use."""
    timer0 = time.perf_counter()
    cfg.validate()
    scan = scan_inputs(input if input is not None else cfg.input)
    outputs.check_target(cfg.output, NAME, scan.paths, cfg.force)  # before Spark starts: fail fast
    sc = stage.spark_for(cfg, NAME, spark).sparkContext
    phases = {"spark_start": round(time.perf_counter() - timer0, 3)}
    parallelism = max(1, sc.defaultParallelism)
    t = time.perf_counter()
    total_est = sum(estimated_bytes(f) for f in scan.files)
    n_buckets = cfg.buckets or default_buckets(total_est, parallelism)
    items = plan(scan.files, cfg.kind, cfg.slices, parallelism, scan.sources)
    max_decoders = cfg.max_decoders if cfg.max_decoders is not None else (os.cpu_count() or 1)
    phases["plan"] = round(time.perf_counter() - t, 3)
    with stage.committed(cfg, NAME, scan.paths) as (tmp, stats):
        conf = {
            "out": tmp,
            "staging": fsutil.join(tmp, "_staging"),
            "staging_compression": staging_compression(total_est, projected=False),
            "n_buckets": n_buckets,
            "max_decoders": max_decoders,
            "block_size": cfg.block_size,
        }
        t = time.perf_counter()
        work = [{**it, "conf": conf} for it in items]
        p1 = sc.parallelize(work, max(1, len(work))).mapPartitions(phase1_partition).collect() if work else []
        phases["decode_parse"] = round(time.perf_counter() - t, 3)
        t = time.perf_counter()
        sources = staged_sources(p1)
        tasks = [
            {"kind": kind, "bucket": b, "sources": sources.get((kind, b), []), "conf": conf}
            for kind in KINDS
            for b in range(n_buckets)
        ]
        n_groups = max(1, min(len(tasks), parallelism * 4))
        p2 = sc.parallelize(tasks, n_groups).mapPartitions(phase2_partition).collect()
        phases["dedup_write"] = round(time.perf_counter() - t, 3)
        fsutil.remove(conf["staging"])
        if not any(r["quarantined"] for r in p1):  # the dataset always exists, with its schema
            parquet.write_empty(fsutil.join(tmp, "quarantine", "part-000000-000.parquet"), QUARANTINE_TABLE)
        fill_stats(stats, p1, p2, n_buckets, items, scan)
        stats.extra.update(
            {
                "input_bytes": sum(file_size(f) for f in scan.files),
                "decoded_bytes_estimate": total_est,
                "max_decoders": max_decoders,
                "parallelism": parallelism,
                "phase_seconds": phases,
            }
        )
    return stats


def fill_stats(stats: StageStats, p1: list[dict], p2: list[dict], n_buckets: int, items, scan) -> None:
    """The counts of both phases' results into ``stats`` (rows_in = rows_out + merged + quarantined)."""
    per_file, quarantined = fold_files(p1)
    written = {kind: sum(r["rows_out"] for r in p2 if r["kind"] == kind) for kind in KINDS}
    dups = {kind: sum(r["rows_in"] - r["rows_out"] for r in p2 if r["kind"] == kind) for kind in KINDS}
    stats.rows_in = sum(f["lines"] for f in per_file.values())
    stats.rows_out = sum(written.values())
    stats.merged = {DUPLICATE_ID: sum(dups.values())}
    stats.quarantined = dict(sorted(quarantined.items()))
    stats.extra = {
        "n_buckets": n_buckets,
        "comments": written[COMMENTS],
        "submissions": written[SUBMISSIONS],
        "duplicates": dups,
        "input_files": len(scan.files),
        "work_items": len(items),
        "slices": {it["source"]: it["slices"] for it in items},
        "files": per_file,
        "skipped_inputs": {scan.sources.get(f) or f: r for f, r in sorted(scan.skipped.items())},
        "task_seconds": {
            "decode_parse": round(sum(r["seconds"] for r in p1), 3),
            "dedup_write": round(sum(r["seconds"] for r in p2), 3),
        },
        # CPU time of the Python tasks (process_time): robust to other load on the machine
        "task_cpu_seconds": {
            "decode_parse": round(sum(r["cpu_seconds"] for r in p1), 3),
            "dedup_write": round(sum(r["cpu_seconds"] for r in p2), 3),
        },
        # phase-1 tasks per line parser: "native" (the C module) or "python" (executors without it, e.g.
        # the package shipped as a zip: the same rows, slower; docs/cluster.md)
        "parser": dict(sorted(Counter(r["parser"] for r in p1).items())),
    }


def summary(stats: StageStats, cfg: ExtractConfig) -> str:
    x = stats.extra
    q = ", ".join(f"{k}={v}" for k, v in stats.quarantined.items()) or "none"
    lines = [
        f"extract: {stats.rows_in} lines -> {x['comments']} comments + {x['submissions']} submissions "
        f"in {x['n_buckets']} buckets; duplicates {stats.merged.get(DUPLICATE_ID, 0)}; quarantined {q}; "
        f"{stats.seconds:.1f} s"
    ]
    skipped = x.get("skipped_inputs") or {}
    if skipped:
        lines.append(f"  skipped {len(skipped)} file(s) that are not dumps:")
        lines += [f"    {name}: {reason}" for name, reason in skipped.items()]
    lines.append(f"  output: {cfg.output}")
    return "\n".join(lines)


STAGE = Stage(
    NAME,
    ExtractConfig,
    run,
    summary,
    "Ingest Pushshift Reddit dumps (RC_/RS_ .zst/.bz2/.xz/.gz/plain NDJSON) into typed, bucketed, "
    "deduplicated Parquet: OUT/comments, OUT/submissions, OUT/quarantine, OUT/stats.json.",
)


def main(argv: list[str] | None = None) -> int:
    return STAGE.main(argv)
