"""The filter stage as a Spark job: instances/ → kept (train/valid/test) + dropped + stats + funnel.

Spark schedules Python tasks; each task reads a slice of the instance Parquet files with pyarrow,
judges it with the profile's rules (vectorized and exact on every row, see rules.py), writes its own
output files and returns a small stats dict to the driver. Nothing per instance goes through Spark.

A profile without corpus-level rules (dialogpt) takes one pass: judge and write. With them (paper:
bland_response; default: bland_response and duplicate_pair) the job takes three Spark jobs over the
tasks, reading the instances twice:

1. ``task_stage``: judge every per-instance rule except bland_response; stage under OUT/_stage/ the
   codes, the 64-bit trigram hashes of the rows whose reason bland could still become, the task's
   distinct trigram hashes with their counts and the (context, response) keys of the rows that pass
   every per-instance rule but bland, the last two split into hash partitions (Arrow IPC files);
2. ``reduce_partition``, one task per hash partition: trigrams seen more than the threshold over the
   whole input (frequent; a small set, broadcast), and for each key seen more than once the earliest
   row by (target_created_utc, instance_id); the rows of its group with another instance_id lose;
3. ``task_finish``: re-read the task, apply bland (a lookup of the staged hashes) and the losers,
   write the outputs.

Why one corpus pass serves both rules: bland_response depends only on the response and the global
frequent set, so all rows of a duplicate group (same turns, same response) share its decision. Choosing
the winners among the rows that pass the other per-instance rules, before bland is known, is therefore
exact: a bland group is dropped whole as bland_response (it precedes duplicate_pair in every profile),
and a group that is not bland has the same members either way.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
import time
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dialogsmith import fsutil, outputs
from dialogsmith.filter import engine
from dialogsmith.filter import rules as rules_mod
from dialogsmith.filter.profiles import (
    ORDERS,
    FilterParams,
    Profile,
    bland_threshold,
    load_lists,
    make_profile,
)
from dialogsmith.filter.rules import DUPLICATE_PAIR
from dialogsmith.formats.schemas import (
    DROPPED,
    DROPPED_VERSION,
    FILTERED,
    FILTERED_VERSION,
    INSTANCES,
    INSTANCES_VERSION,
    with_metadata,
)
from dialogsmith.formats.stats import StageStats, Timer, finish

STAGE = "filter"
SPLITS = ("train", "valid", "test")


# --- CLI --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="filter/filter.py",
        description="Filter dialogue instances with a named-rule profile; write kept instances split into "
        "train/valid/test by a stable hash of link_id, dropped instances with their reason, stats.json "
        "and a funnel report (instances removed by each rule, in order).",
    )
    p.add_argument(
        "--input",
        required=True,
        help="conversations output dir (holding instances/) or a dir of instance Parquet files",
    )
    p.add_argument("--output", required=True, help="output dir (replaced atomically)")
    outputs.add_safety_flags(p)
    p.add_argument(
        "--profile", default="default", choices=sorted(ORDERS), help="rule profile (default: %(default)s)"
    )
    p.add_argument(
        "--bl_words",
        "--bl-words",
        dest="bl_words",
        help="word/phrase blocklist (flashtext semantics); "
        "default: the one the instances were built with (input stats.json), if any",
    )
    p.add_argument(
        "--bl_subreddits", "--bl-subreddits", dest="bl_subreddits", help="subreddit blocklist (paper/default)"
    )
    p.add_argument(
        "--disable",
        action="append",
        default=[],
        help="rule names to switch off (comma-separated, repeatable)",
    )
    d = FilterParams()
    p.add_argument(
        "--max-token-chars", type=int, default=d.max_token_chars, help="long_token limit (%(default)s)"
    )
    p.add_argument("--max-tokens", type=int, default=d.max_tokens, help="too_many_tokens limit (%(default)s)")
    p.add_argument(
        "--bland-fraction", type=float, default=d.bland_fraction, help="bland_response share (%(default)s)"
    )
    p.add_argument(
        "--bland-min-count",
        type=int,
        default=d.bland_min_count,
        help="a trigram is frequent when seen more than this at the paper's corpus size (%(default)s)",
    )
    p.add_argument(
        "--no-bland-scale", action="store_true", help="use --bland-min-count as is, not scaled to corpus size"
    )
    p.add_argument(
        "--bland-floor", type=int, default=d.bland_floor, help="lowest scaled threshold (%(default)s)"
    )
    p.add_argument(
        "--no-unescape-html", action="store_true", help="default profile: do not html-unescape turns"
    )
    p.add_argument("--split", default="0.98,0.01,0.01", help="train,valid,test fractions (%(default)s)")
    p.add_argument(
        "--split-salt", default="dialogsmith-split-v1", help="salt of the link_id hash (%(default)s)"
    )
    p.add_argument(
        "--export-tsv",
        action="store_true",
        help="also write tsv/<month>.tsv (DialoGPT format) and tsv/<split>.tsv (2-column src<TAB>tgt)",
    )
    p.add_argument(
        "--refs", action="store_true", help="also write tsv/test.refs.txt (multi-reference test set)"
    )
    p.add_argument(
        "--refs-min", type=int, default=2, help="min responses per context in test.refs.txt (%(default)s)"
    )
    p.add_argument(
        "--no-parquet", action="store_true", help="skip the per-split Parquet output (TSV-only runs)"
    )
    p.add_argument(
        "--rows-per-task", type=int, default=200_000, help="instances per Spark task (%(default)s)"
    )
    p.add_argument("--quiet", action="store_true", help="do not print the funnel table")
    return p


def parse_fractions(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or min(parts) < 0 or abs(sum(parts) - 1.0) > 1e-9:
        raise SystemExit(f"--split: expected three fractions summing to 1 (train,valid,test), got {text!r}")
    return parts  # type: ignore[return-value]


def params_from_args(args) -> FilterParams:
    disabled = tuple(r.strip() for item in args.disable for r in item.split(",") if r.strip())
    return FilterParams(
        bl_words=args.bl_words,
        bl_subreddits=args.bl_subreddits,
        max_token_chars=args.max_token_chars,
        max_tokens=args.max_tokens,
        bland_fraction=args.bland_fraction,
        bland_min_count=args.bland_min_count,
        bland_scale=not args.no_bland_scale,
        bland_floor=args.bland_floor,
        disabled=disabled,
    )


# --- input ------------------------------------------------------------------------------------


def require_instances(input_dir: str) -> None:
    """An instances stage output must be complete; a plain directory of instance Parquet files (a user's
    own data, no stage files in it) is read as it is."""
    if fsutil.exists(input_dir) and not outputs.looks_like_stage_output(input_dir, ["instances"]):
        return
    outputs.require_input(input_dir, "instances")


def instance_files(input_dir: str) -> list[str]:
    sub = fsutil.join(input_dir, "instances")
    base = sub if fsutil.exists(sub) else input_dir
    if not fsutil.exists(base):
        raise SystemExit(f"--input {input_dir}: no such directory")
    files = fsutil.list_files(base, ".parquet")
    if not files:
        raise SystemExit(
            f"--input {input_dir}: no instance Parquet files under {base} (run `make instances` first)"
        )
    return files


def plan_tasks(files: list[str], rows_per_task: int, parallelism: int = 1) -> list[dict]:
    """Group row groups of the input files into tasks of at most about rows_per_task instances.

    The number of tasks is rounded up to a multiple of ``parallelism`` (the cores) and the rows spread
    evenly over them, so that no core waits for another's last task (4 tasks of 206K, 206K, 206K and
    19K rows on 2 cores took 2 rounds of 206K; 4 of 160K take 2 rounds of 160K)."""
    groups = []
    for path in files:
        fs, p = fsutil.resolve(path)
        meta = pq.ParquetFile(p, filesystem=fs).metadata
        missing = [n for n in INSTANCES.names if n not in meta.schema.to_arrow_schema().names]
        if missing:
            raise SystemExit(f"{path}: not an instances table (missing columns {missing})")
        groups += [(path, rg, meta.row_group(rg).num_rows) for rg in range(meta.num_row_groups)]
    total = sum(g[2] for g in groups)
    n_tasks = max(1, -(-total // max(1, rows_per_task)))
    if n_tasks > 1 and parallelism > 1:
        n_tasks = -(-n_tasks // parallelism) * parallelism
    target = total / n_tasks
    tasks, parts, rows, done = [], [], 0, 0
    for path, rg, num in groups:
        parts.append((path, rg))
        rows += num
        done += num
        if len(tasks) < n_tasks - 1 and done >= target * (len(tasks) + 1) - num / 2:  # nearest the share
            tasks.append({"index": len(tasks), "parts": parts, "rows": rows})
            parts, rows = [], 0
    if parts:
        tasks.append({"index": len(tasks), "parts": parts, "rows": rows})
    return tasks


def read_task(task: dict, columns: list[str] | None = None) -> pa.Table:
    """The task's row groups (each file opened once), cast to the INSTANCES schema (or ``columns`` of it)."""
    columns = columns or INSTANCES.names
    by_file: dict[str, list[int]] = {}
    for path, rg in task["parts"]:
        by_file.setdefault(path, []).append(rg)
    tables = []
    for path, groups in by_file.items():
        fs, p = fsutil.resolve(path)
        pf = pq.ParquetFile(p, filesystem=fs)
        version = (pf.schema_arrow.metadata or {}).get(b"dialogsmith.schema_version")
        if version is not None and version.decode() != str(INSTANCES_VERSION):
            raise ValueError(
                f"{path}: instances schema version {version.decode()}, this filter reads {INSTANCES_VERSION}"
            )
        # One thread: tasks already run one per core, and Arrow's decoding threads doubled the CPU time
        # of a read for ~15% less wall (measured on 160K instances: 1.61 vs 0.79 CPU us/row).
        tables.append(pf.read_row_groups(groups, columns=columns, use_threads=False))
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    schema = pa.schema([INSTANCES.field(c) for c in columns])
    return table.cast(schema) if not table.schema.equals(schema) else table


