"""What the DialoGPT paper states but the released code lacks (the paper profile adds these to dialogpt's).

``bland_response`` is a corpus rule: its parameter is the set of frequent trigrams of the whole input,
which the job's corpus pass (corpus.py) counts. It decides by 64-bit hashes (``fastjson.trigram_hash64``:
three token hashes of the lower-cased tokens, combined in order; tokens hold no whitespace, so the
trigram string "a b c" is determined by its three tokens). Among n distinct trigrams, some two share a
hash with probability about n**2 / 2**65 (3e-9 for 300K, 3e-4 for 10**8); only then could a decision
differ from the string semantics of ``bland_response``.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dialogsmith import fastjson
from dialogsmith.filter import wordlists
from dialogsmith.filter.batch import Batch, InstanceView
from dialogsmith.filter.vector import (
    any_rows,
    ascii_case_pattern,
    blocklist_hits,
    mask,
    python_lower,
    row_sums,
)


def blocklisted_subreddit(v: InstanceView, p) -> str | None:
    if not p.subreddits:
        return None
    return "blocklisted_subreddit" if (v.subreddit or "").lower() in p.subreddits else None


def blocklisted_subreddit_vec(b: Batch, p) -> np.ndarray:
    if not p.subreddits:
        return np.zeros(b.n, dtype=bool)
    return subreddit_in(b, p.subreddits)


def subreddit_in(b: Batch, names: frozenset[str]) -> np.ndarray:
    """Per row: the subreddit, lower-cased by ``str.lower`` (null: ""), is one of ``names``."""
    low = python_lower(pc.fill_null(b.subreddit, ""))
    return mask(pc.is_in(low, value_set=pa.array(sorted(names), pa.string())))


def subreddit_not_allowed(v: InstanceView, p) -> str | None:
    """Not one of the subreddits of the allow-list (``--subreddits``): a selection any profile applies
    first when it is given, kept beside the blocklist it mirrors."""
    if p.allowed_subreddits is None:
        return None
    return "subreddit_not_allowed" if (v.subreddit or "").lower() not in p.allowed_subreddits else None


def subreddit_not_allowed_vec(b: Batch, p) -> np.ndarray:
    if p.allowed_subreddits is None:
        return np.zeros(b.n, dtype=bool)
    return ~subreddit_in(b, p.allowed_subreddits)


def blocklisted_context(v: InstanceView, p) -> str | None:
    """Offensive language anywhere in the context (the response is blocklisted_word's job)."""
    if p.words is None:
        return None
    return "blocklisted_context" if any(p.words.contains(t) for t in v.turns[:-1]) else None


def blocklisted_context_vec(b: Batch, p) -> np.ndarray:
    if p.words is None or not len(b.context):
        return np.zeros(b.n, dtype=bool)
    ctx = pa.array(b.context)
    hits = blocklist_hits(p.words, b.flat.take(ctx), b.turn_ascii[b.context])
    return any_rows(hits, b.parents[b.context], b.n)


TOP50_PATTERN = r"\b(?:" + "|".join(re.escape(w) for w in wordlists.TOP50_FORMS) + r")\b"
_TOP50 = re.compile(TOP50_PATTERN, re.IGNORECASE | re.ASCII)
_TOP50_LOWER = ascii_case_pattern(TOP50_PATTERN)  # run on the byte-wise lower-cased response


def no_common_word(v: InstanceView, p) -> str | None:
    """The response contains none of the 50 most frequent English words (paper, section 3)."""
    return None if _TOP50.search(v.response) else "no_common_word"


def no_common_word_vec(b: Batch, p) -> np.ndarray:
    return ~mask(pc.match_substring_regex(pc.ascii_lower(b.response), _TOP50_LOWER))


def response_trigrams(response: str) -> list[str]:
    """Lower-cased whitespace-token trigrams of a response (the bland rule's unit)."""
    t = response.lower().split()
    return [f"{t[i]} {t[i + 1]} {t[i + 2]}" for i in range(len(t) - 2)]


def bland_response(v: InstanceView, p) -> str | None:
    """>= p.bland_fraction of the response's trigrams are frequent corpus trigrams (p.frequent).

    A response with fewer than 3 tokens has no trigram and is not judged here.
    """
    grams = response_trigrams(v.response)
    if not grams or not p.frequent:
        return None
    hits = sum(g in p.frequent for g in grams)
    return "bland_response" if hits >= p.bland_fraction * len(grams) else None


def bland_response_vec(b: Batch, p) -> np.ndarray:
    grams, hashes = b.trigrams
    return bland_mask(grams, hashes, frequent_hashes(p), p.bland_fraction)


def frequent_hashes(p) -> np.ndarray:
    """Hashes of the frequent trigrams: p.frequent_hashes (the job's corpus pass) or the hashes of the
    strings in p.frequent (tests, single-instance use)."""
    if p.frequent_hashes is not None:
        return p.frequent_hashes
    # Only strings that response_trigrams can produce: three tokens joined by single spaces, no A-Z
    # (their hash would also be that of their lower-cased form).
    grams = [
        g for g in p.frequent or () if len(g.split()) == 3 and " ".join(g.split()) == g and g == g.lower()
    ]
    if not grams:
        return np.zeros(0, np.uint64)
    return np.unique(fastjson.trigram_hash64(pa.array(grams, pa.string()), ascii_lower=True)[1])


class HashSet64:
    """Exact membership of uint64 values, vectorized: an open-addressing table (linear probing, load
    at most 1/4) built and probed with numpy. ~10x ``np.searchsorted`` on a sorted array for a set of
    ~70K frequent trigrams (binary search jumps through memory; a probe mostly reads one slot)."""

    def __init__(self, values: np.ndarray):
        values = np.unique(np.asarray(values, dtype=np.uint64))
        self.has_zero = bool(len(values) and values[0] == 0)  # 0 marks an empty slot
        values = values[values != 0]
        self.size = len(values) + int(self.has_zero)
        bits = max(4, int(np.ceil(np.log2(max(1, len(values)) * 4))))
        self.mask = np.uint64((1 << bits) - 1)
        table = np.zeros(1 << bits, np.uint64)
        pending, slot = values, values & self.mask
        while len(pending):
            free = np.flatnonzero(table[slot] == 0)
            _, first = np.unique(slot[free], return_index=True)  # one key per free slot per round
            won = free[first]
            table[slot[won]] = pending[won]
            rest = np.ones(len(pending), dtype=bool)
            rest[won] = False
            pending, slot = pending[rest], (slot[rest] + np.uint64(1)) & self.mask
        self.table = table

    def __len__(self) -> int:
        return self.size

    def contains(self, queries: np.ndarray) -> np.ndarray:
        queries = np.asarray(queries, dtype=np.uint64)
        out = np.zeros(len(queries), dtype=bool)
        idx, slot = np.arange(len(queries)), queries & self.mask
        while len(idx):
            seen = self.table[slot]
            q = queries[idx]
            out[idx[(seen == q) & (q != 0)]] = True  # 0 is an empty slot, answered below
            go = (seen != 0) & (seen != q)  # occupied by another key: probe the next slot
            idx, slot = idx[go], (slot[go] + np.uint64(1)) & self.mask
        if self.has_zero:
            out |= queries == 0
        return out


def bland_mask(grams: np.ndarray, hashes: np.ndarray, frequent, fraction: float) -> np.ndarray:
    """Per string: it has trigrams and at least ``fraction`` of them are ``frequent`` (a HashSet64 or
    an array of hashes)."""
    if not isinstance(frequent, HashSet64):
        frequent = HashSet64(frequent)
    if not len(frequent):
        return np.zeros(len(grams), dtype=bool)
    hit = frequent.contains(hashes).astype(np.int64)
    offsets = np.zeros(len(grams) + 1, dtype=np.int64)
    np.cumsum(grams, out=offsets[1:])
    hits = row_sums(hit, offsets)
    return (grams > 0) & (hits >= fraction * grams)
