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
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dialogsmith import fastjson, fsutil, outputs
from dialogsmith.schemas import (
    COMMENTS,
    COMMENTS_VERSION,
    INSTANCES,
    INSTANCES_VERSION,
    SUBMISSIONS,
    SUBMISSIONS_VERSION,
    check_schema_metadata,
    with_metadata,
)
from dialogsmith.stats import StageStats, Timer, finish

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
    rows_per_task: int = 1_000_000
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

    One dictionary encoding of ids and parent ids gives both (two ``is_in``/``index_in`` hash passes
    cost ~25% more). A later duplicate id wins, as in the released dict."""
    n = len(t1ids)
    enc = pc.dictionary_encode(pa.concat_arrays([_contiguous(t1ids), _contiguous(pids)]))
    codes = enc.indices.to_numpy(zero_copy_only=False)
    own, parent_code = codes[:n], codes[n:]
    last_row = np.full(len(enc.dictionary), -1, dtype=np.int64)
    np.maximum.at(last_row, own, np.arange(n, dtype=np.int64))  # the last row holding each id
    out = last_row[parent_code]
    out[out < 0] = _PARENT_MISSING
    sub = pc.starts_with(pids, "t3_").to_numpy(zero_copy_only=False)
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
            self._writer = pq.ParquetWriter(path, self.schema, filesystem=fs, compression="zstd")
        self._writer.write_table(table)
        self.cols = {f.name: [] for f in self.schema}

    def write_columns(self, columns: dict) -> None:
        """Append a batch given as columns (arrays in schema order)."""
        self.flush()
        table = pa.Table.from_arrays([columns[f.name] for f in self.schema], schema=self.schema)
        if self._writer is None:
            fs, path = fsutil.resolve(self.uri)
            fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
            self._writer = pq.ParquetWriter(path, self.schema, filesystem=fs, compression="zstd")
        self._writer.write_table(table, row_group_size=_BATCH_ROWS)
        self.rows += table.num_rows

    def _write_empty(self) -> None:
        fs, path = fsutil.resolve(self.uri)
        pq.write_table(self.schema.empty_table(), path, filesystem=fs)

    def close(self) -> None:
        self.flush()
        if self._writer is not None:
            self._writer.close()


class _Texts:
    """Per-task cache: each comment's (and title's) normalized text and weight, computed once."""

    def __init__(self, normalize, blocklist, discard_hashes):
        self.normalize = normalize
        self.blocklist = blocklist
        self.discard = discard_hashes
        self.text: dict[int, str] = {}
        self.weight: dict[int, float] = {}

    def get(self, key: int, source: str) -> tuple[str, float]:
        t = self.text.get(key)
        if t is None:
            t = self.normalize(source)
            self.text[key] = t
            w = 1.0
            if self.blocklist is not None and self.blocklist.contains(t):
                w = 0.0
            elif self.discard and hashlib.sha224(t.encode("utf-8")).hexdigest() in self.discard:
                w = 0.0
            self.weight[key] = w
        return t, self.weight[key]


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


def _emit(
    writer,
    cfg,
    path,
    target,
    ids,
    links,
    pids,
    authors,
    raw,
    src,
    texts,
    title_key,
    title,
    subreddit,
    month,
    score,
    created,
):
    """Write one instance. ``raw``: texts as in the dump; ``src``: what the profile's normalization takes;
    ``title``: (raw title, title source) when the path starts with the title turn."""
    turn_ids, turn_authors, turns_raw, turns, weights = [], [], [], [], []
    for k in path:
        if k == TITLE:
            t, w = texts.get(title_key, "title: " + title[1])
            turn_ids.append(links[target])
            turn_authors.append(None)
            turns_raw.append("title: " + title[0])
        else:
            t, w = texts.get(k, src[k])
            turn_ids.append("t1_" + ids[k])
            turn_authors.append(authors[k])
            turns_raw.append(raw[k])
        turns.append(t)
        weights.append(w)
    tid = "t1_" + ids[target]
    writer.add(
        {
            "instance_id": tid,
            "link_id": links[target],
            "parent_id": pids[target],
            "target_id": tid,
            "subreddit": subreddit,
            "month": month,
            "target_score": score,
            "target_created_utc": created,
            "turn_ids": turn_ids,
            "turn_authors": turn_authors,
            "turns_raw": turns_raw,
            "turns": turns,
            "turn_weights": weights,
            "weights_in_text": cfg.weights_in_text,
        }
    )


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
    from dialogsmith.dialogpt_keys import load_month_keys

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


def dialogpt_conversations(cfg, task, month, rc, ntok, subs, keys, bl_words, bl_subs, writer, stats, extra):
    """Pass 2 over the month's kept comments ``rc`` (with their token counts ``ntok``): instances."""
    from dialogsmith.text.dialogpt import gpt_normalize, minimal_normalize

    drops = stats.dropped
    sub_title, sub_subreddit = subs.title, subs.subreddit

    # -- pass 2: candidates are the kept comments, in the released order (links, parent ids, ids).
    pids = pc.fill_null(rc["parent_id"], "None")  # str(None), as pass 1's TSV writes it
    t1ids = pc.binary_join_element_wise("t1_", rc["id"], "")
    order = (
        pc.sort_indices(
            pa.table({"l": rc["link_id"], "p": pids, "i": rc["id"]}),
            sort_keys=[("l", "ascending"), ("p", "ascending"), ("i", "ascending")],
        )
        .to_numpy()
        .astype(np.int64)
    )
    parent, leaf = _parent_index_array(t1ids, pids)
    over_long = ntok > cfg.max_len if cfg.max_len else np.zeros(len(ntok), dtype=bool)
    # Contiguous slices of the released order: a shard holds whole threads (fewer shared ancestors to
    # normalize twice) and a giant thread still spreads over several shards.
    n_shards, shard = task["n_shards"], task["shard"]
    lo, hi = len(order) * shard // n_shards, len(order) * (shard + 1) // n_shards
    cand = order[lo:hi]
    extra["candidates"] += len(cand)
    links_list = None
    if keys is not None:
        links_list = rc["link_id"].to_pylist()
        ids_list = t1ids.to_pylist()
        ok = np.fromiter((links_list[i] + "\t" + ids_list[i] in keys.keep for i in cand), bool, len(cand))
        _count(drops, "not_in_keys", int((~ok).sum()))
        cand = cand[ok]
    if cfg.leaves_only:
        ok = leaf[cand]
        _count(drops, "not_leaf", int((~ok).sum()))
        cand = cand[ok]
    if bl_subs is not None:
        if links_list is None:
            links_list = rc["link_id"].to_pylist()
        subs_c = [sub_subreddit.get(links_list[i], "") for i in cand]
        missing = np.fromiter((not s for s in subs_c), bool, len(cand))
        _count(drops, "missing_submission", int(missing.sum()))
        blocked = np.fromiter((bool(s) and s in bl_subs for s in subs_c), bool, len(cand))
        _count(drops, "blocked_subreddit", int(blocked.sum()))
        cand = cand[~(missing | blocked)]
    scores = pc.fill_null(rc["score"], 0).to_numpy(zero_copy_only=False)
    ok = scores[cand] >= cfg.min_score
    _count(drops, "low_score", int((~ok).sum()))
    cand = cand[ok]

    # -- the walk, vectorized over the surviving targets: ``steps[t, d]`` is the d-th comment walked up
    #    from target t (newest first), ``length[t]`` how many; ``top[t]``: the walk reached a top-level
    #    comment (its title tops the path with use_title). As released: an over-long comment ends the
    #    path below it, a missing parent ends it, a cycle repeats turns (bounded by max_depth).
    #    Columns are added only while some walk goes on (memory: targets x the longest path walked).
    nt = len(cand)
    columns = []
    length = np.zeros(nt, dtype=np.int64)
    top = np.zeros(nt, dtype=bool)
    cur = cand.copy()
    alive = np.ones(nt, dtype=bool)
    for _ in range(max(cfg.max_depth, 0)):
        alive &= ~over_long[cur]
        if not alive.any():
            break
        columns.append(np.where(alive, cur, -1))
        length += alive
        p = parent[cur]
        top |= alive & (p == _PARENT_SUBMISSION)
        alive &= p >= 0
        cur = np.where(alive, p, cur)
    steps = np.stack(columns, axis=1) if columns else np.full((nt, 0), -1, dtype=np.int64)
    has_title = top if cfg.use_title else np.zeros(nt, dtype=bool)
    top_comment = steps[np.arange(nt), np.maximum(length - 1, 0)]
    title_rows: dict[str, int] = {}  # top link_id -> row among the title turns
    title_of = np.full(nt, -1, dtype=np.int64)
    if has_title.any():
        # The released code reads the title of the top comment's link_id (KeyError -> skipped).
        links_arr = rc["link_id"]
        ok = np.ones(nt, dtype=bool)
        for t, link in zip(
            np.flatnonzero(has_title), links_arr.take(top_comment[has_title]).to_pylist(), strict=True
        ):
            if link not in sub_title:
                ok[t] = False
            else:
                title_of[t] = title_rows.setdefault(link, len(title_rows))
        _count(drops, "missing_submission", int((~ok).sum()))
        cand, steps, length, has_title, title_of = (a[ok] for a in (cand, steps, length, has_title, title_of))
        nt = len(cand)
    n_turns = length + has_title
    short = n_turns < cfg.min_depth
    too_long = short & over_long[cand]
    _count(drops, "target_too_long", int(too_long.sum()))
    _count(drops, "too_shallow", int((short & ~too_long).sum()))
    ok = ~short
    cand, steps, length, has_title, title_of, n_turns = (
        a[ok] for a in (cand, steps, length, has_title, title_of, n_turns)
    )
    nt = len(cand)
    if nt == 0:
        return

    # -- the instances, as columns. Turn keys: comment rows 0..n-1, then title rows n + k.
    n_rows = rc.num_rows
    keys_2d = np.full((nt, steps.shape[1] + 1), -1, dtype=np.int64)  # [title, oldest, ..., target]
    keys_2d[:, 1:] = steps[:, ::-1]
    keys_2d[has_title, 0] = n_rows + title_of[has_title]
    flat = keys_2d.ravel()
    flat = flat[flat >= 0]
    offsets = np.zeros(nt + 1, dtype=np.int32)
    np.cumsum(n_turns, out=offsets[1:])
    # the distinct turn keys, sorted, and each turn's rank among them (keys are dense: a bitmap, not a sort)
    present = np.zeros(n_rows + len(title_rows), dtype=bool)
    present[flat] = True
    needed = np.flatnonzero(present)
    rank = np.cumsum(present) - 1
    needed_rows = needed[needed < n_rows]
    discard = keys.discard_hashes if keys else None

    def weight(t: str) -> float:
        if bl_words is not None and bl_words.contains(t):
            return 0.0
        if discard and hashlib.sha224(t.encode("utf-8")).hexdigest() in discard:
            return 0.0
        return 1.0

    # Each distinct body is normalized once (the normalization is a pure function of the body).
    bodies = _contiguous(rc["body"].take(needed_rows))
    enc = pc.dictionary_encode(bodies)
    uniq_texts = [gpt_normalize(minimal_normalize(b).rstrip()) for b in enc.dictionary.to_pylist()]
    uniq_weights = [weight(t) for t in uniq_texts]
    titles = [(raw, minimal_normalize(raw).rstrip()) for raw in (sub_title[link] for link in title_rows)]
    title_texts = [gpt_normalize("title: " + title_n) for _, title_n in titles]
    no_values = pa.nulls(len(titles), pa.string())
    texts = pa.concat_arrays(
        [pa.array(uniq_texts, pa.string()).take(enc.indices), pa.array(title_texts, pa.string())]
    )
    weights = pa.concat_arrays(
        [
            pa.array(uniq_weights, pa.float32()).take(enc.indices),
            pa.array([weight(t) for t in title_texts], pa.float32()),
        ]
    )
    raws = pa.concat_arrays([bodies, pa.array(["title: " + raw for raw, _ in titles], pa.string())])
    authors = pa.concat_arrays([_contiguous(rc["author"].take(needed_rows)), no_values])
    # The title turn's id is the target's link_id, filled below.
    turn_id_vals = pa.concat_arrays([_contiguous(t1ids.take(needed_rows)), no_values])
    pos = pa.array(rank[flat])
    target_links = rc["link_id"].take(cand)
    turn_ids = turn_id_vals.take(pos)
    if has_title.any():
        # The title turn (the first of its instance) has the target's link_id.
        is_title = np.zeros(len(flat), dtype=bool)
        is_title[offsets[:-1][has_title]] = True
        link_per_turn = target_links.take(pa.array(np.repeat(np.arange(nt), n_turns)))
        turn_ids = pc.if_else(pa.array(is_title), link_per_turn, turn_ids)

    def lists(values: pa.Array) -> pa.ListArray:
        return pa.ListArray.from_arrays(pa.array(offsets), values.take(pos))

    subreddits = [sub_subreddit.get(link, "") for link in target_links.to_pylist()]
    target_ids = t1ids.take(cand)
    writer.write_columns(
        {
            "instance_id": target_ids,
            "link_id": target_links,
            "parent_id": pids.take(cand),
            "target_id": target_ids,
            "subreddit": pa.array(subreddits, pa.string()),
            "month": pa.array([month] * nt, pa.string()),
            "target_score": rc["score"].take(cand),
            "target_created_utc": rc["created_utc"].take(cand),
            "turn_ids": pa.ListArray.from_arrays(pa.array(offsets), _contiguous(turn_ids)),
            "turn_authors": lists(authors),
            "turns_raw": lists(raws),
            "turns": lists(texts),
            "turn_weights": lists(weights),
            "weights_in_text": pa.array([cfg.weights_in_text] * nt, pa.bool_()),
        }
    )


