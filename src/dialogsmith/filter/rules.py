"""Filter rules: small pure functions ``rule(view, params) -> None | reason``.

A rule's reason is its stable snake_case name (asserted by tests, counted in ``stats.json`` and the
funnel). Every rule has a per-instance function (the reference semantics, used by unit tests and for any
row the fast path cannot judge exactly) and, where an exact vectorized form exists, a pyarrow version
that judges a whole batch at once. The vectorized forms are exact on "plain" rows (``Batch.fast``):
``src``/``tgt`` made of printable ASCII tokens separated by single spaces, where Python's ``str.split()``
and splitting on " " agree and RE2 and Python ``re`` read the same characters. DialoGPT-normalized text
is always plain; anything else falls back to the per-instance function, so both paths give the same
answer (tested on random text).

What a rule sees (``InstanceView``): the turns as the profile shows them (dialogpt: GPT-normalized;
default: HTML entities unescaped once), ``src``/``tgt`` exactly as DialoGPT's TSV writes them (with the
"1.0 "/"0.0 " weight prefix when ``weights_in_text``), the bare ``response`` (last turn, no prefix),
raw turns, authors, subreddit.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dialogsmith.filter import wordlists


@dataclass
class InstanceView:
    turns: list[str]  # texts as the rules see them, without weight prefix
    src: str  # turns[:-1] (with weight prefixes when weights_in_text) joined by " EOS "
    tgt: str  # last turn (with weight prefix when weights_in_text)
    response: str  # last turn, no prefix
    weights_in_text: bool = False
    turns_raw: list[str] | None = None
    authors: list[str | None] | None = None
    subreddit: str | None = None

    @classmethod
    def from_turns(cls, turns: list[str], weights: list[float] | None = None, **kw) -> InstanceView:
        """Build a view the way DialoGPT's TSV writer does (tests and single-instance use)."""
        shown = (
            [f"{w:.1f} {t}" for w, t in zip(weights, turns, strict=True)] if weights is not None else turns
        )
        return cls(
            turns=list(turns),
            src=" EOS ".join(shown[:-1]),
            tgt=shown[-1],
            response=turns[-1],
            weights_in_text=weights is not None,
            **kw,
        )


@dataclass
class Batch:
    """A batch of instances, columnar, as the rules see them. Arrays have one entry per instance."""

    n: int
    turns: pa.ListArray  # list<string>: view texts without prefix
    src: pa.Array  # string
    tgt: pa.Array  # string
    response: pa.Array  # string
    turns_raw: pa.ListArray
    authors: pa.ListArray
    subreddit: pa.Array
    weights_in_text: np.ndarray  # bool
    fast: np.ndarray  # bool: plain rows where the vectorized rules are exact

    def view(self, i: int) -> InstanceView:
        return InstanceView(
            turns=self.turns[i].as_py(),
            src=self.src[i].as_py(),
            tgt=self.tgt[i].as_py(),
            response=self.response[i].as_py(),
            weights_in_text=bool(self.weights_in_text[i]),
            turns_raw=self.turns_raw[i].as_py(),
            authors=self.authors[i].as_py(),
            subreddit=self.subreddit[i].as_py(),
        )


Check = Callable[[InstanceView, Any], "str | None"]
Vector = Callable[[Batch, Any], np.ndarray]


@dataclass(frozen=True)
class Rule:
    name: str  # the stable reason
    check: Check  # per-instance reference
    vector: Vector | None = None  # bool mask (True = drop), exact on Batch.fast rows (or all, see below)
    exact_all: bool = False  # the vector form is exact on every row, plain or not
    doc: str = ""


# --- helpers ------------------------------------------------------------------------------------

PLAIN = r"^(?:[!-~]+(?: [!-~]+)*)?$"  # printable-ASCII tokens separated by single spaces (or empty)


def _mask(a) -> np.ndarray:
    """Arrow boolean (nulls = False) → numpy bool."""
    return pc.fill_null(a, False).to_numpy(zero_copy_only=False).astype(bool, copy=False)


