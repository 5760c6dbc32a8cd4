"""The realistic shape (``shape="realistic"``): skewed, deep threads, streamed month by month in time windows.

The shape measured on independent benchmark months: per submission 15% get 0-1 comments, 75% 2-30,
8% 30-200, 2% 500-2,000; a reply goes to the submission with p=0.25, else to the newest comment of
the thread with p=0.5, else to a uniformly random earlier one; 3% of parents are never seen; ~10% of
threads get 1-3 late replies the next month; a few comments (0.05%) reply to a comment of another
thread.

Memory: a month is cut into equal time windows of about ``chunk_comments`` comments each. The
threads *started* in window w are drawn whole (their comments spread over hours, sometimes days),
then every comment created before the end of window w is final: those are sorted, given ids in
time order and written. Comments created later wait in a pool (a few columns of numpy ints), so
what is held is one window's threads plus the tail of the threads still active, whatever the
month's size. Ids are assigned when written; a waiting reply gets its parent's id when the
parent is written (a parent is never created after its reply).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dialogsmith.sample.config import SynthConfig
from dialogsmith.sample.eras import CommentEra, comment_era, month_bounds, month_index, parse_month
from dialogsmith.sample.files import ChunkedFile, file_name
from dialogsmith.sample.records import Submissions, comment_rows, make_submissions, submission_records
from dialogsmith.sample.vocab import BOT, DIALOG, FILLER, KIND_P, SUBREDDITS, TOPIC_QUESTIONS, TextBank

_SIZE_P = np.array([0.15, 0.75, 0.08, 0.02])
_SIZE_LO = np.array([0, 2, 30, 500])
_SIZE_HI = np.array([1, 30, 200, 2000])  # inclusive
_P_TOP = 0.25  # a reply to the submission
_P_NEWEST = 0.25 + 0.75 * 0.5  # else the newest comment of the thread (long chains)
_GHOST_SHARE = 0.03  # comments never written (deleted before the crawl): 3% of parents unseen
_CROSS_SHARE = 0.0005  # comments whose parent is a comment of another thread of the month
_MALFORMED_SHARE = 0.003
_LATE_TRIES = 3  # 1..3 late replies for a thread that gets some
_LIFETIME_S = 7200.0  # median mean offset of a thread's comments from its start (2 hours)
_LIFETIME_MAX_S = 86400.0
# The compressor's real window while streaming; the frame still declares files.ZSTD_WINDOW_LOG (see
# files._declare_zstd_window). 128 MiB: level 3 finds almost all its matches within a few MB anyway.
_ZSTD_WINDOW_LOG = 27

_POOL_COLUMNS = (
    "gen",  # generation number within the month: the pool is kept in this order
    "time",
    "link",  # submission id number
    "top",  # a reply to the submission
    "parent_gen",  # gen of the parent comment while its id is unknown, else -1
    "parent_num",  # id number of the parent comment once written, -1 for a top-level comment
    "ptopic",
    "ask",
    "kind",
    "ghost",
    "sub",
    "link_author",
)


@dataclass(frozen=True)
class _Month:
    """What every window of a month shares."""

    ym: tuple[int, int]
    start: int
    end: int
    next_end: int  # end of the next month when it follows this one (late replies land there), else 0
    late_share: float  # share of threads that get late replies
    n_authors: int
    n_topics: int


def _pool_take(pool: dict[str, np.ndarray], idx) -> dict[str, np.ndarray]:
    return {k: v[idx] for k, v in pool.items()}


def _pool_concat(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([a[k], b[k]]) for k in _POOL_COLUMNS}


def _pool_empty() -> dict[str, np.ndarray]:
    return {k: np.zeros(0, bool if k in ("top", "ghost") else np.int64) for k in _POOL_COLUMNS}


def generate_realistic(out: Path, cfg: SynthConfig, bank: TextBank, months: list[str], files: dict) -> None:
    """Write every month's RS_/RC_ files into ``out``; their report entries go into ``files``."""
    carry = None
    for k, month in enumerate(months):
        nxt = months[k + 1] if k + 1 < len(months) else None
        end = month_bounds(parse_month(month))[1]
        next_end = 0
        if nxt is not None and month_bounds(parse_month(nxt))[0] == end:
            next_end = month_bounds(parse_month(nxt))[1]
        # Rebound before the month is written: the previous month's compressors (up to 2**27 bytes of
        # window each) are freed first.
        rs = _open(out / file_name("submissions", month, cfg.compression), "submissions", month, cfg)
        rc = _open(out / file_name("comments", month, cfg.compression), "comments", month, cfg)
        try:
            carry = realistic_month(cfg, k, month, carry, next_end, bank, rs, rc)
        except BaseException:
            rs.abort()
            rc.abort()
            raise
        files[rs.path.name] = rs.close()
        files[rc.path.name] = rc.close()


