"""The ``dialogpt`` profile over link-id buckets: month by month, exact, memory bounded by one bucket.

The released extractor works one month at a time and looks parents up by id in the whole month. Buckets
hold whole threads (rows are bucketed by ``link_id``), so a parent in the same thread is always in its
child's bucket; only a parent named across threads (broken or synthetic data, rare) can lie in another
bucket. So that every bucket is read once:

1. *References*: per comment, a 64-bit key of its id and of its t1 parent's id, with its bucket (written by
   the extract stage's first phase, ``ingest._References``, or by ``references_task`` from the extract
   output), partitioned by key. ``cross_pairs_task`` joins each partition: the keys named as parent from
   another bucket (candidates; a key collision only adds a candidate, settled exactly below).
2. ``bucket_task``, one per bucket: the duplicate-id rule (the first copy by (source, line) stays), pass 1
   per month (``conversations.dialogpt_submissions`` / ``dialogpt_extract_codes``), then pass 2
   (``month_pass2``). A walk that reaches a comment whose parent is a candidate cannot finish here: it
   is returned *pending*; a candidate parent's chain (the comments above it) is exported; a candidate
   target whose leaf status depends on another bucket (leaves_only) is *deferred* with its outcome.
   Everything else is final: instances, or (dialogpt-tsv) the filter's TSV lines.
3. ``settle`` (driver): completes the pending walks with the chains, decides the deferred targets with
   the kept children other buckets reported (the released rule: a comment some kept comment replies to
   is not a leaf); a few hundred rows per month.

Used by the instances stage (``--profile dialogpt``: buckets of the extract output, instance Parquet) and
by ``make dialogpt-tsv`` (buckets of its own staging: no intermediate tables; filtered TSV lines).
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from dialogsmith import fsutil
from dialogsmith.extract.job import later_duplicates
from dialogsmith.formats.stats import StageStats
from dialogsmith.idkeys import References, cross_pairs, id_key, parent_keys
from dialogsmith.instances.job import (
    _PARENT_MISSING,
    EXTRACT_REASONS,
    TARGET_REASONS,
    BuildConfig,
    Targets,
    TurnSource,
    _contiguous,
    _count,
    _instances_writer,
    _parent_index_array,
    _released_order,
    _shard,
    count_codes,
    dialogpt_extract_codes,
    dialogpt_submissions,
    instance_columns,
    load_build_lists,
    reached_link_rule,
    string_set,
    walk_targets,
    write_instances,
)

# What the dialogpt profile reads of a dump line (the required fields are always read and typed).
COMMENT_COLUMNS = ("id", "link_id", "parent_id", "author", "body", "score", "created_utc")
SUBMISSION_COLUMNS = ("id", "title", "num_comments", "permalink")
_DERIVED = ("month", "source", "line")  # added by the dump parser
_PASS2_COLUMNS = ["id", "link_id", "parent_id", "author", "body", "score", "created_utc"]
_PARENT_CROSS = -3  # the parent is a kept comment of another bucket (X)
MISSING_BODY = EXTRACT_REASONS.index("missing_body")
KEYS_NOT_DEP = EXTRACT_REASONS.index("keys_not_dep")
SUBMISSION_NOT_KEPT = EXTRACT_REASONS.index("submission_not_kept")
_IPC = ipc.IpcWriteOptions()  # uncompressed: written once, read once, from the page cache


# --- reading a bucket ------------------------------------------------------------------------------


def load_rows(sources: list, columns: list[str]) -> pa.Table:
    """A bucket's rows from its sources: ``("ipc", path, [batch ids])`` (ingest staging) or
    ``("parquet", path, "comments"|"submissions")`` (the extract output). Only ``columns`` are read."""
    tables = []
    for src in sources:
        fs, path = fsutil.resolve(src[1])
        if src[0] == "ipc":
            with fs.open_input_file(path) as f:
                schema = ipc.open_file(f).schema
                fields = [schema.get_field_index(c) for c in columns]
                reader = ipc.open_file(f, options=ipc.IpcReadOptions(included_fields=fields))
                batches = [reader.get_batch(i) for i in src[2]]
                tables.append(pa.Table.from_batches(batches, schema=reader.schema).select(columns))
        else:  # ("parquet", path, table name): the extract output, schema checked
            from dialogsmith.formats import schemas

            pf = pq.ParquetFile(path, filesystem=fs)
            version = schemas.COMMENTS_VERSION if src[2] == "comments" else schemas.SUBMISSIONS_VERSION
            schemas.check_schema_metadata(pf.schema_arrow, src[2], version, src[1])
            tables.append(pf.read(columns=columns))
    if not tables:
        return None
    return pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]


def _empty(columns: list[str]) -> pa.Table:
    from dialogsmith.formats.schemas import COMMENTS

    return pa.table({c: pa.array([], COMMENTS.field(c).type) for c in columns})


def _read_ipc(uri: str) -> pa.Table:
    fs, path = fsutil.resolve(uri)
    with fs.open_input_file(path) as f:
        return ipc.open_file(f).read_all()


def _rows_of(table: pa.Table, column: str, value: str, keep: np.ndarray | None) -> np.ndarray:
    """Row numbers where ``column == value`` (and ``keep``)."""
    hit = pc.fill_null(pc.equal(table[column], value), False).to_numpy(zero_copy_only=False)
    return np.flatnonzero(hit if keep is None else hit & keep)


def _empty_subs() -> pa.Table:
    from dialogsmith.formats.schemas import SUBMISSIONS

    cols = [*SUBMISSION_COLUMNS, "link_id", *_DERIVED]
    return pa.table({c: pa.array([], SUBMISSIONS.field(c).type) for c in cols})


# --- references across buckets ---------------------------------------------------------------------


def references_task(task: dict) -> dict:
    """The references of one bucket of the extract output (the staging path writes them in phase 1)."""
    table = load_rows(task["comments"], ["id", "parent_id", "link_id"])
    refs = References(task["references"], f"b{task['bucket'].split('=', 1)[-1]}", task["parts"])
    if table is not None and table.num_rows:
        bucket = int(task["bucket"].split("=", 1)[-1])
        refs.add(table, np.full(table.num_rows, bucket, dtype=np.int32))
    return {"files": refs.close()}


def cross_pairs_task(job: tuple[int, int, list[str]]) -> list[tuple[int, int, int]]:
    """``idkeys.cross_pairs`` of one partition of the keys (its ``files``)."""
    _, _, files = job
    tables = [_read_ipc(f) for f in files]
    if not tables:
        return []
    t = pa.concat_tables(tables)
    return cross_pairs(*(t[c].to_numpy() for c in ("key", "bucket", "named")))


@dataclass
class CrossKeys:
    """A bucket's side of the candidate cross-bucket pairs (keys of ids, see ``id_key``)."""

    parents: np.ndarray  # keys of this bucket's comments named as parent from another bucket
    children: np.ndarray  # keys of parents in another bucket named by this bucket's comments


