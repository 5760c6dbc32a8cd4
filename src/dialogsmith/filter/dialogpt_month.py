"""``make dialogpt-tsv`` with one task per month: dumps -> ``<month>.tsv``, no intermediate tables.

The released extractor works one month at a time (month isolation is one of its rules), so a month is
a closed unit of work. One Spark task per month streams ``RS_<month>`` and ``RC_<month>`` through the
ingest parser (``dumps.BlockParser``: same typing, quarantine reasons and duplicate-id rule), judges
each block of comments with the conversation stage's pass-1 rules as it is read, builds the month's
instances with the same pass 2, applies the filter's ``dialogpt`` rules and writes ``<month>.tsv``.
The functions are the staged path's (ingest -> instances -> filter); what goes away is three Parquet
round trips, the bucket shuffle and seven Spark jobs. Tests assert that both paths write identical
TSVs and stats.

Memory per task: the month's comments that pass pass 1 (only the columns pass 2 reads), plus the id,
line and pass-1 outcome of every comment (for the duplicate-id rule). Measured on the benchmark's
0.9M-comment months: see ``docs/filter.md``. Months whose decoded comments exceed
``--fused-max-gb`` run through the staged path, whose memory is bounded by its buckets.
"""

from __future__ import annotations

import os
import resource
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dialogsmith import dumps, fsutil, schemas
from dialogsmith.conversations import (
    EXTRACT_REASONS,
    SUBMISSION_NOT_KEPT,
    BuildConfig,
    count_codes,
    dialogpt_conversations,
    dialogpt_extract_codes,
    dialogpt_submissions,
    load_build_lists,
    reached_link_rule,
    string_set,
)
from dialogsmith.filter import engine, job
from dialogsmith.filter.profiles import Profile, load_lists
from dialogsmith.filter.rules import DUPLICATE_PAIR
from dialogsmith.ingest import DUPLICATE_ID, dedup_first, estimated_bytes, later_duplicates
from dialogsmith.schemas import INSTANCES
from dialogsmith.stats import StageStats

# What the dialogpt profile reads of a dump line (the required fields are always read and typed).
COMMENT_COLUMNS = ("id", "link_id", "parent_id", "author", "body", "score", "created_utc")
SUBMISSION_COLUMNS = ("id", "title", "num_comments", "permalink")
_PASS2_COLUMNS = ["id", "link_id", "parent_id", "author", "body", "score", "created_utc"]


class _Tables:
    """Pass 2's writer, in memory: the month's instances as one table."""

    def __init__(self):
        self.tables: list[pa.Table] = []
        self.rows = 0

    def write_columns(self, columns: dict) -> None:
        table = pa.Table.from_arrays([columns[f.name] for f in INSTANCES], schema=INSTANCES)
        self.tables.append(table)
        self.rows += table.num_rows

    def table(self) -> pa.Table:
        return pa.concat_tables(self.tables) if self.tables else INSTANCES.empty_table()


def _blocks(
    uri: str, kind: str, columns, files: dict, quarantine: list, source: str | None = None
) -> Iterator[pa.Table]:
    """The parsed rows of one dump file, block by block; per-file counts into ``files``."""
    source = source or os.path.basename(uri)
    _, month = dumps.parse_dump_name(uri)
    parser = dumps.BlockParser(source, kind, month, columns=columns)
    reader = dumps.DumpReader(uri)
    st = files.setdefault(source, {"lines": 0, "parsed": 0, "quarantined": Counter(), "error": None})
    st["kind"] = kind
    for block in reader:
        res = parser.parse(block)
        st["parsed"] += res.parsed
        st["quarantined"].update(res.quarantined)
        quarantine.extend(res.quarantine)
        yield from res.tables
    if reader.error:
        reason, message = reader.error
        quarantine.append(parser.error_record(reader.error_line, reason, message, reader.tail))
        st["quarantined"][reason] += 1
        st["error"] = f"{reason}: {message}"
    st["lines"] += reader.lines