def _any_per_row(flat_mask, lists: pa.ListArray, n: int) -> np.ndarray:
    """Per-row OR of a mask over the flattened values of ``lists``."""
    out = np.zeros(n, dtype=bool)
    m = _mask(flat_mask)
    if m.any():
        parents = pc.list_parent_indices(lists).to_numpy()
        out[parents[m]] = True
    return out


def _n_tokens(a) -> np.ndarray:
    """Whitespace tokens of plain strings: spaces + 1, or 0 for the empty string."""
    spaces = pc.count_substring(a, " ").to_numpy(zero_copy_only=False)
    return np.where(pc.utf8_length(a).to_numpy(zero_copy_only=False) > 0, spaces + 1, 0)


def _lists_flat(lists: pa.ListArray) -> pa.Array:
    return lists.flatten()


# --- the released extractor's clean checks (dialogpt profile), in its order ---------------------


def blocklisted_word(v: InstanceView, p) -> str | None:
    """Only with leaves_only off (no weight prefix): a blocklisted word/phrase occurs in tgt."""
    if v.weights_in_text or p.words is None:
        return None
    return "blocklisted_word" if p.words.contains(v.tgt) else None


def _blocklisted_word_vec(b: Batch, p) -> np.ndarray:
    out = np.zeros(b.n, dtype=bool)
    if p.words is None:
        return out
    rows = np.flatnonzero(~b.weights_in_text)
    out[rows] = [p.words.contains(t) for t in b.tgt.take(pa.array(rows)).to_pylist()]
    return out


def tgt_too_short(v: InstanceView, p) -> str | None:
    return "tgt_too_short" if len(v.tgt.split()) <= 1 else None


def _tgt_too_short_vec(b: Batch, p) -> np.ndarray:
    return _n_tokens(b.tgt) <= 1


def long_token(v: InstanceView, p) -> str | None:
    toks = v.tgt.split()
    return "long_token" if toks and max(len(t) for t in toks) > p.max_token_chars else None


def _long_token_vec(b: Batch, p) -> np.ndarray:
    return _mask(pc.match_substring_regex(b.tgt, f"[^ ]{{{p.max_token_chars + 1},}}"))


def too_many_tokens(v: InstanceView, p) -> str | None:
    return "too_many_tokens" if len(v.src.split()) + len(v.tgt.split()) > p.max_tokens else None


def _too_many_tokens_vec(b: Batch, p) -> np.ndarray:
    return (_n_tokens(b.src) + _n_tokens(b.tgt)) > p.max_tokens


def has_url(v: InstanceView, p) -> str | None:
    return "has_url" if "__url__" in v.src + " " + v.tgt else None


def _has_url_vec(b: Batch, p) -> np.ndarray:
    # "__url__" has no space, so a match in src + " " + tgt is a match in src or in tgt.
    return _mask(pc.match_substring(b.src, "__url__")) | _mask(pc.match_substring(b.tgt, "__url__"))


_BRACKETS = re.compile(r"[\[\]()]")


def has_brackets(v: InstanceView, p) -> str | None:
    return "has_brackets" if _BRACKETS.search(v.src + " " + v.tgt) else None


def _has_brackets_vec(b: Batch, p) -> np.ndarray:
    return _mask(pc.match_substring_regex(b.src, r"[\[\]()]")) | _mask(
        pc.match_substring_regex(b.tgt, r"[\[\]()]")
    )


_SHOUTING = re.compile(r"[A-Z]{5,}")


def shouting(v: InstanceView, p) -> str | None:
    return "shouting" if _SHOUTING.search(v.src + " " + v.tgt) else None


def _shouting_vec(b: Batch, p) -> np.ndarray:
    return _mask(pc.match_substring_regex(b.src, "[A-Z]{5,}")) | _mask(
        pc.match_substring_regex(b.tgt, "[A-Z]{5,}")
    )


