"""Encoding one batch of instances (pure: Arrow columns in, shard arrays out).

Each turn is encoded separately, as DialoGPT does, and the example rules of the shard format
(``shards.fit_window``) are applied vectorized with numpy; only over-long rows take a Python path.
"""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dialogsmith.formats import shards
from dialogsmith.formats.shards import ShardArrays

# quarantine reasons of rows read from Parquet
NULL_TURNS = "null_turns"  # a null list of turns, or a null turn text
BAD_TURN_WEIGHTS = "bad_turn_weights"  # null weights, or not one weight per turn


def _segment_sums(values: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    cs = np.concatenate([[0], np.cumsum(values, dtype=np.int64)])
    return cs[ends] - cs[starts]


def _gather_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Indices of the concatenated ranges [starts[i], starts[i]+lengths[i])."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    out_starts = np.cumsum(lengths) - lengths
    return np.arange(total, dtype=np.int64) + np.repeat(starts - out_starts, lengths)


def quarantine_mask(turns: pa.Array, weights: pa.Array) -> tuple[np.ndarray, Counter]:
    """bool [rows] True = row is usable; and the quarantine counts by reason."""
    n = len(turns)
    reasons = Counter()
    bad_turns = turns.is_null().to_numpy(zero_copy_only=False)
    n_turns = pc.fill_null(pc.list_value_length(turns), 0).to_numpy(zero_copy_only=False)
    flat = pc.list_flatten(turns)
    if flat.null_count:
        row_of = np.repeat(np.arange(n), n_turns)
        bad_turns = bad_turns.copy()
        bad_turns[row_of[flat.is_null().to_numpy(zero_copy_only=False)]] = True
    n_w = pc.list_value_length(weights).to_numpy(zero_copy_only=False)
    bad_weights = ~bad_turns & (weights.is_null().to_numpy(zero_copy_only=False) | (n_w != n_turns))
    flat_w = pc.list_flatten(weights)
    if flat_w.null_count:
        n_w_filled = pc.fill_null(pc.list_value_length(weights), 0).to_numpy(zero_copy_only=False)
        row_of_w = np.repeat(np.arange(n), n_w_filled)
        bad_weights[row_of_w[flat_w.is_null().to_numpy(zero_copy_only=False)]] = True
        bad_weights &= ~bad_turns
    reasons[NULL_TURNS] = int(bad_turns.sum())
    reasons[BAD_TURN_WEIGHTS] = int(bad_weights.sum())
    return ~(bad_turns | bad_weights), reasons


def tokenize_batch(
    tok, turns: pa.Array, weights: pa.Array, max_len: int, reverse: bool = False
) -> tuple[ShardArrays, Counter, Counter]:
    """Encode one batch of instances and apply the example rules.

    ``turns`` list<string>, ``weights`` list<float> (already quarantine-checked, same lengths).
    Returns (the kept instances, dropped Counter, extra Counter).
    """
    n_rows = len(turns)
    n_turns = pc.list_value_length(turns).to_numpy(zero_copy_only=False).astype(np.int64)
    row_end = np.cumsum(n_turns)
    row_start = row_end - n_turns
    texts = pc.list_flatten(turns).to_pylist()
    w = pc.list_flatten(weights).to_numpy(zero_copy_only=False).astype(np.float32)

    # [T] per turn: encode each turn separately, as DialoGPT does -- but each distinct text once: the
    # instances of a thread share their context turns (a root comment is in every path through it).
    # encode_batch, not encode_batch_fast: as fast or faster on one core with tokenizers 0.23.
    unique: dict[str, int] = {}
    inverse = np.fromiter(
        (unique.setdefault(t, len(unique)) for t in texts), dtype=np.int64, count=len(texts)
    )
    encs = tok.encode_batch(list(unique), add_special_tokens=False)
    u_lens = np.fromiter((len(e) for e in encs), dtype=np.int64, count=len(encs))
    ids = np.fromiter(
        itertools.chain.from_iterable(e.ids for e in encs), dtype=np.uint32, count=int(u_lens.sum())
    )
    lens = u_lens[inverse]
    tok_start = (np.cumsum(u_lens) - u_lens)[inverse]  # into ids (shared by duplicate texts)

    row_of_turn = np.repeat(np.arange(n_rows), n_turns)
    pos = np.arange(len(lens)) - row_start[row_of_turn]
    if reverse:  # turn j of row r <- turn (n_r - 1 - j): newest first
        order = row_start[row_of_turn] + (n_turns[row_of_turn] - 1 - pos)
        lens, w, tok_start = lens[order], w[order], tok_start[order]
    trainable = (w > 0) & (pos > 0)

    row_len = _segment_sums(lens + 1, row_start, row_end) - 1  # input length: tokens + (turns - 1) EOS
    row_trainable = _segment_sums(trainable, row_start, row_end) > 0
    keep = np.zeros(len(lens), dtype=bool)
    dropped, extra = Counter(), Counter()
    dropped[shards.NO_TRAINABLE_TURN] = int((~row_trainable).sum())
    fits = row_trainable & (row_len <= max_len)
    keep[fits[row_of_turn]] = True
    kept_rows = fits.copy()
    for r in np.nonzero(row_trainable & ~fits)[0]:  # too long: cut turns (rare, Python per row)
        a, b = int(row_start[r]), int(row_end[r])
        window = shards.fit_window(lens[a:b].tolist(), trainable[a:b].tolist(), max_len, reverse)
        if isinstance(window, str):
            dropped[window] += 1
            continue
        s, e = window
        keep[a + s : a + e] = True
        trainable[a + s] = False  # first turn of the example is never a target
        kept_rows[r] = True
        extra["truncated_instances"] += 1
        extra["turns_cut"] += (b - a) - (e - s)
    sel = np.nonzero(keep)[0]
    arrays = ShardArrays(
        inst_tokens=_segment_sums(lens * keep, row_start, row_end)[kept_rows],
        inst_turns=_segment_sums(keep, row_start, row_end)[kept_rows],
        turn_lengths=lens[sel].astype(np.uint32),
        turn_trainable=trainable[sel].astype(np.uint8),
        tokens=ids[_gather_ranges(tok_start[sel], lens[sel])],
    )
    extra["tokens_in"] += int(lens.sum())  # tokens of all turns read
    extra["tokens_encoded"] += int(u_lens.sum())  # tokens actually run through the encoder (distinct texts)
    return arrays, dropped, extra
