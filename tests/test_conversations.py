"""Pure tree functions and normalizations of the conversation builder, on hand-built trees."""

from __future__ import annotations

import pytest

from dialogsmith.instances.job import (
    _PARENT_MISSING,
    _PARENT_SUBMISSION,
    TITLE,
    leaf_flags,
    light_normalize,
    parent_indices,
    walk_up,
)


def chain(n: int):
    """a0 <- a1 <- ... <- a(n-1); a0 is top-level in thread t3_x."""
    ids = [f"a{i}" for i in range(n)]
    pids = ["t3_x"] + [f"t1_a{i - 1}" for i in range(1, n)]
    return ids, pids


def names(path, ids):
    return ["TITLE" if k == TITLE else ids[k] for k in path]


def test_parent_indices_markers_and_cross_thread_parents():
    ids = ["a", "b", "c", "d"]
    pids = ["t3_x", "t1_a", "t1_zz", None]
    assert parent_indices(ids, pids) == [_PARENT_SUBMISSION, 0, _PARENT_MISSING, _PARENT_MISSING]
    links = ["t3_x", "t3_y", "t3_x", "t3_x"]  # b names a as parent but sits in another thread
    assert parent_indices(ids, pids, links)[1] == _PARENT_MISSING


def test_chain_deeper_than_max_depth_keeps_the_last_comments():
    ids, pids = chain(8)
    parent = parent_indices(ids, pids)
    path, cycle = walk_up(7, parent, None, max_depth=5, use_title=False, detect_cycles=True)
    assert names(path, ids) == ["a3", "a4", "a5", "a6", "a7"] and not cycle
    # the title is only added when the walk reaches the top-level comment
    path, _ = walk_up(7, parent, None, max_depth=5, use_title=True, detect_cycles=True)
    assert TITLE not in path
    path, _ = walk_up(4, parent, None, max_depth=5, use_title=True, detect_cycles=True)
    assert names(path, ids) == ["TITLE", "a0", "a1", "a2", "a3", "a4"]  # title beyond the 5-comment budget
    assert walk_up(4, parent, None, max_depth=0, use_title=True, detect_cycles=True)[0] == []


def test_branches_share_ancestors():
    ids = ["r", "x", "y", "x2"]
    pids = ["t3_t", "t1_r", "t1_r", "t1_x"]
    parent = parent_indices(ids, pids)
    assert names(walk_up(3, parent, None, 5, False, True)[0], ids) == ["r", "x", "x2"]
    assert names(walk_up(2, parent, None, 5, False, True)[0], ids) == ["r", "y"]
    assert leaf_flags(ids, pids) == [False, False, True, True]


def test_orphans_and_over_long_ancestors_cut_the_context():
    ids, pids = chain(6)
    pids[3] = "t1_gone"  # a3's parent was deleted
    parent = parent_indices(ids, pids)
    assert names(walk_up(5, parent, None, 10, True, True)[0], ids) == ["a3", "a4", "a5"]
    ids, pids = chain(6)
    parent = parent_indices(ids, pids)
    over_long = [False, False, True, False, False, False]
    assert names(walk_up(5, parent, over_long, 10, True, True)[0], ids) == ["a3", "a4", "a5"]
    over_long[5] = True  # an over-long target: no turns at all
    assert walk_up(5, parent, over_long, 10, True, True)[0] == []


def test_cycles_and_self_parents_never_hang():
    ids = ["a", "b", "c"]
    pids = ["t1_c", "t1_a", "t1_b"]  # a <- b <- c <- a
    parent = parent_indices(ids, pids)
    path, cycle = walk_up(2, parent, None, 10**6, False, detect_cycles=True)
    assert cycle and names(path, ids) == ["a", "b", "c"]
    # dialogpt: no detection, the bounded walk repeats turns as the released recursion does
    path, cycle = walk_up(0, parent_indices(["s"], ["t1_s"]), None, 3, False, detect_cycles=False)
    assert path == [0, 0, 0] and not cycle
    path, cycle = walk_up(0, parent_indices(["s"], ["t1_s"]), None, 3, False, detect_cycles=True)
    assert cycle and path == [0]


