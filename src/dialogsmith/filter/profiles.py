"""Profiles: ordered lists of rules with typed parameters (published defaults, each rule switchable off).

- ``dialogpt``: exactly the released extractor's clean checks, in its order (spec: conv step 11).
- ``paper``: dialogpt + what the DialoGPT paper states but the released code lacks: offensive subreddit
  and word blocklists (context turns too), "response contains none of the 50 most frequent English
  words", and the bland-response rule (a corpus-level pass, see ``corpus.py``).
- ``default``: paper + what a careful builder adds: ``[removed]`` like ``[deleted]``, empty turns after
  normalization, bot accounts and bot boilerplate, self-replies, echoed turns, HTML entities unescaped
  once before the text rules, and exact-duplicate (context, response) pairs (corpus-level, last).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from dialogsmith.filter.rules import DUPLICATE_PAIR, RULES, Rule

DIALOGPT_ORDER = (
    "blocklisted_word",
    "tgt_too_short",
    "long_token",
    "too_many_tokens",
    "has_url",
    "has_brackets",
    "shouting",
    "repeated_word",
)
PAPER_ORDER = DIALOGPT_ORDER + (
    "blocklisted_subreddit",
    "blocklisted_context",
    "no_common_word",
    "bland_response",
)
DEFAULT_ORDER = (
    ("removed_comment", "empty_turn", "bot_author", "bot_boilerplate")
    + PAPER_ORDER
    + ("self_reply", "echo_response", DUPLICATE_PAIR)
)
ORDERS = {"dialogpt": DIALOGPT_ORDER, "paper": PAPER_ORDER, "default": DEFAULT_ORDER}

# The DialoGPT release (2005-12..2017-12, with keys) has 146,846,215 instances; the paper's bland
# threshold (trigrams seen more than 1000 times) was set on a corpus of that size.
PAPER_CORPUS_INSTANCES = 146_846_215


@dataclass
class FilterParams:
    """Every rule's parameters, with the published defaults. Rules read the fields they need."""

    bl_words: str | None = None  # blocklist file (flashtext semantics, '#' comments)
    bl_subreddits: str | None = None  # one subreddit per line, '#' comments
    max_token_chars: int = 30  # long_token: a tgt token longer than this
    max_tokens: int = 200  # too_many_tokens: src tokens + tgt tokens
    bland_fraction: float = 0.9  # bland_response: share of frequent trigrams
    bland_min_count: int = 1000  # a trigram is frequent when seen MORE than this (at paper scale)
    bland_scale: bool = True  # scale bland_min_count by corpus size / PAPER_CORPUS_INSTANCES
    bland_floor: int = 5  # the scaled threshold never goes below this
    unescape_html: bool = False  # default profile: html.unescape each turn once before the rules
    disabled: tuple[str, ...] = ()  # rule names switched off
    # Filled at run time (not options): loaded lists and the corpus pass's frequent trigrams.
    words: object | None = field(default=None, repr=False)
    subreddits: frozenset[str] | None = field(default=None, repr=False)
    frequent: frozenset[str] | None = field(default=None, repr=False)
    # The job's corpus pass gives the frequent trigrams as 64-bit hashes (rules.frequent_hashes).
    frequent_hashes: object | None = field(default=None, repr=False)
    bland_threshold: int | None = None

    def options(self) -> dict:
        loaded = ("words", "subreddits", "frequent", "frequent_hashes")  # run-time values, not options
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in loaded}
        d["disabled"] = list(self.disabled)
        return d


@dataclass
class Profile:
    name: str
    order: tuple[str, ...]
    params: FilterParams

    def enabled(self) -> list[str]:
        return [r for r in self.order if r not in self.params.disabled]

    def rules(self) -> list[Rule]:
        """The per-instance rules in order (duplicate_pair is a corpus step, not a Rule)."""
        return [RULES[r] for r in self.enabled() if r != DUPLICATE_PAIR]

    @property
    def dedup(self) -> bool:
        return DUPLICATE_PAIR in self.enabled()

    @property
    def bland(self) -> bool:
        return "bland_response" in self.enabled()


def make_profile(name: str, params: FilterParams | None = None) -> Profile:
    if name not in ORDERS:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(ORDERS)}")
    params = params or FilterParams()
    if name == "default":
        params.unescape_html = True
    unknown = sorted(set(params.disabled) - set(ORDERS[name]))
    if unknown:
        raise ValueError(
            f"--disable: profile {name!r} has no rule(s) {unknown}; its rules: {', '.join(ORDERS[name])}"
        )
    return Profile(name, ORDERS[name], params)


def bland_threshold(params: FilterParams, n_responses: int) -> int:
    """'Seen more than N times', N scaled from the paper's corpus to this one (floor bland_floor)."""
    if not params.bland_scale:
        return params.bland_min_count
    scaled = round(params.bland_min_count * n_responses / PAPER_CORPUS_INSTANCES)
    return max(params.bland_floor, min(params.bland_min_count, scaled))


def read_subreddit_list(text: str) -> frozenset[str]:
    out = set()
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.add(line.lower())
    return frozenset(out)


_BLOCKLISTS: dict[str, object] = {}


def load_lists(params: FilterParams) -> FilterParams:
    """Load the list files named in params (once per process; tasks call this on executors)."""
    from dialogsmith import fsutil

    if params.bl_words and params.words is None:
        if params.bl_words not in _BLOCKLISTS:
            from dialogsmith.text.blocklist import Blocklist

            _BLOCKLISTS[params.bl_words] = Blocklist.from_file(params.bl_words)
        params.words = _BLOCKLISTS[params.bl_words]
    if params.bl_subreddits and params.subreddits is None:
        params.subreddits = read_subreddit_list(fsutil.read_bytes(params.bl_subreddits).decode("utf-8"))
    return params
