"""NIST and BLEU exactly as NIST's ``mteval-v14c.pl`` computes them in the DSTC-7 / DialoGPT evaluation.

The DSTC evaluation writes every line of the hypothesis and reference files into mteval's XML format
(``&`` and ``<`` become spaces, an empty line becomes ``__empty__``), runs the script with its default
options (NIST + BLEU, closest-reference brevity penalty, BLEU smoothing on, default tokenization,
lower-casing on) and reads the cumulative 1..4-gram rows. This module reproduces each step:

1. ``xml_segment``      - the DSTC XML writer's rules for one line;
2. ``mteval_tokenize``  - the script's ``tokenization`` sub (11b rules), regex for regex;
3. ``corpus_nist_bleu`` - the script's arithmetic: n-gram information weights from all references
   together, clipped matches against the per-n-gram maximum over the references, BLEU with the
   closest reference length and the script's smoothing, NIST with its length penalty based on the
   average reference length.

Known, documented differences from running the Perl script: characters that XML 1.0 forbids (ASCII
control characters other than tab/newline/CR, U+FFFE/U+FFFF) make the script abort; here they become
spaces. A corpus whose references have no words at all makes the script divide by zero; here NIST is 0.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

MAX_N = 4  # the DSTC evaluation reads cumulative n = 1..4 (the script computes up to 9; n <= 4 needs no more)

# Perl's \s on a character string (XML::Twig hands the script UTF-8 flagged strings, Perl >= 5.18):
# Python's \s differs (it also matches U+001C..U+001F), so the class is spelled out.
_PERL_SPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_SPACES = re.compile(f"[{_PERL_SPACE}]+")
_LEAD = re.compile(f"^[{_PERL_SPACE}]+")
_TRAIL = re.compile(f"[{_PERL_SPACE}]+$")

# mteval: s/([\{-\~\[-\` -\&\(-\+\:-\@\/])/ $1 /g  -- ASCII punctuation except ' , - . (and not digits/letters)
_PUNCT = re.compile(r"([\x7b-\x7e\x5b-\x60\x20-\x26\x28-\x2b\x3a-\x40/])")
_PERIOD_COMMA_AFTER_NONDIGIT = re.compile(r"([^0-9])([.,])")  # s/([^0-9])([\.,])/$1 $2 /g
_PERIOD_COMMA_BEFORE_NONDIGIT = re.compile(r"([.,])([^0-9])")  # s/([\.,])([^0-9])/ $1 $2/g
_DASH_AFTER_DIGIT = re.compile(r"([0-9])(-)")  # s/([0-9])(-)/$1 $2 /g
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")  # tr/[A-Z]/[a-z]/

# XML 1.0 Char production: anything else is a fatal parse error for the script's XML::Twig reader.
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def xml_segment(line: str) -> str:
    """The text mteval reads for one line, after the DSTC XML writer (``_write_xml``) and the XML parser.

    ``line`` is one line of a hypothesis/reference file without its newline.
    """
    text = line.replace("&", " ").replace("<", " ")  # "remove illegal xml char"
    if len(text) == 0:
        text = "__empty__"
    # The XML parser normalises line ends (CR LF / lone CR -> LF); forbidden characters would abort it.
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _XML_INVALID.sub(" ", text)


def mteval_tokenize(text: str, preserve_case: bool = False) -> str:
    """mteval-v14c.pl ``sub tokenization`` (the default, non-international one)."""
    t = text.replace("<skipped>", "")  # strip "skipped" tags
    t = t.replace("-\n", "")  # strip end-of-line hyphenation and join lines
    t = t.replace("\n", " ")  # join lines
    t = t.replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    t = f" {t} "
    if not preserve_case:
        t = t.translate(_ASCII_LOWER)  # ASCII only, as tr/[A-Z]/[a-z]/
    t = _PUNCT.sub(r" \1 ", t)
    t = _PERIOD_COMMA_AFTER_NONDIGIT.sub(r"\1 \2 ", t)
    t = _PERIOD_COMMA_BEFORE_NONDIGIT.sub(r" \1 \2", t)
    t = _DASH_AFTER_DIGIT.sub(r"\1 \2 ", t)
    t = _SPACES.sub(" ", t)
    t = _LEAD.sub("", t)
    return _TRAIL.sub("", t)


def mteval_words(line: str, preserve_case: bool = False) -> list[str]:
    """Words mteval scores for one file line: XML writer rules, tokenization, ``split /\\s+/``."""
    t = mteval_tokenize(xml_segment(line), preserve_case)
    return _SPACES.split(t) if t else []


def ngram_counts(words: Sequence[str], max_n: int = MAX_N) -> Counter:
    """mteval ``Words2Ngrams``: counts of every n-gram (as a tuple), n = 1..max_n."""
    counts: Counter = Counter()
    for n in range(1, max_n + 1):
        for i in range(len(words) - n + 1):
            counts[tuple(words[i : i + n])] += 1
    return counts


def ngram_information(ref_segments: Sequence[Sequence[str]], max_n: int = MAX_N) -> dict[tuple, float]:
    """mteval ``compute_ngram_info``: info(w1..wn) = -log2(count(w1..wn) / count(w1..wn-1)) over all references.

    Unigrams divide by the total number of reference words. The script tests the (n-1)-gram *string*
    for truth, and Perl's "0" is false: a bigram whose first word is "0" divides by the word total too.
    """
    counts: Counter = Counter()
    total_words = 0
    for words in ref_segments:
        total_words += len(words)
        counts.update(ngram_counts(words, max_n))
    info = {}
    for gram, c in counts.items():
        prefix = gram[:-1]
        if prefix and " ".join(prefix) != "0":
            denom = counts[prefix]
        else:
            denom = total_words
        info[gram] = -math.log(c / denom) / math.log(2)
    return info


def closest_length(current: int, ref_len: int, hyp_len: int) -> int:
    """mteval ``brevity_penalty_closest``: the closer reference length; on a tie, the shorter one."""
    if abs(hyp_len - ref_len) < abs(hyp_len - current):
        return ref_len
    if abs(hyp_len - ref_len) == abs(hyp_len - current) and current > ref_len:
        return ref_len
    return current


@dataclass
class NgramStats:
    """Corpus sums the script keeps per n (index 0 unused, as in the Perl arrays)."""

    max_n: int = MAX_N
    ref_length: int = 0  # sum over segments of the closest reference length
    match: list[int] = field(default_factory=list)  # clipped matching n-grams
    tst_count: list[int] = field(default_factory=list)  # hypothesis n-grams
    ref_count: list[int] = field(default_factory=list)  # reference n-grams, all references
    tst_info: list[float] = field(default_factory=list)  # information of the matched n-grams

    def __post_init__(self):
        k = self.max_n + 1
        self.match = self.match or [0] * k
        self.tst_count = self.tst_count or [0] * k
        self.ref_count = self.ref_count or [0] * k
        self.tst_info = self.tst_info or [0.0] * k


def score_segments(
    hyps: Sequence[Sequence[str]], refs: Sequence[Sequence[Sequence[str]]], info: dict, max_n: int = MAX_N
) -> NgramStats:
    """mteval ``score_segment`` summed over all segments. ``refs[i]`` = the word lists of segment i's references."""
    st = NgramStats(max_n)
    for tst_words, ref_list in zip(hyps, refs, strict=True):
        tst_ngrams = ngram_counts(tst_words, max_n)
        for n in range(1, max_n + 1):
            st.tst_count[n] += max(len(tst_words) - n + 1, 0)
        ref_max: dict[tuple, int] = {}
        ref_length = None
        for ref_words in ref_list:
            for gram, c in ngram_counts(ref_words, max_n).items():
                if c > ref_max.get(gram, 0):
                    ref_max[gram] = c
            for n in range(1, max_n + 1):
                st.ref_count[n] += max(len(ref_words) - n + 1, 0)
            if ref_length is None:
                ref_length = len(ref_words)
            else:
                ref_length = closest_length(ref_length, len(ref_words), len(tst_words))
        for gram, c in tst_ngrams.items():
            if gram in ref_max:
                m = min(c, ref_max[gram])
                st.tst_info[len(gram)] += info[gram] * m
                st.match[len(gram)] += m
        st.ref_length += ref_length or 0
    return st