# --- tasks (run on executors) -----------------------------------------------------------------


def prepare_table(table: pa.Table, profile: Profile):
    """(table, malformed mask, well-formed rows, their rule batch, the turns the rules judged)."""
    table = table.combine_chunks()  # once: the rules read whole columns
    bad = engine.malformed_mask(table)
    good = table.filter(pa.array(~bad)) if bad.any() else table
    batch, turns_out = engine.make_batch(good, profile.params.unescape_html)
    return table, bad, good, batch, turns_out


def drop_counts(codes: np.ndarray, names: list[str], bad: np.ndarray) -> Counter:
    """Dropped instances per reason: ``codes`` index ``names`` (-1 = kept), ``bad`` = malformed rows."""
    dropped = Counter({engine.MALFORMED: int(bad.sum())}) if bad.any() else Counter()
    for k, n in zip(*np.unique(codes[codes >= 0], return_counts=True), strict=True):
        dropped[names[k]] += int(n)
    return dropped


def tsv_lines(kept: pa.Table, src, tgt):
    """DialoGPT TSV lines (no newline): ``link_id,parent_id,target_id<TAB>src<TAB>tgt``."""
    header = pc.binary_join_element_wise(
        kept.column("link_id"), kept.column("parent_id"), kept.column("target_id"), ","
    )
    return pc.binary_join_element_wise(header, src, tgt, "\t")


