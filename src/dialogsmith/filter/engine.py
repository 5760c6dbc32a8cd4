"""Columnar engine: build the rules' view of a batch of instances, judge it, hash it.

All per-batch work here runs inside Python tasks on pyarrow tables (no JVM row path).
"""

from __future__ import annotations

import hashlib
import html
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dialogsmith.filter.rules import PLAIN, Batch, Rule, response_trigrams

MALFORMED = "malformed_instance"  # no turns, a null turn, or turn_weights not aligned with turns


def _lists(table: pa.Table, name: str) -> pa.ListArray:
    col = table.column(name)
    return col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)


def _offsets(lists: pa.ListArray) -> np.ndarray:
    lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False)
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    return out


def _relist(offsets: np.ndarray, values: pa.Array) -> pa.ListArray:
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), values)


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
    """html.unescape once, only on the texts that contain '&' (default profile)."""
    flat = turns.flatten()
    has = pc.fill_null(pc.match_substring(flat, "&"), False).to_numpy(zero_copy_only=False)
    if not has.any():
        return _relist(_offsets(turns), flat)
    values = flat.to_pylist()
    for i in np.nonzero(has)[0]:
        values[i] = html.unescape(values[i])
    return _relist(_offsets(turns), pa.array(values, pa.string()))


def make_batch(table: pa.Table, unescape_html: bool = False) -> tuple[Batch, pa.ListArray]:
    """(rules' view, the turns column to write). ``table`` must hold no malformed rows."""
    n = table.num_rows
    turns = _lists(table, "turns")
    if unescape_html:
        turns = unescape_turns(turns)
    offsets = _offsets(turns)
    flat = turns.flatten()
    parents = np.repeat(np.arange(n), np.diff(offsets))
    wit = pc.fill_null(table.column("weights_in_text"), False).to_numpy()
    shown = flat
    if wit.any():
        # "1.0 "/"0.0 " exactly as DialoGPT's f-string-free `sc + ' ' + txt` with sc = '1.0' / '0.0'.
        w = _lists(table, "turn_weights").flatten().to_numpy(zero_copy_only=False)
        uniq = np.unique(w)
        prefix = pa.DictionaryArray.from_arrays(
            pa.array(np.searchsorted(uniq, w).astype(np.int32)), pa.array([f"{u:.1f} " for u in uniq])
        ).dictionary_decode()
        with_prefix = pc.binary_join_element_wise(prefix, flat, "")
        shown = pc.if_else(pa.array(wit[parents]), with_prefix, flat)
    last = offsets[1:] - 1
    tgt = shown.take(pa.array(last))
    response = flat.take(pa.array(last))
    not_last = np.ones(len(flat), dtype=bool)
    not_last[last] = False
    src_lists = _relist(offsets - np.arange(n + 1), shown.filter(pa.array(not_last)))
    src = pc.binary_join(src_lists, " EOS ")
    fast = pc.and_(pc.match_substring_regex(src, PLAIN), pc.match_substring_regex(tgt, PLAIN))
    batch = Batch(
        n=n,
        turns=turns,
        src=src,
        tgt=tgt,
        response=response,
        turns_raw=_lists(table, "turns_raw"),
        authors=_lists(table, "turn_authors"),
        subreddit=table.column("subreddit").combine_chunks(),
        weights_in_text=wit,
        fast=pc.fill_null(fast, False).to_numpy(zero_copy_only=False),
    )
    return batch, turns


def judge(batch: Batch, rules: list[Rule], params) -> np.ndarray:
    """Index into ``rules`` of the first rule each row fails, or -1 (kept)."""
    codes = np.full(batch.n, -1, dtype=np.int16)
    alive = np.ones(batch.n, dtype=bool)
    for k, rule in enumerate(rules):
        if not alive.any():
            break
        if rule.vector is not None:
            fails = np.asarray(rule.vector(batch, params), dtype=bool).copy()
            slow = np.nonzero(alive & ~batch.fast)[0] if not rule.exact_all else ()
        else:
            fails = np.zeros(batch.n, dtype=bool)
            slow = np.nonzero(alive)[0]
        for i in slow:
            fails[i] = rule.check(batch.view(int(i)), params) is not None
        hit = fails & alive
        codes[hit] = k
        alive &= ~hit
    return codes


def trigram_counts(batch: Batch) -> Counter:
    c: Counter = Counter()
    for r in batch.response.to_pylist():
        c.update(response_trigrams(r))
    return c


def pair_keys(turns: pa.ListArray) -> list[bytes]:
    """64-bit digest of (context turns, response) per row: the exact-duplicate key."""
    joined = pc.binary_join(turns, "\x00").to_pylist()
    return [hashlib.blake2b(s.encode("utf-8"), digest_size=8).digest() for s in joined]


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
