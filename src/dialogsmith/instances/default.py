"""The ``default`` profile: a thread is every comment of a link_id (all months given, so late replies
join their thread); ``[removed]`` counts as ``[deleted]``; a light normalization; a parent in another
thread counts as missing; parent cycles are dropped as ``parent_cycle``.

One Spark task per (bucket, shard): the task reads the bucket's comments (and, with use_title, its
submissions) and builds the instances of its slice of the targets, everything vectorized."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dialogsmith import fsutil
from dialogsmith.formats import parquet
from dialogsmith.formats.parquet import TableFormat
from dialogsmith.formats.schemas import COMMENTS_TABLE, INSTANCES_TABLE, SUBMISSIONS_TABLE
from dialogsmith.formats.stats import StageStats
from dialogsmith.instances.columns import (
    ROW_GROUP,
    TargetColumns,
    TurnSource,
    instance_columns,
    instance_table,
)
from dialogsmith.instances.config import EXTRACT_REASONS, BuildConfig, drop, load_build_lists
from dialogsmith.instances.text import (
    contiguous,
    light_normalize_array,
    python_lower,
    whitespace_token_counts,
)
from dialogsmith.instances.walk import (
    PARENT_MISSING,
    Targets,
    parent_index,
    released_order,
    shard_slice,
    title_and_depth,
    walk_targets,
)

COMMENT_COLUMNS = [
    "id",
    "link_id",
    "parent_id",
    "author",
    "subreddit",
    "body",
    "score",
    "created_utc",
    "month",
]
SUBMISSION_COLUMNS = ["id", "title", "month", "source", "line"]


@dataclass
class BucketShard:
    """One task: one shard of one bucket of the extract output."""

    bucket: str  # "bucket=<k>"
    shard: int
    n_shards: int
    comments: list[str]  # the bucket's Parquet files
    submissions: list[str]
    out_dir: str
    config: dict = field(default_factory=dict)  # asdict(BuildConfig)

    @property
    def file_name(self) -> str:
        return f"part-{self.bucket.split('=', 1)[1]}-{self.shard:04d}.parquet"


def read_tables(files: list[str], fmt: TableFormat, columns: list[str]) -> pa.Table:
    """The ``columns`` of ``files`` (schema checked), one table; an empty one without files."""
    tables = [parquet.read(uri, fmt, columns) for uri in files]
    if not tables:
        return pa.table({c: pa.array([], type=fmt.schema.field(c).type) for c in columns})
    return pa.concat_tables(tables)


def build_task(task: BucketShard) -> dict:
    """One Spark task of the default profile. Returns a small stats dict."""
    cfg = BuildConfig(**task.config)
    stats = StageStats(stage="instances")
    extra = {"candidates": 0, "submissions_read": 0, "submissions_kept": 0}
    wanted = pa.array(cfg.months, pa.string()) if cfg.months else None
    comments = read_tables(task.comments, COMMENTS_TABLE, COMMENT_COLUMNS)
    if wanted is not None:
        comments = comments.filter(pc.is_in(comments["month"], wanted))
    submissions = None
    if cfg.use_title:
        submissions = read_tables(task.submissions, SUBMISSIONS_TABLE, SUBMISSION_COLUMNS)
        if wanted is not None:
            submissions = submissions.filter(pc.is_in(submissions["month"], wanted))
    _, bl_subs = load_build_lists(cfg)
    table = default_instances(cfg, comments, submissions, bl_subs, stats, extra, task.shard, task.n_shards)
    uri = None
    if table is not None:
        uri = fsutil.join(task.out_dir, task.file_name)
        stats.rows_out = parquet.write(uri, table, INSTANCES_TABLE, row_group_size=ROW_GROUP)
    if task.shard > 0:
        # Every shard of a bucket reads (and filters) the same comments: shard 0 alone accounts for the
        # comments read and the extract-time drops; the others for the outcomes of their own targets.
        stats.rows_in = 0
        for reason in EXTRACT_REASONS:
            stats.dropped.pop(reason, None)
    return {"stats": stats.to_dict(), "extra": extra, "file": uri}


@dataclass
class _Comments:
    """The comments that can be turns (extract-time drops done), their texts and parent links."""

    rows: pa.Table
    texts: pa.Array  # light-normalized bodies
    links: pa.Array
    t1ids: pa.Array
    parent: np.ndarray  # parent_index, a parent in another thread missing
    leaf: np.ndarray
    over_long: np.ndarray  # more than max_len words


def _kept_comments(cfg: BuildConfig, comments: pa.Table, drops: dict) -> _Comments:
    body = comments["body"]
    ok = drop(drops, "missing_body", ~pc.is_valid(body).to_numpy(zero_copy_only=False))
    gone = pc.fill_null(pc.is_in(body, pa.array(["[deleted]", "[removed]"])), False)
    ok &= drop(drops, "deleted", gone.to_numpy(zero_copy_only=False) & ok)
    rc = comments.filter(pa.array(ok)) if not ok.all() else comments
    norm = light_normalize_array(rc["body"])
    empty = pc.equal(pc.utf8_length(norm), 0).to_numpy(zero_copy_only=False)
    if empty.any():
        keep = drop(drops, "empty", empty)
        rc, norm = rc.filter(pa.array(keep)), norm.filter(pa.array(keep))
    n = rc.num_rows
    links = contiguous(rc["link_id"])
    pids = pc.fill_null(contiguous(rc["parent_id"]), "")
    t1ids = contiguous(pc.binary_join_element_wise("t1_", rc["id"], ""))
    parent, leaf = parent_index(t1ids, pids)
    # a parent in another thread is missing (threads are link_ids here)
    link_code = pc.dictionary_encode(links).indices.to_numpy(zero_copy_only=False)
    found = parent >= 0
    cross = np.zeros(n, dtype=bool)
    cross[found] = link_code[parent[found]] != link_code[found]
    parent[cross] = PARENT_MISSING
    parent[pc.fill_null(pc.equal(pids, ""), False).to_numpy(zero_copy_only=False)] = PARENT_MISSING
    if cfg.max_len:
        over_long = whitespace_token_counts(norm).to_numpy(zero_copy_only=False) > cfg.max_len
    else:
        over_long = np.zeros(n, dtype=bool)
    return _Comments(rc, norm, links, t1ids, parent, leaf, over_long)


def _candidates(cfg, c: _Comments, subreddit: pa.Array, bl_subs, shard, n_shards, drops, extra) -> np.ndarray:
    """The target rows that pass the target rules before the walk."""
    if n_shards > 1:  # contiguous slices of the released order (whole threads per shard)
        pids = pc.fill_null(contiguous(c.rows["parent_id"]), "")
        cand = shard_slice(released_order(c.links, pids, c.rows["id"]), shard, n_shards)
    else:
        cand = np.arange(c.rows.num_rows, dtype=np.int64)
    extra["candidates"] += len(cand)
    if cfg.leaves_only:
        cand = cand[drop(drops, "not_leaf", ~c.leaf[cand])]
    if bl_subs is not None:
        blocked = pc.is_in(subreddit.take(pa.array(cand)), pa.array(sorted(bl_subs), pa.string()))
        cand = cand[
            drop(drops, "blocked_subreddit", pc.fill_null(blocked, False).to_numpy(zero_copy_only=False))
        ]
    if cfg.min_score is not None:
        scores = pc.fill_null(c.rows["score"], 0).to_numpy(zero_copy_only=False)
        cand = cand[drop(drops, "low_score", scores[cand] < cfg.min_score)]
    return cand


def _titles(submissions: pa.Table) -> tuple[list[tuple[str, str, float]], dict[str, int]]:
    """The title turns (raw, text, weight) and the row of each link_id's among them: a later
    duplicate of an id wins (by month, file, line), as a dict would; empty titles are not turns."""
    titles: list = []
    title_row: dict[str, int] = {}
    subs = submissions.sort_by([("month", "ascending"), ("source", "ascending"), ("line", "ascending")])
    subs = subs.filter(pc.and_(pc.is_valid(subs["id"]), pc.is_valid(subs["title"])))
    normalized = light_normalize_array(subs["title"]).to_pylist()
    for sid, raw, text in zip(subs["id"].to_pylist(), subs["title"].to_pylist(), normalized, strict=True):
        if raw and text:
            key = "t3_" + sid
            if key not in title_row:
                title_row[key] = len(titles)
                titles.append(None)
            titles[title_row[key]] = ("title: " + raw, "title: " + text, 1.0)
    return titles, title_row


def default_instances(
    cfg: BuildConfig,
    comments: pa.Table,
    submissions: pa.Table | None,
    bl_subs: frozenset[str] | None,
    stats: StageStats,
    extra: dict,
    shard: int = 0,
    n_shards: int = 1,
) -> pa.Table | None:
    """The instances of one bucket (shard ``shard`` of ``n_shards`` of its targets), or None; counts
    into ``stats`` and ``extra``."""
    drops = stats.dropped
    stats.rows_in += comments.num_rows
    c = _kept_comments(cfg, comments, drops)
    subreddit = python_lower(pc.fill_null(c.rows["subreddit"], ""))
    cand = _candidates(cfg, c, subreddit, bl_subs, shard, n_shards, drops, extra)
    titles, title_row = [], {}
    if cfg.use_title and submissions is not None and submissions.num_rows:
        titles, title_row = _titles(submissions)

    def title_index(top_links: pa.Array) -> np.ndarray:
        return np.fromiter((title_row.get(x, -1) for x in top_links.to_pylist()), np.int64, len(top_links))

    walks = walk_targets(cand, c.parent, c.over_long, cfg.max_depth, detect_cycles=True)
    t = Targets.of(cand, walks).keep(drop(drops, "parent_cycle", walks.cycle))
    trimmed = title_and_depth(
        t, t.rows, c.over_long, c.links, title_index if cfg.use_title else None, cfg.min_depth, False
    )
    drop(drops, "target_too_long", trimmed.too_long)
    drop(drops, "too_shallow", trimmed.too_shallow)
    t = trimmed.targets
    if len(t.rows) == 0:
        return None

    def texts(needed_rows: np.ndarray) -> tuple[pa.Array, pa.Array]:
        return c.texts.take(pa.array(needed_rows)), pa.array(np.ones(len(needed_rows), np.float32))

    source = TurnSource(c.t1ids, contiguous(c.rows["author"]), contiguous(c.rows["body"]), texts, titles)
    cols = instance_columns(t, c.rows.num_rows, source)
    take = pa.array(t.rows)
    target = TargetColumns(
        c.links.take(take), contiguous(c.rows["parent_id"]).take(take), c.t1ids.take(take),
        subreddit.take(take), contiguous(c.rows["month"]).take(take), contiguous(c.rows["score"]).take(take),
        contiguous(c.rows["created_utc"]).take(take),
    )  # fmt: skip
    return instance_table(cfg, t, cols, target)
