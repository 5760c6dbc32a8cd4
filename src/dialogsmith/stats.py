"""Stage statistics: every stage writes one ``stats.json`` whose counts add up exactly.

rows_in == rows_out + sum(dropped.values()) + sum(quarantined.values()) + sum(merged.values())

``dropped`` counts rows removed by a named rule (stable snake_case reasons), ``quarantined`` counts
input that could not be read (bad lines), ``merged`` counts rows that were folded into another row
(exact duplicates). ``extra`` holds stage-specific figures that are not part of the balance.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field

from dialogsmith import fsutil

STATS_VERSION = 1


class StatsMismatch(AssertionError):
    pass


@dataclass
class StageStats:
    stage: str
    rows_in: int = 0
    rows_out: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, int] = field(default_factory=dict)
    merged: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)
    version: int = STATS_VERSION

    def add(self, other: StageStats) -> None:
        """Fold a partial (per-partition) stats object into this one."""
        self.rows_in += other.rows_in
        self.rows_out += other.rows_out
        for mine, theirs in (
            (self.dropped, other.dropped),
            (self.quarantined, other.quarantined),
            (self.merged, other.merged),
        ):
            for reason, n in theirs.items():
                mine[reason] = mine.get(reason, 0) + n

    def balance(self) -> int:
        """rows_in minus everything accounted for; 0 when the counts add up."""
        return self.rows_in - (
            self.rows_out
            + sum(self.dropped.values())
            + sum(self.quarantined.values())
            + sum(self.merged.values())
        )

    def check(self) -> StageStats:
        gap = self.balance()
        if gap != 0:
            raise StatsMismatch(
                f"{self.stage}: counts do not add up (rows_in - accounted = {gap}): {self.to_dict()}"
            )
        return self

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in ("dropped", "quarantined", "merged"):
            d[key] = dict(sorted(d[key].items()))
        return d

    @classmethod
    def from_dict(cls, d: dict) -> StageStats:
        return cls(**d)

    def write(self, uri: str) -> None:
        fsutil.write_json(uri, self.check().to_dict())

    @classmethod
    def read(cls, uri: str) -> StageStats:
        return cls.from_dict(fsutil.read_json(uri))


def counter_to_dict(c: Counter) -> dict[str, int]:
    return {k: int(v) for k, v in sorted(c.items()) if v}


class Timer:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return round(time.perf_counter() - self.start, 3)
