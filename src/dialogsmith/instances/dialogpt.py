"""The ``dialogpt`` profile over link-id buckets: month by month, exact, memory bounded by one bucket.

The released extractor works one month at a time and looks parents up by id in the whole month. Buckets
hold whole threads (rows are bucketed by ``link_id``), so a parent in the same thread is always in its
child's bucket; only a parent named across threads (broken or synthetic data, rare) can lie in another
bucket. So that every bucket is read once:

1. *References*: per comment, a 64-bit key of its id and of its t1 parent's id, with its bucket (written by
   the extract stage's first phase, ``idkeys.References``, or by ``references_task`` from the extract
   output), partitioned by key. ``cross_pairs_task`` joins each partition: the keys named as parent from
   another bucket (candidates; a key collision only adds a candidate, settled exactly below).
2. ``bucket_task``, one per bucket: the duplicate-id rule and pass 1 per month (``dialogpt_pass1``), then
   pass 2 (``dialogpt_pass2.month_pass2``). A walk that reaches a comment whose parent is a candidate
   cannot finish there: it is returned *pending*; a candidate parent's chain (the comments above it) is
   exported; a candidate target whose leaf status depends on another bucket (leaves_only) is *deferred*
   with its outcome. Everything else is final: instances, or (dialogpt-tsv) the filter's TSV lines.
3. ``settle`` (driver): completes the pending walks with the chains, decides the deferred targets with
   the kept children other buckets reported (the released rule: a comment some kept comment replies to
   is not a leaf); a few hundred rows per month.

Used by the instances stage (``--profile dialogpt``: buckets of the extract output, instance Parquet) and
by ``dialogsmith dialogpt-tsv`` (buckets of its own staging: no intermediate tables; filtered TSV lines).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from dialogsmith import fsutil
from dialogsmith.formats import parquet
from dialogsmith.formats.schemas import INSTANCES, INSTANCES_TABLE
from dialogsmith.formats.stats import StageStats
from dialogsmith.idkeys import References, cross_pairs
from dialogsmith.instances.columns import ROW_GROUP
from dialogsmith.instances.config import BuildConfig, count, load_build_lists
from dialogsmith.instances.dialogpt_pass1 import COMMENT_COLUMNS, SUBMISSION_COLUMNS, load_rows, pass1
from dialogsmith.instances.dialogpt_pass2 import NO_CROSS, CrossKeys, Turn, month_pass2

__all__ = [
    "COMMENT_COLUMNS",
    "SUBMISSION_COLUMNS",
    "BucketRun",
    "bucket_task",
    "filter_lines",
    "run_buckets",
    "settle",
]


# --- references across buckets ---------------------------------------------------------------------


def references_task(task: dict) -> dict:
    """The references of one bucket of the extract output (dialogpt-tsv writes them in its first phase)."""
    table = load_rows(task["comments"], ["id", "parent_id", "link_id"])
    refs = References(task["references"], f"b{task['bucket'].split('=', 1)[-1]}", task["parts"])
    if table is not None and table.num_rows:
        bucket = int(task["bucket"].split("=", 1)[-1])
        refs.add(table, np.full(table.num_rows, bucket, dtype=np.int32))
    return {"files": refs.close()}


def _read_ipc(uri: str) -> pa.Table:
    fs, path = fsutil.resolve(uri)
    with fs.open_input_file(path) as f:
        return ipc.open_file(f).read_all()


def cross_pairs_task(job: tuple[int, int, list[str]]) -> list[tuple[int, int, int]]:
    """``idkeys.cross_pairs`` of one partition of the keys (its ``files``)."""
    _, _, files = job
    tables = [_read_ipc(f) for f in files]
    if not tables:
        return []
    t = pa.concat_tables(tables)
    return cross_pairs(*(t[c].to_numpy() for c in ("key", "bucket", "named")))


def cross_keys_by_bucket(pairs: list[tuple[int, int, int]]) -> dict[str, CrossKeys]:
    by: dict[str, tuple[set, set]] = {}
    for key, parent_bucket, child_bucket in pairs:
        by.setdefault(f"bucket={parent_bucket}", (set(), set()))[0].add(key)
        by.setdefault(f"bucket={child_bucket}", (set(), set()))[1].add(key)
    return {
        b: CrossKeys(np.array(sorted(p), np.uint64), np.array(sorted(c), np.uint64))
        for b, (p, c) in by.items()
    }


# --- the bucket task -----------------------------------------------------------------------------------


def bucket_task(task: dict, cross: dict[str, CrossKeys], profile=None) -> dict:
    """One bucket (one shard of its candidates): pass 1, then pass 2 for every month, knowing the
    candidate cross-bucket pairs. Writes instances (``task["out"]`` Parquet) or the filter's TSV lines
    (with ``profile``); returns stats, and what the driver settles (pending walks, chains, deferred
    targets, kept children naming a candidate parent)."""
    cfg = BuildConfig(**task["config"])
    bl_words, bl_subs = load_build_lists(cfg)
    p1 = pass1(task, cfg)
    ins, extra, merged, n_comments, n_subs = p1.stats, p1.extra, p1.merged, p1.comments, p1.submissions
    if task["shard"] > 0:  # shard 0 accounts for the bucket's comments and pass 1 (every shard reads them)
        ins, extra = StageStats(stage="instances"), {"submissions_read": 0, "submissions_kept": 0}
        merged, n_comments, n_subs = {}, 0, 0
    extra["candidates"] = 0
    flt = StageStats(stage="filter")
    to_settle: dict = {"pending": [], "chains": {}, "deferred": [], "named": []}
    writer = _InstanceSink(task, profile, flt)
    keys_of = cross.get(task["bucket"], NO_CROSS)
    for month, (rc, subs) in p1.months.items():
        keys = None
        if cfg.keys:
            from dialogsmith.recipes.dialogpt_keys import load_month_keys

            keys = load_month_keys(cfg.keys, month, set(pc.unique(rc["link_id"]).to_pylist()))
        out = month_pass2(cfg, task, month, rc, subs, keys, bl_words, bl_subs, keys_of, ins, extra)
        if out.instances is not None:
            writer.write(month, out.instances)
        for k in ("pending", "deferred", "named"):
            to_settle[k].extend(out.settle[k])
        if task["shard"] == 0:
            to_settle["chains"].update(out.settle["chains"])
    writer.close()
    ins.rows_out = writer.instances
    return {
        "bucket": task["bucket"],
        "shard": task["shard"],
        "instances": ins.to_dict(),
        "filter": flt.to_dict(),
        "extra": extra,
        "merged": merged,
        "comments": n_comments,
        "submissions": n_subs,
        "settle": to_settle,
        "files": writer.files,
        "months": writer.lines_per_month,
    }


class _InstanceSink:
    """Where a pass-2 task's final instances go: instance Parquet (instances stage), or through the
    filter's dialogpt rules into TSV parts per month (dialogpt-tsv)."""

    def __init__(self, task: dict, profile, flt: StageStats):
        self.task, self.profile, self.flt = task, profile, flt
        self.instances = 0
        self.files: list[str] = []
        self.lines_per_month: dict[str, int] = {}
        self.writer = None

    def write(self, month: str, table: pa.Table) -> None:
        self.instances += table.num_rows
        if self.profile is None:
            self._parquet(table)
        else:
            lines = filter_lines(table, self.profile, self.flt)
            uri = fsutil.join(self.task["tsv"], month, f"{self.task['bucket']}-{self.task['shard']:04d}.tsv")
            fsutil.write_bytes(uri, lines)
            self.files.append(uri)
            self.lines_per_month[month] = self.lines_per_month.get(month, 0) + lines.count(b"\n")

    def _parquet(self, table: pa.Table) -> None:
        if self.writer is None:
            name = f"part-{self.task['bucket'].split('=', 1)[-1]}-{self.task['shard']:04d}.parquet"
            uri = fsutil.join(self.task["out"], name)
            self.writer = parquet.open_writer(uri, INSTANCES_TABLE)
            self.files.append(uri)
        self.writer.write_table(table.cast(self.writer.schema), row_group_size=ROW_GROUP)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def filter_lines(instances: pa.Table, profile, flt: StageStats) -> bytes:
    """The filter stage's rules on instances; their DialoGPT TSV lines. Counts into ``flt``."""
    from dialogsmith.filter import concat_lines, judge_instances, tsv_lines

    j = judge_instances(instances, profile)
    flt.add(StageStats(stage="filter", rows_in=j.rows_in, rows_out=j.kept.num_rows, dropped=j.dropped))
    return concat_lines(tsv_lines(j.kept, j.src, j.tgt)) if j.kept.num_rows else b""