def test_light_normalize():
    assert light_normalize("Tom &amp;amp; Jerry &gt; you") == "Tom &amp; Jerry > you"  # unescaped once
    assert light_normalize("&gt; quoted line\nmy reply\n  > another quote\nmore") == "my reply more"
    assert light_normalize("&gt; only a quote") == ""
    assert light_normalize("see [the docs](https://x.org/a_(b)) now") == "see the docs now"
    assert light_normalize("  many\n\n spaces\t here ") == "many spaces here"
    assert light_normalize("[removed] stays text") == "[removed] stays text"


@pytest.mark.parametrize("native", [True, False], ids=["c", "numpy"])
def test_whitespace_token_counts_match_python_split(native, monkeypatch):
    """The vectorized too_few_tokens count is ``len(text.split())`` for every Python whitespace character,
    in the C module and in the numpy/Arrow path alike; ``skip_backslash`` counts the text without "\\"."""
    import random

    import pyarrow as pa

    from dialogsmith import fastjson
    from dialogsmith.instances.job import whitespace_token_counts

    if native and not fastjson.AVAILABLE:
        pytest.skip("the C module is not built")
    monkeypatch.setattr(fastjson, "AVAILABLE", native)

    spaces = [chr(c) for c in range(0x110000) if chr(c).isspace()]
    pool = [*spaces, "a", "b", "\\", "\u200b", "\ufeff", "é"]  # zero-width space, BOM: not whitespace
    rng = random.Random(3)
    texts = ["", " ", "a", *spaces]
    texts += ["".join(rng.choice(pool) for _ in range(rng.randint(0, 8))) for _ in range(5000)]
    got = whitespace_token_counts(pa.array(texts + [None])).to_pylist()
    assert got == [len(t.split()) for t in texts] + [None]
    got = whitespace_token_counts(pa.array(texts + [None]), skip_backslash=True).to_pylist()
    assert got == [len(t.replace("\\", "").split()) for t in texts] + [None]
    # all-ASCII arrays take the numpy path: every ASCII whitespace, sliced and chunked arrays, nulls
    ascii_pool = [chr(c) for c in range(128) if chr(c).isspace()] + ["a", "b", "\\", "x y"]
    texts = ["", " ", "a", *(t for t in spaces if t.isascii())]
    texts += ["".join(rng.choice(ascii_pool) for _ in range(rng.randint(0, 9))) for _ in range(5000)]
    arr = pa.array([None, *texts, None])
    want = [None, *(len(t.split()) for t in texts), None]
    assert whitespace_token_counts(arr).to_pylist() == want
    assert whitespace_token_counts(arr.slice(7, 900)).to_pylist() == want[7:907]
    chunked = pa.chunked_array([arr.slice(0, 100), arr.slice(100)])
    assert whitespace_token_counts(chunked).to_pylist() == want


def _submissions_row_by_row(subs):
    """Pass 1 over submissions as the released code reads them: one row at a time, a later id wins."""
    from dialogsmith.text.dialogpt import minimal_normalize

    subs = subs.sort_by([("source", "ascending"), ("line", "ascending")])
    kept, title, subreddit = set(), {}, {}
    for sid, raw, permalink, n in zip(
        *(subs[c].to_pylist() for c in ("id", "title", "permalink", "num_comments")), strict=True
    ):
        if sid is None or n is None or n < 2:
            continue
        link = "t3_" + sid
        kept.add(link)
        raw = "None" if raw is None else raw
        if not minimal_normalize(raw).rstrip():
            title.pop(link, None)
            subreddit.pop(link, None)
            continue
        title[link] = raw
        parts = str(permalink).split("/")
        subreddit[link] = parts[2].lower() if len(parts) > 2 else ""
    return kept, title, subreddit


def test_dialogpt_submissions_match_the_row_by_row_reading():
    """The vectorized pass 1 over submissions: duplicates (the last wins, also when its title is empty),
    null ids and titles, titles that normalize to nothing (backslashes, Unicode spaces), odd permalinks."""
    import random

    import pyarrow as pa

    from dialogsmith.instances.job import dialogpt_submissions

    rng = random.Random(5)
    titles = [
        None,
        "",
        " ",
        "\\",
        "\\\\ \\",
        "\u3000",
        "\x1c",
        "a",
        " a ",
        "A title",
        "x\\",
        "\u200b",
        "é",
        "\t\n",
    ]
    permalinks = [None, "", "/r/AskReddit/comments/x/", "/r/ÉCOLE/x", "/r/İx/y", "a/b", "/r/"]
    schema = pa.schema(
        [
            ("id", pa.string()),
            ("title", pa.string()),
            ("permalink", pa.string()),
            ("num_comments", pa.int64()),
        ]
        + [("source", pa.string()), ("line", pa.int64())]
    )
    for _ in range(300):
        n = rng.randint(0, 40)
        lines = list(range(n))
        rng.shuffle(lines)
        table = pa.table(
            {
                "id": [rng.choice([None, "a", "b", "c", "d"]) for _ in range(n)],
                "title": [rng.choice(titles) for _ in range(n)],
                "permalink": [rng.choice(permalinks) for _ in range(n)],
                "num_comments": [rng.choice([None, 0, 1, 2, 5]) for _ in range(n)],
                "source": [rng.choice(["RS_a", "RS_b"]) for _ in range(n)],
                "line": lines,
            },
            schema=schema,
        )
        got = dialogpt_submissions(table)
        assert (got.kept_links, got.title, got.subreddit) == _submissions_row_by_row(table)
        assert got.read == n


