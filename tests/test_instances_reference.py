"""The vectorized default-profile builder against a slow reference: the per-target walk of the released
extractor's recursion (``walk_up``), one comment at a time, on random forests with every odd case
(cycles, self-parents, parents in other threads, missing parents, over-long and empty comments, titles)."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from dialogsmith.formats.schemas import COMMENTS, INSTANCES, SUBMISSIONS
from dialogsmith.formats.stats import StageStats
from dialogsmith.instances import job as conv
from dialogsmith.instances.job import TITLE, BuildConfig, light_normalize, parent_indices, walk_up


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


BODIES = [
    "hello there friend",
    "a  reply\twith   odd\nwhitespace ",
    "&gt; quoted line\nmy answer here",
    "&gt; only a quote",
    "see [the docs](https://x.org/a_(b)) now",
    "Tom &amp;amp; Jerry",
    "[removed]",
    "[deleted]",
    None,
    "   ",
    "one two three four five six seven eight nine ten eleven",  # over-long at max_len 10
    "Ünïcödé text\u00a0with\u2003spaces",
    "\U0001f600",
]


def random_forest(rng: random.Random, n: int):
    links = [f"t3_l{k}" for k in range(max(1, n // 8))]
    comments = []
    for i in range(n):
        link = rng.choice(links)
        r = rng.random()
        if r < 0.25 or not comments:
            pid = link
        elif r < 0.30:
            pid = f"t1_c{i}"  # self-parent
        elif r < 0.38:
            pid = f"t1_c{rng.randrange(n)}"  # any comment: cycles, other threads, later ones
        elif r < 0.42:
            pid = f"t1_ghost{i}"  # never seen
        elif r < 0.44:
            pid = None
        else:
            same = [c["id"] for c in comments if c["link_id"] == link]
            pid = "t1_" + rng.choice(same) if same else link
        comments.append(
            {
                "id": f"c{i}", "link_id": link, "parent_id": pid, "author": rng.choice(["u1", "u2", "u3", None]),
                "subreddit": rng.choice(["AskReddit", "Bad_Sub", "ÉtéSub", None]), "subreddit_id": "t5_x",
                "body": rng.choice(BODIES), "score": rng.choice([None, -1, 0, 1, 5]),
                "created_utc": 1_450_000_000 + i, "edited": None, "gilded": 0, "controversiality": 0,
                "distinguished": None, "stickied": False, "month": rng.choice(["2016-01", "2016-02"]),
                "source": "RC", "line": i,
            }
        )  # fmt: skip
    submissions = [
        {
            "id": link[3:], "link_id": link, "author": "op", "subreddit": "AskReddit", "subreddit_id": "t5_x",
            "title": rng.choice(["A title &amp; more", "", "   ", "Plain title"]), "selftext": "",
            "num_comments": 3, "score": 1, "created_utc": 1, "domain": "", "permalink": "", "url": "",
            "is_self": True, "over_18": False, "stickied": False, "month": "2016-01", "source": "RS", "line": k,
        }
        for k, link in enumerate(links)
        if rng.random() < 0.8
    ]  # fmt: skip
    return comments, submissions


class _Collect:
    def __init__(self):
        self.tables = []
        self.rows = 0

    def write_columns(self, columns):
        t = pa.Table.from_arrays([columns[f.name] for f in INSTANCES], schema=INSTANCES)
        self.tables.append(t)
        self.rows += t.num_rows


@pytest.mark.parametrize("seed", range(40))
def test_vectorized_default_profile_equals_the_reference_walk(seed):
    rng = random.Random(seed)
    comments, submissions = random_forest(rng, rng.randint(5, 300))
    cfg = BuildConfig(
        profile="default",
        max_depth=rng.choice([1, 2, 3, 5, 10**6]),
        min_depth=rng.choice([1, 2, 3]),
        max_len=rng.choice([10, None]),
        use_title=rng.random() < 0.5,
        leaves_only=rng.random() < 0.3,
        min_score=rng.choice([None, 1]),
    )
    bl_subs = frozenset({"bad_sub"}) if rng.random() < 0.5 else None
    want, want_drops = reference_default(cfg, comments, submissions, bl_subs)
    writer, stats, extra = _Collect(), StageStats(stage="instances"), {"candidates": 0}
    task = {"n_shards": 1, "shard": 0}
    conv._build_default(
        cfg, task, pa.Table.from_pylist(comments, schema=COMMENTS),
        pa.Table.from_pylist(submissions, schema=SUBMISSIONS), None, bl_subs, writer, stats, extra,
    )  # fmt: skip
    got = {}
    for t in writer.tables:
        for row in t.to_pylist():
            iid = row.pop("instance_id")
            row.pop("target_id")
            row.pop("weights_in_text")
            got[iid] = row
    assert {k: v for k, v in stats.dropped.items() if v} == want_drops
    assert got.keys() == want.keys()
    for k in want:
        assert got[k] == want[k], k  # weights are 1.0 exactly in float32
    assert stats.rows_in == len(comments)
    assert extra["candidates"] == len(comments) - sum(
        want_drops.get(r, 0) for r in ("missing_body", "deleted", "empty")
    )
