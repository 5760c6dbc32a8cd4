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


# --- the end-of-run warning block (every stage's CLI) ------------------------------------------------

EXIT_STRICT = 3  # --strict: the run finished, but some input was broken or quarantined


def problems(stats: StageStats) -> list[str]:
    """One line per input file that had an error or quarantined lines (file, reason, count), or, for
    stages without per-file figures, one line for the stage's quarantined rows and malformed drops."""
    lines = []
    files = stats.extra.get("files") if isinstance(stats.extra, dict) else None
    if isinstance(files, dict) and files:
        for name, f in sorted(files.items()):
            q = {k: v for k, v in (f.get("quarantined") or {}).items() if v}
            if not q and not f.get("error"):
                continue
            counts = ", ".join(f"{reason} {n:,}" for reason, n in sorted(q.items()))
            line = f"{name}: {counts}" if counts else f"{name}:"
            if f.get("error"):
                line += f" — the file is broken ({f['error']}); the lines before the break were kept"
            lines.append(line)
    elif stats.quarantined:
        counts = ", ".join(f"{reason} {n:,}" for reason, n in sorted(stats.quarantined.items()) if n)
        if counts:
            lines.append(f"quarantined: {counts}")
    malformed = stats.dropped.get("malformed", 0)
    if malformed:
        lines.append(f"malformed input rows (dropped as 'malformed'): {malformed:,}")
    return lines


def finish(stats: StageStats, strict: bool = False, stream=None) -> int:
    """Print the warning block when any input was broken or quarantined; the exit status (``--strict``
    turns problems into EXIT_STRICT)."""
    import sys

    stream = stream or sys.stderr
    found = problems(stats)
    if not found:
        return 0
    print(f"warning: {stats.stage}: some input could not be read; counted in stats.json:", file=stream)
    for line in found:
        print(f"  {line}", file=stream)
    if strict:
        print(f"{stats.stage}: --strict: exiting with status {EXIT_STRICT}", file=stream)
        return EXIT_STRICT
    print("  (--strict makes this an error)", file=stream)
    return 0