def cross_keys_by_bucket(pairs: list[tuple[int, int, int]]) -> dict[str, CrossKeys]:
    by: dict[str, tuple[set, set]] = {}
    for key, parent_bucket, child_bucket in pairs:
        by.setdefault(f"bucket={parent_bucket}", (set(), set()))[0].add(key)
        by.setdefault(f"bucket={child_bucket}", (set(), set()))[1].add(key)
    return {
        b: CrossKeys(np.array(sorted(p), np.uint64), np.array(sorted(c), np.uint64))
        for b, (p, c) in by.items()
    }


_NO_CROSS = CrossKeys(np.zeros(0, np.uint64), np.zeros(0, np.uint64))


# --- the bucket task: pass 1, then pass 2 ------------------------------------------------------------


def pass1(task: dict, cfg: BuildConfig) -> tuple[dict, StageStats, dict, dict, int, int]:
    """Dedup and pass 1 of one bucket: {month: (kept comments + ntok, readable submissions)}, the
    instances stats so far, extras, merged duplicates, comments and submissions after dedup.

    Masks are combined first and the kept rows copied once (a filter per rule copied every body)."""
    subs_all = load_rows(task["submissions"], [*SUBMISSION_COLUMNS, "link_id", *_DERIVED])
    rc_all = load_rows(task["comments"], [*COMMENT_COLUMNS, *_DERIVED])
    if rc_all is None:
        rc_all = _empty([*COMMENT_COLUMNS, *_DERIVED])
    if subs_all is None:
        subs_all = _empty_subs()
    merged = Counter()
    sub_first = ~later_duplicates(subs_all["id"], subs_all["source"], subs_all["line"].to_numpy())
    merged["submissions"] = int((~sub_first).sum())
    first = ~later_duplicates(rc_all["id"], rc_all["source"], rc_all["line"].to_numpy())
    merged["comments"] = int((~first).sum())
    if cfg.months:
        wanted = pa.array(cfg.months, pa.string())
        first &= pc.fill_null(pc.is_in(rc_all["month"], wanted), False).to_numpy(zero_copy_only=False)
        sub_first &= pc.fill_null(pc.is_in(subs_all["month"], wanted), False).to_numpy(zero_copy_only=False)
    ins = StageStats(stage="instances", rows_in=int(first.sum()))
    extra = {"submissions_read": 0, "submissions_kept": 0}
    months = set(pc.unique(rc_all["month"]).to_pylist()) | set(pc.unique(subs_all["month"]).to_pylist())
    # the rules that need no month (missing_body, deleted, quote, too_few_tokens): once for the bucket;
    # keys_not_dep and submission_not_kept per month below, in the released order
    code_all, ntok_all = dialogpt_extract_codes(rc_all, None, None)
    out = {}
    for month in sorted(m for m in months if m is not None):
        rows = _rows_of(rc_all, "month", month, first)
        sub_rows = _rows_of(subs_all, "month", month, sub_first)
        subs = dialogpt_submissions(subs_all.take(pa.array(sub_rows)))
        extra["submissions_read"] += subs.read
        extra["submissions_kept"] += len(subs.kept_links)
        code = code_all[rows]
        links = _contiguous(rc_all["link_id"]).take(pa.array(rows))
        if cfg.keys:
            from dialogsmith.recipes.dialogpt_keys import load_month_keys

            keys = load_month_keys(cfg.keys, month, set(pc.unique(links).to_pylist()))
            t1 = pc.binary_join_element_wise("t1_", _contiguous(rc_all["id"]).take(pa.array(rows)), "")
            dep = pc.is_in(pc.binary_join_element_wise(links, t1, "\t"), value_set=string_set(keys.dep))
            no_dep = ~pc.fill_null(dep, False).to_numpy(zero_copy_only=False)
            code[no_dep & (code != MISSING_BODY)] = KEYS_NOT_DEP  # it precedes every rule but missing_body
        reach = np.flatnonzero(reached_link_rule(code))
        link_ok = pc.is_in(links.take(pa.array(reach)), value_set=string_set(subs.kept_links))
        code[reach[~pc.fill_null(link_ok, False).to_numpy(zero_copy_only=False)]] = SUBMISSION_NOT_KEPT
        count_codes(ins.dropped, code, EXTRACT_REASONS)
        kept_rows = rows[code == -1]
        kept = rc_all.select(_PASS2_COLUMNS).take(pa.array(kept_rows))
        kept = kept.append_column("ntok", pa.array(ntok_all[kept_rows], pa.int32()))
        links_t = list(subs.title)
        readable = pa.table(
            {
                "link_id": pa.array(links_t, pa.string()),
                "title": pa.array([subs.title[x] for x in links_t], pa.string()),
                "subreddit": pa.array([subs.subreddit[x] for x in links_t], pa.string()),
            }
        )
        out[month] = (kept, readable)
    return out, ins, extra, dict(merged), int(first.sum()), int(sub_first.sum())


