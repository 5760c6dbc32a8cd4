"""Every filter rule, registered once, in the order the profiles apply them.

A rule is a small pure function ``rule(view, params) -> None | reason`` over one instance
(``batch.InstanceView``); its reason is its name, counted in ``stats.json`` and the funnel. Its vector
twin ``rule_vec(batch, params) -> bool mask`` (True = drop) judges a whole ``batch.Batch`` and must give
the same decision on every row: tests/test_filter_rules.py checks every registered twin against its rule
on random text with Unicode and odd whitespace. A rule registered without a twin is judged row by row
(correct, ~100x slower). ``params`` is the profile's ``profiles.FilterParams``.

``REGISTRY`` is the order of application; ``since`` is the first profile that applies a rule (profiles
nest: dialogpt, then paper adds its rules, then default adds its own), so a profile's order is the
registry's order restricted to its rules. Adding a rule: write the function (and its twin) in the
module of its family and add one ``Rule`` line here, at its place (docs/filter.md, "Adding a rule").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from dialogsmith.filter.batch import Batch, InstanceView
from dialogsmith.filter.rules_default import (
    bot_author,
    bot_author_vec,
    bot_boilerplate,
    bot_boilerplate_vec,
    echo_response,
    echo_response_vec,
    empty_turn,
    empty_turn_vec,
    removed_comment,
    removed_comment_vec,
    self_reply,
    self_reply_vec,
)
from dialogsmith.filter.rules_dialogpt import (
    blocklisted_word,
    blocklisted_word_vec,
    has_brackets,
    has_brackets_vec,
    has_url,
    has_url_vec,
    long_token,
    long_token_vec,
    repeated_word,
    repeated_word_vec,
    shouting,
    shouting_vec,
    tgt_too_short,
    tgt_too_short_vec,
    too_many_tokens,
    too_many_tokens_vec,
)
from dialogsmith.filter.rules_paper import (
    bland_response,
    bland_response_vec,
    blocklisted_context,
    blocklisted_context_vec,
    blocklisted_subreddit,
    blocklisted_subreddit_vec,
    no_common_word,
    no_common_word_vec,
    subreddit_not_allowed,
    subreddit_not_allowed_vec,
)

Check = Callable[[InstanceView, Any], "str | None"]
Vector = Callable[[Batch, Any], np.ndarray]

PROFILES = ("dialogpt", "paper", "default")  # each applies its rules and those of the profiles before it


@dataclass(frozen=True)
class Rule:
    check: Check  # per-instance reference: None (keep) or the rule's name (the reason)
    vector: Vector | None = None  # bool mask (True = drop), the same decision on every row
    since: str | None = "default"  # the first profile that applies it; None: a selection (see below)
    doc: str = ""

    @property
    def name(self) -> str:
        return self.check.__name__


REGISTRY: tuple[Rule, ...] = (
    # A selection, not a profile rule: every profile applies it first when --subreddits is given.
    Rule(subreddit_not_allowed, subreddit_not_allowed_vec, None, "not in the --subreddits allow-list"),
    Rule(removed_comment, removed_comment_vec, "default", "a raw turn is [removed] or [deleted]"),
    Rule(empty_turn, empty_turn_vec, "default", "a turn is empty after normalization"),
    Rule(bot_author, bot_author_vec, "default", "a turn's author is a bot account"),
    Rule(bot_boilerplate, bot_boilerplate_vec, "default", "a turn has bot boilerplate"),
    Rule(blocklisted_word, blocklisted_word_vec, "dialogpt", "tgt has a blocklisted word (leaves_only off)"),
    Rule(tgt_too_short, tgt_too_short_vec, "dialogpt", "tgt has at most 1 whitespace token"),
    Rule(long_token, long_token_vec, "dialogpt", "a tgt token longer than max_token_chars (30)"),
    Rule(too_many_tokens, too_many_tokens_vec, "dialogpt", "src+tgt tokens > max_tokens (200)"),
    Rule(has_url, has_url_vec, "dialogpt", "src or tgt contains __url__"),
    Rule(has_brackets, has_brackets_vec, "dialogpt", "src or tgt contains [ ] ( )"),
    Rule(shouting, shouting_vec, "dialogpt", "src or tgt matches [A-Z]{5,}"),
    Rule(repeated_word, repeated_word_vec, "dialogpt", "3 consecutive equal tokens in tgt"),
    Rule(blocklisted_subreddit, blocklisted_subreddit_vec, "paper", "the subreddit is blocklisted"),
    Rule(blocklisted_context, blocklisted_context_vec, "paper", "a context turn has a blocklisted word"),
    Rule(no_common_word, no_common_word_vec, "paper", "the response has none of the top-50 words"),
    Rule(bland_response, bland_response_vec, "paper", ">= 90% of the response's trigrams are frequent"),
    Rule(self_reply, self_reply_vec, "default", "the response's author wrote the turn it replies to"),
    Rule(echo_response, echo_response_vec, "default", "the response repeats a context turn"),
)
RULES: dict[str, Rule] = {r.name: r for r in REGISTRY}

# Corpus-level steps are judged by the job across all instances, not by a Rule: exact duplicate
# (context, response) pairs, after every rule above (corpus.py). This name is its reason.
DUPLICATE_PAIR = "duplicate_pair"
SUBREDDIT_NOT_ALLOWED = subreddit_not_allowed.__name__
BLAND_RESPONSE = bland_response.__name__


def profile_order(profile: str) -> tuple[str, ...]:
    """The rules ``profile`` applies, in order (the default profile ends with duplicate_pair)."""
    level = PROFILES.index(profile)
    names = tuple(r.name for r in REGISTRY if r.since is not None and PROFILES.index(r.since) <= level)
    return names + ((DUPLICATE_PAIR,) if profile == "default" else ())