def month_task(task: dict, profile: Profile) -> dict:
    """One month, end to end. Returns the three stages' stats (dicts) and timings."""
    t0 = time.perf_counter()
    month, out = task["month"], task["out"]
    cfg = BuildConfig(**task["config"])
    files: dict[str, dict] = {}
    quarantine: list[dict] = []

    # -- extract, submissions (small: read whole) --------------------------------------------------
    sub_tables = [
        t
        for f in task["rs_files"]
        for t in _blocks(f, dumps.SUBMISSIONS, SUBMISSION_COLUMNS, files, quarantine, task["sources"][f])
    ]
    if sub_tables:
        submissions = pa.concat_tables(sub_tables)
    else:
        empty = dumps.BlockParser("", dumps.SUBMISSIONS, month, columns=SUBMISSION_COLUMNS)
        submissions = empty.output_schema.empty_table()
    n_subs_parsed = submissions.num_rows
    submissions = dedup_first(submissions)
    subs = dialogpt_submissions(submissions)
    kept_links = string_set(subs.kept_links)

    # -- extract + pass 1, comments, block by block ------------------------------------------------
    keys = None
    if cfg.keys:
        from dialogsmith.dialogpt_keys import load_month_keys

        keys = load_month_keys(cfg.keys, month)
    dep_keys = string_set(keys.dep) if keys is not None else None
    ids, sources, lines, codes, kept, ntoks = [], [], [], [], [], []
    reached, reached_links = [], []  # rows left to submission_not_kept, and their link ids
    n_rows = 0
    for f in task["rc_files"]:
        for table in _blocks(f, dumps.COMMENTS, COMMENT_COLUMNS, files, quarantine, task["sources"][f]):
            # submission_not_kept is applied once below: pc.is_in rebuilds its hash set on every call
            code, ntok = dialogpt_extract_codes(table, None, dep_keys)
            ids.extend(table["id"].chunks)  # arrays: pa.chunked_array of ChunkedArrays converts per value
            sources.extend(table["source"].chunks)
            lines.append(table["line"].to_numpy())
            codes.append(code)
            rows = np.flatnonzero(code == -1)
            kept.append(table.select(_PASS2_COLUMNS).take(pa.array(rows)))
            ntoks.append(ntok[rows])
            reach = np.flatnonzero(reached_link_rule(code))
            reached.append(reach + n_rows)
            reached_links.extend(table["link_id"].take(pa.array(reach)).chunks)
            n_rows += table.num_rows
    code = np.concatenate(codes) if codes else np.zeros(0, np.int8)
    provisional = np.flatnonzero(code == -1)  # the rows of `kept`
    if len(code):
        reach = np.concatenate(reached)
        link_ok = pc.is_in(pa.chunked_array(reached_links, pa.string()), kept_links).to_numpy(
            zero_copy_only=False
        )
        code[reach[~link_ok]] = SUBMISSION_NOT_KEPT
    # The duplicate-id rule comes first in the staged path (ingest), so a later copy of an id counts
    # as merged whatever pass 1 said about it, and only first copies stay among the kept comments.
    later = (
        later_duplicates(
            pa.chunked_array(ids, pa.string()), pa.chunked_array(sources, pa.string()), np.concatenate(lines)
        )
        if len(code)
        else np.zeros(0, dtype=bool)
    )
    n_comments = int(len(code) - later.sum())
    ins = StageStats(stage="instances", rows_in=n_comments)
    count_codes(ins.dropped, np.where(later, -1, code), EXTRACT_REASONS)
    keep_mask = (code[provisional] == -1) & ~later[provisional]
    rc = pa.concat_tables(kept).filter(pa.array(keep_mask)) if kept else None
    ntok = np.concatenate(ntoks)[keep_mask] if ntoks else np.zeros(0, np.int64)
    del ids, sources, lines, codes, kept, ntoks
    t_extract = time.perf_counter() - t0

    ex = StageStats(stage="extract")
    ex.rows_in = sum(st["lines"] for st in files.values())
    ex.rows_out = n_comments + submissions.num_rows
    ex.merged = {DUPLICATE_ID: int(later.sum()) + (n_subs_parsed - submissions.num_rows)}
    ex.quarantined = dict(sum((st["quarantined"] for st in files.values()), Counter()))
    if quarantine:
        path = fsutil.join(out, "quarantine", f"part-{month}.parquet")
        fs, p = fsutil.resolve(path)
        fs.create_dir(p.rsplit("/", 1)[0], recursive=True)
        table = schemas.with_metadata(schemas.QUARANTINE, "quarantine", schemas.QUARANTINE_VERSION)
        pq.write_table(dumps.quarantine_table(quarantine).cast(table), p, filesystem=fs)

    # -- pass 2: instances -------------------------------------------------------------------------
    t1 = time.perf_counter()
    extra = {"candidates": 0, "submissions_read": subs.read, "submissions_kept": len(subs.kept_links)}
    writer = _Tables()
    if rc is not None and rc.num_rows:
        bl_words, bl_subs = load_build_lists(cfg)
        task_shard = {"n_shards": 1, "shard": 0}
        dialogpt_conversations(
            cfg, task_shard, month, rc, ntok, subs, keys, bl_words, bl_subs, writer, ins, extra
        )
    ins.rows_out = writer.rows
    instances = writer.table()
    t_instances = time.perf_counter() - t1

    # -- filter, dialogpt rules -> <month>.tsv -----------------------------------------------------
    t2 = time.perf_counter()
    params = load_lists(profile.params)
    rules = profile.rules()
    table, bad, good, batch, _ = job.prepare_table(instances, profile)
    codes_f = engine.judge(batch, rules, params)
    dropped = job.drop_counts(codes_f, [r.name for r in rules] + [DUPLICATE_PAIR], bad)
    keep = pa.array(np.flatnonzero(codes_f == -1))
    kept_t = good.take(keep)
    data = (
        job.concat_lines(job.tsv_lines(kept_t, batch.src.take(keep), batch.tgt.take(keep)))
        if len(keep)
        else b""
    )
    fsutil.write_bytes(fsutil.join(out, f"{month}.tsv"), data)
    flt = StageStats(stage="filter", rows_in=table.num_rows, rows_out=len(keep), dropped=dict(dropped))
    t_filter = time.perf_counter() - t2
    for f in files.values():
        f["quarantined"] = dict(sorted(f["quarantined"].items()))
    return {
        "month": month,
        "extract": ex.to_dict(),
        "instances": ins.to_dict(),
        "filter": flt.to_dict(),
        "instance_extra": extra,
        "comments": n_comments,
        "submissions": submissions.num_rows,
        "files": files,
        "seconds": {"extract": t_extract, "instances": t_instances, "filter": t_filter},
        "worker_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def month_tasks(dumps_dir: str, out: str, cfg: BuildConfig) -> list[dict]:
    """One task per month with a comment or submission dump, biggest first."""
    from dialogsmith.ingest import scan_inputs

    scan = scan_inputs(dumps_dir)
    by_month: dict[str, dict] = {}
    for path in scan.files:
        kind, month = dumps.parse_dump_name(path)
        if kind is None or month is None:
            continue
        t = by_month.setdefault(
            month, {"month": month, "rs_files": [], "rc_files": [], "bytes": 0, "sources": {}}
        )
        t["rs_files" if kind == dumps.SUBMISSIONS else "rc_files"].append(path)
        t["sources"][path] = scan.sources[path]
        t["bytes"] += estimated_bytes(path)  # decoded size (ingest's estimate): biggest month first
    tasks = []
    for month in sorted(by_month):
        t = by_month[month]
        t["rs_files"].sort()
        t["rc_files"].sort()
        tasks.append({**t, "out": out, "config": asdict(cfg)})
    return sorted(tasks, key=lambda t: -t["bytes"])
