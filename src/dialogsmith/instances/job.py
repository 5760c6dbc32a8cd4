"""Conversation building: comment trees -> multi-turn dialogue instances (extract, part 2).

Input: the ingest output, ``IN/comments/bucket=<k>/*.parquet`` and ``IN/submissions/bucket=<k>/*.parquet``
(every thread and its submission in one bucket). Output: ``OUT/instances/part-*.parquet`` (schema
``INSTANCES``), ``OUT/stats.json``, ``OUT/_SUCCESS``.

Every kept comment is a candidate target; its instance is the path walked up from it through its
parents (at most ``max_depth`` comments, oldest turn first), optionally topped by the submission title.

Two profiles:
- ``default``: a thread is every comment sharing a ``link_id`` across all months given (late replies
  join their thread); ``[removed]`` is treated like ``[deleted]``; a light normalization (below);
  parent cycles are detected and dropped as ``parent_cycle``.
- ``dialogpt``: the released DialoGPT extractor rule for rule (``../shared/specs/dialogpt-extractor.md``):
  one month at a time, its extract-time drops, DialoGPT key files, its walk, its normalizations, its
  turn weights. The clean checks (conv step 11) belong to the filter stage.

Accounting (``stats.json``): ``rows_in`` = comments read; every comment is either dropped at extract
time (``deleted``, ``quote``, ``too_few_tokens`` ...), or is a candidate target (``extra.candidates``)
that becomes an instance (``rows_out``) or is dropped with a target reason (``not_leaf``, ``low_score``,
``too_shallow`` ...). ``extra.extract_reasons`` / ``extra.target_reasons`` say which reason is which.

Parallelism and memory: one Spark task per (bucket, shard). A bucket whose comment count exceeds
``rows_per_task`` is split into several shards: each shard task loads the whole bucket (memory is
bounded by the bucket, not by the shard or the job) and builds the instances of one contiguous slice
of the candidate targets in the released order, so a giant thread is spread over several tasks
instead of serializing the job. Every shard repeats the bucket's read and pass 1 (measured: 8 shards
of 4 buckets cost 1.5x the CPU of 4 single-shard tasks, at the same peak memory), hence the large
default. dialogpt profile: the extract-time drops, token counts, parent indices, leaf flags and the
walk are vectorized (pyarrow.compute, numpy); only the comments that end up in an instance are
GPT-normalized, each distinct body once per month; instances are written as Parquet columns.
Default profile: an index-based walk per target, each comment normalized once per task. Tasks read
and write Parquet with pyarrow and return only small stats dicts to the driver (no JVM row conversion).
"""

from __future__ import annotations

import argparse
import hashlib
import html
import math
import re
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dialogsmith import fastjson, fsutil, outputs
from dialogsmith.formats.schemas import (
    COMMENTS,
    COMMENTS_VERSION,
    INSTANCES,
    INSTANCES_VERSION,
    SUBMISSIONS,
    SUBMISSIONS_VERSION,
    check_schema_metadata,
    with_metadata,
)
from dialogsmith.formats.stats import StageStats, Timer, finish
from dialogsmith.idkeys import base36_keys, last_index

STAGE = "instances"
PROFILES = ("default", "dialogpt")

# Defaults per profile (dialogpt: the released Makefile's values).
PROFILE_DEFAULTS = {
    "default": dict(min_score=None, min_depth=2, max_depth=5, use_title=False, leaves_only=False, max_len=30),
    "dialogpt": dict(min_score=1, min_depth=2, max_depth=5, use_title=False, leaves_only=True, max_len=30),
}

EXTRACT_REASONS = (
    "missing_body",  # null body
    "keys_not_dep",  # dialogpt with --keys: no "dep" line for the comment
    "deleted",  # body "[deleted]" (default profile: also "[removed]")
    "quote",  # dialogpt: body contains ">" or "&gt;"
    "submission_not_kept",  # dialogpt: link_id not among the month's submissions with num_comments >= 2
    "too_few_tokens",  # dialogpt: fewer than 2 whitespace tokens after minimal normalization
    "empty",  # default: nothing left after normalization (e.g. a comment that is only a quote)
)
TARGET_REASONS = (
    "not_in_keys",  # dialogpt with --keys: no "keep" line for the target
    "not_leaf",  # leaves_only: a kept comment replies to the target
    "missing_submission",  # dialogpt: the thread's submission is not readable (subreddit/title needed)
    "blocked_subreddit",
    "low_score",  # score (None counts as 0) < min_score
    "target_too_long",  # the target itself has more than max_len words: no turns at all
    "parent_cycle",  # default: the parent chain loops (self-parent or cycle)
    "too_shallow",  # fewer than min_depth turns
)

_PARENT_MISSING = -1
_PARENT_SUBMISSION = -2
TITLE = -1  # marker in a turn path for the title turn