# --- the driver's part: deferred targets and pending walks --------------------------------------------


def settle(cfg: BuildConfig, settles: list[dict], ins: StageStats) -> pa.Table:
    """The driver's part: deferred targets (not leaves when a kept comment of another bucket replies to
    them) and pending walks (completed with the chains other buckets exported). The instances they make."""
    named = {(m, pid) for st in settles for m, pid in st["named"]}
    chains = {k: v for st in settles for k, v in st["chains"].items()}
    rows = []

    def not_leaf(month: str, target_id: str) -> bool:
        return cfg.leaves_only and (month, target_id) in named

    for st in settles:
        for d in st["deferred"]:
            if not_leaf(d["month"], d["id"]):
                count(ins.dropped, "not_leaf")
            elif "reason" in d:
                count(ins.dropped, d["reason"])
            else:
                rows.append(d["instance"])
    for st in settles:
        for p in st["pending"]:
            if p["deferred"] and not_leaf(p["month"], p["target"]["instance_id"]):
                count(ins.dropped, "not_leaf")
                continue
            row = _complete(cfg, p, chains, ins)
            if row is not None:
                rows.append(row)
    ins.rows_out += len(rows)
    return pa.Table.from_pylist(rows, schema=INSTANCES)


def _complete(cfg: BuildConfig, p: dict, chains: dict, ins: StageStats) -> dict | None:
    """A pending walk continued through the chains (a parent with no chain is not a kept comment of the
    month: the walk ends there, as at any missing parent); its instance, or None (counted)."""
    turns = [Turn(**t) for t in p["turns"]]  # newest first
    budget = cfg.max_depth - len(turns)
    nxt, title, top = p["next"], None, False
    while budget > 0 and nxt is not None:
        chain = chains.get(f"{p['month']}\t{nxt}")
        if chain is None:
            break
        part = [Turn(**t) for t in chain["turns"]]
        taken = part[:budget]
        turns += taken
        budget -= len(taken)
        if len(taken) < len(part):
            break
        top, title, nxt = chain["top"], chain["title"], chain["next"]
    has_title = False
    if top and cfg.use_title:
        if title is None:
            count(ins.dropped, "missing_submission")
            return None
        has_title = True
    path = ([Turn(**title)] if has_title else []) + turns[::-1]
    if len(path) < cfg.min_depth:
        count(ins.dropped, "too_shallow")  # the target is not over-long: its walk went on
        return None
    target = p["target"]
    return {
        **target,
        "target_id": target["instance_id"],
        "month": p["month"],
        "turn_ids": [tt.turn_id for tt in path],
        "turn_authors": [tt.author for tt in path],
        "turns_raw": [tt.raw for tt in path],
        "turns": [tt.text for tt in path],
        "turn_weights": [tt.weight for tt in path],
        "weights_in_text": cfg.weights_in_text,
    }


