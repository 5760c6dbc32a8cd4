"""Filter rules: small pure functions ``rule(view, params) -> None | reason``.

A rule's reason is its stable snake_case name (asserted by tests, counted in ``stats.json`` and the
funnel). Every rule has a per-instance function, the reference semantics (unit tests, documentation),
and a vectorized form that judges a whole ``Batch`` at once and gives the same decision on every row
(``exact_all``; tests/test_filter_rules.py compares both on random text with Unicode and odd whitespace,
for every profile). The vectorized forms rest on these facts (each checked by a test):

- ``str.split()``/``str.strip()`` whitespace is the 29 characters of ``PY_WHITESPACE``; the C token
  functions (``fastjson``), Arrow's ``utf8_trim_whitespace`` and the RE2 class ``WS_CLASS`` use exactly
  that set (Arrow's ``ascii_trim_whitespace`` does not: it keeps \\x1c-\\x1f, so it is not used);
- RE2 (Arrow's regex engine) and Python ``re`` read ASCII-only patterns alike, except case folding:
  RE2's ``(?i)`` also folds k to U+212A (Kelvin sign) and s to U+017F (long s), and so do classes like
  ``[sS]`` (RE2 turns them into folded literals). The case-insensitive patterns therefore run, in lower
  case and without ``(?i)``, on the text lower-cased byte-wise (``ascii_case_pattern``); RE2's ``\\b``
  is an ASCII word boundary, like Python's with ``re.ASCII``;
- Python's ``str.lower()`` and Arrow's ``utf8_lower`` differ on ~76 characters (U+0130, final sigma,
  letters of newer Unicode versions), so lower-casing is vectorized for ASCII strings only
  (``ascii_lower``); non-ASCII strings take Python's ``str.lower`` in one list comprehension per batch
  (the fallbacks below name the rules; ~3% of turns in generated 2016 data).

Per-row Python that remains, each only for the strings that need it (all in tests' random text):

- non-ASCII strings, lower-cased with ``str.lower`` (``python_lower``): the subreddit
  (``blocklisted_subreddit``), author names (``bot_author``), turns (``echo_response``), responses
  (the trigrams of ``bland_response``);
- non-ASCII strings checked with ``Blocklist.contains`` (``blocklisted_word``, ``blocklisted_context``:
  ASCII text goes through one RE2 pattern built from the list; a list RE2 refuses goes all through
  ``contains``);
- candidates confirmed on the strings after a 64-bit hash said "maybe" (a collision can only add a
  candidate): the rows whose tgt has three equal consecutive token hashes (``repeated_word``), the
  context turns whose stripped lower-cased hash equals the response's (``echo_response``);
- a ``long_token`` limit of 999 characters or more (RE2's repeat limit): every tgt through Python.

Corpus-level decisions hash instead of comparing strings: ``bland_response`` looks trigrams up by
their 64-bit hash (``fastjson.trigram_hash64``) in the frequent set. Among n distinct trigrams, some two
share a hash with probability about n**2 / 2**65 (3e-9 for 300K, 3e-4 for 10**8); only then could a
decision differ from the string semantics of ``bland_response`` below.

What a rule sees (``InstanceView``): the turns as the profile shows them (dialogpt: GPT-normalized;
default: HTML entities unescaped once), ``src``/``tgt`` exactly as DialoGPT's TSV writes them (with the
"1.0 "/"0.0 " weight prefix when ``weights_in_text``), the bare ``response`` (last turn, no prefix),
raw turns, authors, subreddit.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dialogsmith import fastjson
from dialogsmith.filter import wordlists

# The characters str.isspace() is true for: str.split() and str.strip() separate and strip these.
PY_WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
# The same set as an RE2 class body.
WS_CLASS = (
    r"\x{9}-\x{d}\x{1c}-\x{20}\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}"
)
RE2_REPEAT_MAX = 1000


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


def _offsets(lists: pa.ListArray) -> np.ndarray:
    lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False)
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    return out


def _relist(offsets: np.ndarray, values: pa.Array) -> pa.ListArray:
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), values)


def _flat(lists: pa.ListArray) -> pa.Array:
    """The values of ``lists`` that its offsets cover, null lists counting as empty."""
    if lists.null_count:
        lists = _relist(_offsets(lists), lists.flatten())
    return lists.flatten()


class Batch:
    """A batch of instances, columnar, as the rules see them (one entry per instance; no malformed rows).

    ``turns``: the view texts (no weight prefix); ``shown``: the same texts flat, as DialoGPT's TSV shows
    them (with the "1.0 " prefix on ``weights_in_text`` rows; built on first use: only src needs it).
    Derived arrays (token counts, hashes, regex matches) are computed on first use and shared."""

    def __init__(
        self,
        n: int,
        turns: pa.ListArray,
        tgt: pa.Array,
        response: pa.Array,
        turns_raw: pa.ListArray,
        authors: pa.ListArray,
        subreddit: pa.Array,
        weights_in_text: np.ndarray,
        prefixes: pa.Array | None = None,
    ):
        self.n = n
        self.turns = turns
        self.tgt = tgt
        self.response = response
        self.turns_raw = turns_raw
        self.authors = authors
        self.subreddit = subreddit
        self.weights_in_text = weights_in_text
        self.prefixes = prefixes  # per flat turn: its weight prefix ("1.0 "), when some row shows them
        self._regex: dict[tuple, np.ndarray] = {}

    @cached_property
    def shown(self) -> pa.Array:
        if self.prefixes is None or not self.weights_in_text.any():
            return self.flat
        with_prefix = pc.binary_join_element_wise(self.prefixes, self.flat, "")
        return pc.if_else(pa.array(self.weights_in_text[self.parents]), with_prefix, self.flat)

    # --- structure of the turns --------------------------------------------------------------------

    @cached_property
    def offsets(self) -> np.ndarray:
        return _offsets(self.turns)

    @cached_property
    def flat(self) -> pa.Array:
        return self.turns.flatten()

    @cached_property
    def parents(self) -> np.ndarray:
        """Row of each flat turn."""
        return np.repeat(np.arange(self.n), np.diff(self.offsets))

    @cached_property
    def last(self) -> np.ndarray:
        """Flat index of each row's last turn (the response)."""
        return self.offsets[1:] - 1

    @cached_property
    def context(self) -> np.ndarray:
        """Flat indices of the context turns (all but the last of each row)."""
        not_last = np.ones(len(self.flat), dtype=bool)
        not_last[self.last] = False
        return np.flatnonzero(not_last)

    @cached_property
    def src(self) -> pa.Array:
        """Context turns as shown, joined by " EOS " (DialoGPT's TSV src column)."""
        offsets = self.offsets - np.arange(self.n + 1)
        return pc.binary_join(_relist(offsets, self.shown.take(pa.array(self.context))), " EOS ")

    @cached_property
    def fast(self) -> np.ndarray:
        """Plain rows (printable-ASCII tokens separated by single spaces in src and tgt). No rule needs
        this any more (every vectorized form is exact on every row); kept for callers that report it."""
        return _mask(pc.match_substring_regex(self.src, PLAIN)) & _mask(
            pc.match_substring_regex(self.tgt, PLAIN)
        )

    # --- derived per-turn arrays ---------------------------------------------------------------------

    @cached_property
    def turn_tokens(self) -> np.ndarray:
        """len(turn.split()) per flat view turn."""
        return token_counts(self.flat)

    @cached_property
    def turn_ascii(self) -> np.ndarray:
        return _mask(pc.string_is_ascii(self.flat))

    def any_turn(self, per_turn: np.ndarray) -> np.ndarray:
        return _any_rows(per_turn, self.parents, self.n)

    @cached_property
    def trigrams(self) -> tuple[np.ndarray, np.ndarray]:
        """(trigrams per row, their 64-bit hashes row after row) of ``response.lower().split()``: the
        C/numpy tokenizer lower-cases ASCII bytes itself; non-ASCII responses are lower-cased first by
        Python's str.lower (Arrow's utf8_lower differs on ~76 characters)."""
        response = python_lower(self.response, self.turn_ascii[self.last], ascii_too=False)
        return fastjson.trigram_hash64(response, ascii_lower=True)

    @cached_property
    def prefilter(self) -> np.ndarray:
        """Per flat view turn: it may fail has_url, has_brackets, shouting or bot_boilerplate. One RE2
        pass for the four (a pass costs ~0.1 us per string whatever the pattern); each rule then runs its
        exact pattern on these turns only. The bot phrases use (?i) here: a superset of the exact
        (ASCII-only) match, which is all a prefilter needs."""
        return _mask(pc.match_substring_regex(self.flat, _PREFILTER))

    def turn_rule(self, pattern: str, literal: bool = False, lower: bool = False) -> np.ndarray:
        """Per flat view turn: RE2 ``pattern`` (or the literal substring) matches, in the turn or, with
        ``lower``, in its byte-wise lower-cased form; run on the prefilter's candidates only."""
        key = ("prefiltered", pattern, literal, lower)
        if key not in self._regex:
            cand = np.flatnonzero(self.prefilter)
            out = np.zeros(len(self.flat), dtype=bool)
            if len(cand):
                texts = self.flat.take(pa.array(cand))
                if lower:
                    texts = pc.ascii_lower(texts)
                fn = pc.match_substring if literal else pc.match_substring_regex
                out[cand] = _mask(fn(texts, pattern))
            self._regex[key] = out
        return self._regex[key]

    # --- the reference view of one row ----------------------------------------------------------------

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
    vector: Vector | None = None  # bool mask (True = drop)
    exact_all: bool = False  # the vector form is exact on every row (else only on Batch.fast rows)
    doc: str = ""


