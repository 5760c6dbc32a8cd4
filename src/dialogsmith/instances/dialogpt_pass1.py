"""The ``dialogpt`` profile, pass 1 of one link-id bucket: the released extractor's extract step, month
by month (the extract-time drops, the submissions pass 2 can read), vectorized.

A bucket's rows come from the extract output (Parquet) or from the staging of ``dialogpt-tsv`` (Arrow
IPC batches). The duplicate-id rule runs first: the first copy of an id by (source, line) stays."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from dialogsmith import fsutil
from dialogsmith.extract.job import later_duplicates
from dialogsmith.formats import parquet
from dialogsmith.formats.schemas import COMMENTS_SCHEMA, SUBMISSIONS_SCHEMA, TABLES
from dialogsmith.formats.stats import StageStats
from dialogsmith.instances.config import EXTRACT_REASONS, BuildConfig, count
from dialogsmith.instances.text import contiguous, whitespace_token_counts

# What the dialogpt profile reads of a dump line (the required fields are always read and typed).
COMMENT_COLUMNS = ("id", "link_id", "parent_id", "author", "body", "score", "created_utc")
SUBMISSION_COLUMNS = ("id", "title", "num_comments", "permalink")
DERIVED = ("month", "source", "line")  # added by the dump parser
PASS2_COLUMNS = ["id", "link_id", "parent_id", "author", "body", "score", "created_utc"]
MISSING_BODY = EXTRACT_REASONS.index("missing_body")
KEYS_NOT_DEP = EXTRACT_REASONS.index("keys_not_dep")
SUBMISSION_NOT_KEPT = EXTRACT_REASONS.index("submission_not_kept")
TOO_FEW_TOKENS = EXTRACT_REASONS.index("too_few_tokens")


# --- reading a bucket ------------------------------------------------------------------------------


def load_rows(sources: list, columns: list[str]) -> pa.Table | None:
    """A bucket's rows from its sources: ``("ipc", path, [batch ids])`` (dialogpt-tsv staging) or
    ``("parquet", path, "comments"|"submissions")`` (the extract output, schema checked). Only
    ``columns`` are read; None without sources."""
    tables = []
    for src in sources:
        if src[0] == "ipc":
            fs, path = fsutil.resolve(src[1])
            with fs.open_input_file(path) as f:
                schema = ipc.open_file(f).schema
                fields = [schema.get_field_index(c) for c in columns]
                reader = ipc.open_file(f, options=ipc.IpcReadOptions(included_fields=fields))
                batches = [reader.get_batch(i) for i in src[2]]
                tables.append(pa.Table.from_batches(batches, schema=reader.schema).select(columns))
        else:
            tables.append(parquet.read(src[1], TABLES[src[2]], columns))
    if not tables:
        return None
    return pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]


def _empty(schema: pa.Schema, columns: list[str]) -> pa.Table:
    return pa.table({c: pa.array([], schema.field(c).type) for c in columns})


# --- submissions ---------------------------------------------------------------------------------


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
    subreddits = permalink_subreddits(contiguous(subs["permalink"].take(take)))
    return DialogptSubmissions(set(last), sub_title, dict(zip(title_links, subreddits, strict=True)), read)


def permalink_subreddits(permalinks: pa.Array) -> list[str]:
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


# --- comments --------------------------------------------------------------------------------------


def extract_codes(rc: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """Pass 1, comments: the rules that need no month (``missing_body``, ``deleted``, ``quote``,
    ``too_few_tokens``), vectorized: (code per row, whitespace tokens per row).

    ``code`` is -1 for a kept comment, else the index in ``EXTRACT_REASONS`` of the first rule it fails.
    ``keys_not_dep`` and ``submission_not_kept`` depend on the month; ``pass1`` applies them in the
    released order (``pc.is_in`` hashes its value set on every call: 28 ms for 130K links, so the
    link rule runs once per month on the rows that reach it). Token counts are filled for the rows
    that reach the token rule (0 else)."""
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
    rule(pc.not_equal(body, "[deleted]"), "deleted")
    quote = pc.or_(pc.match_substring(body, ">"), pc.match_substring(body, "&gt;"))
    rule(pc.invert(quote), "quote")
    # too_few_tokens: the whitespace tokens of the minimally normalized body are those of the body
    # without backslashes (\n, \r, \t are whitespace either way; rstrip changes no count).
    ntok = np.where(keep, pc.fill_null(whitespace_token_counts(body, skip_backslash=True), 0).to_numpy(), 0)
    code[keep & (ntok < 2)] = TOO_FEW_TOKENS
    return code, ntok


def string_set(values) -> pa.Array:
    """A Python set of strings as the value set of ``pc.is_in`` (built once, then used per block)."""
    return pa.array(list(values), pa.string())


def count_codes(drops: dict, code: np.ndarray, reasons: tuple[str, ...]) -> None:
    """Add the rows per reason of ``code`` (index into ``reasons``; -1 = kept) to ``drops``."""
    values, counts = np.unique(code[code >= 0], return_counts=True)
    for v, c in zip(values.tolist(), counts.tolist(), strict=True):
        count(drops, reasons[v], c)


# --- pass 1 of a bucket --------------------------------------------------------------------------------


@dataclass
class Pass1:
    """Pass 1 of one bucket."""

    months: dict[str, tuple[pa.Table, pa.Table]]  # month -> (kept comments + "ntok", readable submissions)
    stats: StageStats  # the instances stats so far (rows_in, extract-time drops)
    extra: dict  # submissions read and kept
    merged: dict  # duplicate ids merged: {"comments": n, "submissions": n}
    comments: int  # after dedup (and --months)
    submissions: int


def pass1(task: dict, cfg: BuildConfig) -> Pass1:
    """Dedup and pass 1 of one bucket. Masks are combined first and the kept rows copied once (a
    filter per rule copied every body)."""
    subs_all = load_rows(task["submissions"], [*SUBMISSION_COLUMNS, "link_id", *DERIVED])
    rc_all = load_rows(task["comments"], [*COMMENT_COLUMNS, *DERIVED])
    if rc_all is None:
        rc_all = _empty(COMMENTS_SCHEMA, [*COMMENT_COLUMNS, *DERIVED])
    if subs_all is None:
        subs_all = _empty(SUBMISSIONS_SCHEMA, [*SUBMISSION_COLUMNS, "link_id", *DERIVED])
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
    # the rules that need no month: once for the bucket; keys_not_dep and submission_not_kept per month
    code_all, ntok_all = extract_codes(rc_all)
    out = {}
    for month in sorted(m for m in months if m is not None):
        rows = _rows_of(rc_all, "month", month, first)
        subs = dialogpt_submissions(subs_all.take(pa.array(_rows_of(subs_all, "month", month, sub_first))))
        extra["submissions_read"] += subs.read
        extra["submissions_kept"] += len(subs.kept_links)
        code = _month_codes(cfg, month, rc_all, rows, code_all[rows], subs)
        count_codes(ins.dropped, code, EXTRACT_REASONS)
        kept_rows = rows[code == -1]
        kept = rc_all.select(PASS2_COLUMNS).take(pa.array(kept_rows))
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
    return Pass1(out, ins, extra, dict(merged), int(first.sum()), int(sub_first.sum()))


def _rows_of(table: pa.Table, column: str, value: str, keep: np.ndarray) -> np.ndarray:
    """Row numbers where ``column == value`` and ``keep``."""
    hit = pc.fill_null(pc.equal(table[column], value), False).to_numpy(zero_copy_only=False)
    return np.flatnonzero(hit & keep)


def _month_codes(cfg, month, rc_all, rows, code, subs: DialogptSubmissions) -> np.ndarray:
    """``code`` (of ``extract_codes``) of the month's ``rows`` with the month's rules added, in the
    released order: ``keys_not_dep`` precedes every rule but ``missing_body``; ``submission_not_kept``
    comes just before ``too_few_tokens``."""
    links = contiguous(rc_all["link_id"]).take(pa.array(rows))
    if cfg.keys:
        from dialogsmith.recipes.dialogpt_keys import load_month_keys

        keys = load_month_keys(cfg.keys, month, set(pc.unique(links).to_pylist()))
        t1 = pc.binary_join_element_wise("t1_", contiguous(rc_all["id"]).take(pa.array(rows)), "")
        dep = pc.is_in(pc.binary_join_element_wise(links, t1, "\t"), value_set=string_set(keys.dep))
        no_dep = ~pc.fill_null(dep, False).to_numpy(zero_copy_only=False)
        code[no_dep & (code != MISSING_BODY)] = KEYS_NOT_DEP
    reach = np.flatnonzero((code == -1) | (code == TOO_FEW_TOKENS))
    link_ok = pc.is_in(links.take(pa.array(reach)), value_set=string_set(subs.kept_links))
    code[reach[~pc.fill_null(link_ok, False).to_numpy(zero_copy_only=False)]] = SUBMISSION_NOT_KEPT
    return code