def bucket_task(task: dict, cross: dict[str, CrossKeys], profile=None) -> dict:
    """One bucket (one shard of its candidates): pass 1, then pass 2 for every month, knowing the
    candidate cross-bucket pairs. Writes instances (``task["out"]`` Parquet) or the filter's TSV lines
    (with ``profile``); returns stats, and what the driver settles (pending walks, chains, deferred
    targets, kept children naming a candidate parent)."""
    cfg = BuildConfig(**task["config"])
    bl_words, bl_subs = load_build_lists(cfg)
    months, ins, extra, merged, n_comments, n_subs = pass1(task, cfg)
    if task["shard"] > 0:  # shard 0 accounts for the bucket's comments and pass 1 (every shard reads them)
        ins, extra = StageStats(stage="instances"), {"submissions_read": 0, "submissions_kept": 0}
        merged, n_comments, n_subs = {}, 0, 0
    extra["candidates"] = 0
    flt = StageStats(stage="filter")
    settle: dict = {"pending": [], "chains": {}, "deferred": [], "named": []}
    writer = _InstanceSink(task, profile, flt)
    keys_of = cross.get(task["bucket"], _NO_CROSS)
    for month, (rc, subs) in months.items():
        keys = None
        if cfg.keys:
            from dialogsmith.recipes.dialogpt_keys import load_month_keys

            keys = load_month_keys(cfg.keys, month, set(pc.unique(rc["link_id"]).to_pylist()))
        out = month_pass2(cfg, task, month, rc, subs, keys, bl_words, bl_subs, keys_of, ins, extra)
        if out.instances is not None:
            writer.write(month, out.instances)
        for k in ("pending", "deferred", "named"):
            settle[k].extend(out.settle[k])
        if task["shard"] == 0:
            settle["chains"].update(out.settle["chains"])
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
        "settle": settle,
        "files": writer.files,
        "months": writer.lines_per_month,
    }


