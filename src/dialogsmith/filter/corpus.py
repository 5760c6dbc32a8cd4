"""The passes of a filter job, and the corpus rules: bland_response and duplicate_pair.

A profile without corpus rules (dialogpt) takes one pass: judge and write (``task_single``). With them
(paper: bland_response; default: bland_response and duplicate_pair) the job takes three Spark jobs over
the tasks, reading the instances twice:

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

import hashlib
import io
import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dialogsmith import fsutil
from dialogsmith.filter import engine
from dialogsmith.filter.profiles import Profile, bland_threshold
from dialogsmith.filter.rules import BLAND_RESPONSE
from dialogsmith.filter.rules_paper import HashSet64, bland_mask
from dialogsmith.filter.tasks import JUDGED_COLUMNS, Clock, Task, TaskOptions, judge_task, read_task
from dialogsmith.filter.write import write_outputs


@dataclass
class Passes:
    """What the passes of a job return to the driver."""

    results: list[dict]  # per task: its counts (write.write_outputs)
    reports: list[dict] = field(default_factory=list)  # per Spark task of every pass: its phase timings
    seconds: dict[str, float] = field(default_factory=dict)  # per pass, on the driver's clock
    threshold: int | None = None  # bland_response: "seen more than N times"
    n_frequent: int = 0


def run_passes(sc, tasks: list[Task], profile: Profile, opts: TaskOptions) -> Passes:
    """Judge and write every task: one pass, or the three passes of a corpus job."""
    if not tasks:
        return Passes([])
    if not (profile.bland or profile.dedup):
        t0 = time.perf_counter()
        results = sc.parallelize(tasks, len(tasks)).map(lambda t: task_single(t, profile, opts)).collect()
        return Passes(results, list(results), {"judge_write": time.perf_counter() - t0})
    n_in = sum(t.rows for t in tasks)
    threshold = bland_threshold(profile.params, n_in) if profile.bland and n_in else None
    out = Passes([], threshold=threshold)
    t0 = time.perf_counter()
    out.reports += sc.parallelize(tasks, len(tasks)).map(lambda t: task_stage(t, profile, opts)).collect()
    out.seconds["judge_stage"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    n_tasks, n_parts, dedup = len(tasks), opts.partitions, profile.dedup
    reduced = (
        sc.parallelize(range(n_parts), n_parts)
        .map(lambda p: reduce_partition(p, n_tasks, opts, threshold, dedup))
        .collect()
    )
    out.seconds["reduce"] = time.perf_counter() - t0
    out.reports += reduced
    frequent = np.sort(np.concatenate([r["frequent"] for r in reduced]))
    out.n_frequent = len(frequent)
    frequent_bc = sc.broadcast(frequent)
    losers = np.concatenate([r["losers"] for r in reduced])
    for t in tasks:
        t.losers = np.sort(losers[losers[:, 0] == t.index, 1])

    t0 = time.perf_counter()
    out.results = (
        sc.parallelize(tasks, len(tasks)).map(lambda t: task_finish(t, profile, frequent_bc, opts)).collect()
    )
    out.seconds["finish_write"] = time.perf_counter() - t0
    out.reports += out.results
    frequent_bc.unpersist()
    fsutil.remove(fsutil.join(opts.out, "_stage"))
    return out


def task_single(task: Task, profile: Profile, opts: TaskOptions) -> dict:
    """The whole job for one task when no rule needs the corpus (dialogpt profile): judge and write."""
    clock = Clock()
    table, bad, good, batch, turns_out, codes = judge_task(task, profile, clock)
    turns_out = turns_out if profile.params.unescape_html else None
    return write_outputs(task, profile, table, bad, good, codes, turns_out, opts, clock)


# Pass 1 of a corpus job stages per task, under OUT/_stage/<task>/: codes.npz (per-instance codes of the
# well-formed rows, malformed mask, the bland-relevant rows' trigram hashes), grams.arrow (distinct
# trigram hashes with counts) and pairs.arrow (key, created, instance_id, row of the rows that pass every
# per-instance rule but bland), the last two as one Arrow IPC record batch per hash partition.


def _stage_dir(opts: TaskOptions, index: int) -> str:
    return fsutil.join(opts.out, "_stage", f"task-{index:05d}")


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
    empty = pa.RecordBatch.from_arrays([pa.array([], f.type) for f in table.schema], schema=table.schema)
    fs, path = fsutil.resolve(uri)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as f, pa.ipc.new_file(f, table.schema) as w:
        for p in range(n_parts):
            piece = table.slice(int(bounds[p]), int(bounds[p + 1] - bounds[p]))
            w.write_batch(piece.combine_chunks().to_batches()[0] if piece.num_rows else empty)


def _read_partition(uri: str, p: int) -> pa.RecordBatch:
    fs, path = fsutil.resolve(uri)
    with fs.open_input_file(path) as f:
        return pa.ipc.open_file(f).get_batch(p)


def _partition_of(hashes: np.ndarray, n_parts: int) -> np.ndarray:
    return (hashes % np.uint64(n_parts)).astype(np.int64)


def task_stage(task: Task, profile: Profile, opts: TaskOptions) -> dict:
    """Pass 1: judge every per-instance rule but bland; stage codes, trigram counts and pair keys."""
    clock = Clock()
    _, bad, good, batch, turns_out, codes = judge_task(
        task, profile, clock, skip=(BLAND_RESPONSE,), columns=JUDGED_COLUMNS
    )
    rules = profile.rules()
    stage, n_parts = _stage_dir(opts, task.index), opts.partitions
    arrays = {"codes": codes, "bad": bad}
    if profile.bland:
        bland_at = [r.name for r in rules].index(BLAND_RESPONSE)
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
    return {"index": task.index, **clock.report()}


def _frequent(pieces: list[pa.RecordBatch], threshold: int) -> np.ndarray:
    hashes = np.concatenate([b.column(0).to_numpy() for b in pieces])
    counts = np.concatenate([b.column(1).to_numpy() for b in pieces])
    if not len(hashes):
        return np.zeros(0, np.uint64)
    uniq, inverse = np.unique(hashes, return_inverse=True)
    total = np.zeros(len(uniq), np.int64)
    np.add.at(total, inverse, counts)
    return uniq[total > threshold]


def _losers(pieces: list[pa.RecordBatch], n_tasks: int) -> np.ndarray:
    keys = np.concatenate([b.column(0).to_numpy() for b in pieces])
    uniq, counts = np.unique(keys, return_counts=True)
    dup_keys = uniq[counts > 1]
    if not len(dup_keys):
        return np.zeros((0, 2), np.int64)
    tasks = np.repeat(np.arange(n_tasks), [b.num_rows for b in pieces])
    table = pa.Table.from_batches(pieces).append_column("task", pa.array(tasks))
    members = table.filter(pa.array(np.isin(keys, dup_keys)))
    members = members.sort_by([("key", "ascending"), ("created", "ascending"), ("instance_id", "ascending")])
    k = members.column("key").to_numpy()
    first = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    winner_id = members.column("instance_id").take(pa.array(np.repeat(first, np.diff(np.r_[first, len(k)]))))
    same = pc.equal(members.column("instance_id"), winner_id)
    same = same.combine_chunks() if isinstance(same, pa.ChunkedArray) else same
    lose = ~pc.fill_null(same, False).to_numpy(zero_copy_only=False).astype(bool)
    return np.stack([members.column("task").to_numpy()[lose], members.column("row").to_numpy()[lose]], axis=1)


def reduce_partition(p: int, n_tasks: int, opts: TaskOptions, threshold: int | None, dedup: bool) -> dict:
    """Pass 2, one hash partition: its frequent trigrams (counts summed over the tasks, > threshold) and
    the losers of its duplicate-pair groups as (task, row): for each key seen more than once, the
    earliest row by (target_created_utc, instance_id) wins; rows with another instance_id lose."""
    clock = Clock()
    frequent = np.zeros(0, np.uint64)
    if threshold is not None:
        pieces = [_read_partition(fsutil.join(_stage_dir(opts, t), "grams.arrow"), p) for t in range(n_tasks)]
        frequent = _frequent(pieces, threshold)
        clock.lap("frequent")
    losers = np.zeros((0, 2), np.int64)
    if dedup:
        pieces = [_read_partition(fsutil.join(_stage_dir(opts, t), "pairs.arrow"), p) for t in range(n_tasks)]
        losers = _losers(pieces, n_tasks)
        clock.lap("dedup")
    return {"frequent": frequent, "losers": losers, **clock.report()}


_FREQUENT: dict[bytes, HashSet64] = {}  # by content: built once per worker process and run


def _frequent_set(frequent) -> HashSet64:
    values = frequent.value
    key = hashlib.blake2b(values.tobytes(), digest_size=16).digest()
    if key not in _FREQUENT:
        _FREQUENT.clear()
        _FREQUENT[key] = HashSet64(values)
    return _FREQUENT[key]


def task_finish(task: Task, profile: Profile, frequent, opts: TaskOptions) -> dict:
    """Pass 3: re-read the task, apply bland (frequent set) and the dedup losers to the staged codes,
    write the outputs."""
    clock = Clock()
    staged = _read_npz(fsutil.join(_stage_dir(opts, task.index), "codes.npz"))
    table = read_task(task)
    clock.lap("read")
    bad, codes = staged["bad"], staged["codes"]
    good = table.filter(pa.array(~bad)) if bad.any() else table
    rules = profile.rules()
    if profile.bland:
        bland_at = [r.name for r in rules].index(BLAND_RESPONSE)
        hit = bland_mask(
            staged["bland_grams"],
            staged["bland_hashes"],
            _frequent_set(frequent),
            profile.params.bland_fraction,
        )
        codes[staged["bland_rows"][hit]] = bland_at  # their codes were -1 or a later rule
    if task.losers is not None and len(task.losers):
        rows = task.losers[codes[task.losers] == -1]
        codes[rows] = len(rules)
    clock.lap("corpus_rules")
    unescape = profile.params.unescape_html  # the kept rows' turns only: nothing else needs them
    return write_outputs(task, profile, table, bad, good, codes, None, opts, clock, unescape_kept=unescape)