_COMMENT_COLUMNS = [
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
_SUBMISSION_COLUMNS = ["id", "link_id", "title", "num_comments", "permalink", "month", "source", "line"]
_BATCH_ROWS = 20_000


@dataclass
class BuildConfig:
    profile: str = "default"
    min_score: int | None = None
    min_depth: int = 2
    max_depth: int = 5
    use_title: bool = False
    leaves_only: bool = False
    max_len: int | None = 30  # words per turn; None or 0: no limit
    clean: bool = True  # dialogpt: the filter applies the clean checks (weights go into the text)
    bl_words: str | None = None
    bl_subreddits: str | None = None
    keys: str | None = None
    months: list[str] | None = None
    rows_per_task: int = 4_000_000  # a bucket holds ~1M comments: shards only for a giant one
    extra: dict = field(default_factory=dict)

    @property
    def weights_in_text(self) -> bool:
        return self.profile == "dialogpt" and self.leaves_only and self.clean

    def validate(self) -> BuildConfig:
        if self.profile not in PROFILES:
            raise ValueError(f"unknown profile {self.profile!r}; choose one of {', '.join(PROFILES)}")
        if self.max_depth < 0 or self.min_depth < 0:
            raise ValueError("--max_depth and --min_depth must be >= 0")
        if self.min_depth < 1:
            raise ValueError("--min_depth must be >= 1 (an instance needs at least its target)")
        if self.keys and self.profile != "dialogpt":
            raise ValueError("--keys (DialoGPT key files) only applies to --profile dialogpt")
        if self.rows_per_task < 1:
            raise ValueError("--rows_per_task must be >= 1")
        for flag, path in (
            ("--bl_words", self.bl_words),
            ("--bl_subreddits", self.bl_subreddits),
            ("--keys", self.keys),
        ):
            if path and not fsutil.exists(path):
                raise FileNotFoundError(f"{flag} {path}: not found")
        return self


# --- pure tree functions ----------------------------------------------------------------------


def parent_indices(
    ids: list[str], parent_ids: list[str | None], link_ids: list[str] | None = None
) -> list[int]:
    """Index of each comment's parent among ``ids`` (``t1_`` prefixed parent ids), or a marker.

    ``_PARENT_SUBMISSION`` when the parent is a submission (``t3_``), ``_PARENT_MISSING`` when the
    parent is not among the comments (deleted, filtered, never dumped) or, with ``link_ids``, belongs
    to another thread. Self-parents and cycles are kept as they are: ``walk_up`` is bounded and detects them.
    """
    index = {"t1_" + cid: i for i, cid in enumerate(ids)}
    out = []
    for i, pid in enumerate(parent_ids):
        if pid is None:
            out.append(_PARENT_MISSING)
        elif pid.startswith("t3_"):
            out.append(_PARENT_SUBMISSION)
        else:
            j = index.get(pid, _PARENT_MISSING)
            if link_ids is not None and j >= 0 and link_ids[j] != link_ids[i]:
                j = _PARENT_MISSING
            out.append(j)
    return out


def walk_up(
    target: int,
    parent: list[int],
    over_long: list[bool] | None,
    max_depth: int,
    use_title: bool,
    detect_cycles: bool,
) -> tuple[list[int], bool]:
    """Turn path of ``target``, oldest first (``TITLE`` for the title turn), and whether a cycle was hit.

    The released extractor's walk, iteratively: at most ``max_depth`` comments; an over-long comment
    is left out together with everything above it; a missing parent ends the context; with
    ``use_title`` the title tops the path when the walk reaches a top-level comment (beyond the
    ``max_depth`` budget). With ``detect_cycles`` a comment met twice stops the walk and reports a
    cycle; without it (dialogpt) a cycle repeats turns, as the released recursion does.
    """
    path: list[int] = []
    c = target
    depth = max_depth
    while depth > 0:
        if over_long is not None and over_long[c]:
            break
        if detect_cycles and c in path:
            path.reverse()
            return path, True
        path.append(c)
        p = parent[c]
        if p == _PARENT_SUBMISSION:
            if use_title:
                path.append(TITLE)
            break
        if p < 0:
            break
        c = p
        depth -= 1
    path.reverse()
    return path, False


def whitespace_token_counts(texts: pa.ChunkedArray | pa.Array, skip_backslash: bool = False) -> pa.Array:
    """``len(t.split())`` for every string, vectorized (null stays null); with ``skip_backslash``,
    ``len(t.replace("\\", "").split())``.

    The C module counts in one pass over the bytes (``fastjson.token_counts``: ~4x the numpy path
    below, and no copy for the backslashes). Without it: ASCII strings (almost all comments) are counted on the bytes with numpy: a token starts at a
    non-space byte that follows a space or the string's start; Python's ASCII whitespace is
    \t \n \v \f \r (9-13), the separators \x1c-\x1f (28-31) and the space. The other strings go through
    Arrow's split, whose Unicode whitespace is Python's (all 29 ``str.isspace`` characters, checked in
    tests/test_conversations.py; it keeps empty strings at the ends, hence the trim first). Measured on
    10K comment bodies: ~2.5 ms, vs ~8 ms with Arrow's split for all."""
    arr = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
    mask = None if not arr.null_count else ~pc.is_valid(arr).to_numpy(zero_copy_only=False)
    native = fastjson.token_counts(arr, skip_backslash) if fastjson.AVAILABLE else None
    if native is not None:
        return pa.array(native, pa.int64(), mask=mask)
    if skip_backslash:
        arr = pc.replace_substring(arr, "\\", "")
    if not pa.types.is_string(arr.type) or not len(arr):
        return _split_counts(arr)
    n = len(arr)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset : arr.offset + n + 1].astype(
        np.int64
    )
    data = arr.buffers()[2]
    lo, hi = int(offsets[0]), int(offsets[-1])
    raw = (
        np.frombuffer(data, dtype=np.uint8)[lo:hi] if data is not None and hi > lo else np.zeros(0, np.uint8)
    )
    space = (raw <= 32) & ((raw >= 28) | ((raw >= 9) & (raw <= 13)))  # comparisons beat a lookup table
    prev_space = np.empty(len(raw), dtype=bool)
    prev_space[1:] = space[:-1]
    starts = offsets[:-1] - lo
    prev_space[starts[starts < len(raw)]] = True  # each string starts after a "space"
    begins = np.flatnonzero(~space & prev_space)  # byte offsets of the tokens' first bytes
    counts = np.diff(np.searchsorted(begins, offsets - lo))
    if not bool((raw < 128).all()):  # strings with other bytes: Arrow's Unicode split
        other = np.flatnonzero(~pc.fill_null(pc.string_is_ascii(arr), True).to_numpy(zero_copy_only=False))
        counts[other] = _split_counts(arr.take(pa.array(other))).to_numpy(zero_copy_only=False)
    return pa.array(counts, pa.int64(), mask=mask)


def _split_counts(arr: pa.Array) -> pa.Array:
    trimmed = pc.utf8_trim_whitespace(arr)
    counts = pc.list_value_length(pc.utf8_split_whitespace(trimmed))
    return pc.if_else(pc.equal(trimmed, ""), 0, counts)


def _contiguous(a: pa.Array | pa.ChunkedArray) -> pa.Array:
    return a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a


def _parent_index_array(t1ids, pids) -> tuple[np.ndarray, np.ndarray]:
    """``parent_indices`` vectorized (no ``link_ids``), and the leaf flags (no row replies to the row).
    A later duplicate id wins, as in the released dict.

    Reddit ids are base-36 numbers: joined as int64 keys (``idkeys``), ~15x cheaper than hashing the
    strings. Any id that is not canonical base 36 sends the whole batch through one dictionary encoding
    of ids and parent ids (the same result)."""
    n = len(t1ids)
    t1_rows = np.flatnonzero(pc.fill_null(pc.starts_with(pids, "t1_"), False).to_numpy(zero_copy_only=False))
    own = base36_keys(t1ids, b"t1_")
    par = base36_keys(pids, b"t1_", t1_rows) if own is not None else None
    sub = pc.fill_null(pc.starts_with(pids, "t3_"), False).to_numpy(zero_copy_only=False)
    if own is not None and par is not None:
        out = np.full(len(pids), _PARENT_MISSING, dtype=np.int64)
        found = last_index(own, par[t1_rows])
        out[t1_rows] = np.where(found >= 0, found, _PARENT_MISSING)
        out[sub] = _PARENT_SUBMISSION
        return out, ~np.isin(own, par[t1_rows])
    enc = pc.dictionary_encode(pa.concat_arrays([_contiguous(t1ids), _contiguous(pids)]))
    codes = enc.indices.to_numpy(zero_copy_only=False)
    own, parent_code = codes[:n], codes[n:]
    last_row = np.full(len(enc.dictionary), -1, dtype=np.int64)
    np.maximum.at(last_row, own, np.arange(n, dtype=np.int64))  # the last row holding each id
    out = last_row[parent_code]
    out[out < 0] = _PARENT_MISSING
    out[sub] = _PARENT_SUBMISSION
    replied_to = np.zeros(len(enc.dictionary), dtype=bool)
    replied_to[parent_code] = True
    return out, ~replied_to[own]


def leaf_flags(ids: list[str], parent_ids: list[str | None]) -> list[bool]:
    """True for comments no comment in the list replies to."""
    parents = set(parent_ids)
    return ["t1_" + cid not in parents for cid in ids]


# --- normalizations -------------------------------------------------------------------------------

_MD_LINK_RE = re.compile(r"\[([^\]\n]*)\]\((?:[^()\s]|\([^()\s]*\))+\)")


