"""What one instances build does: the resolved settings every task receives (:class:`BuildConfig`), the
profiles with their defaults, and the reasons a comment or a target is dropped."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dialogsmith import fsutil
from dialogsmith.stage import StageError

PROFILES = ("default", "dialogpt")

# Defaults per profile (dialogpt: the released Makefile's values).
PROFILE_DEFAULTS = {
    "default": dict(min_score=None, min_depth=2, max_depth=5, use_title=False, leaves_only=False, max_len=30),
    "dialogpt": dict(min_score=1, min_depth=2, max_depth=5, use_title=False, leaves_only=True, max_len=30),
}

EXTRACT_REASONS = (
    "missing_body",  # null body
    "keys_not_dep",  # dialogpt with --keys: no "dep" line for the comment
    "deleted",  # body "[deleted]" (default profile: also "[removed]")
    "quote",  # dialogpt: body contains ">" or "&gt;"
    "submission_not_kept",  # dialogpt: link_id not among the month's submissions with num_comments >= 2
    "too_few_tokens",  # dialogpt: fewer than 2 whitespace tokens after minimal normalization
    "empty",  # default: nothing left after normalization (e.g. a comment that is only a quote)
)
TARGET_REASONS = (
    "not_in_keys",  # dialogpt with --keys: no "keep" line for the target
    "not_leaf",  # leaves_only: a kept comment replies to the target
    "missing_submission",  # dialogpt: the thread's submission is not readable (subreddit/title needed)
    "blocked_subreddit",
    "low_score",  # score (None counts as 0) < min_score
    "target_too_long",  # the target itself has more than max_len words: no turns at all
    "parent_cycle",  # default: the parent chain loops (self-parent or cycle)
    "too_shallow",  # fewer than min_depth turns
)


@dataclass
class BuildConfig:
    """The settings of a build, profile defaults applied (``stats.json`` ``extra.config``)."""

    profile: str = "default"
    min_score: int | None = None
    min_depth: int = 2
    max_depth: int = 5
    use_title: bool = False
    leaves_only: bool = False
    max_len: int | None = 30  # words per turn; None: no limit
    clean: bool = True  # dialogpt: the filter applies the clean checks (weights go into the text)
    bl_words: str | None = None
    bl_subreddits: str | None = None
    keys: str | None = None
    months: list[str] | None = None
    rows_per_task: int = 4_000_000  # a bucket holds ~1M comments: shards only for a giant one
    extra: dict = field(default_factory=dict)

    @property
    def weights_in_text(self) -> bool:
        return self.profile == "dialogpt" and self.leaves_only and self.clean

    def validate(self) -> BuildConfig:
        if self.profile not in PROFILES:
            raise StageError(f"unknown profile {self.profile!r}; choose one of {', '.join(PROFILES)}")
        if self.max_depth < 0 or self.min_depth < 0:
            raise StageError("--max-depth and --min-depth must be >= 0")
        if self.min_depth < 1:
            raise StageError("--min-depth must be >= 1 (an instance needs at least its target)")
        if self.keys and self.profile != "dialogpt":
            raise StageError("--keys (DialoGPT key files) only applies to --profile dialogpt")
        if self.rows_per_task < 1:
            raise StageError("--rows-per-task must be >= 1")
        for flag, path in (
            ("--bl-words", self.bl_words),
            ("--bl-subreddits", self.bl_subreddits),
            ("--keys", self.keys),
        ):
            if path and not fsutil.exists(path):
                raise FileNotFoundError(f"{flag} {path}: not found")
        return self


def count(counter: dict, reason: str, n: int = 1) -> None:
    if n:
        counter[reason] = counter.get(reason, 0) + n


def drop(counter: dict, reason: str, bad: np.ndarray) -> np.ndarray:
    """Count the rows of ``bad`` under ``reason``; the mask of the others."""
    count(counter, reason, int(bad.sum()))
    return ~bad


def load_build_lists(cfg: BuildConfig):
    """(word/phrase blocklist or None, subreddit blocklist or None) of ``cfg``."""
    from dialogsmith.text.blocklist import Blocklist, read_subreddit_list

    bl_words = Blocklist.from_file(cfg.bl_words) if cfg.bl_words else None
    bl_subs = read_subreddit_list(cfg.bl_subreddits) if cfg.bl_subreddits else None
    return bl_words, bl_subs
