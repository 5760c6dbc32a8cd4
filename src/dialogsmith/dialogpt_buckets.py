"""The ``dialogpt`` profile over link-id buckets: month by month, exact, memory bounded by one bucket.

The released extractor works one month at a time and looks parents up by id in the whole month. Buckets
hold whole threads (rows are bucketed by ``link_id``), so a parent in the same thread is always in its
child's bucket; only a parent named across threads (broken or synthetic data, rare) can lie in another
bucket. Three passes over the buckets, each task holding one bucket:

1. ``pass1_task``: the duplicate-id rule (the first copy by (source, line) stays), pass 1 per month
   (``conversations.dialogpt_submissions`` / ``dialogpt_extract_codes``), the kept comments written to the
   work directory for pass 2; returns the ids of the parents it could not find in the bucket (U).
2. ``lookup_task``: which of the month's U are kept comments of this bucket (X: cross-bucket parents).
3. ``pass2_task``: pass 2 with X known. A comment of X is not a leaf; a walk that reaches a comment whose
   parent is in X cannot finish in this bucket and is returned as *pending*, with the chain above each
   comment of X (exported by its own bucket). Every other target is final: an instance, or (dialogpt-tsv)
   the filter's TSV line. ``finish_pending`` (driver) completes the pending walks: a handful per month.

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
from dialogsmith.conversations import (
    _PARENT_MISSING,
    EXTRACT_REASONS,
    BuildConfig,
    Targets,
    TurnSource,
    _contiguous,
    _count,
    _drop,
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
from dialogsmith.idkeys import base36_keys
from dialogsmith.ingest import later_duplicates
from dialogsmith.stats import StageStats

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
            from dialogsmith import schemas

            pf = pq.ParquetFile(path, filesystem=fs)
            version = schemas.COMMENTS_VERSION if src[2] == "comments" else schemas.SUBMISSIONS_VERSION
            schemas.check_schema_metadata(pf.schema_arrow, src[2], version, src[1])
            tables.append(pf.read(columns=columns))
    if not tables:
        return None
    return pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]


def _empty(columns: list[str]) -> pa.Table:
    from dialogsmith.schemas import COMMENTS

    return pa.table({c: pa.array([], COMMENTS.field(c).type) for c in columns})


def _write_ipc(uri: str, table: pa.Table) -> None:
    fs, path = fsutil.resolve(uri)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as sink, ipc.new_file(sink, table.schema, options=_IPC) as w:
        w.write_table(table)


def _read_ipc(uri: str) -> pa.Table:
    fs, path = fsutil.resolve(uri)
    with fs.open_input_file(path) as f:
        return ipc.open_file(f).read_all()


def _pass1_path(work: str, bucket: str, month: str, what: str) -> str:
    return fsutil.join(work, "pass1", bucket, f"{month}.{what}.arrow")


# --- pass 1 ------------------------------------------------------------------------------------------


def _rows_of(table: pa.Table, column: str, value: str, keep: np.ndarray | None) -> np.ndarray:
    """Row numbers where ``column == value`` (and ``keep``)."""
    hit = pc.fill_null(pc.equal(table[column], value), False).to_numpy(zero_copy_only=False)
    return np.flatnonzero(hit if keep is None else hit & keep)


def pass1_task(task: dict) -> dict:
    """One bucket: dedup, pass 1 per month; the kept comments (+ token counts) and the month's readable
    submissions go to the work dir. Returns stats and, per month, the parents not found here (U).

    Masks are combined first and the kept rows copied once (a filter per rule copied every body)."""
    cfg = BuildConfig(**task["config"])
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
    unresolved = {}
    # the rules that need no month (missing_body, deleted, quote, too_few_tokens): once for the bucket;
    # keys_not_dep and submission_not_kept per month below, in the released order
    code_all, ntok_all = dialogpt_extract_codes(rc_all, None, None)
    for month in sorted(m for m in months if m is not None):
        rows = _rows_of(rc_all, "month", month, first)
        sub_rows = _rows_of(subs_all, "month", month, sub_first)
        subs = dialogpt_submissions(subs_all.take(pa.array(sub_rows)))
        extra["submissions_read"] += subs.read
        extra["submissions_kept"] += len(subs.kept_links)
        code = code_all[rows]
        links = _contiguous(rc_all["link_id"]).take(pa.array(rows))
        if cfg.keys:
            from dialogsmith.dialogpt_keys import load_month_keys

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
        _write_ipc(_pass1_path(task["work"], task["bucket"], month, "comments"), kept)
        links = list(subs.title)
        _write_ipc(
            _pass1_path(task["work"], task["bucket"], month, "submissions"),
            pa.table(
                {
                    "link_id": pa.array(links, pa.string()),
                    "title": pa.array([subs.title[x] for x in links], pa.string()),
                    "subreddit": pa.array([subs.subreddit[x] for x in links], pa.string()),
                }
            ),
        )
        missing = _unresolved_parents(kept)
        if missing:
            unresolved[month] = missing
    return {
        "bucket": task["bucket"],
        "instances": ins.to_dict(),
        "extra": extra,
        "merged": dict(merged),
        "comments": int(first.sum()),
        "submissions": int(sub_first.sum()),
        "unresolved": unresolved,
    }


def _unresolved_parents(kept: pa.Table) -> list[str]:
    """The t1 parent ids of ``kept`` that are not ids of ``kept`` (distinct)."""
    pids = _contiguous(pc.fill_null(kept["parent_id"], "None"))
    t1_rows = np.flatnonzero(pc.fill_null(pc.starts_with(pids, "t1_"), False).to_numpy(zero_copy_only=False))
    own = base36_keys(kept["id"])
    par = base36_keys(pids, b"t1_", t1_rows) if own is not None else None
    if own is not None and par is not None:
        miss = t1_rows[~np.isin(par[t1_rows], own)]
    else:
        parent, _ = _parent_index_array(pc.binary_join_element_wise("t1_", kept["id"], ""), pids)
        miss = t1_rows[parent[t1_rows] == _PARENT_MISSING]
    return pc.unique(pids.take(pa.array(miss))).to_pylist() if len(miss) else []


def _empty_subs() -> pa.Table:
    from dialogsmith.schemas import SUBMISSIONS

    cols = [*SUBMISSION_COLUMNS, "link_id", *_DERIVED]
    return pa.table({c: pa.array([], SUBMISSIONS.field(c).type) for c in cols})


def lookup_task(task: dict, unresolved: dict[str, list[str]]) -> dict[str, list[str]]:
    """Per month: which unresolved parent ids (of any bucket) are kept comments of this bucket."""
    found = {}
    for month, ids in unresolved.items():
        uri = _pass1_path(task["work"], task["bucket"], month, "comments")
        if not ids or not fsutil.exists(uri):
            continue
        t1ids = pc.binary_join_element_wise("t1_", _read_ipc(uri)["id"], "")
        hit = pc.is_in(t1ids, value_set=pa.array(ids, pa.string()))
        here = pc.filter(t1ids, hit).to_pylist()
        if here:
            found[month] = here
    return found


# --- pass 2 ------------------------------------------------------------------------------------------


@dataclass
class Turn:
    """One turn of a pending walk or of an exported chain (texts final, as pass 2 computed them)."""

    turn_id: str
    author: str | None
    raw: str
    text: str
    weight: float


def pass2_task(task: dict, cross: dict[str, list[str]], profile=None) -> dict:
    """One bucket (one shard of its candidates): pass 2 for every month, knowing the month's cross-bucket
    parents. Writes instances (``task["out"]`` Parquet) or the filter's TSV lines (with ``profile``);
    returns stats, the pending walks and the chains above this bucket's cross parents."""
    cfg = BuildConfig(**task["config"])
    bl_words, bl_subs = load_build_lists(cfg)
    ins = StageStats(stage="instances")
    flt = StageStats(stage="filter")
    extra = {"candidates": 0}
    pending, chains = [], {}
    writer = _InstanceSink(task, profile, flt)
    months = sorted(
        {
            name.split(".", 1)[0]
            for name in _listdir(fsutil.join(task["work"], "pass1", task["bucket"]))
            if name.endswith(".comments.arrow")
        }
    )
    for month in months:
        rc = _read_ipc(_pass1_path(task["work"], task["bucket"], month, "comments"))
        subs = _read_ipc(_pass1_path(task["work"], task["bucket"], month, "submissions"))
        keys = None
        if cfg.keys:
            from dialogsmith.dialogpt_keys import load_month_keys

            keys = load_month_keys(cfg.keys, month, set(pc.unique(rc["link_id"]).to_pylist()))
        out = month_pass2(
            cfg, task, month, rc, subs, keys, bl_words, bl_subs, set(cross.get(month, ())), ins, extra
        )
        if out.instances is not None:
            writer.write(month, out.instances)
        pending.extend(out.pending)
        if task["shard"] == 0:
            chains.update(out.chains)
    writer.close()
    ins.rows_out = writer.instances
    return {
        "bucket": task["bucket"],
        "shard": task["shard"],
        "instances": ins.to_dict(),
        "filter": flt.to_dict(),
        "extra": extra,
        "pending": pending,
        "chains": chains,
        "files": writer.files,
        "months": writer.lines_per_month,
    }