def light_normalize(body: str) -> str:
    """Default profile: HTML entities unescaped once, quoted lines removed, markdown links reduced to
    their text, whitespace collapsed. No character stripping, no tokenization."""
    text = html.unescape(body)
    if ">" in text:
        text = "\n".join(line for line in text.split("\n") if not line.lstrip().startswith(">"))
    if "](" in text:
        text = _MD_LINK_RE.sub(r"\1", text)
    return " ".join(text.split())


# --- reading one bucket ------------------------------------------------------------------------------


def _read_tables(
    files: list[str], columns: list[str], schema: pa.Schema, name: str, version: int
) -> pa.Table:
    tables = []
    for uri in files:
        fs, path = fsutil.resolve(uri)
        pf = pq.ParquetFile(path, filesystem=fs)
        check_schema_metadata(pf.schema_arrow, name, version, uri)
        tables.append(pf.read(columns=columns))
    if not tables:
        return pa.table({c: pa.array([], type=schema.field(c).type) for c in columns})
    return pa.concat_tables(tables)


def _bucket_files(input_dir: str, table: str, bucket: str) -> list[str]:
    return fsutil.list_files(fsutil.join(input_dir, table, bucket), ".parquet")


def list_buckets(input_dir: str) -> list[tuple[str, int]]:
    """``(bucket directory name, comment rows)`` for every bucket with comments (rows from Parquet footers)."""
    root = fsutil.join(input_dir, "comments")
    if not fsutil.exists(root):
        raise FileNotFoundError(
            f"{input_dir}: no comments/ directory (expected the ingest output: comments/bucket=<k>/)"
        )
    rows: dict[str, int] = {}
    for uri in fsutil.list_files(root, ".parquet"):
        parts = uri.replace("\\", "/").split("/")
        bucket = next((p for p in reversed(parts[:-1]) if p.startswith("bucket=")), None)
        if bucket is None:
            raise ValueError(f"{uri}: not under a bucket=<k> directory")
        fs, path = fsutil.resolve(uri)
        rows[bucket] = rows.get(bucket, 0) + pq.ParquetFile(path, filesystem=fs).metadata.num_rows
    return sorted(rows.items(), key=lambda kv: kv[0])


# --- building ----------------------------------------------------------------------------------------


# Instances are ~500 bytes each, mostly turn texts repeated across the instances of a thread. Measured on
# 817K instances: zstd with dictionaries wrote in 1.67 s and read back in 2.15 s (54 MB); lz4 without
# dictionaries for the texts 1.29 s and 0.74 s (93 MB). The filter reads everything back: lz4.
_INSTANCE_DICT_COLUMNS = ["link_id", "subreddit", "month"]


_INSTANCE_STATS_COLUMNS = ["instance_id", "month", "target_score", "target_created_utc"]  # not the lists


def _instances_writer(path, fs, schema) -> pq.ParquetWriter:
    return pq.ParquetWriter(
        path, schema, filesystem=fs, compression="lz4", use_dictionary=_INSTANCE_DICT_COLUMNS,
        write_statistics=_INSTANCE_STATS_COLUMNS,
    )  # fmt: skip


class _Writer:
    """Streams instances of one task into one Parquet file, in batches."""

    def __init__(self, out_dir: str, name: str, schema: pa.Schema):
        self.uri = fsutil.join(out_dir, name)
        self.schema = schema
        self.cols: dict[str, list] = {f.name: [] for f in schema}
        self.rows = 0
        self._writer = None

    def add(self, row: dict) -> None:
        for k, v in row.items():
            self.cols[k].append(v)
        self.rows += 1
        if len(self.cols["instance_id"]) >= _BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.cols["instance_id"]:
            return
        table = pa.Table.from_pydict(self.cols, schema=self.schema)
        if self._writer is None:
            fs, path = fsutil.resolve(self.uri)
            fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
            self._writer = _instances_writer(path, fs, self.schema)
        self._writer.write_table(table)
        self.cols = {f.name: [] for f in self.schema}

    def write_columns(self, columns: dict) -> None:
        """Append a batch given as columns (arrays in schema order)."""
        self.flush()
        table = pa.Table.from_arrays([columns[f.name] for f in self.schema], schema=self.schema)
        if self._writer is None:
            fs, path = fsutil.resolve(self.uri)
            fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
            self._writer = _instances_writer(path, fs, self.schema)
        self._writer.write_table(table, row_group_size=_BATCH_ROWS)
        self.rows += table.num_rows

    def _write_empty(self) -> None:
        fs, path = fsutil.resolve(self.uri)
        pq.write_table(self.schema.empty_table(), path, filesystem=fs)

    def close(self) -> None:
        self.flush()
        if self._writer is not None:
            self._writer.close()


def _count(counter: dict, reason: str, n: int = 1) -> None:
    if n:
        counter[reason] = counter.get(reason, 0) + n


def load_build_lists(cfg: BuildConfig):
    from dialogsmith.text.blocklist import Blocklist, read_subreddit_list

    bl_words = Blocklist.from_file(cfg.bl_words) if cfg.bl_words else None
    bl_subs = read_subreddit_list(cfg.bl_subreddits) if cfg.bl_subreddits else None
    return bl_words, bl_subs


def build_task(task: dict) -> dict:
    """One Spark task: one shard of one bucket. Returns a small stats dict."""
    cfg = BuildConfig(**task["config"])
    stats = StageStats(stage="instances")
    extra = {"candidates": 0, "submissions_read": 0, "submissions_kept": 0}
    comments = _read_tables(
        _bucket_files(task["input"], "comments", task["bucket"]),
        _COMMENT_COLUMNS,
        COMMENTS,
        "comments",
        COMMENTS_VERSION,
    )
    if cfg.months:
        comments = comments.filter(pc.is_in(comments["month"], pa.array(cfg.months, pa.string())))
    need_submissions = cfg.profile == "dialogpt" or cfg.use_title
    submissions = None
    if need_submissions:
        submissions = _read_tables(
            _bucket_files(task["input"], "submissions", task["bucket"]),
            _SUBMISSION_COLUMNS,
            SUBMISSIONS,
            "submissions",
            SUBMISSIONS_VERSION,
        )
        if cfg.months:
            submissions = submissions.filter(
                pc.is_in(submissions["month"], pa.array(cfg.months, pa.string()))
            )
    writer = _Writer(
        task["out_dir"],
        f"part-{task['bucket'].split('=', 1)[1]}-{task['shard']:04d}.parquet",
        with_metadata(INSTANCES, "instances", INSTANCES_VERSION),
    )
    bl_words, bl_subs = load_build_lists(cfg)
    try:
        if cfg.profile == "dialogpt":
            months = sorted(set(comments["month"].to_pylist()) | set(submissions["month"].to_pylist()))
            months = [m for m in months if m is not None]
            for month in months:
                _build_dialogpt_month(
                    cfg, task, month, comments, submissions, bl_words, bl_subs, writer, stats, extra
                )
        else:
            _build_default(cfg, task, comments, submissions, bl_words, bl_subs, writer, stats, extra)
    finally:
        writer.close()
    stats.rows_out = writer.rows
    if task["shard"] > 0:
        # Every shard of a bucket reads (and filters) the same comments: shard 0 alone accounts for the
        # comments read and the extract-time drops; the others for the outcomes of their own targets.
        stats.rows_in = 0
        for reason in EXTRACT_REASONS:
            stats.dropped.pop(reason, None)
        extra["submissions_read"] = extra["submissions_kept"] = 0
    return {"stats": stats.to_dict(), "extra": extra, "file": writer.uri if writer.rows else None}