def concat_lines(lines: pa.Array) -> bytes:
    """The bytes of all strings of a (fresh, null-free) string array, each followed by a newline."""
    arr = pc.binary_join_element_wise(lines, pa.scalar("\n"), "")
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset : arr.offset + len(arr) + 1]
    return arr.buffers()[2][int(offsets[0]) : int(offsets[-1])].to_pybytes() if len(arr) else b""


# Dictionary pages only for the columns with few distinct values, statistics only for the scalar columns
# (min/max of comment texts help no reader): 20% less write time than the defaults, same data.
_DICTIONARY_COLUMNS = ["subreddit", "month", "link_id", "reason", "split", "turn_weights", "weights_in_text"]


def _write_parquet(table: pa.Table, uri: str, schema: pa.Schema) -> None:
    fs, path = fsutil.resolve(uri)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    scalar = [f.name for f in schema if not pa.types.is_list(f.type)]
    pq.write_table(
        table.cast(schema),
        path,
        filesystem=fs,
        compression="snappy",
        use_dictionary=[c for c in _DICTIONARY_COLUMNS if c in schema.names],
        write_statistics=scalar,
    )


class _Clock:
    """Seconds per phase of one task (wall and CPU), returned to the driver for stats.json."""

    def __init__(self):
        self.phases: dict[str, float] = {}
        self.phases_cpu: dict[str, float] = {}
        self._t = time.perf_counter()
        self._c = self._cpu0 = time.process_time()

    def lap(self, name: str) -> None:
        now, cpu = time.perf_counter(), time.process_time()
        self.phases[name] = self.phases.get(name, 0.0) + now - self._t
        self.phases_cpu[name] = self.phases_cpu.get(name, 0.0) + cpu - self._c
        self._t, self._c = now, cpu

    def report(self) -> dict:
        return {"phases": self.phases, "phases_cpu": self.phases_cpu, "cpu": time.process_time() - self._cpu0}


# What the rules and the corpus pass read (pass 1 of a corpus job reads only these: ~25% less to decode).
JUDGED_COLUMNS = [
    "instance_id",
    "subreddit",
    "target_created_utc",
    "turn_authors",
    "turns_raw",
    "turns",
    "turn_weights",
    "weights_in_text",
]


def _judge(task: dict, profile: Profile, clock: _Clock, skip: tuple[str, ...] = (), columns=None):
    """Read and judge a task: (table, bad, good, batch, turns_out, codes indexing profile.rules())."""
    params = load_lists(profile.params)
    table = read_task(task, columns)
    clock.lap("read")
    table, bad, good, batch, turns_out = prepare_table(table, profile)
    clock.lap("prepare")
    rules = profile.rules()
    used = [k for k, r in enumerate(rules) if r.name not in skip]
    codes = engine.judge(batch, [rules[k] for k in used], params)
    codes = np.where(codes >= 0, np.array(used, dtype=np.int16)[np.maximum(codes, 0)], -1).astype(np.int16)
    clock.lap("rules")
    return table, bad, good, batch, turns_out, codes


def task_single(task: dict, profile: Profile, opts: dict) -> dict:
    """The whole job for one task when no rule needs the corpus (dialogpt profile): judge and write."""
    clock = _Clock()
    table, bad, good, batch, turns_out, codes = _judge(task, profile, clock)
    turns_out = turns_out if profile.params.unescape_html else None
    return write_outputs(task, profile, table, bad, good, codes, turns_out, opts, clock)


