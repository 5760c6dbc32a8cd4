"""The classic shape (``shape="classic"``): a whole month's threads planned at once with numpy.

Heavy-tailed thread sizes with chains deeper than 10 and wide threads, a quarter of the submissions
without comments, an optional mega-thread, replies landing in the next month, orphans. Small samples
(the demo, the tests); its bytes are kept stable.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dialogsmith.sample.config import SynthConfig
from dialogsmith.sample.eras import comment_era, month_bounds, month_index, parse_month
from dialogsmith.sample.files import file_name, write_file
from dialogsmith.sample.records import comment_rows, make_submissions, submission_records
from dialogsmith.sample.vocab import BOT, DIALOG, FILLER, KIND_P, SUBREDDITS, TOPIC_QUESTIONS, TextBank

GHOST_SHARE = 0.01  # comments never written (deleted before the crawl): their replies are orphans
_NORMAL, _CHAIN, _WIDE, _MEGA = 0, 1, 2, 3


@dataclass
class MonthPlan:
    month: str
    ym: tuple[int, int]
    start: int
    end: int
    sbase: int
    # submissions, index = rank by created_utc (id = sbase + index)
    s_time: np.ndarray
    s_topic: np.ndarray  # question asked by the title, -1: none
    s_sub: np.ndarray  # subreddit index
    s_author: np.ndarray
    s_ncomments: np.ndarray  # comments created (written or not) in this month and in the next
    s_missing: np.ndarray  # never written to RS
    # comments, index = generation order
    c_idnum: np.ndarray
    c_time: np.ndarray
    c_link: np.ndarray  # submission id number
    c_parent: np.ndarray  # comment id number, -1 for a top-level comment
    c_ptopic: np.ndarray  # question the parent asked
    c_ask: np.ndarray  # question this comment asks
    c_kind: np.ndarray
    c_ghost: np.ndarray  # never written
    c_sub: np.ndarray
    c_link_author: np.ndarray
    c_thread_topic: np.ndarray
    c_order: np.ndarray  # output order (roughly by created_utc)


def generate_classic(out: Path, cfg: SynthConfig, bank: TextBank, months: list[str], files: dict) -> None:
    """Write every month's RS_/RC_ files into ``out``; their report entries go into ``files``."""

    def write_month(plan: MonthPlan) -> None:
        mi = month_index(plan.ym)
        submissions = submission_records(
            plan, bank, cfg.bigquery_shape, np.random.default_rng([cfg.seed, 3, mi])
        )
        for kind, recs, n in (
            ("submissions", submissions, int((~plan.s_missing).sum())),
            ("comments", comment_records(plan, bank, cfg), int((~plan.c_ghost).sum())),
        ):
            name = file_name(kind, plan.month, cfg.compression)
            files[name] = write_file(
                out / name,
                recs,
                n,
                kind,
                plan.month,
                seed=cfg.seed,
                compression=cfg.compression,
                malformed=cfg.malformed,
            )

    prev: MonthPlan | None = None
    for k, month in enumerate(months):
        plan = plan_month(cfg, k, month, prev, len(bank.authors), len(TOPIC_QUESTIONS))
        if prev is not None:  # prev's num_comments now include this month's late replies
            write_month(prev)
        prev = plan
    write_month(prev)


def comment_records(plan: MonthPlan, bank: TextBank, cfg: SynthConfig):
    """Yield (id, dict) for every written comment of the month, in file order."""
    keep = plan.c_order[~plan.c_ghost[plan.c_order]]
    # Whole-month columns as numpy arrays (8 bytes a value); Python lists only per chunk (comment_rows).
    yield from comment_rows(
        bank,
        comment_era(plan.ym),
        cfg.bigquery_shape,
        np.random.default_rng([cfg.seed, 2, month_index(plan.ym)]),
        idnum=plan.c_idnum[keep],
        parent_num=plan.c_parent[keep],
        link_num=plan.c_link[keep],
        created=plan.c_time[keep],
        sub_i=plan.c_sub[keep],
        link_author_idx=plan.c_link_author[keep],
        kind=plan.c_kind[keep],
        ptopic=plan.c_ptopic[keep],
        ask=plan.c_ask[keep],
    )