@dataclass
class DialogptSubmissions:
    """Pass 1 over a month's submissions: what pass 2 needs of them."""

    kept_links: set[str]  # link ids of the submissions with num_comments >= 2
    title: dict[str, str]  # link_id -> raw title (only titles that stay non-empty once normalized)
    subreddit: dict[str, str]  # link_id -> subreddit from the permalink
    read: int  # submissions of the month read


def dialogpt_submissions(subs: pa.Table) -> DialogptSubmissions:
    """Pass 1, submissions (one month's): num_comments >= 2; the title minimally normalized. Pass 2 reads
    them back from TSV with the line stripped, so the title loses trailing whitespace and an empty title
    makes the line unreadable (the thread stays in pass 1's id set, but has no submission).

    Vectorized; the minimal normalization itself runs in pass 2, on the titles it uses. A title is
    empty once normalized (backslashes removed, right-stripped) exactly when it has no whitespace token
    without its backslashes."""
    read = subs.num_rows
    subs = subs.filter(pc.fill_null(pc.greater_equal(subs["num_comments"], 2), False))
    subs = subs.sort_by([("source", "ascending"), ("line", "ascending")])  # a later duplicate id wins
    subs = subs.filter(pc.is_valid(subs["id"]))
    links = pc.binary_join_element_wise("t3_", subs["id"], "").to_pylist()
    last = dict(zip(links, range(len(links)), strict=True))  # the last row of each link
    titles = pc.fill_null(subs["title"], "None")
    nonempty = pc.fill_null(whitespace_token_counts(titles, skip_backslash=True), 0).to_numpy() > 0
    rows = np.fromiter(last.values(), dtype=np.int64, count=len(last))
    rows = rows[nonempty[rows]]
    take = pa.array(rows)
    title_links = np.array(links, dtype=object)[rows].tolist()
    sub_title = dict(zip(title_links, titles.take(take).to_pylist(), strict=True))
    subreddits = _permalink_subreddits(_contiguous(subs["permalink"].take(take)))
    return DialogptSubmissions(set(last), sub_title, dict(zip(title_links, subreddits, strict=True)), read)


def _permalink_subreddits(permalinks: pa.Array) -> list[str]:
    """``str(permalink).split("/")[2].lower()`` ("" with fewer parts), as the released code reads it.
    Vectorized for ASCII permalinks; the others go through Python (``str.lower`` maps some letters to
    two characters, Arrow's lowercase to one)."""
    # "//" appended: a third part always exists, and it is "" exactly when the permalink had fewer parts
    padded = pc.binary_join_element_wise(pc.fill_null(permalinks, "None"), "//", "")
    third = pc.list_element(pc.split_pattern(padded, "/"), 2)
    out = pc.ascii_lower(third).to_pylist()
    for i in np.flatnonzero(~pc.fill_null(pc.string_is_ascii(third), True).to_numpy(zero_copy_only=False)):
        out[i] = str(permalinks[int(i)].as_py()).split("/")[2].lower()
    return out


def dialogpt_extract_codes(
    rc: pa.Table, kept_links: pa.Array | None, dep_keys: pa.Array | None
) -> tuple[np.ndarray, np.ndarray]:
    """Pass 1, comments, vectorized: (code per row, whitespace tokens per row).

    ``code`` is -1 for a kept comment, else the index in ``EXTRACT_REASONS`` of the first rule it fails,
    in the released order. Each rule is a function of the row alone (given the month's kept submissions
    ``kept_links`` and, with --keys, its ``link_id<TAB>t1_id`` "dep" lines ``dep_keys``), so a month can
    be judged block by block. Token counts are filled for the rows that reach the token rule (0 else).

    ``kept_links=None`` leaves ``submission_not_kept`` to the caller (``reached_link_rule``): ``pc.is_in``
    hashes its value set on every call (28 ms for 130K links), so a caller that judges a month block by
    block applies that rule once, at the end, to the rows that reached it (-1 or ``too_few_tokens``)."""
    n = rc.num_rows
    code = np.full(n, -1, dtype=np.int8)
    keep = np.ones(n, dtype=bool)

    def rule(ok, reason: str) -> None:
        nonlocal keep
        ok = pc.fill_null(ok, False).to_numpy(zero_copy_only=False)
        code[keep & ~ok] = EXTRACT_REASONS.index(reason)
        keep &= ok

    body = rc["body"]
    rule(pc.is_valid(body), "missing_body")
    if dep_keys is not None:
        k = pc.binary_join_element_wise(rc["link_id"], pc.binary_join_element_wise("t1_", rc["id"], ""), "\t")
        rule(pc.is_in(k, dep_keys), "keys_not_dep")
    rule(pc.not_equal(body, "[deleted]"), "deleted")
    quote = pc.or_(pc.match_substring(body, ">"), pc.match_substring(body, "&gt;"))
    rule(pc.invert(quote), "quote")
    if kept_links is not None:
        rule(pc.is_in(rc["link_id"], kept_links), "submission_not_kept")
    # too_few_tokens: the whitespace tokens of the minimally normalized body are those of the body
    # without backslashes (\n, \r, \t are whitespace either way; rstrip changes no count).
    ntok = np.where(keep, pc.fill_null(whitespace_token_counts(body, skip_backslash=True), 0).to_numpy(), 0)
    code[keep & (ntok < 2)] = EXTRACT_REASONS.index("too_few_tokens")
    return code, ntok


SUBMISSION_NOT_KEPT = EXTRACT_REASONS.index("submission_not_kept")
TOO_FEW_TOKENS = EXTRACT_REASONS.index("too_few_tokens")


def reached_link_rule(code: np.ndarray) -> np.ndarray:
    """Rows that a ``kept_links=None`` judgement left to ``submission_not_kept``."""
    return (code == -1) | (code == TOO_FEW_TOKENS)


def string_set(values) -> pa.Array:
    """A Python set of strings as the value set of ``pc.is_in`` (built once, then used per block)."""
    return pa.array(list(values), pa.string())


def count_codes(drops: dict, code: np.ndarray, reasons: tuple[str, ...]) -> None:
    """Add the rows per reason of ``code`` (index into ``reasons``; -1 = kept) to ``drops``."""
    values, counts = np.unique(code[code >= 0], return_counts=True)
    for v, c in zip(values.tolist(), counts.tolist(), strict=True):
        _count(drops, reasons[v], c)


def _build_dialogpt_month(cfg, task, month, comments, submissions, bl_words, bl_subs, writer, stats, extra):
    from dialogsmith.recipes.dialogpt_keys import load_month_keys

    subs = dialogpt_submissions(submissions.filter(pc.equal(submissions["month"], month)))
    extra["submissions_read"] += subs.read
    extra["submissions_kept"] += len(subs.kept_links)
    in_month = pc.fill_null(pc.equal(comments["month"], month), False)
    rc = comments if pc.all(in_month).as_py() else comments.filter(in_month)
    stats.rows_in += rc.num_rows
    keys = None
    if cfg.keys:
        link_ids_here = set(pc.unique(rc["link_id"].filter(pc.is_valid(rc["body"]))).to_pylist())
        keys = load_month_keys(cfg.keys, month, link_ids_here)
    code, ntok = dialogpt_extract_codes(
        rc, string_set(subs.kept_links), string_set(keys.dep) if keys is not None else None
    )
    count_codes(stats.dropped, code, EXTRACT_REASONS)
    kept = np.flatnonzero(code == -1)
    dialogpt_conversations(
        cfg, task, month, rc.take(kept), ntok[kept], subs, keys, bl_words, bl_subs, writer, stats, extra
    )