# --- pass 2 ------------------------------------------------------------------------------------------


@dataclass
class Turn:
    """One turn of a pending walk or of an exported chain (texts final, as pass 2 computed them)."""

    turn_id: str
    author: str | None
    raw: str
    text: str
    weight: float


@dataclass
class MonthResult:
    instances: pa.Table | None
    settle: dict  # pending walks, chains, deferred targets, kept children naming a candidate parent


def month_pass2(
    cfg, task, month, rc, subs, keys, bl_words, bl_subs, cross: CrossKeys, ins, extra
) -> MonthResult:
    """Pass 2 of one month of one bucket (the released conv step, vectorized over the targets)."""
    from dialogsmith.text.dialogpt import (
        gpt_normalize,
        gpt_normalize_array,
        minimal_normalize,
        minimal_normalize_array,
    )

    sub_title = dict(zip(subs["link_id"].to_pylist(), subs["title"].to_pylist(), strict=True))
    sub_subreddit = dict(zip(subs["link_id"].to_pylist(), subs["subreddit"].to_pylist(), strict=True))
    ntok = rc["ntok"].to_numpy()
    pids = _contiguous(pc.fill_null(rc["parent_id"], "None"))  # str(None), as pass 1's TSV writes it
    t1ids = _contiguous(pc.binary_join_element_wise("t1_", rc["id"], ""))
    links = _contiguous(rc["link_id"])
    parent, leaf = _parent_index_array(t1ids, pids)
    # candidates of cross-bucket pairs (see the module docstring)
    maybe_parent = np.zeros(len(parent), dtype=bool)
    if len(cross.parents):
        maybe_parent = np.isin(id_key(rc["id"]), cross.parents)
    named = []
    if len(cross.children):
        rows, key = parent_keys(pids)
        child = rows[(parent[rows] == _PARENT_MISSING) & np.isin(key, cross.children)]
        parent[child] = _PARENT_CROSS
        named = [(month, pid) for pid in pids.take(pa.array(child)).to_pylist()]  # kept children name them
    over_long = ntok > cfg.max_len if cfg.max_len else np.zeros(len(ntok), dtype=bool)
    if task["n_shards"] > 1:  # contiguous slices of the released order (whole threads per shard)
        cand = _shard(_released_order(links, pids, rc["id"]), task)
    else:  # the order of the output lines does not matter (compare sorted, as the spec says)
        cand = np.arange(rc.num_rows, dtype=np.int64)
    extra["candidates"] += len(cand)
    reason = np.full(len(cand), -1, dtype=np.int16)  # index in TARGET_REASONS; -1: still a target

    def rule(bad: np.ndarray, name: str) -> None:
        hit = bad & (reason < 0)
        reason[hit] = TARGET_REASONS.index(name)

    links_list = None
    if keys is not None:
        links_list = links.to_pylist()
        ids_list = t1ids.to_pylist()
        rule(
            ~np.fromiter((links_list[i] + "\t" + ids_list[i] in keys.keep for i in cand), bool, len(cand)),
            "not_in_keys",
        )
    if cfg.leaves_only:
        rule(~leaf[cand], "not_leaf")
    # a candidate parent that is a leaf here: another bucket's kept comment may reply to it (settled later)
    deferred = maybe_parent[cand] & (reason < 0) if cfg.leaves_only else np.zeros(len(cand), dtype=bool)
    if bl_subs is not None:
        if links_list is None:
            links_list = links.to_pylist()
        subs_c = [sub_subreddit.get(links_list[i], "") for i in cand]
        rule(np.fromiter((not x for x in subs_c), bool, len(cand)), "missing_submission")
        rule(np.fromiter((bool(x) and x in bl_subs for x in subs_c), bool, len(cand)), "blocked_subreddit")
    scores = pc.fill_null(rc["score"], 0).to_numpy(zero_copy_only=False)
    rule(scores[cand] < cfg.min_score, "low_score")

    discard = keys.discard_hashes if keys else None

    def weight(text: str) -> float:
        if bl_words is not None and bl_words.contains(text):
            return 0.0
        if discard and hashlib.sha224(text.encode("utf-8")).hexdigest() in discard:
            return 0.0
        return 1.0

    def weights_of(texts: pa.Array) -> pa.Array:
        if bl_words is None and not discard:
            return pa.array(np.ones(len(texts), np.float32))
        return pa.array([weight(x) for x in texts.to_pylist()], pa.float32())

    def texts(needed_rows: np.ndarray) -> tuple[pa.Array, pa.Array]:
        # Each distinct body is normalized once (the normalization is a pure function of the body). The
        # rstrip of pass 1 changes nothing here: GPT normalization starts by splitting on whitespace.
        enc = pc.dictionary_encode(_contiguous(rc["body"].take(pa.array(needed_rows))))
        uniq = gpt_normalize_array(minimal_normalize_array(enc.dictionary))
        return uniq.take(enc.indices), weights_of(uniq).take(enc.indices)

    def title_turn(link: str) -> Turn | None:
        raw = sub_title.get(link)
        if raw is None:
            return None
        text = gpt_normalize("title: " + minimal_normalize(raw).rstrip())
        return Turn(link, None, "title: " + raw, text, weight(text))

    def turns_of(rows: np.ndarray) -> list[Turn]:
        if not len(rows):
            return []
        tx, w = texts(rows)
        take = pa.array(rows)
        return [
            Turn(i, a, r, t, float(x))
            for i, a, r, t, x in zip(
                t1ids.take(take).to_pylist(), rc["author"].take(take).to_pylist(),
                rc["body"].take(take).to_pylist(), tx.to_pylist(), w.to_pylist(), strict=True,
            )
        ]  # fmt: skip

    # -- the walks of the targets still alive; those that reach a cross child wait for the driver
    alive = np.flatnonzero(reason < 0)
    walks = walk_targets(cand[alive], parent, over_long, cfg.max_depth, detect_cycles=False)
    last = walks.steps[np.arange(len(alive)), np.maximum(walks.length - 1, 0)] if len(alive) else alive
    waiting = (walks.length > 0) & (walks.length < cfg.max_depth) & (parent[last] == _PARENT_CROSS)
    pending = []
    for k in np.flatnonzero(waiting):
        rows = walks.steps[k, : walks.length[k]]
        target = int(cand[alive[k]])
        pending.append(
            {
                "month": month,
                "target": _target_info(rc, t1ids, pids, links, sub_subreddit, target),
                "turns": [asdict(t) for t in turns_of(rows)],  # newest first
                "next": pids[int(rows[-1])].as_py(),
                "deferred": bool(deferred[alive[k]]),
            }
        )
    t = Targets(alive, walks, np.zeros(len(alive), dtype=bool), np.full(len(alive), -1, dtype=np.int64))
    t = t.keep(~waiting)  # rows: positions in cand

    # -- the chains above this bucket's candidate parents, for the pending walks of other buckets
    chains = {}
    members = np.flatnonzero(maybe_parent)
    if len(members):
        cw = walk_targets(members, parent, over_long, cfg.max_depth, detect_cycles=False)
        for k, x in enumerate(members):
            rows = cw.steps[k, : cw.length[k]]
            end = int(rows[-1]) if len(rows) else int(x)
            reaches_cross = len(rows) and len(rows) < cfg.max_depth and parent[end] == _PARENT_CROSS
            chains[f"{month}\t{t1ids[int(x)].as_py()}"] = {
                "turns": [asdict(tt) for tt in turns_of(rows)],
                "top": bool(cw.top[k]),
                "title": asdict(tt) if cw.top[k] and (tt := title_turn(links[end].as_py())) else None,
                "next": pids[end].as_py() if reaches_cross else None,
            }

    # -- final targets: title, min_depth, instances
    title_rows: dict[str, int] = {}

    def title_index(top_links: pa.Array) -> np.ndarray:
        return np.fromiter(
            (
                title_rows.setdefault(x, len(title_rows)) if x in sub_title else -1
                for x in top_links.to_pylist()
            ),
            np.int64,
            len(top_links),
        )

    t = _trim(cfg, t, cand, over_long, links, title_index, rule, reason)
    waiting_pos = alive[waiting]
    counted = ~deferred
    counted[waiting_pos] = False
    count_codes(ins.dropped, np.where(counted, reason, -1), TARGET_REASONS)
    settle = {"pending": pending, "chains": chains, "named": named, "deferred": []}
    for pos in np.flatnonzero(deferred & (reason >= 0)):
        settle["deferred"].append(
            {"month": month, "id": t1ids[int(cand[pos])].as_py(), "reason": TARGET_REASONS[reason[pos]]}
        )
    if len(t.rows) == 0:
        return MonthResult(None, settle)
    titles = [(tt.raw, tt.text, tt.weight) for tt in (title_turn(link) for link in title_rows)]
    source = TurnSource(t1ids, _contiguous(rc["author"]), _contiguous(rc["body"]), texts, titles)
    # for the TSV only turns and weights matter: no raw texts, authors or turn ids are gathered
    t_rows = t.rows
    t.rows = cand[t_rows]  # positions in cand -> comment rows
    cols = instance_columns(cfg, t, rc.num_rows, source, texts_only=task.get("tsv") is not None)
    take = pa.array(t.rows)
    target_links = links.take(take)
    nt = len(t.rows)
    subreddits = [sub_subreddit.get(link, "") for link in target_links.to_pylist()]
    sink = _TableSink()
    write_instances(
        sink, cfg, t, cols, target_links, pids.take(take), t1ids.take(take), pa.array(subreddits, pa.string()),
        pa.array([month] * nt, pa.string()), rc["score"].take(take), rc["created_utc"].take(take),
    )  # fmt: skip
    table = sink.table
    held = deferred[t_rows]
    if held.any():  # a deferred target's instance waits for the driver
        settle["deferred"] += [
            {"month": month, "id": row["instance_id"], "instance": row}
            for row in table.filter(pa.array(held)).to_pylist()
        ]
        table = table.filter(pa.array(~held))
    return MonthResult(table, settle)