# Pass 1 of a corpus job stages per task, under OUT/_stage/<task>/: codes.npz (per-instance codes of the
# well-formed rows, malformed mask, the bland-relevant rows' trigram hashes), grams.arrow (distinct
# trigram hashes with counts) and pairs.arrow (key, created, instance_id, row of the rows that pass every
# per-instance rule but bland), the last two as one Arrow IPC record batch per hash partition.


def _stage_dir(opts: dict, index: int) -> str:
    return fsutil.join(opts["out"], "_stage", f"task-{index:05d}")


def _write_npz(uri: str, **arrays) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    fsutil.write_bytes(uri, buf.getvalue())


def _read_npz(uri: str) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(fsutil.read_bytes(uri)), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _write_partitioned(uri: str, columns: dict[str, pa.Array], part: np.ndarray, n_parts: int) -> None:
    """One IPC record batch per partition 0..n_parts-1 (rows with ``part == p``, maybe none)."""
    table = pa.table(columns)
    order = np.argsort(part, kind="stable")
    bounds = np.searchsorted(part[order], np.arange(n_parts + 1))
    table = table.take(pa.array(order))
    fs, path = fsutil.resolve(uri)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as f, pa.ipc.new_file(f, table.schema) as w:
        for p in range(n_parts):
            piece = table.slice(int(bounds[p]), int(bounds[p + 1] - bounds[p]))
            w.write_batch(piece.combine_chunks().to_batches()[0] if piece.num_rows else _empty_batch(table))


def _empty_batch(table: pa.Table) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([pa.array([], f.type) for f in table.schema], schema=table.schema)


def _read_partition(uri: str, p: int) -> pa.RecordBatch:
    fs, path = fsutil.resolve(uri)
    with fs.open_input_file(path) as f:
        return pa.ipc.open_file(f).get_batch(p)


def _partition_of(hashes: np.ndarray, n_parts: int) -> np.ndarray:
    return (hashes % np.uint64(n_parts)).astype(np.int64)


def task_stage(task: dict, profile: Profile, opts: dict) -> dict:
    """Pass 1: judge every per-instance rule but bland; stage codes, trigram counts and pair keys."""
    clock = _Clock()
    _, bad, good, batch, turns_out, codes = _judge(
        task, profile, clock, skip=("bland_response",), columns=JUDGED_COLUMNS
    )
    rules = profile.rules()
    stage, n_parts = _stage_dir(opts, task["index"]), opts["partitions"]
    arrays = {"codes": codes, "bad": bad}
    if profile.bland:
        bland_at = [r.name for r in rules].index("bland_response")
        grams, hashes = batch.trigrams
        uniq, counts = engine.trigram_partials(hashes)
        _write_partitioned(
            fsutil.join(stage, "grams.arrow"),
            {"hash": pa.array(uniq), "count": pa.array(counts)},
            _partition_of(uniq, n_parts),
            n_parts,
        )
        relevant = (codes == -1) | (codes > bland_at)  # rows whose reason bland would become
        arrays.update(
            bland_rows=np.flatnonzero(relevant),
            bland_grams=grams[relevant],
            bland_hashes=hashes[np.repeat(relevant, grams)],
        )
        clock.lap("trigrams")
    if profile.dedup:
        alive = np.flatnonzero(codes == -1)
        take = pa.array(alive)
        keys = engine.pair_keys(turns_out.take(take))
        created = pc.fill_null(good.column("target_created_utc"), 0).to_numpy(zero_copy_only=False)[alive]
        _write_partitioned(
            fsutil.join(stage, "pairs.arrow"),
            {
                "key": pa.array(keys),
                "created": pa.array(created, pa.int64()),
                "instance_id": good.column("instance_id").take(take).combine_chunks(),
                "row": pa.array(alive, pa.int64()),
            },
            _partition_of(keys, n_parts),
            n_parts,
        )
        clock.lap("pair_keys")
    _write_npz(fsutil.join(stage, "codes.npz"), **arrays)
    clock.lap("stage")
    return {"index": task["index"], **clock.report()}