# --- the walk and the instances, shared by both profiles (vectorized) ------------------------------


@dataclass
class Walks:
    """Every target's walk up its thread (``walk_up`` for many targets at once).

    ``steps[t, d]`` is the d-th comment row walked up from target t (the target first, newest first),
    -1 past the walk's end; ``length[t]`` how many; ``top[t]``: the walk reached a top-level comment (its
    title tops the path with use_title); ``cycle[t]``: with ``detect_cycles`` the walk met a comment
    twice (such walks are dropped as ``parent_cycle``). Without ``detect_cycles`` a cycle repeats turns,
    as the released recursion does (bounded by max_depth)."""

    steps: np.ndarray
    length: np.ndarray
    top: np.ndarray
    cycle: np.ndarray


def walk_targets(
    targets: np.ndarray, parent: np.ndarray, over_long: np.ndarray, max_depth: int, detect_cycles: bool
) -> Walks:
    """The released walk, vectorized over the targets: at most ``max_depth`` comments; an over-long
    comment ends the path below it; a missing parent ends it. One column per step while some walk goes
    on (memory: targets x the longest path walked)."""
    nt = len(targets)
    columns: list[np.ndarray] = []
    length = np.zeros(nt, dtype=np.int64)
    top = np.zeros(nt, dtype=bool)
    cycle = np.zeros(nt, dtype=bool)
    cur = targets.astype(np.int64, copy=True)
    alive = np.ones(nt, dtype=bool)
    for _ in range(max(max_depth, 0)):
        alive &= ~over_long[cur]
        if detect_cycles and columns:
            seen = np.zeros(nt, dtype=bool)
            for col in columns:  # a path is at most max_depth long: O(depth^2) comparisons
                seen |= col == cur
            cycle |= alive & seen
            alive &= ~seen
        if not alive.any():
            break
        columns.append(np.where(alive, cur, -1))
        length += alive
        p = parent[cur]
        top |= alive & (p == _PARENT_SUBMISSION)
        alive &= p >= 0
        cur = np.where(alive, p, cur)
    steps = np.stack(columns, axis=1) if columns else np.full((nt, 0), -1, dtype=np.int64)
    return Walks(steps, length, top, cycle)


@dataclass
class Targets:
    """Surviving targets and their walks, kept aligned while rules drop rows."""

    rows: np.ndarray  # target rows
    walks: Walks
    has_title: np.ndarray  # the path starts with the title turn
    title_of: np.ndarray  # row among the title turns (-1: none)

    def keep(self, ok: np.ndarray) -> Targets:
        w = self.walks
        return Targets(
            self.rows[ok],
            Walks(w.steps[ok], w.length[ok], w.top[ok], w.cycle[ok]),
            self.has_title[ok],
            self.title_of[ok],
        )


def _drop(drops: dict, reason: str, bad: np.ndarray) -> np.ndarray:
    _count(drops, reason, int(bad.sum()))
    return ~bad


def _walk_and_trim(cfg: BuildConfig, cand, parent, over_long, links, title_index, drops, missing_title):
    """Walk every candidate, add the title turn, apply min_depth. ``title_index(links)`` gives the row of
    each link's title (-1: none); ``missing_title``: the reason for a path whose title is unknown (None:
    the path just starts below it, as the default profile does)."""
    walks = walk_targets(cand, parent, over_long, cfg.max_depth, detect_cycles=cfg.profile == "default")
    t = Targets(cand, walks, np.zeros(len(cand), dtype=bool), np.full(len(cand), -1, dtype=np.int64))
    t = t.keep(_drop(drops, "parent_cycle", walks.cycle))
    if cfg.use_title and t.walks.top.any():
        w = t.walks
        top_comment = w.steps[np.arange(len(t.rows)), np.maximum(w.length - 1, 0)]
        tops = np.flatnonzero(w.top)
        # the released code reads the title of the top comment's link_id (KeyError -> skipped)
        found = title_index(links.take(pa.array(top_comment[tops])))
        t.has_title[tops] = found >= 0
        t.title_of[tops] = found
        if missing_title is not None:
            t = t.keep(_drop(drops, missing_title, w.top & ~t.has_title))
    n_turns = t.walks.length + t.has_title
    short = n_turns < cfg.min_depth
    too_long = short & over_long[t.rows]
    _count(drops, "target_too_long", int(too_long.sum()))
    _count(drops, "too_shallow", int((short & ~too_long).sum()))
    return t.keep(~short)


@dataclass
class TurnSource:
    """What the turns of the instances are made of: per comment row and per title row."""

    t1ids: pa.Array  # comment rows' "t1_<id>"
    authors: pa.Array
    raws: pa.Array  # comment bodies as in the dump
    texts: Callable[[np.ndarray], tuple[pa.Array, pa.Array]]  # needed rows -> (texts, weights)
    titles: list[tuple[str, str, float]]  # per title row: (raw turn "title: ...", text, weight)


def instance_columns(
    cfg: BuildConfig, t: Targets, n_rows: int, src: TurnSource, texts_only: bool = False
) -> dict[str, pa.Array]:
    """The list columns of the instances (turn ids, authors, raw texts, texts, weights): oldest turn
    first, the title turn (if any) before the comments. Each comment's turn is computed once, however
    many instances hold it. ``texts_only``: turn ids and authors are null and the raw texts are the
    texts (for a consumer that reads only texts and weights: the TSV)."""
    nt = len(t.rows)
    steps, length = t.walks.steps, t.walks.length
    n_turns = length + t.has_title
    # turn keys: comment rows 0..n_rows-1, then title rows n_rows + k; [title, oldest, ..., target]
    keys_2d = np.full((nt, steps.shape[1] + 1), -1, dtype=np.int64)
    keys_2d[:, 1:] = steps[:, ::-1]
    keys_2d[t.has_title, 0] = n_rows + t.title_of[t.has_title]
    flat = keys_2d.ravel()
    flat = flat[flat >= 0]
    offsets = np.zeros(nt + 1, dtype=np.int32)
    np.cumsum(n_turns, out=offsets[1:])
    # the distinct turn keys, sorted, and each turn's rank among them (keys are dense: a bitmap, not a sort)
    present = np.zeros(n_rows + len(src.titles), dtype=bool)
    present[flat] = True
    needed = np.flatnonzero(present)
    rank = np.cumsum(present) - 1
    needed_rows = needed[needed < n_rows]
    needed_titles = [src.titles[k - n_rows] for k in needed[needed >= n_rows]]
    take = pa.array(needed_rows)
    row_texts, row_weights = src.texts(needed_rows)
    no_values = pa.nulls(len(needed_titles), pa.string())
    texts = pa.concat_arrays([_contiguous(row_texts), pa.array([x[1] for x in needed_titles], pa.string())])
    weights = pa.concat_arrays(
        [_contiguous(row_weights).cast(pa.float32()), pa.array([x[2] for x in needed_titles], pa.float32())]
    )
    pos = pa.array(rank[flat])
    if texts_only:
        nulls = pa.ListArray.from_arrays(pa.array(offsets), pa.nulls(len(flat), pa.string()))
        texts_list = pa.ListArray.from_arrays(pa.array(offsets), texts.take(pos))
        return {
            "turn_ids": pa.nulls(len(flat), pa.string()),
            "offsets": offsets,
            "turn_authors": nulls,
            "turns_raw": texts_list,
            "turns": texts_list,
            "turn_weights": pa.ListArray.from_arrays(pa.array(offsets), weights.take(pos)),
        }
    raws = pa.concat_arrays(
        [_contiguous(src.raws.take(take)), pa.array([x[0] for x in needed_titles], pa.string())]
    )
    authors = pa.concat_arrays([_contiguous(src.authors.take(take)), no_values])
    turn_id_vals = pa.concat_arrays([_contiguous(src.t1ids.take(take)), no_values])  # title: link_id, below
    turn_ids = turn_id_vals.take(pos)
    return {
        "turn_ids": turn_ids,  # the title turns' ids are filled by the caller
        "offsets": offsets,
        "turn_authors": pa.ListArray.from_arrays(pa.array(offsets), authors.take(pos)),
        "turns_raw": pa.ListArray.from_arrays(pa.array(offsets), raws.take(pos)),
        "turns": pa.ListArray.from_arrays(pa.array(offsets), texts.take(pos)),
        "turn_weights": pa.ListArray.from_arrays(pa.array(offsets), weights.take(pos)),
    }