def _trim(cfg: BuildConfig, t: Targets, cand, over_long, links, title_index, rule, reason) -> Targets:
    """The title turn (a path whose title is unknown is skipped: missing_submission), then min_depth.
    ``t.rows`` are positions in ``cand``; drops go to ``reason`` through ``rule``."""
    rows = cand[t.rows]
    if cfg.use_title and t.walks.top.any():
        w = t.walks
        top_comment = w.steps[np.arange(len(t.rows)), np.maximum(w.length - 1, 0)]
        tops = np.flatnonzero(w.top)
        found = title_index(
            links.take(pa.array(top_comment[tops]))
        )  # the released code: the top comment's link
        t.has_title[tops] = found >= 0
        t.title_of[tops] = found
        bad = np.zeros(len(cand), dtype=bool)
        bad[t.rows[w.top & ~t.has_title]] = True
        rule(bad, "missing_submission")
        t = t.keep(~(w.top & ~t.has_title))
        rows = cand[t.rows]
    n_turns = t.walks.length + t.has_title
    short = n_turns < cfg.min_depth
    too_long = np.zeros(len(cand), dtype=bool)
    too_long[t.rows[short & over_long[rows]]] = True
    rule(too_long, "target_too_long")
    shallow = np.zeros(len(cand), dtype=bool)
    shallow[t.rows[short]] = True
    rule(shallow, "too_shallow")
    return t.keep(~short)