def reduce_partition(p: int, n_tasks: int, opts: dict, threshold: int | None, dedup: bool) -> dict:
    """Pass 2, one hash partition: its frequent trigrams (counts summed over the tasks, > threshold) and
    the losers of its duplicate-pair groups as (task, row): for each key seen more than once, the
    earliest row by (target_created_utc, instance_id) wins; rows with another instance_id lose."""
    clock = _Clock()
    frequent = np.zeros(0, np.uint64)
    if threshold is not None:
        pieces = [_read_partition(fsutil.join(_stage_dir(opts, t), "grams.arrow"), p) for t in range(n_tasks)]
        hashes = np.concatenate([b.column(0).to_numpy() for b in pieces])
        counts = np.concatenate([b.column(1).to_numpy() for b in pieces])
        if len(hashes):
            uniq, inverse = np.unique(hashes, return_inverse=True)
            total = np.zeros(len(uniq), np.int64)
            np.add.at(total, inverse, counts)
            frequent = uniq[total > threshold]
        clock.lap("frequent")
    losers = np.zeros((0, 2), np.int64)
    if dedup:
        pieces = [_read_partition(fsutil.join(_stage_dir(opts, t), "pairs.arrow"), p) for t in range(n_tasks)]
        keys = np.concatenate([b.column(0).to_numpy() for b in pieces])
        uniq, counts = np.unique(keys, return_counts=True)
        dup_keys = uniq[counts > 1]
        if len(dup_keys):
            tasks = np.repeat(np.arange(n_tasks), [b.num_rows for b in pieces])
            table = pa.Table.from_batches(pieces).append_column("task", pa.array(tasks))
            members = table.filter(pa.array(np.isin(keys, dup_keys)))
            members = members.sort_by(
                [("key", "ascending"), ("created", "ascending"), ("instance_id", "ascending")]
            )
            k = members.column("key").to_numpy()
            first = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
            winner_id = members.column("instance_id").take(
                pa.array(np.repeat(first, np.diff(np.r_[first, len(k)])))
            )
            lose = ~_bool(pc.equal(members.column("instance_id"), winner_id))
            losers = np.stack(
                [members.column("task").to_numpy()[lose], members.column("row").to_numpy()[lose]], axis=1
            )
        clock.lap("dedup")
    return {"frequent": frequent, "losers": losers, **clock.report()}


def _bool(a) -> np.ndarray:
    a = a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a
    return pc.fill_null(a, False).to_numpy(zero_copy_only=False).astype(bool, copy=False)


_FREQUENT: dict[bytes, rules_mod.HashSet64] = {}  # by content: built once per worker process and run


def _frequent_set(frequent) -> rules_mod.HashSet64:
    values = frequent.value
    key = hashlib.blake2b(values.tobytes(), digest_size=16).digest()
    if key not in _FREQUENT:
        _FREQUENT.clear()
        _FREQUENT[key] = rules_mod.HashSet64(values)
    return _FREQUENT[key]


def task_finish(task: dict, profile: Profile, frequent, opts: dict) -> dict:
    """Pass 3: re-read the task, apply bland (frequent set) and the dedup losers to the staged codes,
    write the outputs."""
    clock = _Clock()
    staged = _read_npz(fsutil.join(_stage_dir(opts, task["index"]), "codes.npz"))
    table = read_task(task)
    clock.lap("read")
    bad, codes = staged["bad"], staged["codes"]
    good = table.filter(pa.array(~bad)) if bad.any() else table
    rules = profile.rules()
    if profile.bland:
        bland_at = [r.name for r in rules].index("bland_response")
        hit = rules_mod.bland_mask(
            staged["bland_grams"],
            staged["bland_hashes"],
            _frequent_set(frequent),
            profile.params.bland_fraction,
        )
        codes[staged["bland_rows"][hit]] = bland_at  # their codes were -1 or a later rule
    losers = task.get("losers")
    if losers is not None and len(losers):
        rows = losers[codes[losers] == -1]
        codes[rows] = len(rules)
    clock.lap("corpus_rules")
    unescape = profile.params.unescape_html  # the kept rows' turns only: nothing else needs them
    return write_outputs(task, profile, table, bad, good, codes, None, opts, clock, unescape_kept=unescape)


