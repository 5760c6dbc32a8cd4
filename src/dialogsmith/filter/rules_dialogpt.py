"""The released DialoGPT extractor's clean checks (the dialogpt profile), each with its vector twin.

A rule is ``rule(view, params) -> None | reason`` (its reason is its name) and its twin
``rule_vec(batch, params) -> bool mask`` (True = drop) gives the same decision on every row; rules.py
registers both.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dialogsmith import fastjson
from dialogsmith.filter.batch import BRACKETS_PATTERN, SHOUTING_PATTERN, URL_TOKEN, Batch, InstanceView
from dialogsmith.filter.vector import RE2_REPEAT_MAX, WS_CLASS, blocklist_hits, mask, row_sums


def blocklisted_word(v: InstanceView, p) -> str | None:
    """Only with leaves_only off (no weight prefix): a blocklisted word/phrase occurs in tgt."""
    if v.weights_in_text or p.words is None:
        return None
    return "blocklisted_word" if p.words.contains(v.tgt) else None


def blocklisted_word_vec(b: Batch, p) -> np.ndarray:
    out = np.zeros(b.n, dtype=bool)
    if p.words is None:
        return out
    rows = np.flatnonzero(~b.weights_in_text)
    if len(rows):
        out[rows] = blocklist_hits(p.words, b.tgt.take(pa.array(rows)))
    return out


def tgt_too_short(v: InstanceView, p) -> str | None:
    return "tgt_too_short" if len(v.tgt.split()) <= 1 else None


def tgt_too_short_vec(b: Batch, p) -> np.ndarray:
    # tgt = prefix + response, the prefix one token ("1.0") followed by a space
    return b.turn_tokens[b.last] + b.weights_in_text <= 1


def long_token(v: InstanceView, p) -> str | None:
    toks = v.tgt.split()
    return "long_token" if toks and max(len(t) for t in toks) > p.max_token_chars else None


def long_token_vec(b: Batch, p) -> np.ndarray:
    limit = max(p.max_token_chars + 1, 1)  # a token of >= limit characters
    if limit < RE2_REPEAT_MAX:
        return mask(pc.match_substring_regex(b.tgt, f"[^{WS_CLASS}]{{{limit},}}"))
    tgts = b.tgt.to_pylist()
    return np.array([long_token(InstanceView([], "", t, ""), p) is not None for t in tgts], dtype=bool)


def too_many_tokens(v: InstanceView, p) -> str | None:
    return "too_many_tokens" if len(v.src.split()) + len(v.tgt.split()) > p.max_tokens else None


def too_many_tokens_vec(b: Batch, p) -> np.ndarray:
    # src = " EOS ".join(shown context turns): the turns' tokens (+1 for a weight prefix), plus one
    # "EOS" between two context turns; tgt: the last turn's.
    per_turn = b.turn_tokens + b.weights_in_text[b.parents]
    n_turns = np.diff(b.offsets)
    return row_sums(per_turn, b.offsets) + np.maximum(n_turns - 2, 0) > p.max_tokens


def has_url(v: InstanceView, p) -> str | None:
    return "has_url" if URL_TOKEN in v.src + " " + v.tgt else None


def has_url_vec(b: Batch, p) -> np.ndarray:
    return b.any_turn(b.prefiltered_match(URL_TOKEN, literal=True))


_BRACKETS = re.compile(BRACKETS_PATTERN)


def has_brackets(v: InstanceView, p) -> str | None:
    return "has_brackets" if _BRACKETS.search(v.src + " " + v.tgt) else None


def has_brackets_vec(b: Batch, p) -> np.ndarray:
    return b.any_turn(b.prefiltered_match(BRACKETS_PATTERN))


_SHOUTING = re.compile(SHOUTING_PATTERN)


def shouting(v: InstanceView, p) -> str | None:
    return "shouting" if _SHOUTING.search(v.src + " " + v.tgt) else None


def shouting_vec(b: Batch, p) -> np.ndarray:
    return b.any_turn(b.prefiltered_match(SHOUTING_PATTERN))


def repeated_word(v: InstanceView, p) -> str | None:
    """Three consecutive equal whitespace tokens in tgt (a weight prefix is token 0)."""
    t = v.tgt.split()
    return "repeated_word" if any(t[i] == t[i + 1] == t[i + 2] for i in range(len(t) - 2)) else None


def repeated_word_vec(b: Batch, p) -> np.ndarray:
    # Rows whose tgt has three consecutive equal token hashes, confirmed on the strings (a hash
    # collision could only add a candidate, never lose one).
    out = np.zeros(b.n, dtype=bool)
    counts, h = fastjson.token_hash64(b.tgt)
    if len(h) < 3:
        return out
    first = np.flatnonzero((h[:-2] == h[1:-1]) & (h[1:-1] == h[2:]))  # token index of a run's first
    ends = np.cumsum(counts)
    row = np.searchsorted(ends, first, side="right")
    rows = np.unique(row[first + 2 < ends[row]])  # the run stays inside the row
    if len(rows):
        tgts = b.tgt.take(pa.array(rows)).to_pylist()
        out[rows] = [repeated_word(InstanceView([], "", t, ""), p) is not None for t in tgts]
    return out