def repeated_word(v: InstanceView, p) -> str | None:
    """Three consecutive equal whitespace tokens in tgt (a weight prefix is token 0)."""
    t = v.tgt.split()
    return "repeated_word" if any(t[i] == t[i + 1] == t[i + 2] for i in range(len(t) - 2)) else None


def _repeated_word_vec(b: Batch, p) -> np.ndarray:
    out = np.zeros(b.n, dtype=bool)
    toks = pc.split_pattern(b.tgt, " ")  # == str.split() on plain rows
    flat = toks.flatten()
    if len(flat) < 3:
        return out
    parents = pc.list_parent_indices(toks).to_numpy()
    a, m, z = flat.slice(0, len(flat) - 2), flat.slice(1, len(flat) - 2), flat.slice(2)
    eq = _mask(pc.and_(pc.equal(a, m), pc.equal(m, z))) & (parents[:-2] == parents[2:])
    out[parents[:-2][eq]] = True
    return out


# --- the paper's rules that the released code lacks -------------------------------------------


def blocklisted_subreddit(v: InstanceView, p) -> str | None:
    if not p.subreddits:
        return None
    return "blocklisted_subreddit" if (v.subreddit or "").lower() in p.subreddits else None


def _blocklisted_subreddit_vec(b: Batch, p) -> np.ndarray:
    if not p.subreddits:
        return np.zeros(b.n, dtype=bool)
    return _mask(pc.is_in(pc.utf8_lower(b.subreddit), value_set=pa.array(sorted(p.subreddits), pa.string())))


def blocklisted_context(v: InstanceView, p) -> str | None:
    """Offensive language anywhere in the context (the response is blocklisted_word's job)."""
    if p.words is None:
        return None
    return "blocklisted_context" if any(p.words.contains(t) for t in v.turns[:-1]) else None


_TOP50_PATTERN = r"\b(?:" + "|".join(re.escape(w) for w in wordlists.TOP50_FORMS) + r")\b"
_TOP50 = re.compile(_TOP50_PATTERN, re.IGNORECASE | re.ASCII)


def no_common_word(v: InstanceView, p) -> str | None:
    """The response contains none of the 50 most frequent English words (paper, section 3)."""
    return None if _TOP50.search(v.response) else "no_common_word"


def _no_common_word_vec(b: Batch, p) -> np.ndarray:
    return ~_mask(pc.match_substring_regex(b.response, _TOP50_PATTERN, ignore_case=True))


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


# --- what a careful builder adds (default profile) ---------------------------------------------

_GONE = ("[deleted]", "[removed]")


def removed_comment(v: InstanceView, p) -> str | None:
    """A turn whose raw body is [deleted] or [removed] (moderator removal): the text is not the comment."""
    return "removed_comment" if any((t or "").strip() in _GONE for t in v.turns_raw or []) else None


def _removed_comment_vec(b: Batch, p) -> np.ndarray:
    flat = pc.utf8_trim_whitespace(b.turns_raw.flatten())
    return _any_per_row(pc.is_in(flat, value_set=pa.array(_GONE)), b.turns_raw, b.n)


def empty_turn(v: InstanceView, p) -> str | None:
    """A turn with no text left after normalization (emoji-only, symbols-only): a hole in the dialogue."""
    return "empty_turn" if any(not t.strip() for t in v.turns) else None


def _empty_turn_vec(b: Batch, p) -> np.ndarray:
    return _any_per_row(pc.equal(pc.utf8_length(b.turns.flatten()), 0), b.turns, b.n)


def _is_bot_name(name: str | None) -> bool:
    if not name:
        return False
    low = name.lower()
    return low in wordlists.KNOWN_BOTS or low.endswith("bot")


def bot_author(v: InstanceView, p) -> str | None:
    """A turn written by a bot account (AutoModerator, names ending in "bot"/"_bot", a known list)."""
    return "bot_author" if any(_is_bot_name(a) for a in v.authors or []) else None


