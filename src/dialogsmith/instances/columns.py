"""Walks -> instance columns (schema ``INSTANCES``), shared by both profiles: each comment's turn is
computed once, however many instances hold it, and gathered into list columns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dialogsmith.formats.schemas import INSTANCES
from dialogsmith.instances.config import BuildConfig
from dialogsmith.instances.text import contiguous
from dialogsmith.instances.walk import Targets

ROW_GROUP = 20_000  # instances per Parquet row group


@dataclass
class TurnSource:
    """What the turns of the instances are made of: per comment row and per title row."""

    t1ids: pa.Array  # comment rows' "t1_<id>"
    authors: pa.Array
    raws: pa.Array  # comment bodies as in the dump
    texts: Callable[[np.ndarray], tuple[pa.Array, pa.Array]]  # needed rows -> (texts, weights)
    titles: list[tuple[str, str, float]]  # per title row: (raw turn "title: ...", text, weight)


def instance_columns(
    t: Targets, n_rows: int, src: TurnSource, texts_only: bool = False
) -> dict[str, pa.Array | np.ndarray]:
    """The list columns of the instances (turn ids, authors, raw texts, texts, weights) and their
    ``offsets``: oldest turn first, the title turn (if any) before the comments. ``texts_only``: turn
    ids and authors are null and the raw texts are the texts (for a consumer that reads only texts and
    weights: the TSV)."""
    nt = len(t.rows)
    steps, length = t.walks.steps, t.walks.length
    n_turns = length + t.has_title
    # turn keys: comment rows 0..n_rows-1, then title rows n_rows + k; [title, oldest, ..., target]
    keys_2d = np.full((nt, steps.shape[1] + 1), -1, dtype=np.int64)
    keys_2d[:, 1:] = steps[:, ::-1]
    keys_2d[t.has_title, 0] = n_rows + t.title_of[t.has_title]
    flat = keys_2d.ravel()
    flat = flat[flat >= 0]
    offsets = np.zeros(nt + 1, dtype=np.int32)
    np.cumsum(n_turns, out=offsets[1:])
    # the distinct turn keys, sorted, and each turn's rank among them (keys are dense: a bitmap, not a sort)
    present = np.zeros(n_rows + len(src.titles), dtype=bool)
    present[flat] = True
    needed = np.flatnonzero(present)
    rank = np.cumsum(present) - 1
    needed_rows = needed[needed < n_rows]
    needed_titles = [src.titles[k - n_rows] for k in needed[needed >= n_rows]]
    take = pa.array(needed_rows)
    row_texts, row_weights = src.texts(needed_rows)
    no_values = pa.nulls(len(needed_titles), pa.string())
    texts = pa.concat_arrays([contiguous(row_texts), pa.array([x[1] for x in needed_titles], pa.string())])
    weights = pa.concat_arrays(
        [contiguous(row_weights).cast(pa.float32()), pa.array([x[2] for x in needed_titles], pa.float32())]
    )
    pos = pa.array(rank[flat])
    lists = pa.array(offsets)
    if texts_only:
        nulls = pa.ListArray.from_arrays(lists, pa.nulls(len(flat), pa.string()))
        texts_list = pa.ListArray.from_arrays(lists, texts.take(pos))
        return {
            "turn_ids": pa.nulls(len(flat), pa.string()),
            "offsets": offsets,
            "turn_authors": nulls,
            "turns_raw": texts_list,
            "turns": texts_list,
            "turn_weights": pa.ListArray.from_arrays(lists, weights.take(pos)),
        }
    raws = pa.concat_arrays(
        [contiguous(src.raws.take(take)), pa.array([x[0] for x in needed_titles], pa.string())]
    )
    authors = pa.concat_arrays([contiguous(src.authors.take(take)), no_values])
    turn_id_vals = pa.concat_arrays([contiguous(src.t1ids.take(take)), no_values])  # title: link_id, below
    return {
        "turn_ids": turn_id_vals.take(pos),  # the title turns' ids are filled by instance_table
        "offsets": offsets,
        "turn_authors": pa.ListArray.from_arrays(lists, authors.take(pos)),
        "turns_raw": pa.ListArray.from_arrays(lists, raws.take(pos)),
        "turns": pa.ListArray.from_arrays(lists, texts.take(pos)),
        "turn_weights": pa.ListArray.from_arrays(lists, weights.take(pos)),
    }


@dataclass
class TargetColumns:
    """The scalar columns of the instances, one value per target."""

    links: pa.Array
    parent_ids: pa.Array
    target_ids: pa.Array
    subreddits: pa.Array
    months: pa.Array
    scores: pa.Array | pa.ChunkedArray
    created: pa.Array | pa.ChunkedArray


def instance_table(cfg: BuildConfig, t: Targets, cols: dict, target: TargetColumns) -> pa.Table:
    """One batch of instances in the ``INSTANCES`` schema (``cols`` from ``instance_columns``)."""
    nt = len(t.rows)
    offsets = cols["offsets"]
    turn_ids = cols["turn_ids"]
    if t.has_title.any():  # the title turn (the first of its instance) has the target's link_id
        is_title = np.zeros(int(offsets[-1]), dtype=bool)
        is_title[offsets[:-1][t.has_title]] = True
        n_turns = np.diff(offsets)
        link_per_turn = contiguous(target.links).take(pa.array(np.repeat(np.arange(nt), n_turns)))
        turn_ids = pc.if_else(pa.array(is_title), link_per_turn, turn_ids)
    columns = {
        "instance_id": target.target_ids,
        "link_id": target.links,
        "parent_id": target.parent_ids,
        "target_id": target.target_ids,
        "subreddit": target.subreddits,
        "month": target.months,
        "target_score": target.scores,
        "target_created_utc": target.created,
        "turn_ids": pa.ListArray.from_arrays(pa.array(offsets), contiguous(turn_ids)),
        "turn_authors": cols["turn_authors"],
        "turns_raw": cols["turns_raw"],
        "turns": cols["turns"],
        "turn_weights": cols["turn_weights"],
        "weights_in_text": pa.array(np.full(nt, cfg.weights_in_text), pa.bool_()),
    }
    return pa.Table.from_arrays([columns[f.name] for f in INSTANCES], schema=INSTANCES)