def _target_info(rc, t1ids, pids, links, sub_subreddit, row: int) -> dict:
    link = links[row].as_py()
    return {
        "instance_id": t1ids[row].as_py(),
        "link_id": link,
        "parent_id": pids[row].as_py(),
        "subreddit": sub_subreddit.get(link, ""),
        "target_score": rc["score"][row].as_py(),
        "target_created_utc": rc["created_utc"][row].as_py(),
    }


class _TableSink:
    def __init__(self):
        self.table = None

    def write_columns(self, columns: dict) -> None:
        from dialogsmith.formats.schemas import INSTANCES

        self.table = pa.Table.from_arrays([columns[f.name] for f in INSTANCES], schema=INSTANCES)


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
        from dialogsmith.formats.schemas import INSTANCES, INSTANCES_VERSION, with_metadata

        if self.writer is None:
            name = f"part-{self.task['bucket'].split('=', 1)[-1]}-{self.task['shard']:04d}.parquet"
            uri = fsutil.join(self.task["out"], name)
            fs, path = fsutil.resolve(uri)
            fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
            schema = with_metadata(INSTANCES, "instances", INSTANCES_VERSION)
            self.writer = _instances_writer(path, fs, schema)
            self.files.append(uri)
        self.writer.write_table(table.cast(self.writer.schema), row_group_size=20_000)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def filter_lines(instances: pa.Table, profile, flt: StageStats) -> bytes:
    """The filter stage's rules on instances; their DialoGPT TSV lines. Counts into ``flt``."""
    from dialogsmith.filter import engine, job
    from dialogsmith.filter.profiles import load_lists
    from dialogsmith.filter.rules import DUPLICATE_PAIR

    params = load_lists(profile.params)
    rules = profile.rules()
    table, bad, good, batch, _ = job.prepare_table(instances, profile)
    codes = engine.judge(batch, rules, params)
    dropped = job.drop_counts(codes, [r.name for r in rules] + [DUPLICATE_PAIR], bad)
    keep = pa.array(np.flatnonzero(codes == -1))
    flt.add(StageStats(stage="filter", rows_in=table.num_rows, rows_out=len(keep), dropped=dict(dropped)))
    if not len(keep):
        return b""
    return job.concat_lines(job.tsv_lines(good.take(keep), batch.src.take(keep), batch.tgt.take(keep)))