def _bot_author_vec(b: Batch, p) -> np.ndarray:
    low = pc.utf8_lower(b.authors.flatten())
    hit = pc.or_(pc.ends_with(low, "bot"), pc.is_in(low, value_set=pa.array(sorted(wordlists.KNOWN_BOTS))))
    return _any_per_row(hit, b.authors, b.n)


_BOILERPLATE = re.compile(wordlists.BOT_BOILERPLATE_REGEX, re.ASCII)


def bot_boilerplate(v: InstanceView, p) -> str | None:
    """A turn with bot boilerplate ("I am a bot", "This action was performed automatically")."""
    return "bot_boilerplate" if any(_BOILERPLATE.search(t) for t in v.turns) else None


def _bot_boilerplate_vec(b: Batch, p) -> np.ndarray:
    return _any_per_row(
        pc.match_substring_regex(b.turns.flatten(), wordlists.BOT_BOILERPLATE_REGEX), b.turns, b.n
    )


def self_reply(v: InstanceView, p) -> str | None:
    """The response's author also wrote the turn it replies to: a monologue, not a dialogue turn."""
    a = v.authors or []
    if len(a) < 2 or not a[-1] or a[-1] == "[deleted]":
        return None
    return "self_reply" if a[-1] == a[-2] else None


def echo_response(v: InstanceView, p) -> str | None:
    """The response repeats a context turn verbatim (copypasta chains, "this" → "this")."""
    r = v.response.strip().lower()
    return "echo_response" if any(t.strip().lower() == r for t in v.turns[:-1]) else None


# Duplicate (context, response) pairs are judged across the corpus by the job (dedup.py), after all
# the rules above; this name is its reason.
DUPLICATE_PAIR = "duplicate_pair"

RULES: dict[str, Rule] = {
    r.name: r
    for r in (
        Rule(
            "blocklisted_word",
            blocklisted_word,
            _blocklisted_word_vec,
            exact_all=True,  # the same check, without building a per-row view
            doc="tgt contains a blocklisted word (leaves_only off only)",
        ),
        Rule("tgt_too_short", tgt_too_short, _tgt_too_short_vec, doc="tgt has at most 1 whitespace token"),
        Rule("long_token", long_token, _long_token_vec, doc="a tgt token longer than max_token_chars (30)"),
        Rule(
            "too_many_tokens", too_many_tokens, _too_many_tokens_vec, doc="src+tgt tokens > max_tokens (200)"
        ),
        Rule("has_url", has_url, _has_url_vec, exact_all=True, doc="src or tgt contains __url__"),
        Rule(
            "has_brackets", has_brackets, _has_brackets_vec, exact_all=True, doc="src or tgt contains [ ] ( )"
        ),
        Rule("shouting", shouting, _shouting_vec, exact_all=True, doc="src or tgt matches [A-Z]{5,}"),
        Rule("repeated_word", repeated_word, _repeated_word_vec, doc="3 consecutive equal tokens in tgt"),
        Rule("blocklisted_subreddit", blocklisted_subreddit, _blocklisted_subreddit_vec, exact_all=True),
        Rule("blocklisted_context", blocklisted_context, doc="a context turn contains a blocklisted word"),
        Rule(
            "no_common_word", no_common_word, _no_common_word_vec, doc="response has none of the top-50 words"
        ),
        Rule("bland_response", bland_response, doc=">= 90% of the response's trigrams are frequent"),
        Rule("removed_comment", removed_comment, _removed_comment_vec, exact_all=True),
        Rule("empty_turn", empty_turn, _empty_turn_vec),
        Rule("bot_author", bot_author, _bot_author_vec, exact_all=True),
        Rule("bot_boilerplate", bot_boilerplate, _bot_boilerplate_vec),
        Rule("self_reply", self_reply),
        Rule("echo_response", echo_response),
    )
}
