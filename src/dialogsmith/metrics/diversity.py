"""Entropy-1..4, Dist-1/2 and average length as the DSTC-7 / DialoGPT evaluation computes them.

All three work on whitespace tokens of the hypothesis lines as written (``line.split()``), over the whole
file: no XML rules and no mteval tokenization here.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence


def _ngram_counters(hyps: Sequence[str], max_n: int) -> list[Counter]:
    counters = [Counter() for _ in range(max_n)]
    for line in hyps:
        words = line.split()
        for n in range(1, max_n + 1):
            c = counters[n - 1]
            for i in range(len(words) - n + 1):
                c[tuple(words[i : i + n])] += 1
    return counters


def entropy(hyps: Sequence[str], max_n: int = 4) -> list[float]:
    """Entropy-n = -sum (c/T) ln(c/T) over the file's n-grams (natural log); 0 when there are none."""
    out = []
    for counter in _ngram_counters(hyps, max_n):
        total = sum(counter.values())
        out.append(
            -sum(v / total * (math.log(v) - math.log(total)) for v in counter.values()) if total else 0.0
        )
    return out


def distinct(hyps: Sequence[str], max_n: int = 2) -> list[float]:
    """Dist-n = distinct n-grams / total n-grams over the file; 0 when there are none."""
    out = []
    for counter in _ngram_counters(hyps, max_n):
        total = sum(counter.values())
        out.append(len(counter) / total if total else 0.0)
    return out


def avg_len(hyps: Sequence[str]) -> float:
    """Mean number of whitespace tokens per hypothesis line (empty lines count as 0)."""
    return sum(len(line.split()) for line in hyps) / len(hyps) if hyps else 0.0