def write_outputs(
    task, profile, table, bad, good, codes, turns_out, opts, clock: _Clock, unescape_kept: bool = False
) -> dict:
    """Write one task's dropped/, split Parquet, TSV parts and refs parts; return its stats.

    ``codes`` index ``profile.rules()`` (``len(rules)`` = duplicate_pair, -1 = kept) per well-formed row;
    ``turns_out``: the judged texts of the well-formed rows to write for kept rows (None: as read, or
    HTML-unescaped here with ``unescape_kept``)."""
    names = [r.name for r in profile.rules()] + [DUPLICATE_PAIR]
    out, part = opts["out"], f"part-{task['index']:05d}"
    dropped = drop_counts(codes, names, bad)

    # dropped/: every removed instance with its reason
    drop_rows = np.flatnonzero(codes >= 0)
    pieces = []
    if len(drop_rows):
        reasons = pa.array(np.array(names, dtype=object)[codes[drop_rows]], pa.string())
        pieces.append(good.take(pa.array(drop_rows)).append_column("reason", reasons))
    if bad.any():
        bad_t = table.filter(pa.array(bad))
        pieces.append(
            bad_t.append_column("reason", pa.array([engine.MALFORMED] * bad_t.num_rows, pa.string()))
        )
    if pieces:
        _write_parquet(
            pa.concat_tables(pieces), fsutil.join(out, "dropped", f"{part}.parquet"), opts["dropped_schema"]
        )

    keep = np.flatnonzero(codes == -1)
    keep_arr = pa.array(keep)
    kept = good.take(keep_arr)
    if turns_out is not None or unescape_kept:  # the default profile writes the text its rules judged
        turns = turns_out.take(keep_arr) if turns_out is not None else engine.unescape_turns(_turns(kept))
        kept = kept.set_column(kept.schema.get_field_index("turns"), "turns", turns)
    split = engine.split_of(kept.column("link_id"), opts["fractions"], opts["salt"])
    split_counts = {s: int((split == j).sum()) for j, s in enumerate(SPLITS)}
    if opts["parquet"]:
        names_arr = pa.array(np.array(SPLITS, dtype=object)[split], pa.string())
        with_split = kept.append_column("split", names_arr)
        for j, s in enumerate(SPLITS):
            if split_counts[s]:
                _write_parquet(
                    with_split.filter(pa.array(split == j)),
                    fsutil.join(out, s, f"{part}.parquet"),
                    opts["filtered_schema"],
                )

    months: dict[str, int] = {}
    if (opts["tsv"] or opts["refs"]) and len(keep):
        shown, _ = engine.make_batch(kept, False)  # src/tgt as the rules saw them, for the kept rows
    if opts["tsv"] and len(keep):
        src, tgt = shown.src, shown.tgt
        lines = tsv_lines(kept, src, tgt)
        month = kept.column("month").combine_chunks()
        for m in sorted(set(pc.unique(month).to_pylist())):
            sel = pc.equal(month, m)
            months[m or "unknown"] = int(pc.sum(sel).as_py())
            fsutil.write_bytes(
                fsutil.join(out, "_tsv_parts", "month", m or "unknown", f"{part}.tsv"),
                concat_lines(lines.filter(sel)),
            )
        if opts["split_tsv"]:
            two = pc.binary_join_element_wise(src, tgt, "\t")
            for j, s in enumerate(SPLITS):
                if split_counts[s]:
                    fsutil.write_bytes(
                        fsutil.join(out, "_tsv_parts", "split", s, f"{part}.tsv"),
                        concat_lines(two.filter(pa.array(split == j))),
                    )
    if opts["refs"] and len(keep):
        test = np.flatnonzero(split == 2)
        if len(test):
            turns_t = shown.turns.take(pa.array(test))
            ctx = pc.binary_join(_drop_last(turns_t), " EOS ")
            weights = kept.column("turn_weights").take(pa.array(test))
            score = [f"{(w[-1] if w else 1.0):.1f}" for w in weights.to_pylist()]
            refs = pa.table(
                {
                    "src": ctx,
                    "score": pa.array(score, pa.string()),
                    "ref": shown.response.take(pa.array(test)),
                    "instance_id": kept.column("instance_id").take(pa.array(test)),
                }
            )
            _write_parquet(refs, fsutil.join(out, "_refs_parts", f"{part}.parquet"), refs.schema)
    clock.lap("write")
    return {
        "rows_in": table.num_rows,
        "rows_out": int(len(keep)),
        "dropped": dict(dropped),
        "splits": split_counts,
        "months": months,
        **clock.report(),
    }


def _turns(table: pa.Table) -> pa.ListArray:
    col = table.column("turns")
    return col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)


def _drop_last(lists: pa.ListArray) -> pa.ListArray:
    offsets = engine._offsets(lists)
    flat = lists.flatten()
    not_last = np.ones(len(flat), dtype=bool)
    not_last[offsets[1:] - 1] = False
    return engine._relist(offsets - np.arange(len(offsets)), flat.filter(pa.array(not_last)))


# --- driver -----------------------------------------------------------------------------------


def _concat_parts(parts_dir: str, dest: str) -> int:
    files = fsutil.list_files(parts_dir, ".tsv")
    fs, path = fsutil.resolve(dest)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    n = 0
    with fs.open_output_stream(path) as f:
        for part in files:
            data = fsutil.read_bytes(part)
            n += data.count(b"\n")
            f.write(data)
    return n


def write_refs(out: str, refs_min: int) -> int:
    """tsv/test.refs.txt: one line per context with >= refs_min human responses (siblings)."""
    files = fsutil.list_files(fsutil.join(out, "_refs_parts"), ".parquet")
    lines = []
    if files:
        t = pa.concat_tables(
            [pq.read_table(fsutil.resolve(f)[1], filesystem=fsutil.resolve(f)[0]) for f in files]
        )
        t = t.sort_by([("src", "ascending"), ("instance_id", "ascending")])
        groups: dict[str, list[str]] = {}
        for s, sc, r in zip(
            t.column("src").to_pylist(),
            t.column("score").to_pylist(),
            t.column("ref").to_pylist(),
            strict=True,
        ):
            groups.setdefault(s, []).append(f"{sc}|{r}")
        lines = [s + "\t" + "\t".join(refs) for s, refs in groups.items() if len(refs) >= refs_min]
    fsutil.write_bytes(
        fsutil.join(out, "tsv", "test.refs.txt"), "".join(x + "\n" for x in lines).encode("utf-8")
    )
    return len(lines)


def funnel_report(profile: Profile, stats: StageStats) -> dict:
    steps, remaining = [], stats.rows_in
    for name in (engine.MALFORMED, *profile.order):
        enabled = name == engine.MALFORMED or name not in profile.params.disabled
        removed = stats.dropped.get(name, 0)
        remaining -= removed
        steps.append({"rule": name, "enabled": enabled, "removed": removed, "remaining": remaining})
    return {"profile": profile.name, "rows_in": stats.rows_in, "kept": stats.rows_out, "steps": steps}