# --- the driver's part: the pending walks ------------------------------------------------------------


def settle(cfg: BuildConfig, settles: list[dict], ins: StageStats) -> pa.Table:
    """The driver's part: deferred targets (not leaves when a kept comment of another bucket replies to
    them) and pending walks (completed with the chains other buckets exported). The instances they make."""
    from dialogsmith.formats.schemas import INSTANCES

    named = {(m, pid) for st in settles for m, pid in st["named"]}
    chains = {k: v for st in settles for k, v in st["chains"].items()}
    rows = []

    def not_leaf(month: str, target_id: str) -> bool:
        return cfg.leaves_only and (month, target_id) in named

    for st in settles:
        for d in st["deferred"]:
            if not_leaf(d["month"], d["id"]):
                _count(ins.dropped, "not_leaf")
            elif "reason" in d:
                _count(ins.dropped, d["reason"])
            else:
                rows.append(d["instance"])
    for st in settles:
        for p in st["pending"]:
            if p["deferred"] and not_leaf(p["month"], p["target"]["instance_id"]):
                _count(ins.dropped, "not_leaf")
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
            _count(ins.dropped, "missing_submission")
            return None
        has_title = True
    path = ([Turn(**title)] if has_title else []) + turns[::-1]
    if len(path) < cfg.min_depth:
        _count(ins.dropped, "too_shallow")  # the target is not over-long: its walk went on
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
    if references is None:
        parts = max(1, len(tasks))
        ref_tasks = [{**t, "references": fsutil.join(work, "references"), "parts": parts} for t in tasks]
        references = {}
        for r in sc.parallelize(ref_tasks, max(1, len(ref_tasks))).map(references_task).collect():
            for part, f in r["files"].items():
                references.setdefault(part, []).append(f)
    pairs = []
    if references:
        parts = max(references) + 1
        groups = [(p, parts, sorted(set(references[p]))) for p in sorted(references)]
        job = sc.parallelize(groups, max(1, len(groups))).map(cross_pairs_task)
        pairs += [x for r in job.collect() for x in r]
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