def bleu_cumulative(st: NgramStats) -> list[float]:
    """mteval ``bleu_score`` (smoothing on, the script's default): cumulative BLEU-1..max_n.

    An order with no hypothesis n-grams at all contributes log 1 = 0 (short corpora are not punished
    for n-grams they cannot have); an order with n-grams but no match gets 1 / (2^k * count).
    """
    exp_len_score = 0.0
    if st.tst_count[1] > 0:
        exp_len_score = math.exp(min(0.0, 1.0 - st.ref_length / st.tst_count[1]))
    score, smooth, out = 0.0, 1, []
    for j in range(1, st.max_n + 1):
        if st.tst_count[j] == 0:
            iscore = 0.0
        elif st.match[j] == 0:
            smooth *= 2
            iscore = math.log(1.0 / (smooth * st.tst_count[j]))
        else:
            iscore = math.log(st.match[j] / st.tst_count[j])
        score += iscore
        out.append(math.exp(score / j) * exp_len_score)
    return out


_NIST_BETA = -math.log(0.5) / math.log(1.5) / math.log(1.5)


def nist_length_penalty(ratio: float) -> float:
    if ratio >= 1:
        return 1.0
    if ratio <= 0:
        return 0.0
    return math.exp(-_NIST_BETA * math.log(ratio) * math.log(ratio))