def write_instances(writer, cfg, t: Targets, cols: dict, target_links, parent_ids, target_ids, subreddits,
                    months, scores, created) -> None:  # fmt: skip
    """One batch of instances in the INSTANCES schema (``cols`` from ``instance_columns``)."""
    nt = len(t.rows)
    offsets = cols["offsets"]
    turn_ids = cols["turn_ids"]
    if t.has_title.any():  # the title turn (the first of its instance) has the target's link_id
        is_title = np.zeros(int(offsets[-1]), dtype=bool)
        is_title[offsets[:-1][t.has_title]] = True
        n_turns = np.diff(offsets)
        link_per_turn = _contiguous(target_links).take(pa.array(np.repeat(np.arange(nt), n_turns)))
        turn_ids = pc.if_else(pa.array(is_title), link_per_turn, turn_ids)
    writer.write_columns(
        {
            "instance_id": target_ids,
            "link_id": target_links,
            "parent_id": parent_ids,
            "target_id": target_ids,
            "subreddit": subreddits,
            "month": months,
            "target_score": scores,
            "target_created_utc": created,
            "turn_ids": pa.ListArray.from_arrays(pa.array(offsets), _contiguous(turn_ids)),
            "turn_authors": cols["turn_authors"],
            "turns_raw": cols["turns_raw"],
            "turns": cols["turns"],
            "turn_weights": cols["turn_weights"],
            "weights_in_text": pa.array(np.full(nt, cfg.weights_in_text), pa.bool_()),
        }
    )


def _released_order(links, pids, ids) -> np.ndarray:
    """Rows sorted by (link_id, parent_id, id): the released candidate order (shards are slices of it)."""
    table = pa.table({"l": links, "p": pids, "i": ids})
    keys = [("l", "ascending"), ("p", "ascending"), ("i", "ascending")]
    return pc.sort_indices(table, sort_keys=keys).to_numpy().astype(np.int64)