def thread_sizes(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Heavy-tailed thread sizes summing to n, and a thread type each (chain, wide, normal)."""
    sizes, types = [], []
    total = 0
    cap = max(40, n // 20)
    while total < n:
        m = max(64, (n - total) // 4)
        s = 1 + np.floor(rng.lognormal(1.0, 1.1, m)).astype(np.int64)
        np.minimum(s, cap, out=s)
        t = rng.choice(3, m, p=[0.88, 0.06, 0.06])
        u = rng.random(m)
        s = np.where(t == _CHAIN, np.maximum(s, 12 + (u * 25).astype(np.int64)), s)
        s = np.where(t == _WIDE, np.maximum(s, 15 + (u * 40).astype(np.int64)), s)
        sizes.append(s)
        types.append(t)
        total += int(s.sum())
    size = np.concatenate(sizes) if sizes else np.zeros(0, np.int64)
    typ = np.concatenate(types) if types else np.zeros(0, np.int64)
    if n == 0:
        return size[:0], typ[:0]
    cs = np.cumsum(size)
    cut = int(np.searchsorted(cs, n))
    size, typ = size[: cut + 1].copy(), typ[: cut + 1].copy()
    size[-1] -= int(cs[cut]) - n
    return size, typ


def plan_month(
    cfg: SynthConfig, k: int, month: str, prev: MonthPlan | None, n_authors: int, n_topics: int
) -> MonthPlan:
    """Month ``k`` of the sample; adds its late replies to ``prev``'s comment counts.

    Every array comes from one random stream per month, drawn in a fixed order (the bytes depend on it).
    """
    ym = parse_month(month)
    start, end = month_bounds(ym)
    rng = np.random.default_rng([cfg.seed, 1, month_index(ym)])
    consecutive = prev is not None and month_bounds(prev.ym)[1] == start and prev.c_idnum.size > 0
    n_late = int(round(cfg.comments_per_month * cfg.late_reply_fraction)) if consecutive else 0
    n_own = max(0, cfg.comments_per_month - n_late)

    size, typ, t_start = _threads(rng, n_own, cfg.mega_thread if k == 0 else 0, start, end)
    n_threads = len(size)
    mult = max(10**6, 2 * cfg.comments_per_month + 2)
    sbase = 36**4 + month_index(ym) * mult
    s_topic = np.where(rng.random(n_threads) < 0.55, rng.integers(0, n_topics, n_threads), -1)
    s_sub = np.minimum((len(SUBREDDITS) * rng.random(n_threads) ** 2).astype(np.int64), len(SUBREDDITS) - 1)
    # Zipf-like authors: a few are very active.
    s_author = (n_authors * rng.random(n_threads) ** 3).astype(np.int64)

    thread, top, parent_local, c_time = _own_comments(rng, size, typ, t_start, end)
    n = thread.size
    kind = rng.choice(len(KIND_P), n + n_late, p=KIND_P)
    ask = np.where(
        (kind == DIALOG) & (rng.random(n + n_late) < 0.55), rng.integers(0, n_topics, n + n_late), -1
    )
    safe_parent = np.where(top, 0, parent_local)
    own_ptopic = np.where(top, s_topic[thread], ask[:n][safe_parent] if n else ask[:0])
    late = _late_replies(rng, prev, n_late, start, end)

    times = np.concatenate([c_time, late["time"]])
    total = times.size
    rank = np.empty(total, np.int64)
    rank[np.argsort(times, kind="stable")] = np.arange(total)
    cmult = max(10**8, 2 * (cfg.comments_per_month + cfg.mega_thread) + 2)
    c_idnum = 36**6 + month_index(ym) * cmult + rank
    own_parent = np.where(top, -1, c_idnum[:n][safe_parent] if n else safe_parent)
    is_top = np.concatenate([top, late["top"]])
    kind[(kind == BOT) & ~is_top] = FILLER  # bots only answer the submission
    # Roughly ordered by created_utc, as in the real dumps: 3% of lines are off by up to 2 minutes.
    jitter = np.where(rng.random(total) < 0.03, rng.integers(-120, 121, total), 0)
    order = np.argsort(times + jitter, kind="stable")
    s_ncomments = np.bincount(thread, minlength=n_threads).astype(np.int64)
    subs = make_submissions(rng, ym, sbase, t_start, s_topic, s_sub, s_author, s_ncomments, size > 0)
    return MonthPlan(
        month=month,
        start=start,
        end=end,
        **vars(subs),
        c_idnum=c_idnum,
        c_time=times,
        c_link=np.concatenate([sbase + thread, late["link"]]),
        c_parent=np.concatenate([own_parent, late["parent"]]),
        c_ptopic=np.concatenate([own_ptopic, late["ptopic"]]),
        c_ask=ask,
        c_kind=kind,
        c_ghost=rng.random(total) < GHOST_SHARE,
        c_sub=np.concatenate([s_sub[thread], late["sub"]]),
        c_link_author=np.concatenate([s_author[thread], late["link_author"]]),
        c_thread_topic=np.concatenate([s_topic[thread], late["thread_topic"]]),
        c_order=order,
    )


def _threads(
    rng: np.random.Generator, n_own: int, mega: int, start: int, end: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(size, type, start time) per thread, sorted by start time: thread index == rank == id offset."""
    span = end - start
    size, typ = thread_sizes(rng, n_own)
    if mega > 0:
        size = np.append(size, mega)
        typ = np.append(typ, _MEGA)
    n_zero = int(len(size) * 0.25)  # submissions without comments
    size = np.concatenate([size, np.zeros(n_zero, np.int64)])
    typ = np.concatenate([typ, np.zeros(n_zero, np.int64)])
    n_threads = len(size)
    t_start = start + (rng.random(n_threads) * (span - 3600)).astype(np.int64)
    t_start = np.where(typ == _MEGA, start + (rng.random(n_threads) * span * 0.05).astype(np.int64), t_start)
    by_time = np.argsort(t_start, kind="stable")
    return size[by_time], typ[by_time], t_start[by_time]


def _own_comments(rng: np.random.Generator, size: np.ndarray, typ: np.ndarray, t_start: np.ndarray, end: int):
    """(thread, top, parent_local, time) per comment of the month's own threads.

    Parent: the submission, the previous comment (chains) or an earlier one (recent ones more likely).
    Times: per-thread cumulative gaps (median ~10 min, heavy tail); a reply is never before its parent.
    """
    n_threads = size.size
    n = int(size.sum())
    thread = np.repeat(np.arange(n_threads), size)
    offset = np.concatenate([[0], np.cumsum(size)[:-1]]).astype(np.int64)
    pos = np.arange(n, dtype=np.int64) - offset[thread]
    p_top = np.array([0.35, 0.05, 0.9, 0.25])[typ][thread]
    p_chain = np.array([0.35, 0.92, 0.05, 0.3])[typ][thread]
    u, r = rng.random(n), rng.random(n)
    top = (pos == 0) | (u < p_top)
    chain = ~top & (u < p_top + p_chain)
    back = np.where(chain, 1, 1 + np.floor(r * r * pos).astype(np.int64))
    parent_local = np.where(top, -1, offset[thread] + pos - back)
    scale = np.where(typ == _MEGA, np.maximum(1.0, (end - t_start) / np.maximum(size, 1) / 2.2), 600.0)
    gaps = 1 + np.floor(np.exp(rng.normal(0.0, 1.0, n)) * scale[thread]).astype(np.int64)
    cs = np.cumsum(gaps)
    first = offset[thread]
    c_time = np.minimum(t_start[thread] + cs - cs[first] + gaps[first], end - 1)
    return thread, top, parent_local, c_time


def _late_replies(
    rng: np.random.Generator, prev: MonthPlan | None, n_late: int, start: int, end: int
) -> dict[str, np.ndarray]:
    """Comments of this month in threads of the previous month (added to its ``s_ncomments``)."""
    if not n_late:
        empty = np.zeros(0, np.int64)
        keys = ("time", "parent", "ptopic", "link", "sub", "link_author", "thread_topic")
        return {**dict.fromkeys(keys, empty), "top": np.zeros(0, bool)}
    span = end - start
    pick = rng.integers(0, prev.c_idnum.size, n_late)
    top = rng.random(n_late) < 0.35
    late = {
        "time": start + np.minimum(rng.exponential(span / 10, n_late).astype(np.int64), span - 1),
        "top": top,
        "parent": np.where(top, -1, prev.c_idnum[pick]),
        "ptopic": np.where(top, prev.c_thread_topic[pick], prev.c_ask[pick]),
        "link": prev.c_link[pick],
        "sub": prev.c_sub[pick],
        "link_author": prev.c_link_author[pick],
        "thread_topic": prev.c_thread_topic[pick],
    }
    link = late["link"]
    in_prev = (link >= prev.sbase) & (link < prev.sbase + prev.s_ncomments.size)
    prev.s_ncomments += np.bincount(link[in_prev] - prev.sbase, minlength=prev.s_ncomments.size)
    return late