def format_funnel(f: dict) -> str:
    width = max(len(s["rule"]) for s in f["steps"]) + 2
    rows = [
        f"filter funnel (profile {f['profile']}): {f['rows_in']:,} instances in",
        f"{'rule':<{width}}{'removed':>12}{'remaining':>14}{'share':>8}",
    ]
    for s in f["steps"]:
        share = f"{100 * s['removed'] / f['rows_in']:.2f}%" if f["rows_in"] else "-"
        removed = f"{s['removed']:,}" if s["enabled"] else "off"
        rows.append(f"{s['rule']:<{width}}{removed:>12}{s['remaining']:>14,}{share:>8}")
    rows.append(f"{'kept':<{width}}{'':>12}{f['kept']:>14,}")
    return "\n".join(rows)


def _input_config(input_dir: str) -> dict:
    path = fsutil.join(input_dir, "stats.json")
    if not fsutil.exists(path):
        return {}
    try:
        return (fsutil.read_json(path).get("extra") or {}).get("config") or {}
    except Exception:  # a foreign or damaged stats.json only loses the defaults it would give
        return {}


def _warm_worker() -> int:
    import dialogsmith.filter.rules  # noqa: F401  (imports numpy, pyarrow, the C module)

    return os.getpid()


def _sum_phases(reports: list[dict], key: str = "phases") -> dict[str, float]:
    total: dict[str, float] = {}
    for r in reports:
        for k, v in r[key].items():
            total[k] = total.get(k, 0.0) + v
    return {k: round(v, 3) for k, v in total.items()}


