"""The DialoGPT paper's automatic metrics (the DSTC-7 evaluation), reimplemented.

``compute_metrics(hyps, ref_sets)`` returns ``{"nist": [4], "bleu": [4], "meteor": float|None,
"entropy": [4], "dist": [2], "avg_len": float}``; ``python -m dialogsmith.metrics`` is the command.
"""

from __future__ import annotations

from collections.abc import Sequence

from dialogsmith.metrics.diversity import avg_len, distinct, entropy
from dialogsmith.metrics.dstc_clean import clean_str
from dialogsmith.metrics.meteor import MeteorError, meteor_score
from dialogsmith.metrics.nist_bleu import corpus_nist_bleu, mteval_tokenize, mteval_words, xml_segment

__all__ = [
    "MeteorError",
    "avg_len",
    "clean_str",
    "compute_metrics",
    "corpus_nist_bleu",
    "distinct",
    "entropy",
    "meteor_score",
    "mteval_tokenize",
    "mteval_words",
    "read_lines",
    "xml_segment",
]


def read_lines(path: str) -> list[str]:
    """Lines of a hypothesis/reference file the way the DSTC evaluation reads them
    (``open(path, encoding="utf-8").readlines()``, newline stripped: CR, LF and CR LF end a line)."""
    try:
        with open(path, encoding="utf-8") as f:
            return [line.rstrip("\n") for line in f.readlines()]
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not valid UTF-8 ({e})") from None


def compute_metrics(
    hyps: Sequence[str],
    ref_sets: Sequence[Sequence[str]],
    meteor_jar: str | None = None,
    clean: bool = False,
) -> dict:
    """All metrics of the paper's table for hypotheses ``hyps`` against reference sets ``ref_sets``
    (one sequence per reference file, each aligned with ``hyps``). ``clean`` applies the DSTC
    ``clean_str`` to every text first. METEOR is ``None`` unless ``meteor_jar`` is given."""
    if not ref_sets:
        raise ValueError("at least one reference set is needed")
    for k, refs in enumerate(ref_sets):
        if len(refs) != len(hyps):
            raise ValueError(f"reference set {k} has {len(refs)} lines, the hypotheses have {len(hyps)}")
    if clean:
        hyps = [clean_str(h) for h in hyps]
        ref_sets = [[clean_str(r) for r in refs] for refs in ref_sets]
    nist, bleu = corpus_nist_bleu(hyps, ref_sets)
    return {
        "nist": nist,
        "bleu": bleu,
        "meteor": meteor_score(hyps, ref_sets, meteor_jar) if meteor_jar else None,
        "entropy": entropy(hyps),
        "dist": distinct(hyps),
        "avg_len": avg_len(hyps),
        "n_lines": len(hyps),
        "n_refs": len(ref_sets),
    }