def _open(path: Path, kind: str, month: str, cfg: SynthConfig) -> ChunkedFile:
    return ChunkedFile(
        path,
        kind,
        month,
        seed=cfg.seed,
        compression=cfg.compression,
        malformed=cfg.malformed,
        malformed_share=_MALFORMED_SHARE,
        zstd_window_log=_ZSTD_WINDOW_LOG,
    )


def realistic_sizes(rng: np.random.Generator, quota: int) -> np.ndarray:
    """Thread sizes (0 allowed) from the measured buckets, log-uniform within a bucket, summing to quota."""
    if quota <= 0:
        return np.zeros(0, np.int64)
    parts, total = [], 0
    while total < quota:
        m = max(64, quota // 30)  # ~36 comments a thread on average
        bucket = rng.choice(4, m, p=_SIZE_P)
        u = rng.random(m)
        lo, hi = np.maximum(_SIZE_LO[bucket], 1), _SIZE_HI[bucket]
        s = np.floor(np.exp(np.log(lo) + u * (np.log(hi + 1) - np.log(lo)))).astype(np.int64)
        s = np.where(bucket == 0, (u * 2).astype(np.int64), np.minimum(s, hi))
        parts.append(s)
        total += int(s.sum())
    size = np.concatenate(parts)
    cs = np.cumsum(size)
    cut = int(np.searchsorted(cs, quota))
    size = size[: cut + 1].copy()
    size[-1] -= int(cs[cut]) - quota
    return size


def realistic_month(
    cfg: SynthConfig,
    k: int,
    month: str,
    carry: dict[str, np.ndarray] | None,
    next_end: int,
    bank: TextBank,
    rs: ChunkedFile,
    rc: ChunkedFile,
) -> dict[str, np.ndarray] | None:
    """Stream one month into ``rs`` and ``rc``; return its late replies (pool rows of next month)."""
    ym = parse_month(month)
    start, end = month_bounds(ym)
    mi = month_index(ym)
    n_gen = int(round(cfg.comments_per_month / (1 - _GHOST_SHARE)))  # lines come out ~= the knob
    pool = _pool_empty() if carry is None else {**carry, "gen": np.arange(carry["gen"].size, dtype=np.int64)}
    next_gen = pool["gen"].size
    n_own = max(0, n_gen - next_gen)
    windows = max(1, -(-n_own // cfg.chunk_comments))
    sbase = 36**4 + mi * max(10**6, 2 * n_gen + 2)
    cbase = 36**6 + mi * max(10**8, 2 * (n_gen + cfg.mega_thread) + 2)
    late_share = min(1.0, 2 * cfg.late_reply_fraction) if next_end else 0.0  # default 0.05 -> 10%
    m = _Month(ym, start, end, next_end, late_share, len(bank.authors), len(TOPIC_QUESTIONS))
    era = comment_era(ym)
    next_thread = next_id = 0
    for w in range(windows):
        window = (start + (end - start) * w // windows, start + (end - start) * (w + 1) // windows)
        quota = n_own * (w + 1) // windows - n_own * w // windows
        mega = cfg.mega_thread if k == 0 and w == 0 else 0
        rng = np.random.default_rng([cfg.seed, 11, mi, w])
        subs, rows = realistic_threads(rng, m, quota, mega, window, sbase + next_thread, next_gen)
        next_thread += subs.s_time.size
        next_gen += rows["gen"].size
        rs.write_chunk(
            submission_records(subs, bank, cfg.bigquery_shape, np.random.default_rng([cfg.seed, 13, mi, w])),
            int((~subs.s_missing).sum()),
        )
        del subs
        pool = _pool_concat(pool, rows)
        del rows
        # Everything created before the window's end is final: ids in time order, parents resolved.
        done, by_time, ids = _assign_ids(pool, end if w == windows - 1 else window[1], cbase + next_id)
        next_id += by_time.size
        rng = np.random.default_rng([cfg.seed, 12, mi, w])
        _write_comments(rc, pool, by_time, ids, rng, bank, era, cfg.bigquery_shape)
        del ids
        keep = np.ones(pool["gen"].size, bool)
        keep[done] = False
        pool = _pool_take(pool, keep)
    if (pool["time"] < end).any() or (pool["parent_gen"] >= 0).any():
        raise AssertionError("comments of the month left unwritten")  # a generator bug
    return pool if next_end else None


def _assign_ids(pool: dict[str, np.ndarray], t_limit: int, first_id: int):
    """Ids, in time order, for the pool's comments created before ``t_limit``; the waiting replies of
    those get their parent's id. Returns (done: pool rows, ascending gen; by_time: done in time order;
    ids per pool row, -1 for the rows not done)."""
    done = np.flatnonzero(pool["time"] < t_limit)  # ascending gen
    by_time = done[np.lexsort((pool["gen"][done], pool["time"][done]))]
    ids = np.full(pool["gen"].size, -1, np.int64)
    ids[by_time] = first_id + np.arange(by_time.size)
    waiting = np.flatnonzero(pool["parent_gen"] >= 0)
    if done.size and waiting.size:
        done_gen = pool["gen"][done]
        j = np.minimum(np.searchsorted(done_gen, pool["parent_gen"][waiting]), done.size - 1)
        hit = done_gen[j] == pool["parent_gen"][waiting]
        pool["parent_num"][waiting[hit]] = ids[done[j[hit]]]
        pool["parent_gen"][waiting[hit]] = -1
    if (pool["parent_gen"][done] >= 0).any():
        raise AssertionError("a comment is written before its parent")  # a generator bug
    return done, by_time, ids


def _write_comments(
    rc: ChunkedFile,
    pool: dict[str, np.ndarray],
    by_time: np.ndarray,
    ids: np.ndarray,
    rng: np.random.Generator,
    bank: TextBank,
    era: CommentEra,
    bq: bool,
) -> None:
    """Write the finished comments (``by_time``) but the ghosts, in file order: roughly by created_utc,
    as in the real dumps (3% of lines off by up to 2 minutes)."""
    t = pool["time"][by_time]
    jitter = np.where(rng.random(t.size) < 0.03, rng.integers(-120, 121, t.size), 0)
    written = by_time[np.argsort(t + jitter, kind="stable")]
    written = written[~pool["ghost"][written]]
    batch = _pool_take(pool, written)
    rows = comment_rows(
        bank,
        era,
        bq,
        rng,
        idnum=ids[written],
        parent_num=np.where(batch["top"], -1, batch["parent_num"]),
        link_num=batch["link"],
        created=batch["time"],
        sub_i=batch["sub"],
        link_author_idx=batch["link_author"],
        kind=batch["kind"],
        ptopic=batch["ptopic"],
        ask=batch["ask"],
    )
    rc.write_chunk(rows, written.size)


def realistic_threads(
    rng: np.random.Generator,
    m: _Month,
    quota: int,
    mega: int,
    window: tuple[int, int],
    sbase: int,
    gen0: int,
) -> tuple[Submissions, dict[str, np.ndarray]]:
    """The threads started in ``window``: their submissions, and all their comments as pool rows.

    Comments created after the month's end are its late replies (next month's lines): they stay in
    the pool when the month is done and are carried over with their parent ids resolved. Every array
    comes from ``rng``, drawn in a fixed order (the bytes depend on it).
    """
    t0, t1 = window
    size = realistic_sizes(rng, quota)
    if mega:
        size = np.append(size, mega)
    n_threads = size.size
    starts = t0 + (rng.random(n_threads) * (t1 - t0)).astype(np.int64)
    order = np.argsort(starts, kind="stable")  # thread index == rank by time == id offset
    size, t_start = size[order], starts[order]
    s_topic = np.where(rng.random(n_threads) < 0.55, rng.integers(0, m.n_topics, n_threads), -1)
    s_sub = np.minimum((len(SUBREDDITS) * rng.random(n_threads) ** 2).astype(np.int64), len(SUBREDDITS) - 1)
    s_author = (m.n_authors * rng.random(n_threads) ** 3).astype(np.int64)
    # The mega-thread was appended last, before the sort by start time.
    mega_rank = int(np.flatnonzero(order == n_threads - 1)[0]) if mega else -1
    thread, offset, pos, c_time = _comment_times(rng, size, t_start, m.end, mega_rank)
    own = _replies(rng, thread, pos, c_time, s_topic, m.n_topics)
    late_thread, n_late, late = _late_replies(rng, size, offset, s_topic, own["ask"], m)

    all_thread = np.concatenate([thread, late_thread])
    all_top = np.concatenate([own["top"], late["top"]])
    all_parent = np.concatenate([own["parent"], late["parent"]])
    n_rows = all_thread.size
    rows = {
        "gen": gen0 + np.arange(n_rows, dtype=np.int64),
        "time": np.concatenate([c_time, late["time"]]),
        "link": sbase + all_thread,
        "top": all_top,
        "parent_gen": np.where(all_top, -1, gen0 + all_parent),
        "parent_num": np.full(n_rows, -1, np.int64),
        **{key: np.concatenate([own[key], late[key]]) for key in ("ptopic", "ask", "kind", "ghost")},
        "sub": s_sub[all_thread],
        "link_author": s_author[all_thread],
    }
    s_ncomments = size + n_late
    subs = make_submissions(rng, m.ym, sbase, t_start, s_topic, s_sub, s_author, s_ncomments, s_ncomments > 0)
    return subs, rows


def _comment_times(rng: np.random.Generator, size: np.ndarray, t_start: np.ndarray, end: int, mega_rank: int):
    """(thread, offset of its thread, position in its thread, created_utc) per comment.

    Each thread's comments are exponential offsets from its start (mean ``scale``, bigger threads live
    longer), drawn directly as sorted order statistics: the i-th gap is Exp(1)/(n-i). A thread started
    late in the month is compressed to end within it (same order of comments).
    """
    n_threads = size.size
    n = int(size.sum())
    thread = np.repeat(np.arange(n_threads), size)
    offset = np.concatenate([[0], np.cumsum(size)[:-1]]).astype(np.int64)
    pos = np.arange(n, dtype=np.int64) - offset[thread]
    scale = _LIFETIME_S * np.exp(rng.normal(0.0, 0.8, n_threads)) * (1.0 + size / 1000.0)
    scale = np.minimum(scale, _LIFETIME_MAX_S)
    if mega_rank >= 0:
        scale[mega_rank] = _LIFETIME_MAX_S
    gaps = rng.exponential(1.0, n) / (size[thread] - pos)
    cs = np.cumsum(gaps)
    off = (cs - cs[offset[thread]] + gaps[offset[thread]]) * scale[thread]
    last = np.zeros(n_threads)
    nonempty = size > 0
    last[nonempty] = off[offset[nonempty] + size[nonempty] - 1]
    room = np.maximum(0, end - 2 - t_start).astype(np.float64)
    squeeze = np.minimum(1.0, room / np.maximum(last, 1.0))
    c_time = np.minimum(t_start[thread] + 1 + np.floor(off * squeeze[thread]).astype(np.int64), end - 1)
    return thread, offset, pos, c_time


def _replies(rng, thread, pos, c_time, s_topic, n_topics: int) -> dict[str, np.ndarray]:
    """Who each comment replies to (``parent``: index among the window's comments, -1: the submission),
    its kind of text, the question it asks and the one it answers, and whether it is never written."""
    n = thread.size
    u, r = rng.random(n), rng.random(n)
    top = (pos == 0) | (u < _P_TOP)
    newest = ~top & (u < _P_NEWEST)
    back = np.where(newest, 1, 1 + np.floor(r * pos).astype(np.int64))
    parent = np.where(top, -1, np.arange(n) - back)
    kind = rng.choice(len(KIND_P), n, p=KIND_P)
    ask = np.where((kind == DIALOG) & (rng.random(n) < 0.55), rng.integers(0, n_topics, n), -1)
    # Cross-thread replies: an earlier comment of another thread of this window (half the draws fail).
    cand = np.flatnonzero(rng.random(n) < 2 * _CROSS_SHARE)
    other = rng.integers(0, max(n, 1), cand.size)
    ok = (c_time[other] < c_time[cand]) & (thread[other] != thread[cand])
    top[cand[ok]] = False
    parent[cand[ok]] = other[ok]
    kind[(kind == BOT) & ~top] = FILLER  # bots only answer the submission
    ptopic = np.where(top, s_topic[thread], ask[np.maximum(parent, 0)] if n else ask)
    ghost = rng.random(n) < _GHOST_SHARE
    return {"top": top, "parent": parent, "kind": kind, "ask": ask, "ptopic": ptopic, "ghost": ghost}


def _late_replies(rng, size, offset, s_topic, ask, m: _Month):
    """Next month's replies: 1..3 for a share of the threads, to the submission or any comment.
    Returns (their thread, late replies per thread, columns as in ``_replies`` plus ``time``)."""
    n_threads = size.size
    if m.late_share > 0:
        n_late = np.where(
            rng.random(n_threads) < m.late_share, rng.integers(1, _LATE_TRIES + 1, n_threads), 0
        )
    else:
        n_late = np.zeros(n_threads, np.int64)
    late_thread = np.repeat(np.arange(n_threads), n_late)
    n_l = late_thread.size
    top = (size[late_thread] == 0) | (rng.random(n_l) < _P_TOP)
    parent = offset[late_thread] + np.floor(rng.random(n_l) * size[late_thread]).astype(np.int64)
    parent = np.where(top, -1, parent)
    time = m.end + np.minimum(
        rng.exponential(3 * 86400.0, n_l).astype(np.int64), max(m.next_end - m.end - 1, 0)
    )
    kind = rng.choice(len(KIND_P), n_l, p=KIND_P)
    late_ask = np.where((kind == DIALOG) & (rng.random(n_l) < 0.55), rng.integers(0, m.n_topics, n_l), -1)
    kind[(kind == BOT) & ~top] = FILLER
    ptopic = np.where(top, s_topic[late_thread], ask[np.maximum(parent, 0)] if ask.size else -1)
    ghost = rng.random(n_l) < _GHOST_SHARE
    late = {"top": top, "parent": parent, "time": time, "kind": kind, "ask": late_ask}
    return late_thread, n_late, {**late, "ptopic": ptopic, "ghost": ghost}