def _shard(order: np.ndarray, task: dict) -> np.ndarray:
    """Contiguous slices of the released order: a shard holds whole threads (fewer shared ancestors to
    normalize twice) and a giant thread still spreads over several shards."""
    n_shards, shard = task["n_shards"], task["shard"]
    return order[len(order) * shard // n_shards : len(order) * (shard + 1) // n_shards]


def dialogpt_conversations(cfg, task, month, rc, ntok, subs, keys, bl_words, bl_subs, writer, stats, extra):
    """Pass 2 over the month's kept comments ``rc`` (with their token counts ``ntok``): instances."""
    from dialogsmith.text.dialogpt import gpt_normalize, minimal_normalize

    drops = stats.dropped
    sub_title, sub_subreddit = subs.title, subs.subreddit
    pids = pc.fill_null(rc["parent_id"], "None")  # str(None), as pass 1's TSV writes it
    t1ids = _contiguous(pc.binary_join_element_wise("t1_", rc["id"], ""))
    links = _contiguous(rc["link_id"])
    parent, leaf = _parent_index_array(t1ids, pids)
    over_long = ntok > cfg.max_len if cfg.max_len else np.zeros(len(ntok), dtype=bool)
    cand = _shard(_released_order(links, pids, rc["id"]), task)
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

    t = _walk_and_trim(cfg, cand, parent, over_long, links, title_index, drops, "missing_submission")
    if len(t.rows) == 0:
        return
    discard = keys.discard_hashes if keys else None

    def weight(text: str) -> float:
        if bl_words is not None and bl_words.contains(text):
            return 0.0
        if discard and hashlib.sha224(text.encode("utf-8")).hexdigest() in discard:
            return 0.0
        return 1.0

    def texts(needed_rows: np.ndarray) -> tuple[pa.Array, pa.Array]:
        # Each distinct body is normalized once (the normalization is a pure function of the body).
        enc = pc.dictionary_encode(_contiguous(rc["body"].take(pa.array(needed_rows))))
        uniq = [gpt_normalize(minimal_normalize(b).rstrip()) for b in enc.dictionary.to_pylist()]
        w = pa.array([weight(x) for x in uniq], pa.float32())
        return pa.array(uniq, pa.string()).take(enc.indices), w.take(enc.indices)

    titles = []
    for link in title_rows:
        raw = sub_title[link]
        text = gpt_normalize("title: " + minimal_normalize(raw).rstrip())
        titles.append(("title: " + raw, text, weight(text)))
    source = TurnSource(t1ids, _contiguous(rc["author"]), _contiguous(rc["body"]), texts, titles)
    cols = instance_columns(cfg, t, rc.num_rows, source)
    take = pa.array(t.rows)
    target_links = links.take(take)
    nt = len(t.rows)
    subreddits = [sub_subreddit.get(link, "") for link in target_links.to_pylist()]
    write_instances(
        writer, cfg, t, cols, target_links, pids.take(take), t1ids.take(take), pa.array(subreddits, pa.string()),
        pa.array([month] * nt, pa.string()), rc["score"].take(take), rc["created_utc"].take(take),
    )  # fmt: skip


def light_normalize_array(bodies: pa.Array) -> pa.Array:
    """``light_normalize`` of every string (nulls stay null): bodies with ``&``, ``>`` or ``](`` (entities,
    quotes, markdown links) one by one in Python, the others (the great majority) with Arrow: Python's
    ``" ".join(text.split())`` is a trim + a split on whitespace runs + a join (Arrow's whitespace is
    Python's, tested)."""
    from dialogsmith.text.dialogpt import NOT_SINGLE_SPACED, collapse_whitespace

    bodies = _contiguous(bodies)
    joined = collapse_whitespace(bodies, pc.match_substring_regex(bodies, NOT_SINGLE_SPACED))
    special = pc.or_(
        pc.or_(pc.match_substring(bodies, "&"), pc.match_substring(bodies, ">")),
        pc.match_substring(bodies, "]("),
    )
    rows = np.flatnonzero(pc.fill_null(special, False).to_numpy(zero_copy_only=False))
    if not len(rows):
        return joined
    fixed = [light_normalize(b) for b in bodies.take(pa.array(rows)).to_pylist()]
    mask = np.zeros(len(bodies), dtype=bool)
    mask[rows] = True
    return pc.replace_with_mask(joined, pa.array(mask), pa.array(fixed, pa.string()))


def _lower(values: pa.Array) -> pa.Array:
    """Python's ``str.lower`` per string: Arrow's ASCII lowering, Python for the others (they differ)."""
    values = _contiguous(values)
    out = pc.ascii_lower(values)
    other = np.flatnonzero(~pc.fill_null(pc.string_is_ascii(values), True).to_numpy(zero_copy_only=False))
    if not len(other):
        return out
    fixed = [v.lower() for v in values.take(pa.array(other)).to_pylist()]
    mask = np.zeros(len(values), dtype=bool)
    mask[other] = True
    return pc.replace_with_mask(out, pa.array(mask), pa.array(fixed, pa.string()))


def _build_default(cfg, task, comments, submissions, bl_words, bl_subs, writer, stats, extra):
    """Default profile: a thread is every comment of a link_id (all months given); light normalization;
    a parent in another thread counts as missing; parent cycles are dropped."""
    drops = stats.dropped
    stats.rows_in += comments.num_rows
    body = comments["body"]
    ok = _drop(drops, "missing_body", ~pc.is_valid(body).to_numpy(zero_copy_only=False))
    gone = pc.fill_null(pc.is_in(body, pa.array(["[deleted]", "[removed]"])), False).to_numpy(
        zero_copy_only=False
    )
    ok &= _drop(drops, "deleted", gone & ok)
    rc = comments.filter(pa.array(ok)) if not ok.all() else comments
    norm = light_normalize_array(rc["body"])
    empty = pc.equal(pc.utf8_length(norm), 0).to_numpy(zero_copy_only=False)
    if empty.any():
        keep = _drop(drops, "empty", empty)
        rc, norm = rc.filter(pa.array(keep)), norm.filter(pa.array(keep))
    n = rc.num_rows
    links = _contiguous(rc["link_id"])
    pids = pc.fill_null(_contiguous(rc["parent_id"]), "")
    t1ids = _contiguous(pc.binary_join_element_wise("t1_", rc["id"], ""))
    parent, leaf = _parent_index_array(t1ids, pids)
    # a parent in another thread is missing (threads are link_ids here)
    link_code = pc.dictionary_encode(links).indices.to_numpy(zero_copy_only=False)
    found = parent >= 0
    cross = np.zeros(n, dtype=bool)
    cross[found] = link_code[parent[found]] != link_code[found]
    parent[cross] = _PARENT_MISSING
    parent[pc.fill_null(pc.equal(pids, ""), False).to_numpy(zero_copy_only=False)] = _PARENT_MISSING
    over_long = (
        whitespace_token_counts(norm).to_numpy(zero_copy_only=False) > cfg.max_len
        if cfg.max_len
        else np.zeros(n, dtype=bool)
    )
    if task["n_shards"] > 1:  # contiguous slices of the released order (whole threads per shard)
        cand = _shard(_released_order(links, pids, rc["id"]), task)
    else:
        cand = np.arange(n, dtype=np.int64)
    extra["candidates"] += len(cand)
    if cfg.leaves_only:
        cand = cand[_drop(drops, "not_leaf", ~leaf[cand])]
    subreddit = _lower(pc.fill_null(rc["subreddit"], ""))
    if bl_subs is not None:
        blocked = pc.is_in(subreddit.take(pa.array(cand)), pa.array(sorted(bl_subs), pa.string()))
        cand = cand[
            _drop(drops, "blocked_subreddit", pc.fill_null(blocked, False).to_numpy(zero_copy_only=False))
        ]
    if cfg.min_score is not None:
        scores = pc.fill_null(rc["score"], 0).to_numpy(zero_copy_only=False)
        cand = cand[_drop(drops, "low_score", scores[cand] < cfg.min_score)]

    titles: list[tuple[str, str, float]] = []
    title_row: dict[str, int] = {}
    if cfg.use_title and submissions is not None and submissions.num_rows:
        subs_t = submissions.sort_by([("month", "ascending"), ("source", "ascending"), ("line", "ascending")])
        subs_t = subs_t.filter(pc.and_(pc.is_valid(subs_t["id"]), pc.is_valid(subs_t["title"])))
        normalized = light_normalize_array(subs_t["title"]).to_pylist()
        for sid, raw, text in zip(
            subs_t["id"].to_pylist(), subs_t["title"].to_pylist(), normalized, strict=True
        ):
            if raw and text:  # a later duplicate of an id wins, as a dict would
                key = "t3_" + sid
                if key not in title_row:
                    title_row[key] = len(titles)
                    titles.append(None)
                titles[title_row[key]] = ("title: " + raw, "title: " + text, 1.0)

    def title_index(top_links: pa.Array) -> np.ndarray:
        return np.fromiter((title_row.get(x, -1) for x in top_links.to_pylist()), np.int64, len(top_links))

    t = _walk_and_trim(cfg, cand, parent, over_long, links, title_index, drops, None)
    if len(t.rows) == 0:
        return

    def texts(needed_rows: np.ndarray) -> tuple[pa.Array, pa.Array]:
        return norm.take(pa.array(needed_rows)), pa.array(np.ones(len(needed_rows), np.float32))

    source = TurnSource(t1ids, _contiguous(rc["author"]), _contiguous(rc["body"]), texts, titles)
    cols = instance_columns(cfg, t, n, source)
    take = pa.array(t.rows)
    write_instances(
        writer, cfg, t, cols, links.take(take), _contiguous(rc["parent_id"]).take(take), t1ids.take(take),
        subreddit.take(take), _contiguous(rc["month"]).take(take), _contiguous(rc["score"]).take(take),
        _contiguous(rc["created_utc"]).take(take),
    )  # fmt: skip


# --- the Spark job -------------------------------------------------------------------------------------


def plan_tasks(input_dir: str, out_dir: str, cfg: BuildConfig) -> list[dict]:
    """One task per bucket shard; a bucket is split into ceil(rows / rows_per_task) shards."""
    tasks = []
    for bucket, rows in list_buckets(input_dir):
        n_shards = max(1, math.ceil(rows / cfg.rows_per_task))
        for shard in range(n_shards):
            tasks.append(
                {
                    "input": input_dir,
                    "out_dir": out_dir,
                    "bucket": bucket,
                    "shard": shard,
                    "n_shards": n_shards,
                    "config": asdict(cfg),
                }
            )
    return tasks


def run(args: argparse.Namespace, input: str | None = None) -> StageStats:
    """Build instances from ``input`` (default ``args.input``) into ``args.output``; returns the stats."""
    from dialogsmith.spark import get_spark

    timer = Timer()
    cfg = config_from_args(args)
    input_dir = input or args.input
    outputs.require_input(input_dir, "extract")
    force = bool(getattr(args, "force", False))
    outputs.check_target(args.output, STAGE, [input_dir], force)
    spark = get_spark("dialogsmith-instances")
    spark_start = timer.seconds
    stats = StageStats(stage=STAGE)
    extra_sum = {"candidates": 0, "submissions_read": 0, "submissions_kept": 0}
    with outputs.stage_output(args.output, STAGE, [input_dir], force) as tmp:
        out_dir = fsutil.join(tmp, "instances")
        fsutil.makedirs(out_dir)
        tasks = plan_tasks(input_dir, out_dir, cfg)
        files = 0
        if cfg.profile == "dialogpt":  # month by month, parents looked up in the whole month
            files = _run_dialogpt(spark.sparkContext, input_dir, tmp, out_dir, cfg, tasks, stats, extra_sum)
        elif tasks:
            results = spark.sparkContext.parallelize(tasks, len(tasks)).map(build_task).collect()
            for r in results:
                stats.add(StageStats.from_dict(r["stats"]))
                for k, v in r["extra"].items():
                    extra_sum[k] += v
                files += r["file"] is not None
        if files == 0:  # keep the schema discoverable for readers of an empty output
            _Writer(
                out_dir, "part-empty.parquet", with_metadata(INSTANCES, "instances", INSTANCES_VERSION)
            )._write_empty()
        stats.seconds = timer.seconds
        stats.extra = {
            **extra_sum,
            "config": asdict(cfg),
            "tasks": len(tasks),
            "buckets": len({t["bucket"] for t in tasks}),
            "extract_reasons": list(EXTRACT_REASONS),
            "target_reasons": list(TARGET_REASONS),
            "spark_start_seconds": spark_start,
        }
        stats.check()
        stats.write(fsutil.join(tmp, "stats.json"))
    print(summary(stats), file=sys.stderr)
    return stats


def _run_dialogpt(sc, input_dir, tmp, out_dir, cfg, tasks, stats, extra_sum) -> int:
    """The dialogpt profile over the extract output's buckets (dialogpt_buckets); returns files written."""
    from dialogsmith.instances import dialogpt as dialogpt_buckets

    buckets = sorted({t["bucket"] for t in tasks})
    jobs = [
        {
            "bucket": b,
            "comments": [("parquet", f, "comments") for f in _bucket_files(input_dir, "comments", b)],
            "submissions": [
                ("parquet", f, "submissions") for f in _bucket_files(input_dir, "submissions", b)
            ],
            "out": out_dir,
        }
        for b in buckets
    ]
    n_shards = {t["bucket"]: t["n_shards"] for t in tasks}
    work = fsutil.join(tmp, "_work")
    res = dialogpt_buckets.run_buckets(sc, jobs, cfg, work, None, n_shards)
    files = len(res.files)
    if res.settled_instances.num_rows:  # targets the driver settled (walks across buckets, leaves)
        w = _Writer(
            out_dir, "part-crossing.parquet", with_metadata(INSTANCES, "instances", INSTANCES_VERSION)
        )
        w.write_columns({f.name: res.settled_instances[f.name] for f in INSTANCES})
        w.close()
        files += 1
    fsutil.remove(work)
    stats.add(res.instances)
    stats.rows_in = res.comments
    for k, v in res.extra.items():
        extra_sum[k] = v if isinstance(v, dict) else extra_sum.get(k, 0) + v
    return files


def summary(stats: StageStats) -> str:
    lines = [
        f"instances: {stats.rows_in} comments read, {stats.extra.get('candidates', 0)} candidate targets, "
        f"{stats.rows_out} instances built ({stats.seconds:.1f} s)"
    ]
    for reason, n in sorted(stats.dropped.items(), key=lambda kv: -kv[1]):
        lines.append(f"  dropped {reason:<22} {n}")
    return "\n".join(lines)


def _int01(value: str) -> bool:
    v = value.strip().lower()
    if v not in ("0", "1", "true", "false"):
        raise argparse.ArgumentTypeError(f"expected 0 or 1, got {value!r}")
    return v in ("1", "true")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="extract/conversations.py",
        description="Build multi-turn dialogue instances from the ingested comments/submissions "
        "(every root-to-comment path of a thread, ending in a target comment).",
    )
    p.add_argument("--input", required=True, help="the ingest output directory (comments/, submissions/)")
    p.add_argument(
        "--output", required=True, help="output directory (instances/, stats.json); replaced atomically"
    )
    outputs.add_safety_flags(p)
    p.add_argument(
        "--profile",
        default="default",
        choices=PROFILES,
        help="default: whole-corpus threads, light normalization; dialogpt: the released extractor exactly",
    )
    g = p.add_argument_group("options (the released extractor's flag names; defaults depend on --profile)")
    g.add_argument(
        "--min_score",
        type=int,
        help="skip targets with score < N (None counts as 0) [default: none; dialogpt: 1]",
    )
    g.add_argument("--min_depth", type=int, help="skip instances with fewer turns [2]")
    g.add_argument("--max_depth", type=int, help="at most N comments per instance, the last ones [5]")
    g.add_argument("--use_title", type=_int01, help="0/1: the submission title as the first turn [0]")
    g.add_argument(
        "--leaves_only",
        type=_int01,
        help="0/1: only comments nobody replied to are targets [default 0; dialogpt 1]",
    )
    g.add_argument(
        "--max_len", type=int, help="a turn with more words cuts the context there (0: no limit) [30]"
    )
    g.add_argument(
        "--clean",
        type=_int01,
        default=True,
        help="0/1 (dialogpt): the filter's clean checks will run, "
        "so weights are written into the text when leaves_only is on [1]",
    )
    g.add_argument(
        "--bl_words", help="word/phrase blocklist file (dialogpt: turns containing one get weight 0.0)"
    )
    g.add_argument(
        "--bl_subreddits", help="subreddit blocklist file (targets in those subreddits are skipped)"
    )
    g.add_argument("--keys", help="dialogpt: directory with DialoGPT key files <month>.gz and <month>-o.gz")
    p.add_argument("--months", help="comma-separated YYYY-MM months to use (default: all)")
    p.add_argument(
        "--rows_per_task",
        type=int,
        default=4_000_000,
        help="split a bucket with more comments into several tasks [4000000]",
    )
    return p


def config_from_args(args: argparse.Namespace) -> BuildConfig:
    profile = getattr(args, "profile", "default")
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    values = dict(PROFILE_DEFAULTS[profile])
    for key in values:
        v = getattr(args, key, None)
        if v is not None:
            values[key] = v
    if values["max_len"] == 0:
        values["max_len"] = None
    months = getattr(args, "months", None)
    if isinstance(months, str):
        months = [m.strip() for m in months.split(",") if m.strip()]
    return BuildConfig(
        profile=profile,
        clean=bool(getattr(args, "clean", True)),
        bl_words=getattr(args, "bl_words", None),
        bl_subreddits=getattr(args, "bl_subreddits", None),
        keys=getattr(args, "keys", None),
        months=months or None,
        rows_per_task=getattr(args, "rows_per_task", 4_000_000),
        **values,
    ).validate()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        stats = run(args)
    except (FileNotFoundError, ValueError, outputs.OutputRefused, outputs.IncompleteInput) as e:
        print(f"instances: error: {e}", file=sys.stderr)
        return 2
    return finish(stats, args.strict)
