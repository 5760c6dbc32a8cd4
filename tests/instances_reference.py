"""A slow reference of the instances stage's thread walk, for the tests only (an oracle): the released
extractor's recursion as a loop per target over plain lists, and the default profile comment by
comment on top of it. The stage itself walks all targets at once (``dialogsmith.instances.walk``)."""

from __future__ import annotations

from dialogsmith.instances.config import BuildConfig
from dialogsmith.instances.text import light_normalize
from dialogsmith.instances.walk import PARENT_MISSING, PARENT_SUBMISSION

TITLE = -1  # marker in a turn path for the title turn


def parent_indices(
    ids: list[str], parent_ids: list[str | None], link_ids: list[str] | None = None
) -> list[int]:
    """Index of each comment's parent among ``ids`` (``t1_`` prefixed parent ids), or a marker.

    ``PARENT_SUBMISSION`` when the parent is a submission (``t3_``), ``PARENT_MISSING`` when the
    parent is not among the comments or, with ``link_ids``, belongs to another thread. A later
    duplicate id wins (a dict). Self-parents and cycles are kept: ``walk_up`` is bounded and detects them."""
    index = {"t1_" + cid: i for i, cid in enumerate(ids)}
    out = []
    for i, pid in enumerate(parent_ids):
        if pid is None:
            out.append(PARENT_MISSING)
        elif pid.startswith("t3_"):
            out.append(PARENT_SUBMISSION)
        else:
            j = index.get(pid, PARENT_MISSING)
            if link_ids is not None and j >= 0 and link_ids[j] != link_ids[i]:
                j = PARENT_MISSING
            out.append(j)
    return out


def leaf_flags(ids: list[str], parent_ids: list[str | None]) -> list[bool]:
    """True for comments no comment in the list replies to."""
    parents = set(parent_ids)
    return ["t1_" + cid not in parents for cid in ids]


def walk_up(
    target: int,
    parent: list[int],
    over_long: list[bool] | None,
    max_depth: int,
    use_title: bool,
    detect_cycles: bool,
) -> tuple[list[int], bool]:
    """Turn path of ``target``, oldest first (``TITLE`` for the title turn), and whether a cycle was hit.

    The released extractor's walk: at most ``max_depth`` comments; an over-long comment is left out
    together with everything above it; a missing parent ends the context; with ``use_title`` the title
    tops the path when the walk reaches a top-level comment (beyond the ``max_depth`` budget). With
    ``detect_cycles`` a comment met twice stops the walk and reports a cycle; without it (dialogpt) a
    cycle repeats turns, as the released recursion does."""
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
        if p == PARENT_SUBMISSION:
            if use_title:
                path.append(TITLE)
            break
        if p < 0:
            break
        c = p
        depth -= 1
    path.reverse()
    return path, False


def reference_default(cfg: BuildConfig, comments: list[dict], submissions: list[dict], bl_subs=None):
    """The default profile, comment by comment: (instances as dicts keyed by instance_id, drops)."""
    drops: dict[str, int] = {}

    def count(reason, n=1):
        if n:
            drops[reason] = drops.get(reason, 0) + n

    rows = []
    for c in comments:
        if c["body"] is None:
            count("missing_body")
        elif c["body"] in ("[deleted]", "[removed]"):
            count("deleted")
        else:
            norm = light_normalize(c["body"])
            if norm:
                rows.append((c, norm))
            else:
                count("empty")
    ids = [c["id"] for c, _ in rows]
    pids = [c["parent_id"] for c, _ in rows]
    links = [c["link_id"] for c, _ in rows]
    parent = parent_indices(ids, pids, links)
    over_long = [len(n.split()) > cfg.max_len for _, n in rows] if cfg.max_len else None
    parents_set = set(pids)
    titles = {}
    if cfg.use_title:
        for s in sorted(submissions, key=lambda s: (s["month"], s["source"], s["line"])):
            if s["id"] is not None and s["title"]:
                t = light_normalize(s["title"])
                if t:
                    titles["t3_" + s["id"]] = (s["title"], t)
    out = {}
    for i, (c, _) in enumerate(rows):
        if cfg.leaves_only and "t1_" + c["id"] in parents_set:
            count("not_leaf")
            continue
        sub = (c["subreddit"] or "").lower()
        if bl_subs is not None and sub in bl_subs:
            count("blocked_subreddit")
            continue
        if cfg.min_score is not None and (c["score"] or 0) < cfg.min_score:
            count("low_score")
            continue
        path, cycle = walk_up(i, parent, over_long, cfg.max_depth, cfg.use_title, detect_cycles=True)
        if cycle:
            count("parent_cycle")
            continue
        title = None
        if path and path[0] == TITLE:
            title = titles.get(links[i])
            if title is None:
                path = path[1:]
        if len(path) < cfg.min_depth:
            count("target_too_long" if over_long is not None and over_long[i] else "too_shallow")
            continue
        turns = []
        for k in path:
            if k == TITLE:
                turns.append((links[i], None, "title: " + title[0], "title: " + title[1], 1.0))
            else:
                ck, nk = rows[k]
                turns.append(("t1_" + ck["id"], ck["author"], ck["body"], nk, 1.0))
        out["t1_" + c["id"]] = {
            "link_id": c["link_id"],
            "parent_id": c["parent_id"],
            "subreddit": sub,
            "month": c["month"],
            "target_score": c["score"],
            "target_created_utc": c["created_utc"],
            "turn_ids": [t[0] for t in turns],
            "turn_authors": [t[1] for t in turns],
            "turns_raw": [t[2] for t in turns],
            "turns": [t[3] for t in turns],
            "turn_weights": [t[4] for t in turns],
        }
    return out, drops