# --- the passes as Spark jobs ----------------------------------------------------------------------


@dataclass
class BucketRun:
    """What the passes produced: stats, and the instances or TSV parts written."""

    instances: StageStats
    filter: StageStats
    extra: dict
    merged: dict
    comments: int
    submissions: int
    files: list[str]
    months: dict[str, int]
    settled_instances: pa.Table


def _timed(fn):
    """``fn`` whose result dict gains its wall and CPU seconds."""

    def run(task):
        t, c = time.perf_counter(), time.process_time()
        out = fn(task)
        out["seconds"], out["cpu_seconds"] = time.perf_counter() - t, time.process_time() - c
        return out

    return run


def _cross_keys(sc, tasks: list[dict], work: str, references: dict | None) -> list[tuple[int, int, int]]:
    """The candidate cross-bucket pairs: the references (read from the buckets unless given) joined."""
    if references is None:
        parts = max(1, len(tasks))
        ref_tasks = [{**t, "references": fsutil.join(work, "references"), "parts": parts} for t in tasks]
        references = {}
        for r in sc.parallelize(ref_tasks, max(1, len(ref_tasks))).map(references_task).collect():
            for part, f in r["files"].items():
                references.setdefault(part, []).append(f)
    if not references:
        return []
    parts = max(references) + 1
    groups = [(p, parts, sorted(set(references[p]))) for p in sorted(references)]
    return [x for r in sc.parallelize(groups, max(1, len(groups))).map(cross_pairs_task).collect() for x in r]