def run(args, input=None, spark=None) -> StageStats:
    """Run the filter job. ``input``: an optional pyarrow Table of instances (tests), else --input."""
    from dialogsmith.spark import get_spark

    timer = Timer()
    fractions = parse_fractions(args.split)
    params = params_from_args(args)
    in_cfg = _input_config(args.input) if input is None else {}
    if params.bl_words is None and in_cfg.get("bl_words"):
        params.bl_words = in_cfg["bl_words"]
    try:
        profile = make_profile(args.profile, params)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    if args.no_unescape_html:
        profile.params.unescape_html = False
    for path in (params.bl_words, params.bl_subreddits):
        if path and not fsutil.exists(path):
            raise SystemExit(f"list file not found: {path}")
    load_lists(FilterParams(**{**profile.params.options(), "disabled": ()}))  # fail early on a bad list
    force = bool(getattr(args, "force", False))
    if input is None:
        require_instances(args.input)
    outputs.check_target(args.output, STAGE, [args.input] if input is None else [], force)
    t_spark = time.perf_counter()
    spark = spark or get_spark("dialogsmith-filter")
    sc = spark.sparkContext
    # Start one Python worker per core (interpreter, numpy, pyarrow, the rules: ~1 s each) before the
    # passes, so that their times are the filter's own; reported with the Spark start-up.
    par = sc.defaultParallelism
    sc.parallelize(range(par), par).map(lambda _: _warm_worker()).collect()
    spark_start = time.perf_counter() - t_spark

    with outputs.stage_output(args.output, STAGE, [args.input] if input is None else [], force) as out:
        if input is not None:
            _write_parquet(
                input,
                fsutil.join(out, "_input", "part-00000.parquet"),
                with_metadata(INSTANCES, "instances", INSTANCES_VERSION),
            )
            files = fsutil.list_files(fsutil.join(out, "_input"), ".parquet")
        else:
            files = instance_files(args.input)
        tasks = plan_tasks(files, args.rows_per_task, sc.defaultParallelism)
        n_in = sum(t["rows"] for t in tasks)
        prof = profile  # params hold file names only; each task loads the lists once per process
        opts = {
            "out": out,
            "fractions": fractions,
            "salt": args.split_salt,
            "parquet": not args.no_parquet,
            "tsv": args.export_tsv,
            "split_tsv": args.export_tsv and not args.no_parquet,
            "refs": args.refs,
            "filtered_schema": with_metadata(FILTERED, "filtered", FILTERED_VERSION),
            "dropped_schema": with_metadata(DROPPED, "dropped", DROPPED_VERSION),
            # hash partitions of the corpus pass: one reduce task each
            "partitions": max(1, min(len(tasks), 64)),
        }
        threshold = bland_threshold(prof.params, n_in) if prof.bland and n_in else None
        n_frequent, pass_seconds, reports = 0, {}, []
        corpus = bool(tasks) and (prof.bland or prof.dedup)
        if not tasks:
            results = []
        elif not corpus:
            t0 = time.perf_counter()
            results = sc.parallelize(tasks, len(tasks)).map(lambda t: task_single(t, prof, opts)).collect()
            pass_seconds["judge_write"] = time.perf_counter() - t0
            reports += results
        else:
            t0 = time.perf_counter()
            staged = sc.parallelize(tasks, len(tasks)).map(lambda t: task_stage(t, prof, opts)).collect()
            pass_seconds["judge_stage"] = time.perf_counter() - t0
            reports += staged
            t0 = time.perf_counter()
            n_tasks, n_parts, dedup = len(tasks), opts["partitions"], prof.dedup
            reduced = (
                sc.parallelize(range(n_parts), n_parts)
                .map(lambda p: reduce_partition(p, n_tasks, opts, threshold, dedup))
                .collect()
            )
            pass_seconds["reduce"] = time.perf_counter() - t0
            reports += reduced
            frequent = np.sort(np.concatenate([r["frequent"] for r in reduced]))
            n_frequent = len(frequent)
            frequent_bc = sc.broadcast(frequent)
            losers = np.concatenate([r["losers"] for r in reduced])
            for t in tasks:
                t["losers"] = np.sort(losers[losers[:, 0] == t["index"], 1])
            t0 = time.perf_counter()
            results = (
                sc.parallelize(tasks, len(tasks))
                .map(lambda t: task_finish(t, prof, frequent_bc, opts))
                .collect()
            )
            pass_seconds["finish_write"] = time.perf_counter() - t0
            reports += results
            frequent_bc.unpersist()
            fsutil.remove(fsutil.join(out, "_stage"))

        stats = StageStats(stage=STAGE)
        splits, months = Counter(), Counter()
        for r in results:
            stats.add(
                StageStats(stage="filter", rows_in=r["rows_in"], rows_out=r["rows_out"], dropped=r["dropped"])
            )
            splits.update(r["splits"])
            months.update(r["months"])
        stats.dropped = {k: v for k, v in stats.dropped.items() if v}

        # Consumers read OUT/<split>/*.parquet: an empty split still gets one (empty) file.
        if opts["parquet"]:
            for s in SPLITS:
                if not fsutil.list_files(fsutil.join(out, s), ".parquet"):
                    _write_parquet(
                        FILTERED.empty_table(),
                        fsutil.join(out, s, "part-empty.parquet"),
                        opts["filtered_schema"],
                    )
        if not fsutil.list_files(fsutil.join(out, "dropped"), ".parquet"):
            _write_parquet(
                DROPPED.empty_table(),
                fsutil.join(out, "dropped", "part-empty.parquet"),
                opts["dropped_schema"],
            )
        t0 = time.perf_counter()
        tsv_files = {}
        if args.export_tsv:
            for m in sorted(months):
                tsv_files[m] = _concat_parts(
                    fsutil.join(out, "_tsv_parts", "month", m), fsutil.join(out, "tsv", f"{m}.tsv")
                )
            if opts["split_tsv"]:
                for s in SPLITS:
                    _concat_parts(
                        fsutil.join(out, "_tsv_parts", "split", s), fsutil.join(out, "tsv", f"{s}.tsv")
                    )
        n_refs = write_refs(out, args.refs_min) if args.refs else None
        for tmp in ("_tsv_parts", "_refs_parts", "_input"):
            fsutil.remove(fsutil.join(out, tmp))
        pass_seconds["driver_outputs"] = time.perf_counter() - t0

        stats.seconds = timer.seconds
        stats.extra = {
            "profile": prof.name,
            "rules": prof.enabled(),
            "splits": {s: splits.get(s, 0) for s in SPLITS},
            "months": dict(sorted(months.items())),
            "config": {**prof.params.options(), "split": list(fractions), "split_salt": args.split_salt},
            "input_config": in_cfg,
            "tasks": len(tasks),
            # where the time went: Spark start-up and each pass on the driver's clock; per task phase,
            # seconds summed over the tasks (wall inside the task) and the tasks' CPU seconds
            "timing": {
                "spark_start_seconds": round(spark_start, 3),
                "pass_seconds": {k: round(v, 3) for k, v in pass_seconds.items()},
                "task_phase_seconds": _sum_phases(reports),
                "task_phase_cpu_seconds": _sum_phases(reports, "phases_cpu"),
                "task_cpu_seconds": round(sum(r["cpu"] for r in reports), 3),
            },
        }
        if threshold is not None:
            stats.extra["bland_threshold"] = threshold
            stats.extra["frequent_trigrams"] = n_frequent
        if n_refs is not None:
            stats.extra["refs_contexts"] = n_refs
        stats.check()
        funnel = funnel_report(prof, stats)
        stats.write(fsutil.join(out, "stats.json"))
        fsutil.write_json(fsutil.join(out, "funnel.json"), funnel)
    if not getattr(args, "quiet", False):
        print(format_funnel(funnel), file=sys.stderr)
    return stats


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        stats = run(args)
    except (FileNotFoundError, ValueError, outputs.OutputRefused, outputs.IncompleteInput) as e:
        print(f"filter: error: {e}", file=sys.stderr)
        return 2
    return finish(stats, args.strict)


if __name__ == "__main__":
    sys.exit(main())
