"""Profiles: ordered lists of rules with typed parameters (published defaults, each rule switchable off).

- ``dialogpt``: exactly the released extractor's clean checks, in its order (spec: conv step 11).
- ``paper``: dialogpt + what the DialoGPT paper states but the released code lacks: offensive subreddit
  and word blocklists (context turns too), "response contains none of the 50 most frequent English
  words", and the bland-response rule (a corpus-level pass, see ``corpus.py``).
- ``default``: paper + what a careful builder adds: ``[removed]`` like ``[deleted]``, empty turns after
  normalization, bot accounts and bot boilerplate, self-replies, echoed turns, HTML entities unescaped
  once before the text rules, and exact-duplicate (context, response) pairs (corpus-level, last).

The rules' parameters are defined once, in ``RuleOptions``: they are the filter stage's flags
(``config.FilterConfig`` inherits them) and the fields of ``FilterParams``, what the rules read.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from dialogsmith import fsutil
from dialogsmith.filter.rules import (
    BLAND_RESPONSE,
    DUPLICATE_PAIR,
    PROFILES,
    RULES,
    SUBREDDIT_NOT_ALLOWED,
    Rule,
    profile_order,
)
from dialogsmith.stage import StageError, option

ORDERS = {name: profile_order(name) for name in PROFILES}
DIALOGPT_ORDER, PAPER_ORDER, DEFAULT_ORDER = ORDERS["dialogpt"], ORDERS["paper"], ORDERS["default"]

# The DialoGPT release (2005-12..2017-12, with keys) has 146,846,215 instances; the paper's bland
# threshold (trigrams seen more than 1000 times) was set on a corpus of that size.
PAPER_CORPUS_INSTANCES = 146_846_215


def rule_names(names: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Rule names from comma-separated text or a list of such texts (``--disable``, a config file)."""
    items = [names] if isinstance(names, str) else list(names)
    return tuple(r.strip() for item in items for r in item.split(",") if r.strip())


@dataclass
class RuleOptions:
    """The rules' parameters with the published defaults: flags of the filter stage, fields of FilterParams."""

    bl_words: str | None = option(
        None,
        "word/phrase blocklist file (flashtext semantics, '#' comments); "
        "default: the one the instances were built with (input stats.json), if any",
        aliases=("--bl_words",),
    )
    bl_subreddits: str | None = option(
        None,
        "subreddit blocklist file, one name a line, '#' comments (paper/default)",
        aliases=("--bl_subreddits",),
    )
    allow_subreddits: str | None = option(
        None,
        "keep only instances from these subreddits (case-insensitive): comma-separated names, or @FILE "
        "or the path of an existing file with one name a line ('#' comments, as --bl-subreddits)",
        flag="--subreddits",
        metavar="NAMES|@FILE",
    )
    max_token_chars: int = option(30, "long_token: a tgt whitespace token longer than this")
    max_tokens: int = option(200, "too_many_tokens: whitespace tokens of src + tgt (weights and EOS count)")
    bland_fraction: float = option(0.9, "bland_response: share of the response's trigrams that are frequent")
    bland_min_count: int = option(
        1000, "a trigram is frequent when seen more than this at the paper's corpus size"
    )
    bland_scale: bool = option(
        True, "scale --bland-min-count to the corpus size (--no-bland-scale: as given)"
    )
    bland_floor: int = option(5, "lowest scaled threshold")
    unescape_html: bool = option(True, "default profile: html-unescape each turn once before the rules")
    disabled: tuple[str, ...] = option(
        (), "rule names to switch off (comma-separated, repeatable)", flag="--disable", metavar="RULES"
    )


@dataclass
class FilterParams(RuleOptions):
    """Every rule's parameters. Rules read the fields they need."""

    # Filled at run time (not options): loaded lists and the corpus pass's frequent trigrams.
    words: object | None = field(default=None, repr=False)
    subreddits: frozenset[str] | None = field(default=None, repr=False)
    allowed_subreddits: frozenset[str] | None = field(default=None, repr=False)
    frequent: frozenset[str] | None = field(default=None, repr=False)
    # The job's corpus pass gives the frequent trigrams as 64-bit hashes (rules_paper.frequent_hashes).
    frequent_hashes: object | None = field(default=None, repr=False)
    bland_threshold: int | None = None

    _LOADED = ("words", "subreddits", "allowed_subreddits", "frequent", "frequent_hashes")

    @classmethod
    def of(cls, options: RuleOptions) -> FilterParams:
        """The parameters of a config (or any RuleOptions)."""
        return cls(**{f.name: getattr(options, f.name) for f in fields(RuleOptions)})

    def options(self) -> dict:
        """The options (no run-time values), for stats.json ``extra.config``."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in self._LOADED}
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
        return BLAND_RESPONSE in self.enabled()


def make_profile(name: str, params: FilterParams | None = None) -> Profile:
    """The profile ``name`` with ``params`` (unescape_html applies to the default profile only; the
    allow-list rule comes first when ``allow_subreddits`` is given)."""
    if name not in ORDERS:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(ORDERS)}")
    params = params or FilterParams()
    params.unescape_html = params.unescape_html and name == "default"
    order = ORDERS[name]
    if params.allow_subreddits:
        order = (SUBREDDIT_NOT_ALLOWED, *order)
    unknown = sorted(set(params.disabled) - set(order))
    if unknown:
        raise ValueError(
            f"--disable: profile {name!r} has no rule(s) {unknown}; its rules: {', '.join(order)}"
        )
    return Profile(name, order, params)


def bland_threshold(params: FilterParams, n_responses: int) -> int:
    """'Seen more than N times', N scaled from the paper's corpus to this one (floor bland_floor)."""
    if not params.bland_scale:
        return params.bland_min_count
    scaled = round(params.bland_min_count * n_responses / PAPER_CORPUS_INSTANCES)
    return max(params.bland_floor, min(params.bland_min_count, scaled))


def allow_list(spec: str) -> frozenset[str]:
    """The subreddits of ``--subreddits``: ``@FILE`` or an existing file (one name a line, the subreddit
    blocklist's format), else comma-separated names; lower-cased."""
    from dialogsmith.text.blocklist import parse_subreddit_list, read_subreddit_list

    path = spec[1:] if spec.startswith("@") else spec
    if spec.startswith("@") or fsutil.exists(path):
        if not fsutil.exists(path):
            raise StageError(f"--subreddits {spec}: file not found")
        names = read_subreddit_list(path)
    else:
        names = parse_subreddit_list(spec.replace(",", "\n"))
    if not names:
        raise StageError(f"--subreddits {spec}: no subreddit names in it")
    return names


_BLOCKLISTS: dict[str, object] = {}


def load_lists(params: FilterParams) -> FilterParams:
    """Load the lists named in params (once per process; tasks call this on executors)."""
    from dialogsmith.text.blocklist import Blocklist, read_subreddit_list

    if params.bl_words and params.words is None:
        if params.bl_words not in _BLOCKLISTS:
            _BLOCKLISTS[params.bl_words] = Blocklist.from_file(params.bl_words)
        params.words = _BLOCKLISTS[params.bl_words]
    if params.bl_subreddits and params.subreddits is None:
        params.subreddits = read_subreddit_list(params.bl_subreddits)
    if params.allow_subreddits and params.allowed_subreddits is None:
        params.allowed_subreddits = allow_list(params.allow_subreddits)
    return params