def run_buckets(
    sc, tasks: list[dict], cfg: BuildConfig, work: str, profile=None, n_shards=None, references=None
) -> BucketRun:
    """The references join, the bucket tasks and the settling over ``tasks`` (one per bucket: its
    comment and submission sources). ``references``: {part: [files]} written by the extract phase (else
    a job reads them from the buckets); ``profile``: filter the instances into TSV parts (dialogpt-tsv),
    else write Parquet."""
    conf = asdict(cfg)
    for t in tasks:
        t.update(config=conf, work=work)
    timing: dict[str, float] = {}
    t0 = time.perf_counter()
    pairs = _cross_keys(sc, tasks, work, references)
    cross_bc = sc.broadcast(cross_keys_by_bucket(pairs))
    timing["references"] = time.perf_counter() - t0
    shards = []
    for t in tasks:
        n = (n_shards or {}).get(t["bucket"], 1)
        shards.extend({**t, "shard": s, "n_shards": n} for s in range(n))
    t0 = time.perf_counter()
    run = _timed(lambda task: bucket_task(task, cross_bc.value, profile))
    results = sc.parallelize(shards, max(1, len(shards))).map(run).collect() if shards else []
    timing["buckets"] = time.perf_counter() - t0
    ins, flt = StageStats(stage="instances"), StageStats(stage="filter")
    extra = {"candidates": 0, "submissions_read": 0, "submissions_kept": 0}
    merged, files, months = Counter(), [], Counter()
    for r in results:
        ins.add(StageStats.from_dict(r["instances"]))
        flt.add(StageStats.from_dict(r["filter"]))
        for k, v in r["extra"].items():
            extra[k] += v
        merged.update(r["merged"])
        files.extend(r["files"])
        months.update(r["months"])
    t0 = time.perf_counter()
    settled = settle(cfg, [r["settle"] for r in results], ins)
    timing["settle"] = time.perf_counter() - t0
    extra["cross_bucket_candidates"] = len(pairs)
    extra["cross_bucket_walks"] = sum(len(r["settle"]["pending"]) for r in results)
    extra["deferred_targets"] = sum(len(r["settle"]["deferred"]) for r in results)
    extra["timing"] = {
        "pass_seconds": {k: round(v, 3) for k, v in timing.items()},
        "task_cpu_seconds": round(sum(r["cpu_seconds"] for r in results), 3),
        "slowest_task_seconds": round(max((r["seconds"] for r in results), default=0), 3),
    }
    return BucketRun(
        ins, flt, extra, dict(merged), sum(r["comments"] for r in results),
        sum(r["submissions"] for r in results), files, dict(months), settled,
    )  # fmt: skip