@pytest.mark.parametrize(
    "alphabet", ["0123456789abcdefghijklmnopqrstuvwxyz", "abcXYZ_-"], ids=["base36", "other"]
)
def test_parent_index_and_leaf_flags_match_dicts(alphabet):
    """Parents by integer codes of reddit ids (or by hashing strings when an id is not [0-9a-z]+): the
    released dict semantics (a later duplicate id wins), misses, submissions, and leaves."""
    import random

    import pyarrow as pa

    from dialogsmith.instances.job import _PARENT_MISSING, _PARENT_SUBMISSION, _parent_index_array

    rng = random.Random(11)
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyzAB_-"
    for _ in range(50):
        pool = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 13))) for _ in range(30)]
        pool += ["0", "00", "a0", "a", "zzzzzzzzzzzz"]
        ids = [rng.choice(pool) for _ in range(rng.randint(1, 60))]
        pids = [
            rng.choice(["t1_" + rng.choice(pool), "t3_" + rng.choice(pool), "None", "t1_", "t2_x", "t1_A"])
            for _ in ids
        ]
        rows = {"t1_" + cid: i for i, cid in enumerate(ids)}  # the later row wins
        want = [_PARENT_SUBMISSION if p.startswith("t3_") else rows.get(p, _PARENT_MISSING) for p in pids]
        t1ids = pa.array(["t1_" + cid for cid in ids])
        parent, leaf = _parent_index_array(t1ids, pa.array(pids))
        assert parent.tolist() == want
        assert leaf.tolist() == ["t1_" + cid not in set(pids) for cid in ids]


def test_base36_keys_native_and_numpy_agree():
    import random

    import numpy as np
    import pyarrow as pa

    from dialogsmith import idkeys

    rng = random.Random(3)
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
    good = [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))).lstrip("0") or "a"
        for _ in range(500)
    ]
    for prefix in (b"", b"t1_"):
        ids = pa.array([prefix.decode() + g for g in good])
        native, numpy_ = idkeys.base36_keys(ids, prefix), idkeys._numpy_keys(ids, prefix, None)
        assert native is not None and np.array_equal(native, numpy_)
        assert native.tolist() == [int(g, 36) for g in good]
        for bad in ("0a", "A", "", "x" * 13, "a-b", "é"):
            arr = pa.array([prefix.decode() + good[0], prefix.decode() + bad])
            assert idkeys.base36_keys(arr, prefix) is None and idkeys._numpy_keys(arr, prefix, None) is None
            rows = np.array([0])
            assert idkeys.base36_keys(arr, prefix, rows).tolist() == [int(good[0], 36), -1]
    assert idkeys.base36_keys(pa.array(["t3_abc", "t1_abc"]), b"t1_") is None


def test_id_keys_are_base36_values_or_marked_hashes():
    import pyarrow as pa

    from dialogsmith import idkeys

    ids = pa.array(["abc", "0a", "ABC", "abc", "zzzzzzzzzzzz", "x" * 13, ""])
    keys = idkeys.id_key(ids)
    assert keys[0] == int("abc", 36) and keys[4] == int("z" * 12, 36) and keys[0] == keys[3]
    assert all(k >= 1 << 63 for k in keys[[1, 2, 5, 6]]) and len(set(keys[[1, 2, 5, 6]].tolist())) == 4
    rows, parents = idkeys.parent_keys(pa.array(["t1_abc", "t3_abc", None, "t1_0a"]))
    assert rows.tolist() == [0, 3] and parents[0] == keys[0] and parents[1] == keys[1]
