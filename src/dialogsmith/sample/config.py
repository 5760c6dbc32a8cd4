"""What to generate (``SynthConfig``; its fields are also the ``dialogsmith sample`` flags) and what was
written (``SynthReport``, saved as ``synth_report.json``)."""

from __future__ import annotations

from dataclasses import dataclass

from dialogsmith.sample.eras import parse_month
from dialogsmith.sample.files import COMPRESSIONS
from dialogsmith.stage import option

SHAPES = ("classic", "realistic")


def month_list(text: str) -> list[str]:
    """``"2016-01, 2016-02"`` -> ``["2016-01", "2016-02"]``."""
    return [m.strip() for m in text.split(",") if m.strip()]


@dataclass
class SynthConfig:
    months: list[str] = option(
        ["2016-01", "2016-02"],
        "comma-separated YYYY-MM list (default: 2016-01,2016-02)",
        type=month_list,
        metavar="A,B",
    )
    comments_per_month: int = option(
        20_000, "comment lines per month, approximately", flag="--comments", metavar="N"
    )
    seed: int = option(1234, "random seed; same seed and options -> identical bytes")
    compression: str = option("zst", "compression of the files", choices=sorted(COMPRESSIONS))
    bigquery_shape: bool = option(
        False, "BigQuery export shape: every number as a string, nulls elsewhere", flag="--bigquery"
    )
    mega_thread: int = option(0, "add one thread of N comments to the first month", metavar="N")
    malformed: bool = option(True, "add malformed lines of every quarantine reason, and duplicated lines")
    late_reply_fraction: float = option(
        0.05,
        "classic: share of month m+1's comments that reply to threads of month m; realistic: 2x this "
        "share of month m's threads get 1-3 replies in month m+1",
        flag="--late-fraction",
        metavar="F",
    )
    shape: str = option(
        "classic",
        "classic: the original thread shapes, planned a month at a time (small samples; bytes kept "
        "stable); realistic: deep, skewed threads as in real months, streamed in bounded memory "
        "(benchmarks)",
        choices=SHAPES,
    )
    chunk_comments: int = option(
        262_144,
        "realistic: comments generated per time window; bounds memory, part of the output's identity "
        "like the seed",
        metavar="N",
    )

    def validate(self) -> SynthConfig:
        """Raise ValueError for a value the generator cannot run with."""
        if isinstance(self.months, str):  # a --config file may spell the list as "A,B"
            self.months = month_list(self.months)
        if not self.months:
            raise ValueError("months is empty: give at least one YYYY-MM")
        for m in self.months:
            parse_month(m)
        if len(set(self.months)) != len(self.months):
            raise ValueError(f"duplicate months in {self.months}")
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"compression {self.compression!r} not one of {sorted(COMPRESSIONS)}")
        if self.comments_per_month < 0 or self.mega_thread < 0:
            raise ValueError("comments_per_month and mega_thread must be >= 0")
        if not 0.0 <= self.late_reply_fraction <= 0.5:
            raise ValueError(f"late_reply_fraction must be within [0, 0.5], got {self.late_reply_fraction}")
        if self.shape not in SHAPES:
            raise ValueError(f"shape {self.shape!r} not one of {list(SHAPES)}")
        if self.chunk_comments < 100:
            raise ValueError(f"chunk_comments must be >= 100, got {self.chunk_comments}")
        return self


@dataclass
class SynthReport:
    # per file name: {"kind", "month", "lines", "valid_distinct", "duplicates", "quarantine": {reason: n},
    # "bytes_uncompressed"}
    files: dict[str, dict]
    comments: int  # valid, distinct comment ids over all files
    submissions: int  # valid, distinct submission ids over all files
    lines: int
    quarantine: dict[str, int]  # expected quarantine reasons over all files (non-zero reasons only)
    duplicates: int  # extra copies of an already-seen id (duplicated lines)
