"""The filter stage's configuration: its flags are the fields (stage.py), the rules' own parameters
inherited from ``profiles.RuleOptions`` (defined there once)."""

from __future__ import annotations

from dataclasses import dataclass

from dialogsmith import fsutil
from dialogsmith.filter.profiles import ORDERS, FilterParams, Profile, RuleOptions, make_profile, rule_names
from dialogsmith.formats.schemas import SPLITS
from dialogsmith.stage import StageConfig, StageError, option

__all__ = ["SPLITS", "FilterConfig"]


@dataclass
class FilterConfig(RuleOptions, StageConfig):
    input: str = option("", "instances output dir (holding instances/) or a dir of instance Parquet files")
    quiet: bool = option(False, "no progress line, no funnel table")
    profile: str = option("default", "rule profile", choices=sorted(ORDERS))
    split: str = option("0.98,0.01,0.01", "train,valid,test fractions")
    split_salt: str = option("dialogsmith-split-v1", "salt of the link_id hash that draws the split")
    parquet: bool = option(True, "write the per-split Parquet (--no-parquet: exports only)")
    export_tsv: bool = option(
        False, "also write tsv/<month>.tsv (DialoGPT format) and tsv/<split>.tsv (2-column src<TAB>tgt)"
    )
    jsonl: bool = option(
        False,
        'also write jsonl/<split>.jsonl: {"context": [...], "response": ..., "subreddit": ..., "id": ...}',
    )
    refs: bool = option(False, "also write tsv/test.refs.txt (multi-reference test set)")
    refs_min: int = option(2, "min responses per context in test.refs.txt")
    rows_per_task: int = option(200_000, "instances per Spark task")

    @property
    def fractions(self) -> tuple[float, float, float]:
        try:
            parts = tuple(float(x) for x in self.split.split(","))
        except ValueError:
            parts = ()
        if len(parts) != 3 or min(parts) < 0 or abs(sum(parts) - 1.0) > 1e-9:
            raise StageError(
                f"--split: expected three fractions summing to 1 (train,valid,test), got {self.split!r}"
            )
        return parts  # type: ignore[return-value]

    def validate(self) -> FilterConfig:
        super().validate()
        self.disabled = rule_names(self.disabled)
        if self.profile not in ORDERS:
            raise StageError(f"unknown profile {self.profile!r}; choose one of {', '.join(sorted(ORDERS))}")
        self.fractions  # noqa: B018  (raises StageError on a bad --split)
        if self.rows_per_task < 1:
            raise StageError("--rows-per-task must be >= 1")
        if self.refs_min < 1:
            raise StageError("--refs-min must be >= 1")
        for flag, path in (("--bl-words", self.bl_words), ("--bl-subreddits", self.bl_subreddits)):
            if path and not fsutil.exists(path):
                raise StageError(f"{flag} {path}: list file not found")
        self.profile_of()  # unknown --disable names
        return self

    def profile_of(self, input_config: dict | None = None) -> Profile:
        """The profile to run: its parameters from the flags; without --bl-words, the word list the
        instances were built with (``input_config``: the instances' stats.json ``extra.config``)."""
        params = FilterParams.of(self)
        if params.bl_words is None and (input_config or {}).get("bl_words"):
            params.bl_words = input_config["bl_words"]
        try:
            return make_profile(self.profile, params)
        except ValueError as e:
            raise StageError(str(e)) from None