def nist_cumulative(st: NgramStats, n_refs: int) -> list[float]:
    """mteval ``nist_score``: cumulative NIST-1..max_n; the penalty compares the hypothesis length with
    the average reference length (all reference words / number of reference sets)."""
    if st.ref_count[1] == 0:
        return [0.0] * st.max_n  # the script divides by zero here
    penalty = nist_length_penalty(st.tst_count[1] / (st.ref_count[1] / n_refs))
    score, out = 0.0, []
    for n in range(1, st.max_n + 1):
        score += st.tst_info[n] / max(st.tst_count[n], 1)
        out.append(score * penalty)
    return out


def corpus_nist_bleu(
    hyps: Sequence[str], ref_sets: Sequence[Sequence[str]], max_n: int = MAX_N, preserve_case: bool = False
) -> tuple[list[float], list[float]]:
    """Cumulative NIST-1..max_n and BLEU-1..max_n of ``hyps`` against the reference sets.

    ``hyps``: one string per test instance (a line of the hypothesis file, without newline).
    ``ref_sets``: one sequence per reference file, each aligned with ``hyps``.
    """
    if not ref_sets:
        raise ValueError("at least one reference set is needed")
    if isinstance(hyps, str) or any(isinstance(refs, str) for refs in ref_sets):
        raise TypeError("hyps is a sequence of lines and ref_sets a sequence of such sequences, not strings")
    for k, refs in enumerate(ref_sets):
        if len(refs) != len(hyps):
            raise ValueError(f"reference set {k} has {len(refs)} lines, the hypotheses have {len(hyps)}")
    hyp_words = [mteval_words(h, preserve_case) for h in hyps]
    ref_words = [[mteval_words(r, preserve_case) for r in refs] for refs in ref_sets]
    info = ngram_information([w for refs in ref_words for w in refs], max_n)
    per_segment = [[refs[i] for refs in ref_words] for i in range(len(hyps))]
    st = score_segments(hyp_words, per_segment, info, max_n)
    return nist_cumulative(st, len(ref_sets)), bleu_cumulative(st)
