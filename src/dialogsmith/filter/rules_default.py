"""What a careful builder adds (the default profile adds these to the paper's rules).

Each rule returns None or its reason; its vector twin gives the same decision on every row (Python only
for the candidates a hash or a byte scan found, and for non-ASCII names and turns, see vector.py).
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
    WS_CLASS,
    any_rows,
    ascii_case_pattern,
    list_offsets,
    list_values,
    mask,
    python_lower,
    strings_with_bytes,
)

_GONE = ("[deleted]", "[removed]")
_GONE_PATTERN = rf"^[{WS_CLASS}]*\[(?:deleted|removed)\][{WS_CLASS}]*$"  # t.strip() in _GONE


def removed_comment(v: InstanceView, p) -> str | None:
    """A turn whose raw body is [deleted] or [removed] (moderator removal): the text is not the comment."""
    return "removed_comment" if any((t or "").strip() in _GONE for t in v.turns_raw or []) else None


def removed_comment_vec(b: Batch, p) -> np.ndarray:
    raw = list_values(b.turns_raw)
    hit = strings_with_bytes(raw, b"[")
    cand = np.flatnonzero(hit)
    hit[cand] = mask(pc.match_substring_regex(raw.take(pa.array(cand)), _GONE_PATTERN))
    return any_rows(hit, np.repeat(np.arange(b.n), np.diff(list_offsets(b.turns_raw))), b.n)


def empty_turn(v: InstanceView, p) -> str | None:
    """A turn with no text left after normalization (emoji-only, symbols-only): a hole in the dialogue."""
    return "empty_turn" if any(not t.strip() for t in v.turns) else None


def empty_turn_vec(b: Batch, p) -> np.ndarray:
    return b.any_turn(b.turn_tokens == 0)  # t.strip() is empty exactly when t.split() is


def _is_bot_name(name: str | None) -> bool:
    if not name:
        return False
    low = name.lower()
    return low in wordlists.KNOWN_BOTS or low.endswith("bot")


def bot_author(v: InstanceView, p) -> str | None:
    """A turn written by a bot account (AutoModerator, names ending in "bot"/"_bot", a known list)."""
    return "bot_author" if any(_is_bot_name(a) for a in v.authors or []) else None


def bot_author_vec(b: Batch, p) -> np.ndarray:
    names = list_values(b.authors)
    low = python_lower(names)
    hit = pc.or_(pc.ends_with(low, "bot"), pc.is_in(low, value_set=pa.array(sorted(wordlists.KNOWN_BOTS))))
    return any_rows(mask(hit), np.repeat(np.arange(b.n), np.diff(list_offsets(b.authors))), b.n)


_BOILERPLATE = re.compile(wordlists.BOT_BOILERPLATE_REGEX, re.ASCII)
_BOILERPLATE_LOWER = ascii_case_pattern(wordlists.BOT_BOILERPLATE_REGEX)


def bot_boilerplate(v: InstanceView, p) -> str | None:
    """A turn with bot boilerplate ("I am a bot", "This action was performed automatically")."""
    return "bot_boilerplate" if any(_BOILERPLATE.search(t) for t in v.turns) else None


def bot_boilerplate_vec(b: Batch, p) -> np.ndarray:
    return b.any_turn(b.prefiltered_match(_BOILERPLATE_LOWER, lower=True))


def self_reply(v: InstanceView, p) -> str | None:
    """The response's author also wrote the turn it replies to: a monologue, not a dialogue turn."""
    a = v.authors or []
    if len(a) < 2 or not a[-1] or a[-1] == "[deleted]":
        return None
    return "self_reply" if a[-1] == a[-2] else None


def self_reply_vec(b: Batch, p) -> np.ndarray:
    out = np.zeros(b.n, dtype=bool)
    offsets = list_offsets(b.authors)
    rows = np.flatnonzero(np.diff(offsets) >= 2)
    if not len(rows):
        return out
    names = list_values(b.authors)
    last = names.take(pa.array(offsets[rows + 1] - 1))
    prev = names.take(pa.array(offsets[rows + 1] - 2))
    real = pc.and_(pc.greater(pc.utf8_length(last), 0), pc.not_equal(last, "[deleted]"))
    out[rows] = mask(pc.and_(real, pc.equal(last, prev)))
    return out


def echo_response(v: InstanceView, p) -> str | None:
    """The response repeats a context turn verbatim (copypasta chains, "this" → "this")."""
    r = v.response.strip().lower()
    return "echo_response" if any(t.strip().lower() == r for t in v.turns[:-1]) else None


def echo_response_vec(b: Batch, p) -> np.ndarray:
    # A hash of each turn's t.strip().lower() (strip: utf8_trim_whitespace, str.strip()'s set; lower:
    # A-Z byte-wise inside the hash for ASCII turns, Python's str.lower first for the others); a context
    # turn whose hash equals its response's is a candidate, confirmed with Python on the strings (echoes
    # are rare: 1 in 637K generated instances).
    ctx = b.context
    if not len(ctx):
        return np.zeros(b.n, dtype=bool)
    h = fastjson.hash64(pc.utf8_trim_whitespace(b.flat), ascii_lower=True)
    other = np.flatnonzero(~b.turn_ascii)
    if len(other):
        low = [t.strip().lower() for t in b.flat.take(pa.array(other)).to_pylist()]
        h[other] = fastjson.hash64(pa.array(low, pa.string()), ascii_lower=True)
    rows = b.parents[ctx]
    resp = b.last[rows]
    cand = np.flatnonzero(h[ctx] == h[resp])
    hit = np.zeros(len(ctx), dtype=bool)
    if len(cand):
        need = np.unique(np.concatenate([ctx[cand], resp[cand]]))
        text = dict(zip(need.tolist(), b.flat.take(pa.array(need)).to_pylist(), strict=True))
        hit[cand] = [
            text[t].strip().lower() == text[r].strip().lower()
            for t, r in zip(ctx[cand].tolist(), resp[cand].tolist(), strict=True)
        ]
    return any_rows(hit, rows, b.n)
