"""The thread walk (dialogsmith.instances.walk) on hand-built trees, checked against the expected paths
and against the per-target reference walk of tests/instances_reference.py; parent links by id keys."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest
from instances_reference import TITLE, leaf_flags, parent_indices, walk_up

from dialogsmith import idkeys
from dialogsmith.instances.walk import PARENT_MISSING, PARENT_SUBMISSION, parent_index, walk_targets


def chain(n: int):
    """a0 <- a1 <- ... <- a(n-1); a0 is top-level in thread t3_x."""
    ids = [f"a{i}" for i in range(n)]
    pids = ["t3_x"] + [f"t1_a{i - 1}" for i in range(1, n)]
    return ids, pids


def names(path, ids):
    return ["TITLE" if k == TITLE else ids[k] for k in path]


def walk(target, parent, over_long, max_depth, use_title, detect_cycles):
    """The reference walk's (path, cycle), after checking that the vectorized walk finds the same."""
    want = walk_up(target, parent, over_long, max_depth, use_title, detect_cycles)
    over = np.array(over_long if over_long is not None else [False] * len(parent))
    w = walk_targets(np.array([target]), np.array(parent), over, max_depth, detect_cycles)
    path = w.steps[0, : w.length[0]][::-1].tolist()
    if use_title and w.top[0] and not w.cycle[0]:
        path = [TITLE, *path]
    assert (path, bool(w.cycle[0])) == want
    return want


def linked(ids, pids):
    """The reference parent indices, after checking that ``parent_index`` finds the same (and the leaves)."""
    want = parent_indices(ids, pids)
    parent, leaf = parent_index(pa.array(["t1_" + i for i in ids]), pa.array([p or "" for p in pids]))
    assert parent.tolist() == want
    assert leaf.tolist() == leaf_flags(ids, pids)
    return want


def test_parent_indices_markers_and_cross_thread_parents():
    ids = ["a", "b", "c", "d"]
    pids = ["t3_x", "t1_a", "t1_zz", None]
    assert linked(ids, pids) == [PARENT_SUBMISSION, 0, PARENT_MISSING, PARENT_MISSING]
    links = ["t3_x", "t3_y", "t3_x", "t3_x"]  # b names a as parent but sits in another thread
    assert parent_indices(ids, pids, links)[1] == PARENT_MISSING


def test_chain_deeper_than_max_depth_keeps_the_last_comments():
    ids, pids = chain(8)
    parent = linked(ids, pids)
    path, cycle = walk(7, parent, None, max_depth=5, use_title=False, detect_cycles=True)
    assert names(path, ids) == ["a3", "a4", "a5", "a6", "a7"] and not cycle
    # the title is only added when the walk reaches the top-level comment
    path, _ = walk(7, parent, None, max_depth=5, use_title=True, detect_cycles=True)
    assert TITLE not in path
    path, _ = walk(4, parent, None, max_depth=5, use_title=True, detect_cycles=True)
    assert names(path, ids) == ["TITLE", "a0", "a1", "a2", "a3", "a4"]  # title beyond the 5-comment budget
    assert walk(4, parent, None, max_depth=0, use_title=True, detect_cycles=True)[0] == []


def test_branches_share_ancestors():
    ids = ["r", "x", "y", "x2"]
    pids = ["t3_t", "t1_r", "t1_r", "t1_x"]
    parent = linked(ids, pids)
    assert names(walk(3, parent, None, 5, False, True)[0], ids) == ["r", "x", "x2"]
    assert names(walk(2, parent, None, 5, False, True)[0], ids) == ["r", "y"]
    assert leaf_flags(ids, pids) == [False, False, True, True]


def test_orphans_and_over_long_ancestors_cut_the_context():
    ids, pids = chain(6)
    pids[3] = "t1_gone"  # a3's parent was deleted
    parent = linked(ids, pids)
    assert names(walk(5, parent, None, 10, True, True)[0], ids) == ["a3", "a4", "a5"]
    ids, pids = chain(6)
    parent = linked(ids, pids)
    over_long = [False, False, True, False, False, False]
    assert names(walk(5, parent, over_long, 10, True, True)[0], ids) == ["a3", "a4", "a5"]
    over_long[5] = True  # an over-long target: no turns at all
    assert walk(5, parent, over_long, 10, True, True)[0] == []


def test_cycles_and_self_parents_never_hang():
    ids = ["a", "b", "c"]
    pids = ["t1_c", "t1_a", "t1_b"]  # a <- b <- c <- a
    parent = linked(ids, pids)
    path, cycle = walk(2, parent, None, 10**6, False, detect_cycles=True)
    assert cycle and names(path, ids) == ["a", "b", "c"]
    # dialogpt: no detection, the bounded walk repeats turns as the released recursion does
    path, cycle = walk(0, linked(["s"], ["t1_s"]), None, 3, False, detect_cycles=False)
    assert path == [0, 0, 0] and not cycle
    path, cycle = walk(0, linked(["s"], ["t1_s"]), None, 3, False, detect_cycles=True)
    assert cycle and path == [0]


@pytest.mark.parametrize(
    "alphabet", ["0123456789abcdefghijklmnopqrstuvwxyz", "0123456789abcdefghijklmnopqrstuvwxyzAB_-"],
    ids=["base36", "other"],
)  # fmt: skip
def test_parent_index_and_leaf_flags_match_dicts(alphabet):
    """Parents by integer codes of reddit ids (or by a dictionary encoding of the strings when an id is
    not canonical base 36): the released dict semantics (a later duplicate id wins), misses,
    submissions, and leaves."""
    rng = random.Random(11)
    base36 = alphabet.isalnum() and alphabet.islower()
    for _ in range(50):
        pool = [
            "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12 if base36 else 13)))
            for _ in range(30)
        ]
        pool += ["0", "a0", "a", "zzzzzzzzzzzz"]
        if base36:
            pool = [p.lstrip("0") or "0" for p in pool]
        else:
            pool += ["00"]
        ids = [rng.choice(pool) for _ in range(rng.randint(1, 60))]
        odd = [] if base36 else ["t1_", "t1_A"]
        pids = [
            rng.choice(["t1_" + rng.choice(pool), "t3_" + rng.choice(pool), "None", "t2_x", *odd])
            for _ in ids
        ]
        rows = {"t1_" + cid: i for i, cid in enumerate(ids)}  # the later row wins
        want = [PARENT_SUBMISSION if p.startswith("t3_") else rows.get(p, PARENT_MISSING) for p in pids]
        t1ids = pa.array(["t1_" + cid for cid in ids])
        if base36:  # the int-key path
            assert idkeys.base36_keys(t1ids, b"t1_") is not None
        parent, leaf = parent_index(t1ids, pa.array(pids))
        assert parent.tolist() == want
        assert leaf.tolist() == ["t1_" + cid not in set(pids) for cid in ids]


def test_base36_keys_native_and_numpy_agree():
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
    ids = pa.array(["abc", "0a", "ABC", "abc", "zzzzzzzzzzzz", "x" * 13, ""])
    keys = idkeys.id_key(ids)
    assert keys[0] == int("abc", 36) and keys[4] == int("z" * 12, 36) and keys[0] == keys[3]
    assert all(k >= 1 << 63 for k in keys[[1, 2, 5, 6]]) and len(set(keys[[1, 2, 5, 6]].tolist())) == 4
    rows, parents = idkeys.parent_keys(pa.array(["t1_abc", "t3_abc", None, "t1_0a"]))
    assert rows.tolist() == [0, 3] and parents[0] == keys[0] and parents[1] == keys[1]
