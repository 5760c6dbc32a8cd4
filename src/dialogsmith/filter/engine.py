"""Columnar engine: build the rules' view of a batch of instances, judge it, hash it.

All per-batch work here runs inside Python tasks on pyarrow tables (no JVM row path).
"""

from __future__ import annotations

import hashlib
import html

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dialogsmith import fastjson
from dialogsmith.filter.batch import Batch
from dialogsmith.filter.rules import Rule
from dialogsmith.filter.vector import list_array, list_offsets, strings_with_bytes

MALFORMED = "malformed_instance"  # no turns, a null turn, or turn_weights not aligned with turns


def _lists(table: pa.Table, name: str) -> pa.ListArray:
    col = table.column(name)
    return col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)


def malformed_mask(table: pa.Table) -> np.ndarray:
    """Rows the rules cannot read: counted as malformed_instance, never a crash."""
    turns = _lists(table, "turns")
    weights = _lists(table, "turn_weights")
    n_turns = pc.fill_null(pc.list_value_length(turns), 0).to_numpy(zero_copy_only=False)
    n_w = pc.fill_null(pc.list_value_length(weights), -1).to_numpy(zero_copy_only=False)
    bad = n_turns == 0
    flat = turns.flatten()
    if flat.null_count:
        parents = pc.list_parent_indices(turns).to_numpy()
        bad[parents[flat.is_null().to_numpy(zero_copy_only=False)]] = True
    wit = pc.fill_null(table.column("weights_in_text"), False).to_numpy()
    bad |= wit & (n_w != n_turns)
    return bad


def unescape_turns(turns: pa.ListArray) -> pa.ListArray:
    """html.unescape once, only on the texts that contain '&' (default profile; ~1% of turns)."""
    flat = turns.flatten()
    has = strings_with_bytes(flat, b"&")
    rows = np.flatnonzero(has)
    if not len(rows):
        return turns if not turns.offset and not turns.null_count else list_array(list_offsets(turns), flat)
    values = [html.unescape(s) for s in flat.take(pa.array(rows)).to_pylist()]
    flat = pc.replace_with_mask(flat, pa.array(has), pa.array(values, pa.string()))
    return list_array(list_offsets(turns), flat)


def make_batch(table: pa.Table, unescape_html: bool = False) -> tuple[Batch, pa.ListArray]:
    """(rules' view, the turns column to write). ``table`` must hold no malformed rows."""
    n = table.num_rows
    turns = _lists(table, "turns")
    if unescape_html:
        turns = unescape_turns(turns)
    offsets = list_offsets(turns)
    flat = turns.flatten()
    wit = pc.fill_null(table.column("weights_in_text"), False).to_numpy(zero_copy_only=False).astype(bool)
    last = pa.array(offsets[1:] - 1)
    response = flat.take(last)
    tgt, prefixes = response, None
    if wit.any():
        # "1.0 "/"0.0 " exactly as DialoGPT's f-string-free `sc + ' ' + txt` with sc = '1.0' / '0.0'.
        # each turn's weight (rows without weights in text may carry any number of weights: 0.0)
        weights = _lists(table, "turn_weights")
        w_flat = weights.flatten().to_numpy(zero_copy_only=False)
        parents = np.repeat(np.arange(n), np.diff(offsets))
        at = list_offsets(weights)[parents] + np.arange(len(flat)) - offsets[parents]
        w = np.where(wit[parents], w_flat[np.minimum(at, len(w_flat) - 1)] if len(w_flat) else 0.0, 0.0)
        uniq = np.unique(w)
        prefixes = pa.DictionaryArray.from_arrays(
            pa.array(np.searchsorted(uniq, w).astype(np.int32)), pa.array([f"{u:.1f} " for u in uniq])
        ).dictionary_decode()
        with_prefix = pc.binary_join_element_wise(prefixes.take(last), response, "")
        tgt = pc.if_else(pa.array(wit), with_prefix, response)
    batch = Batch(
        n=n,
        turns=turns,
        tgt=tgt,
        response=response,
        turns_raw=_lists(table, "turns_raw"),
        authors=_lists(table, "turn_authors"),
        subreddit=table.column("subreddit").combine_chunks(),
        weights_in_text=wit,
        prefixes=prefixes,
    )
    return batch, turns


def judge(batch: Batch, rules: list[Rule], params) -> np.ndarray:
    """Index into ``rules`` of the first rule each row fails, or -1 (kept).

    A rule's vector twin judges the whole batch (exact on every row); a rule without one is checked
    row by row, on the rows still alive."""
    codes = np.full(batch.n, -1, dtype=np.int16)
    alive = np.ones(batch.n, dtype=bool)
    for k, rule in enumerate(rules):
        if not alive.any():
            break
        if rule.vector is not None:
            fails = np.asarray(rule.vector(batch, params), dtype=bool)
        else:
            fails = np.zeros(batch.n, dtype=bool)
            for i in np.flatnonzero(alive):
                fails[i] = rule.check(batch.view(int(i)), params) is not None
        hit = fails & alive
        codes[hit] = k
        alive &= ~hit
    return codes


# (context, response) key: hash64 of each turn, combined in order with the number of turns.
_PAIR_POS = np.uint64(0x9FB21C651E98DF25)
_PAIR_SEED = np.uint64(0x4CF5AD432745937F)


def pair_keys(turns: pa.ListArray) -> np.ndarray:
    """64-bit key of (context turns, response) per row (uint64): the exact-duplicate key.

    key = fmix64(sum_j fmix64(hash64(turn_j) + j * P + S) + n_turns * P) — the turns in order, no
    separator to confuse. Two different pairs share a key with probability 2**-64 (n**2 / 2**65 for
    any two of n pairs: 6e-4 at the released corpus's 146M instances)."""
    offsets = list_offsets(turns)
    n = len(offsets) - 1
    flat = turns.flatten()
    h = fastjson.hash64(flat)
    counts = np.diff(offsets)
    j = np.arange(len(flat), dtype=np.int64) - np.repeat(offsets[:-1], counts)
    x = fastjson.fmix64(h + j.astype(np.uint64) * _PAIR_POS + _PAIR_SEED)
    acc = np.zeros(n, np.uint64)
    nonempty = counts > 0
    if len(x):
        acc[nonempty] = np.add.reduceat(x, offsets[:-1][nonempty])
    return fastjson.fmix64(acc + counts.astype(np.uint64) * _PAIR_POS)


def trigram_partials(hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct trigram hashes, how often each occurs) of one task."""
    if not len(hashes):
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    uniq, counts = np.unique(hashes, return_counts=True)
    return uniq, counts.astype(np.int64)


def split_of(link_ids: pa.Array, fractions: tuple[float, float, float], salt: str) -> np.ndarray:
    """0 train / 1 valid / 2 test from a stable hash of link_id (blake2b, same on every machine)."""
    enc = pc.dictionary_encode(link_ids).combine_chunks() if isinstance(link_ids, pa.ChunkedArray) else None
    enc = enc if enc is not None else pc.dictionary_encode(link_ids)
    uniq = enc.dictionary.to_pylist()
    salt_b = salt.encode("utf-8")
    u = np.array(
        [
            int.from_bytes(hashlib.blake2b(salt_b + (x or "").encode("utf-8"), digest_size=8).digest(), "big")
            / 2.0**64
            for x in uniq
        ]
    )
    cut_train, cut_valid = fractions[0], fractions[0] + fractions[1]
    per_uniq = np.where(u < cut_train, 0, np.where(u < cut_valid, 1, 2)).astype(np.int8)
    return per_uniq[enc.indices.to_numpy(zero_copy_only=False)]