def _listdir(uri: str) -> list[str]:
    import pyarrow.fs as pafs

    fs, path = fsutil.resolve(uri)
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=False, allow_not_found=True))
    return sorted(i.base_name for i in infos)


@dataclass
class MonthResult:
    instances: pa.Table | None
    pending: list[dict]
    chains: dict


def month_pass2(cfg, task, month, rc, subs, keys, bl_words, bl_subs, cross_ids, ins, extra) -> MonthResult:
    """Pass 2 of one month of one bucket (the released conv step, vectorized over the targets)."""
    from dialogsmith.text.dialogpt import (
        gpt_normalize,
        gpt_normalize_array,
        minimal_normalize,
        minimal_normalize_array,
    )

    drops = ins.dropped
    sub_title = dict(zip(subs["link_id"].to_pylist(), subs["title"].to_pylist(), strict=True))
    sub_subreddit = dict(zip(subs["link_id"].to_pylist(), subs["subreddit"].to_pylist(), strict=True))
    ntok = rc["ntok"].to_numpy()
    pids = _contiguous(pc.fill_null(rc["parent_id"], "None"))  # str(None), as pass 1's TSV writes it
    t1ids = _contiguous(pc.binary_join_element_wise("t1_", rc["id"], ""))
    links = _contiguous(rc["link_id"])
    parent, leaf = _parent_index_array(t1ids, pids)
    is_cross_parent = np.zeros(len(parent), dtype=bool)
    if cross_ids:
        value_set = pa.array(sorted(cross_ids), pa.string())
        is_cross_parent = pc.fill_null(pc.is_in(t1ids, value_set=value_set), False).to_numpy(
            zero_copy_only=False
        )
        leaf &= ~is_cross_parent  # a comment of another bucket replies to it
        to_cross = (parent == _PARENT_MISSING) & pc.fill_null(
            pc.is_in(pids, value_set=value_set), False
        ).to_numpy(zero_copy_only=False)
        parent[to_cross] = _PARENT_CROSS
    over_long = ntok > cfg.max_len if cfg.max_len else np.zeros(len(ntok), dtype=bool)
    if task["n_shards"] > 1:  # contiguous slices of the released order (whole threads per shard)
        cand = _shard(_released_order(links, pids, rc["id"]), task)
    else:  # the order of the output lines does not matter (compare sorted, as the spec says)
        cand = np.arange(rc.num_rows, dtype=np.int64)
    extra["candidates"] += len(cand)
    links_list = None
    if keys is not None:
        links_list = links.to_pylist()
        ids_list = t1ids.to_pylist()
        ok = np.fromiter((links_list[i] + "\t" + ids_list[i] in keys.keep for i in cand), bool, len(cand))
        cand = cand[_drop(drops, "not_in_keys", ~ok)]
    if cfg.leaves_only:
        cand = cand[_drop(drops, "not_leaf", ~leaf[cand])]
    if bl_subs is not None:
        if links_list is None:
            links_list = links.to_pylist()
        subs_c = [sub_subreddit.get(links_list[i], "") for i in cand]
        missing = np.fromiter((not s for s in subs_c), bool, len(cand))
        blocked = np.fromiter((bool(s) and s in bl_subs for s in subs_c), bool, len(cand))
        _count(drops, "missing_submission", int(missing.sum()))
        cand = cand[~missing & _drop(drops, "blocked_subreddit", blocked)]
    scores = pc.fill_null(rc["score"], 0).to_numpy(zero_copy_only=False)
    cand = cand[_drop(drops, "low_score", scores[cand] < cfg.min_score)]

    discard = keys.discard_hashes if keys else None

    def weight(text: str) -> float:
        if bl_words is not None and bl_words.contains(text):
            return 0.0
        if discard and hashlib.sha224(text.encode("utf-8")).hexdigest() in discard:
            return 0.0
        return 1.0

    def texts(needed_rows: np.ndarray) -> tuple[pa.Array, pa.Array]:
        # Each distinct body is normalized once (the normalization is a pure function of the body). The
        # rstrip of pass 1 changes nothing here: GPT normalization starts by splitting on whitespace.
        enc = pc.dictionary_encode(_contiguous(rc["body"].take(pa.array(needed_rows))))
        uniq = gpt_normalize_array(minimal_normalize_array(enc.dictionary))
        w = weights_of(uniq)
        return uniq.take(enc.indices), w.take(enc.indices)

    def weights_of(texts: pa.Array) -> pa.Array:
        if bl_words is None and not discard:
            return pa.array(np.ones(len(texts), np.float32))
        return pa.array([weight(x) for x in texts.to_pylist()], pa.float32())

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

    # -- the walks; those that reach a cross child wait for the driver
    walks = walk_targets(cand, parent, over_long, cfg.max_depth, detect_cycles=False)
    last = walks.steps[np.arange(len(cand)), np.maximum(walks.length - 1, 0)] if len(cand) else cand
    waiting = (walks.length > 0) & (walks.length < cfg.max_depth) & (parent[last] == _PARENT_CROSS)
    pending = []
    for k in np.flatnonzero(waiting):
        rows = walks.steps[k, : walks.length[k]]
        target = int(cand[k])
        pending.append(
            {
                "month": month,
                "target": _target_info(rc, t1ids, pids, links, sub_subreddit, target),
                "turns": [asdict(t) for t in turns_of(rows)],  # newest first
                "next": pids[int(rows[-1])].as_py(),
            }
        )
    t = Targets(cand, walks, np.zeros(len(cand), dtype=bool), np.full(len(cand), -1, dtype=np.int64))
    t = t.keep(~waiting)

    # -- the chains above this bucket's cross parents (rare), for the pending walks of other buckets
    chains = {}
    members = np.flatnonzero(is_cross_parent)
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

    t = _trim(cfg, t, over_long, links, title_index, drops)
    if len(t.rows) == 0:
        return MonthResult(None, pending, chains)
    titles = [(tt.raw, tt.text, tt.weight) for tt in (title_turn(link) for link in title_rows)]
    source = TurnSource(t1ids, _contiguous(rc["author"]), _contiguous(rc["body"]), texts, titles)
    # for the TSV only turns and weights matter: no raw texts, authors or turn ids are gathered
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
    return MonthResult(sink.table, pending, chains)


