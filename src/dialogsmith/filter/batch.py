"""What a rule sees: one instance (``InstanceView``, the per-instance form) or a columnar batch of them
(``Batch``, the vectorized form).

The view: the turns as the profile shows them (dialogpt: GPT-normalized; default: HTML entities
unescaped once), ``src``/``tgt`` exactly as DialoGPT's TSV writes them (with the "1.0 "/"0.0 " weight
prefix when ``weights_in_text``), the bare ``response`` (last turn, no prefix), raw turns, authors,
subreddit. A batch holds the same as columns, and derived arrays (token counts, hashes, regex matches)
computed on first use and shared by the rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dialogsmith import fastjson
from dialogsmith.filter import wordlists
from dialogsmith.filter.vector import any_rows, list_array, list_offsets, mask, python_lower, token_counts

# Patterns of the rules whose candidates one RE2 pass finds (``Batch.prefilter``): they match no space,
# and src + " " + tgt is the shown turns joined by spaces (" EOS ", " "; a weight prefix "1.0 " has no
# letter, bracket or underscore), so each holds for src + " " + tgt exactly when it holds for a turn.
URL_TOKEN = "__url__"
BRACKETS_PATTERN = r"[\[\]()]"
SHOUTING_PATTERN = "[A-Z]{5,}"
# The bot phrases use (?i) here: a superset of the exact (ASCII-only) match, which is all a prefilter needs.
PREFILTER_PATTERN = "|".join(
    (
        URL_TOKEN,
        BRACKETS_PATTERN,
        SHOUTING_PATTERN,
        f"(?i:{wordlists.BOT_BOILERPLATE_REGEX.removeprefix('(?i)')})",
    )
)


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
        return list_offsets(self.turns)

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
        return pc.binary_join(list_array(offsets, self.shown.take(pa.array(self.context))), " EOS ")

    # --- derived per-turn arrays ---------------------------------------------------------------------

    @cached_property
    def turn_tokens(self) -> np.ndarray:
        """len(turn.split()) per flat view turn."""
        return token_counts(self.flat)

    @cached_property
    def turn_ascii(self) -> np.ndarray:
        return mask(pc.string_is_ascii(self.flat))

    def any_turn(self, per_turn: np.ndarray) -> np.ndarray:
        return any_rows(per_turn, self.parents, self.n)

    @cached_property
    def trigrams(self) -> tuple[np.ndarray, np.ndarray]:
        """(trigrams per row, their 64-bit hashes row after row) of ``response.lower().split()``: the
        C/numpy tokenizer lower-cases ASCII bytes itself; non-ASCII responses are lower-cased first by
        Python's str.lower (Arrow's utf8_lower differs on ~76 characters)."""
        response = python_lower(self.response, self.turn_ascii[self.last], ascii_too=False)
        return fastjson.trigram_hash64(response, ascii_lower=True)

    @cached_property
    def prefilter(self) -> np.ndarray:
        """Per flat view turn: it may match one of the patterns of ``PREFILTER_PATTERN``. One RE2 pass
        for them all (a pass costs ~0.1 us per string whatever the pattern); each rule then runs its
        exact pattern on these turns only (``prefiltered_match``)."""
        return mask(pc.match_substring_regex(self.flat, PREFILTER_PATTERN))

    def prefiltered_match(self, pattern: str, literal: bool = False, lower: bool = False) -> np.ndarray:
        """Per flat view turn: RE2 ``pattern`` (or the literal substring) matches, in the turn or, with
        ``lower``, in its byte-wise lower-cased form. Runs on the prefilter's candidates only: only for
        patterns that ``PREFILTER_PATTERN`` covers (any other rule matches ``flat`` itself)."""
        key = ("prefiltered", pattern, literal, lower)
        if key not in self._regex:
            cand = np.flatnonzero(self.prefilter)
            out = np.zeros(len(self.flat), dtype=bool)
            if len(cand):
                texts = self.flat.take(pa.array(cand))
                if lower:
                    texts = pc.ascii_lower(texts)
                fn = pc.match_substring if literal else pc.match_substring_regex
                out[cand] = mask(fn(texts, pattern))
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
