"""The thread walk, vectorized: parent links, every target's walk up its thread, the title turn and the
depth rules. Both profiles build their instances with it (a per-target reference walk lives in the
tests, as an oracle)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dialogsmith.idkeys import base36_keys, last_index
from dialogsmith.instances.text import contiguous

PARENT_MISSING = -1  # the parent is not among the comments (deleted, filtered, never dumped)
PARENT_SUBMISSION = -2  # the parent is the submission ("t3_"): a top-level comment


def parent_index(t1ids: pa.Array, pids: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The row of each comment's parent among ``t1ids`` ("t1_<id>"; ``pids`` with prefix, no nulls) or
    a marker, and the leaf flags (no row replies to the row). A later duplicate id wins, as in the
    released dict; self-parents and cycles stay as they are (the walk is bounded).

    Reddit ids are base-36 numbers: joined as int64 keys (``idkeys``), ~15x cheaper than hashing the
    strings. Any id that is not canonical base 36 sends the whole batch through one dictionary encoding
    of ids and parent ids (the same result)."""
    n = len(t1ids)
    t1_rows = np.flatnonzero(pc.fill_null(pc.starts_with(pids, "t1_"), False).to_numpy(zero_copy_only=False))
    own = base36_keys(t1ids, b"t1_")
    par = base36_keys(pids, b"t1_", t1_rows) if own is not None else None
    sub = pc.fill_null(pc.starts_with(pids, "t3_"), False).to_numpy(zero_copy_only=False)
    if own is not None and par is not None:
        out = np.full(len(pids), PARENT_MISSING, dtype=np.int64)
        found = last_index(own, par[t1_rows])
        out[t1_rows] = np.where(found >= 0, found, PARENT_MISSING)
        out[sub] = PARENT_SUBMISSION
        return out, ~np.isin(own, par[t1_rows])
    enc = pc.dictionary_encode(pa.concat_arrays([contiguous(t1ids), contiguous(pids)]))
    codes = enc.indices.to_numpy(zero_copy_only=False)
    own, parent_code = codes[:n], codes[n:]
    last_row = np.full(len(enc.dictionary), -1, dtype=np.int64)
    np.maximum.at(last_row, own, np.arange(n, dtype=np.int64))  # the last row holding each id
    out = last_row[parent_code]
    out[out < 0] = PARENT_MISSING
    out[sub] = PARENT_SUBMISSION
    replied_to = np.zeros(len(enc.dictionary), dtype=bool)
    replied_to[parent_code] = True
    return out, ~replied_to[own]


@dataclass
class Walks:
    """Every target's walk up its thread.

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
        top |= alive & (p == PARENT_SUBMISSION)
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

    @classmethod
    def of(cls, rows: np.ndarray, walks: Walks) -> Targets:
        n = len(rows)
        return cls(rows, walks, np.zeros(n, dtype=bool), np.full(n, -1, dtype=np.int64))

    def keep(self, ok: np.ndarray) -> Targets:
        w = self.walks
        return Targets(
            self.rows[ok],
            Walks(w.steps[ok], w.length[ok], w.top[ok], w.cycle[ok]),
            self.has_title[ok],
            self.title_of[ok],
        )


@dataclass
class Trimmed:
    """The targets that keep an instance, and per target before trimming the reason it was dropped."""

    targets: Targets
    untitled: np.ndarray  # the walk reached the top, the title is unknown (dropped: missing_submission)
    too_long: np.ndarray  # too few turns because the target itself is over-long (target_too_long)
    too_shallow: np.ndarray  # fewer than min_depth turns otherwise


def title_and_depth(
    t: Targets,
    comment_rows: np.ndarray,
    over_long: np.ndarray,
    links: pa.Array,
    title_index: Callable[[pa.Array], np.ndarray] | None,
    min_depth: int,
    drop_untitled: bool,
) -> Trimmed:
    """The title turn for the walks that reached a top-level comment (``title_index``: the title row of
    each link_id, -1 when unknown; None: no titles), then ``min_depth``. ``comment_rows``: the comment
    row of each target of ``t``. An unknown title drops the target with ``drop_untitled`` (dialogpt: the
    released code reads the title of the top comment's link_id, a KeyError skips it), else the path
    just starts below the title."""
    n = len(t.rows)
    untitled = np.zeros(n, dtype=bool)
    w = t.walks
    if title_index is not None and w.top.any():
        top_comment = w.steps[np.arange(n), np.maximum(w.length - 1, 0)]
        tops = np.flatnonzero(w.top)
        found = title_index(links.take(pa.array(top_comment[tops])))
        t.has_title[tops] = found >= 0
        t.title_of[tops] = found
        if drop_untitled:
            untitled = w.top & ~t.has_title
    short = (w.length + t.has_title < min_depth) & ~untitled
    too_long = short & over_long[comment_rows]
    return Trimmed(t.keep(~untitled & ~short), untitled, too_long, short & ~too_long)


def released_order(links: pa.Array, pids: pa.Array, ids: pa.Array) -> np.ndarray:
    """Rows sorted by (link_id, parent_id, id): the released candidate order (shards are slices of it)."""
    table = pa.table({"l": links, "p": pids, "i": ids})
    keys = [("l", "ascending"), ("p", "ascending"), ("i", "ascending")]
    return pc.sort_indices(table, sort_keys=keys).to_numpy().astype(np.int64)


def shard_slice(order: np.ndarray, shard: int, n_shards: int) -> np.ndarray:
    """Contiguous slices of the released order: a shard holds whole threads (fewer shared ancestors to
    normalize twice) and a giant thread still spreads over several shards."""
    return order[len(order) * shard // n_shards : len(order) * (shard + 1) // n_shards]