def _trim(cfg: BuildConfig, t: Targets, over_long, links, title_index, drops) -> Targets:
    """The title turn (a path whose title is unknown is skipped: missing_submission), then min_depth."""
    if cfg.use_title and t.walks.top.any():
        w = t.walks
        top_comment = w.steps[np.arange(len(t.rows)), np.maximum(w.length - 1, 0)]
        tops = np.flatnonzero(w.top)
        found = title_index(
            links.take(pa.array(top_comment[tops]))
        )  # the released code: the top comment's link
        t.has_title[tops] = found >= 0
        t.title_of[tops] = found
        t = t.keep(_drop(drops, "missing_submission", w.top & ~t.has_title))
    n_turns = t.walks.length + t.has_title
    short = n_turns < cfg.min_depth
    too_long = short & over_long[t.rows]
    _count(drops, "target_too_long", int(too_long.sum()))
    _count(drops, "too_shallow", int((short & ~too_long).sum()))
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
        from dialogsmith.schemas import INSTANCES

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
        from dialogsmith.schemas import INSTANCES, INSTANCES_VERSION, with_metadata

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


def finish_pending(cfg: BuildConfig, pending: list[dict], chains: dict, ins: StageStats) -> pa.Table:
    """Complete the walks that crossed buckets with the exported chains; the instances they make."""
    from dialogsmith.schemas import INSTANCES

    rows = []
    for p in pending:
        turns = [Turn(**t) for t in p["turns"]]  # newest first
        budget = cfg.max_depth - len(turns)
        nxt, title, top = p["next"], None, False
        while budget > 0 and nxt is not None:
            chain = chains[f"{p['month']}\t{nxt}"]
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
                continue
            has_title = True
        path = ([Turn(**title)] if has_title else []) + turns[::-1]
        if len(path) < cfg.min_depth:
            _count(ins.dropped, "too_shallow")  # the target is not over-long: its walk went on
            continue
        target = p["target"]
        rows.append(
            {
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
        )
    ins.rows_out += len(rows)
    return pa.Table.from_pylist(rows, schema=INSTANCES)


# --- the three passes as Spark jobs ------------------------------------------------------------------


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
    pending_instances: pa.Table


def _timed(fn):
    """``fn`` whose result dict gains its wall and CPU seconds."""

    def run(task):
        t, c = time.perf_counter(), time.process_time()
        out = fn(task)
        out["seconds"], out["cpu_seconds"] = time.perf_counter() - t, time.process_time() - c
        return out

    return run


def run_buckets(sc, tasks: list[dict], cfg: BuildConfig, work: str, profile=None, n_shards=None) -> BucketRun:
    """Run pass 1, the lookup and pass 2 over ``tasks`` (one per bucket: its comment and submission
    sources); ``profile``: filter the instances into TSV parts (dialogpt-tsv), else write Parquet."""
    conf = asdict(cfg)
    for t in tasks:
        t.update(config=conf, work=work)
    timing: dict[str, float] = {}
    t0 = time.perf_counter()
    p1 = sc.parallelize(tasks, max(1, len(tasks))).map(_timed(pass1_task)).collect() if tasks else []
    timing["pass1"] = time.perf_counter() - t0
    ins = StageStats(stage="instances")
    extra = {"candidates": 0, "submissions_read": 0, "submissions_kept": 0}
    merged = Counter()
    unresolved: dict[str, set] = {}
    for r in p1:
        ins.add(StageStats.from_dict(r["instances"]))
        for k, v in r["extra"].items():
            extra[k] += v
        merged.update(r["merged"])
        for month, ids in r["unresolved"].items():
            unresolved.setdefault(month, set()).update(ids)
    cross: dict[str, list[str]] = {}
    t0 = time.perf_counter()
    if unresolved:
        u = sc.broadcast({m: sorted(v) for m, v in unresolved.items()})
        found = sc.parallelize(tasks, max(1, len(tasks))).map(lambda t: lookup_task(t, u.value)).collect()
        for f in found:
            for month, ids in f.items():
                cross.setdefault(month, []).extend(ids)
    timing["lookup"] = time.perf_counter() - t0
    cross_bc = sc.broadcast(cross)
    shards = []
    for t in tasks:
        n = (n_shards or {}).get(t["bucket"], 1)
        shards.extend({**t, "shard": s, "n_shards": n} for s in range(n))
    t0 = time.perf_counter()
    run2 = _timed(lambda task: pass2_task(task, cross_bc.value, profile))
    p2 = sc.parallelize(shards, max(1, len(shards))).map(run2).collect() if shards else []
    timing["pass2"] = time.perf_counter() - t0
    flt = StageStats(stage="filter")
    pending, chains, files, months = [], {}, [], Counter()
    for r in p2:
        st = StageStats.from_dict(r["instances"])
        ins.rows_out += st.rows_out
        for k, v in st.dropped.items():
            _count(ins.dropped, k, v)
        flt.add(StageStats.from_dict(r["filter"]))
        extra["candidates"] += r["extra"]["candidates"]
        pending.extend(r["pending"])
        chains.update(r["chains"])
        files.extend(r["files"])
        months.update(r["months"])
    t0 = time.perf_counter()
    pending_instances = finish_pending(cfg, pending, chains, ins)
    timing["pending"] = time.perf_counter() - t0
    extra["timing"] = {
        "pass_seconds": {k: round(v, 3) for k, v in timing.items()},
        "task_cpu_seconds": {
            p: round(sum(r["cpu_seconds"] for r in rs), 3) for p, rs in (("pass1", p1), ("pass2", p2))
        },
        "slowest_task_seconds": {
            p: round(max((r["seconds"] for r in rs), default=0), 3)
            for p, rs in (("pass1", p1), ("pass2", p2))
        },
    }
    extra["cross_bucket_parents"] = sum(len(v) for v in cross.values())
    extra["cross_bucket_walks"] = len(pending)
    return BucketRun(
        ins, flt, extra, dict(merged), sum(r["comments"] for r in p1), sum(r["submissions"] for r in p1),
        files, dict(months), pending_instances,
    )  # fmt: skip