def _build_default(cfg, task, comments, submissions, bl_words, bl_subs, writer, stats, extra):
    drops = stats.dropped
    stats.rows_in += comments.num_rows
    n0 = comments.num_rows
    rc = comments.filter(pc.is_valid(comments["body"]))
    _count(drops, "missing_body", n0 - rc.num_rows)
    n = rc.num_rows
    gone = pc.is_in(rc["body"], pa.array(["[deleted]", "[removed]"]))
    rc = rc.filter(pc.invert(gone))
    _count(drops, "deleted", n - rc.num_rows)
    ids, links, pids, authors, raw_bodies, scores, created, months, subs = (
        rc[c].to_pylist()
        for c in (
            "id",
            "link_id",
            "parent_id",
            "author",
            "body",
            "score",
            "created_utc",
            "month",
            "subreddit",
        )
    )
    norm = [light_normalize(b) for b in raw_bodies]
    keep = [bool(t) for t in norm]
    _count(drops, "empty", keep.count(False))
    if not all(keep):
        sel = [i for i, k in enumerate(keep) if k]
        ids, links, pids, authors, raw_bodies, scores, created, months, subs, norm = (
            [col[i] for i in sel]
            for col in (ids, links, pids, authors, raw_bodies, scores, created, months, subs, norm)
        )
    titles: dict[str, tuple[str, str]] = {}
    if cfg.use_title and submissions is not None:
        subs_t = submissions.sort_by([("month", "ascending"), ("source", "ascending"), ("line", "ascending")])
        for sid, title in zip(subs_t["id"].to_pylist(), subs_t["title"].to_pylist(), strict=True):
            if sid is not None and title:
                t = light_normalize(title)
                if t:
                    titles["t3_" + sid] = (title, t)
    order = sorted(range(len(ids)), key=lambda i: (links[i], pids[i] or "", ids[i]))
    parent = parent_indices(ids, pids, links)
    over_long = [len(t.split()) > cfg.max_len for t in norm] if cfg.max_len else None
    leaves = leaf_flags(ids, pids) if cfg.leaves_only else None
    texts = _Texts(lambda s: s, None, None)
    title_keys: dict[str, int] = {}
    n_shards, shard = task["n_shards"], task["shard"]
    for pos, i in enumerate(order):
        if pos % n_shards != shard:
            continue
        extra["candidates"] += 1
        if leaves is not None and not leaves[i]:
            _count(drops, "not_leaf")
            continue
        subreddit = (subs[i] or "").lower()
        if bl_subs is not None and subreddit in bl_subs:
            _count(drops, "blocked_subreddit")
            continue
        score = scores[i]
        if cfg.min_score is not None and (score or 0) < cfg.min_score:
            _count(drops, "low_score")
            continue
        path, cycle = walk_up(i, parent, over_long, cfg.max_depth, cfg.use_title, detect_cycles=True)
        if cycle:
            _count(drops, "parent_cycle")
            continue
        title = None
        if path and path[0] == TITLE:
            title = titles.get(links[i])
            if title is None:
                path = path[1:]  # no readable submission: no title turn
            elif links[i] not in title_keys:
                title_keys[links[i]] = -2 - len(title_keys)
        if len(path) < cfg.min_depth:
            _count(drops, "target_too_long" if over_long is not None and over_long[i] else "too_shallow")
            continue
        title_key = title_keys[links[i]] if title else None
        _emit(
            writer,
            cfg,
            path,
            i,
            ids,
            links,
            pids,
            authors,
            raw_bodies,
            norm,
            texts,
            title_key,
            title,
            subreddit,
            months[i],
            score,
            created[i],
        )


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
    stats = StageStats(stage=STAGE)
    extra_sum = {"candidates": 0, "submissions_read": 0, "submissions_kept": 0}
    with outputs.stage_output(args.output, STAGE, [input_dir], force) as tmp:
        out_dir = fsutil.join(tmp, "instances")
        fsutil.makedirs(out_dir)
        tasks = plan_tasks(input_dir, out_dir, cfg)
        results = []
        if tasks:
            results = spark.sparkContext.parallelize(tasks, len(tasks)).map(build_task).collect()
        files = 0
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
        }
        stats.check()
        stats.write(fsutil.join(tmp, "stats.json"))
    print(summary(stats), file=sys.stderr)
    return stats


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
        default=1_000_000,
        help="split a bucket with more comments into several tasks [1000000]",
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
        rows_per_task=getattr(args, "rows_per_task", 1_000_000),
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
