"""The vectorized default-profile builder against a slow reference (tests/instances_reference.py): the
per-target walk of the released extractor's recursion (``walk_up``), one comment at a time, on random
forests with every odd case (cycles, self-parents, parents in other threads, missing parents, over-long
and empty comments, titles)."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest
from instances_reference import reference_default

from dialogsmith.formats.schemas import COMMENTS_SCHEMA, SUBMISSIONS_SCHEMA
from dialogsmith.formats.stats import StageStats
from dialogsmith.instances.config import BuildConfig
from dialogsmith.instances.default import default_instances

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
    stats, extra = StageStats(stage="instances"), {"candidates": 0}
    table = default_instances(
        cfg, pa.Table.from_pylist(comments, schema=COMMENTS_SCHEMA), pa.Table.from_pylist(submissions, schema=SUBMISSIONS_SCHEMA),
        bl_subs, stats, extra,
    )  # fmt: skip
    got = {}
    for row in table.to_pylist() if table is not None else []:
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