# --- helpers ------------------------------------------------------------------------------------

PLAIN = r"^(?:[!-~]+(?: [!-~]+)*)?$"  # printable-ASCII tokens separated by single spaces (or empty)


def _mask(a) -> np.ndarray:
    """Arrow boolean (nulls = False) → numpy bool."""
    if isinstance(a, pa.ChunkedArray):
        a = a.combine_chunks()
    return pc.fill_null(a, False).to_numpy(zero_copy_only=False).astype(bool, copy=False)


def _any_rows(per_item: np.ndarray, parents: np.ndarray, n: int) -> np.ndarray:
    """Per-row OR of a per-item mask (``parents``: the row of each item)."""
    out = np.zeros(n, dtype=bool)
    out[parents[per_item]] = True
    return out


def _row_sums(per_item: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    cs = np.zeros(len(per_item) + 1, dtype=np.int64)
    np.cumsum(per_item, out=cs[1:])
    return cs[offsets[1:]] - cs[offsets[:-1]]


def token_counts(arr: pa.Array) -> np.ndarray:
    """len(s.split()) per string (int64), in C when built, else numpy (same numbers)."""
    native = fastjson.token_counts(arr) if fastjson.AVAILABLE else None
    return native if native is not None else fastjson.token_spans(arr)[0]


def python_lower(arr: pa.Array, is_ascii: np.ndarray | None = None, ascii_too: bool = True) -> pa.Array:
    """``str.lower()`` of every string: ``ascii_lower`` for ASCII strings (left as they are with
    ``ascii_too=False``, for callers that lower-case ASCII bytes themselves), Python for the others."""
    if is_ascii is None:
        is_ascii = _mask(pc.string_is_ascii(arr))
    out = pc.ascii_lower(arr) if ascii_too else arr
    other = np.flatnonzero(~is_ascii)
    if len(other):
        low = [s.lower() if s is not None else None for s in arr.take(pa.array(other)).to_pylist()]
        mask = np.zeros(len(arr), dtype=bool)
        mask[other] = True
        out = pc.replace_with_mask(out, pa.array(mask), pa.array(low, pa.string()))
    return out


def strings_with_bytes(arr: pa.Array, values: bytes) -> np.ndarray:
    """Per string: it holds one of the bytes ``values`` (a numpy scan of the data buffer: ~10x Arrow's
    match_substring, whose cost is per string). Null slots: False."""
    offsets, raw = fastjson._string_buffers(arr)
    out = np.zeros(len(arr), dtype=bool)
    if not len(arr):
        return out
    lo, hi = int(offsets[0]), int(offsets[-1])
    seg = raw[lo:hi]
    hit = seg == values[0]
    for v in values[1:]:
        hit |= seg == v
    pos = np.flatnonzero(hit) + lo
    if len(pos):
        out[np.searchsorted(offsets, pos, side="right") - 1] = True
    if arr.null_count:
        out &= _mask(pc.is_valid(arr))
    return out


def ascii_case_pattern(pattern: str) -> str:
    """The pattern that, run on ``pc.ascii_lower(text)``, finds what ``re.compile(pattern, re.IGNORECASE |
    re.ASCII)`` finds in ``text``: the leading ``(?i)`` dropped, letters outside escapes lower-cased.

    Not RE2's ``(?i)``, nor explicit classes ``[sS]``: RE2 turns those into case-folded literals that also
    match U+017F (long s) and U+212A (Kelvin sign). Byte-wise lower-casing keeps every character's
    place and word-character class, so ``\\b`` and positions are unchanged. Character classes are
    refused (none of our patterns has one)."""
    if pattern.startswith("(?i)"):
        pattern = pattern[4:]
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if c == "[" or (c == "(" and pattern.startswith("(?", i) and not pattern.startswith("(?:", i)):
            raise ValueError(f"ascii_case_pattern: only literals, escapes and (?: groups: {pattern!r}")
        out.append(c.lower() if c.isascii() else c)
        i += 1
    return "".join(out)


def _re2_literal(text: str) -> str:
    return "".join(c if (c.isascii() and (c.isalnum() or c == "_")) else f"\\x{{{ord(c):x}}}" for c in text)


# --- blocklists (flashtext semantics, text/blocklist.py) on whole batches ----------------------------

_WORD = "A-Za-z0-9_"
_BLOCKLIST_PATTERNS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _blocklist_pattern(words) -> str | None:
    """One RE2 pattern equivalent to ``words.contains`` on ASCII text lower-cased byte-wise: a keyword
    between non-word characters (or the ends). None when the keywords cannot be read."""
    try:
        return _BLOCKLIST_PATTERNS[words]
    except (KeyError, TypeError):
        pass
    keys = sorted(k for k in words.keywords() if k.isascii()) if hasattr(words, "keywords") else None
    pattern = None
    if keys is not None:  # "" = no ASCII keyword: no ASCII text can match
        body = "|".join(_re2_literal(k) for k in keys)
        pattern = f"(?:^|[^{_WORD}])(?:{body})(?:[^{_WORD}]|$)" if keys else ""
    try:
        _BLOCKLIST_PATTERNS[words] = pattern
    except TypeError:
        pass
    return pattern


def blocklist_hits(words, texts: pa.Array, is_ascii: np.ndarray | None = None) -> np.ndarray:
    """``words.contains(t)`` for every string (null: False). ASCII strings: one RE2 pass over the
    byte-wise lower-cased text; the others (and every string when the list's pattern cannot be built or
    compiled): ``words.contains`` per string."""
    n = len(texts)
    out = np.zeros(n, dtype=bool)
    if words is None or not len(words) or n == 0:
        return out
    if is_ascii is None:
        is_ascii = _mask(pc.string_is_ascii(texts))
    pattern = _blocklist_pattern(words)
    slow = np.ones(n, dtype=bool)
    if pattern is not None:
        slow = ~is_ascii
        if pattern:
            try:
                out = _mask(pc.match_substring_regex(pc.ascii_lower(texts), pattern)) & is_ascii
            except pa.ArrowException:  # RE2 refused the pattern (size): the per-row path serves
                slow = np.ones(n, dtype=bool)
                out = np.zeros(n, dtype=bool)
    rows = np.flatnonzero(slow)
    if len(rows):
        out[rows] = [t is not None and words.contains(t) for t in texts.take(pa.array(rows)).to_pylist()]
    return out


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
    if len(rows):
        out[rows] = blocklist_hits(p.words, b.tgt.take(pa.array(rows)))
    return out


def tgt_too_short(v: InstanceView, p) -> str | None:
    return "tgt_too_short" if len(v.tgt.split()) <= 1 else None


def _tgt_too_short_vec(b: Batch, p) -> np.ndarray:
    # tgt = prefix + response, the prefix one token ("1.0") followed by a space
    return b.turn_tokens[b.last] + b.weights_in_text <= 1


def long_token(v: InstanceView, p) -> str | None:
    toks = v.tgt.split()
    return "long_token" if toks and max(len(t) for t in toks) > p.max_token_chars else None


def _long_token_vec(b: Batch, p) -> np.ndarray:
    limit = max(p.max_token_chars + 1, 1)  # a token of >= limit characters
    if limit < RE2_REPEAT_MAX:
        return _mask(pc.match_substring_regex(b.tgt, f"[^{WS_CLASS}]{{{limit},}}"))
    tgts = b.tgt.to_pylist()
    return np.array([long_token(InstanceView([], "", t, ""), p) is not None for t in tgts], dtype=bool)


def too_many_tokens(v: InstanceView, p) -> str | None:
    return "too_many_tokens" if len(v.src.split()) + len(v.tgt.split()) > p.max_tokens else None


def _too_many_tokens_vec(b: Batch, p) -> np.ndarray:
    # src = " EOS ".join(shown context turns): the turns' tokens (+1 for a weight prefix), plus one
    # "EOS" between two context turns; tgt: the last turn's.
    per_turn = b.turn_tokens + b.weights_in_text[b.parents]
    n_turns = np.diff(b.offsets)
    return _row_sums(per_turn, b.offsets) + np.maximum(n_turns - 2, 0) > p.max_tokens


def has_url(v: InstanceView, p) -> str | None:
    return "has_url" if "__url__" in v.src + " " + v.tgt else None


# has_url, has_brackets and shouting match no space, and src + " " + tgt is the shown turns joined by
# spaces (" EOS ", " "; a weight prefix "1.0 " has no letter, bracket or underscore): so each holds for
# src + " " + tgt exactly when it holds for one of the view turns.


def _has_url_vec(b: Batch, p) -> np.ndarray:
    return b.any_turn(b.turn_rule("__url__", literal=True))


_BRACKETS_PATTERN = r"[\[\]()]"
_BRACKETS = re.compile(_BRACKETS_PATTERN)


def has_brackets(v: InstanceView, p) -> str | None:
    return "has_brackets" if _BRACKETS.search(v.src + " " + v.tgt) else None


def _has_brackets_vec(b: Batch, p) -> np.ndarray:
    return b.any_turn(b.turn_rule(_BRACKETS_PATTERN))


_SHOUTING_PATTERN = "[A-Z]{5,}"
_SHOUTING = re.compile(_SHOUTING_PATTERN)


def shouting(v: InstanceView, p) -> str | None:
    return "shouting" if _SHOUTING.search(v.src + " " + v.tgt) else None


def _shouting_vec(b: Batch, p) -> np.ndarray:
    return b.any_turn(b.turn_rule(_SHOUTING_PATTERN))


def repeated_word(v: InstanceView, p) -> str | None:
    """Three consecutive equal whitespace tokens in tgt (a weight prefix is token 0)."""
    t = v.tgt.split()
    return "repeated_word" if any(t[i] == t[i + 1] == t[i + 2] for i in range(len(t) - 2)) else None


def _repeated_word_vec(b: Batch, p) -> np.ndarray:
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


# --- the paper's rules that the released code lacks -------------------------------------------


def blocklisted_subreddit(v: InstanceView, p) -> str | None:
    if not p.subreddits:
        return None
    return "blocklisted_subreddit" if (v.subreddit or "").lower() in p.subreddits else None


def _blocklisted_subreddit_vec(b: Batch, p) -> np.ndarray:
    if not p.subreddits:
        return np.zeros(b.n, dtype=bool)
    subs = pc.fill_null(b.subreddit, "")
    low = python_lower(subs)
    return _mask(pc.is_in(low, value_set=pa.array(sorted(p.subreddits), pa.string())))


def blocklisted_context(v: InstanceView, p) -> str | None:
    """Offensive language anywhere in the context (the response is blocklisted_word's job)."""
    if p.words is None:
        return None
    return "blocklisted_context" if any(p.words.contains(t) for t in v.turns[:-1]) else None


def _blocklisted_context_vec(b: Batch, p) -> np.ndarray:
    if p.words is None or not len(b.context):
        return np.zeros(b.n, dtype=bool)
    ctx = pa.array(b.context)
    hits = blocklist_hits(p.words, b.flat.take(ctx), b.turn_ascii[b.context])
    return _any_rows(hits, b.parents[b.context], b.n)


_TOP50_PATTERN = r"\b(?:" + "|".join(re.escape(w) for w in wordlists.TOP50_FORMS) + r")\b"
_TOP50 = re.compile(_TOP50_PATTERN, re.IGNORECASE | re.ASCII)
_TOP50_LOWER = ascii_case_pattern(_TOP50_PATTERN)  # run on the byte-wise lower-cased response


def no_common_word(v: InstanceView, p) -> str | None:
    """The response contains none of the 50 most frequent English words (paper, section 3)."""
    return None if _TOP50.search(v.response) else "no_common_word"


def _no_common_word_vec(b: Batch, p) -> np.ndarray:
    return ~_mask(pc.match_substring_regex(pc.ascii_lower(b.response), _TOP50_LOWER))


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


# Trigram hash: fastjson.trigram_hash64 (three token hashes of the lower-cased tokens, combined in order).
# Tokens hold no whitespace, so the trigram string "a b c" is determined by its three tokens.


def frequent_hashes(p) -> np.ndarray:
    """Hashes of the frequent trigrams: p.frequent_hashes (the job's corpus pass) or the hashes of the
    strings in p.frequent (tests, single-instance use)."""
    if getattr(p, "frequent_hashes", None) is not None:
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
    hits = _row_sums(hit, offsets)
    return (grams > 0) & (hits >= fraction * grams)


def _bland_response_vec(b: Batch, p) -> np.ndarray:
    grams, hashes = b.trigrams
    return bland_mask(grams, hashes, frequent_hashes(p), p.bland_fraction)


# --- what a careful builder adds (default profile) ---------------------------------------------

_GONE = ("[deleted]", "[removed]")
_GONE_PATTERN = rf"^[{WS_CLASS}]*\[(?:deleted|removed)\][{WS_CLASS}]*$"  # t.strip() in _GONE


def removed_comment(v: InstanceView, p) -> str | None:
    """A turn whose raw body is [deleted] or [removed] (moderator removal): the text is not the comment."""
    return "removed_comment" if any((t or "").strip() in _GONE for t in v.turns_raw or []) else None


def _removed_comment_vec(b: Batch, p) -> np.ndarray:
    raw = _flat(b.turns_raw)
    hit = strings_with_bytes(raw, b"[")
    cand = np.flatnonzero(hit)
    hit[cand] = _mask(pc.match_substring_regex(raw.take(pa.array(cand)), _GONE_PATTERN))
    return _any_rows(hit, np.repeat(np.arange(b.n), np.diff(_offsets(b.turns_raw))), b.n)


def empty_turn(v: InstanceView, p) -> str | None:
    """A turn with no text left after normalization (emoji-only, symbols-only): a hole in the dialogue."""
    return "empty_turn" if any(not t.strip() for t in v.turns) else None


def _empty_turn_vec(b: Batch, p) -> np.ndarray:
    return b.any_turn(b.turn_tokens == 0)  # t.strip() is empty exactly when t.split() is


def _is_bot_name(name: str | None) -> bool:
    if not name:
        return False
    low = name.lower()
    return low in wordlists.KNOWN_BOTS or low.endswith("bot")


def bot_author(v: InstanceView, p) -> str | None:
    """A turn written by a bot account (AutoModerator, names ending in "bot"/"_bot", a known list)."""
    return "bot_author" if any(_is_bot_name(a) for a in v.authors or []) else None


def _bot_author_vec(b: Batch, p) -> np.ndarray:
    names = _flat(b.authors)
    low = python_lower(names)
    hit = pc.or_(pc.ends_with(low, "bot"), pc.is_in(low, value_set=pa.array(sorted(wordlists.KNOWN_BOTS))))
    return _any_rows(_mask(hit), np.repeat(np.arange(b.n), np.diff(_offsets(b.authors))), b.n)


_BOILERPLATE = re.compile(wordlists.BOT_BOILERPLATE_REGEX, re.ASCII)
_BOILERPLATE_LOWER = ascii_case_pattern(wordlists.BOT_BOILERPLATE_REGEX)


def bot_boilerplate(v: InstanceView, p) -> str | None:
    """A turn with bot boilerplate ("I am a bot", "This action was performed automatically")."""
    return "bot_boilerplate" if any(_BOILERPLATE.search(t) for t in v.turns) else None


def _bot_boilerplate_vec(b: Batch, p) -> np.ndarray:
    return b.any_turn(b.turn_rule(_BOILERPLATE_LOWER, lower=True))


# One RE2 pass over the turns finds the candidates of the four rules above (Batch.prefilter).
_PREFILTER = "|".join(
    (
        "__url__",
        _BRACKETS_PATTERN,
        _SHOUTING_PATTERN,
        f"(?i:{wordlists.BOT_BOILERPLATE_REGEX.removeprefix('(?i)')})",
    )
)


def self_reply(v: InstanceView, p) -> str | None:
    """The response's author also wrote the turn it replies to: a monologue, not a dialogue turn."""
    a = v.authors or []
    if len(a) < 2 or not a[-1] or a[-1] == "[deleted]":
        return None
    return "self_reply" if a[-1] == a[-2] else None


def _self_reply_vec(b: Batch, p) -> np.ndarray:
    out = np.zeros(b.n, dtype=bool)
    offsets = _offsets(b.authors)
    rows = np.flatnonzero(np.diff(offsets) >= 2)
    if not len(rows):
        return out
    names = _flat(b.authors)
    last = names.take(pa.array(offsets[rows + 1] - 1))
    prev = names.take(pa.array(offsets[rows + 1] - 2))
    real = pc.and_(pc.greater(pc.utf8_length(last), 0), pc.not_equal(last, "[deleted]"))
    out[rows] = _mask(pc.and_(real, pc.equal(last, prev)))
    return out


def echo_response(v: InstanceView, p) -> str | None:
    """The response repeats a context turn verbatim (copypasta chains, "this" → "this")."""
    r = v.response.strip().lower()
    return "echo_response" if any(t.strip().lower() == r for t in v.turns[:-1]) else None


def _echo_response_vec(b: Batch, p) -> np.ndarray:
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
    return _any_rows(hit, rows, b.n)


# Duplicate (context, response) pairs are judged across the corpus by the job, after all the rules
# above; this name is its reason.
DUPLICATE_PAIR = "duplicate_pair"

RULES: dict[str, Rule] = {
    r.name: r
    for r in (
        Rule(
            "blocklisted_word",
            blocklisted_word,
            _blocklisted_word_vec,
            True,
            "tgt contains a blocklisted word (leaves_only off only)",
        ),
        Rule("tgt_too_short", tgt_too_short, _tgt_too_short_vec, True, "tgt has at most 1 whitespace token"),
        Rule("long_token", long_token, _long_token_vec, True, "a tgt token longer than max_token_chars (30)"),
        Rule(
            "too_many_tokens",
            too_many_tokens,
            _too_many_tokens_vec,
            True,
            "src+tgt tokens > max_tokens (200)",
        ),
        Rule("has_url", has_url, _has_url_vec, True, "src or tgt contains __url__"),
        Rule("has_brackets", has_brackets, _has_brackets_vec, True, "src or tgt contains [ ] ( )"),
        Rule("shouting", shouting, _shouting_vec, True, "src or tgt matches [A-Z]{5,}"),
        Rule("repeated_word", repeated_word, _repeated_word_vec, True, "3 consecutive equal tokens in tgt"),
        Rule("blocklisted_subreddit", blocklisted_subreddit, _blocklisted_subreddit_vec, True),
        Rule(
            "blocklisted_context",
            blocklisted_context,
            _blocklisted_context_vec,
            True,
            "a context turn contains a blocklisted word",
        ),
        Rule(
            "no_common_word",
            no_common_word,
            _no_common_word_vec,
            True,
            "response has none of the top-50 words",
        ),
        Rule(
            "bland_response",
            bland_response,
            _bland_response_vec,
            True,
            ">= 90% of the response's trigrams are frequent (64-bit trigram hashes)",
        ),
        Rule("removed_comment", removed_comment, _removed_comment_vec, True),
        Rule("empty_turn", empty_turn, _empty_turn_vec, True),
        Rule("bot_author", bot_author, _bot_author_vec, True),
        Rule("bot_boilerplate", bot_boilerplate, _bot_boilerplate_vec, True),
        Rule("self_reply", self_reply, _self_reply_vec, True),
        Rule("echo_response", echo_response, _echo_response_vec, True),
    )
}
