"""The paper's metrics: the DSTC-7 fixture (mteval-v14c.pl's printed results), mteval's tokenization and
arithmetic rules, and property tests (identity, empty lines, one-word lines, many references, unicode)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialogsmith.metrics import (
    MeteorError,
    avg_len,
    clean_str,
    compute_metrics,
    corpus_nist_bleu,
    distinct,
    entropy,
    meteor_score,
    mteval_tokenize,
    mteval_words,
    read_lines,
    xml_segment,
)
from dialogsmith.metrics.nist_bleu import closest_length, ngram_information, nist_length_penalty

# The public DSTC-7 evaluation demo, with the numbers mteval-v14c.pl / dstc.py print for it
# (../shared/specs/dstc-metrics.md).
HYP = ["i do n't know .", "he is a rocket scientist .", "i love it !"]
REF0 = ["ok that 's fine", "he is a trader", "i love it !"]
REF1 = ["well it 's ok", "he is an engineer", "i 'm not a fan"]
EXPECTED = {
    "nist": [1.8338, 2.0838, 2.1949, 2.1949],
    "bleu": [0.4667, 0.4410, 0.4017, 0.3224],
    "entropy": [2.5232, 2.4849, 2.1972, 1.7918],
    "dist": [0.8667, 1.0000],
    "avg_len": 5.0,
}


def _round(xs, k=4):
    return [round(x, k) for x in xs]


def test_dstc_fixture_reproduced_to_4_decimals():
    m = compute_metrics(HYP, [REF0, REF1])
    for key in ("nist", "bleu", "entropy", "dist"):
        assert _round(m[key]) == EXPECTED[key], key
    assert m["avg_len"] == EXPECTED["avg_len"]
    assert m["meteor"] is None  # no jar: absent, never a substitute


def test_fixture_numbers_match_the_shared_spec(shared_dir):
    text = (shared_dir / "specs" / "dstc-metrics.md").read_text()
    for key, label in [("nist", "NIST-1..4"), ("bleu", "BLEU-1..4"), ("entropy", "Entropy-1..4")]:
        row = [line for line in text.splitlines() if line.startswith(f"| {label}")][-1]  # the results table
        assert [float(x) for x in row.split("|")[2].split(",")] == EXPECTED[key]


def test_cli_prints_one_json_object(tmp_path):
    paths = []
    for name, lines in [("hyp", HYP), ("ref0", REF0), ("ref1", REF1)]:
        p = tmp_path / f"{name}.txt"
        p.write_text("".join(x + "\n" for x in lines), encoding="utf-8")
        paths.append(str(p))
    cmd = [sys.executable, "-m", "dialogsmith.metrics", "--hyp", paths[0], "--refs", *paths[1:]]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    obj = json.loads(out)
    assert out.count("\n") == 1
    assert {"nist", "bleu", "entropy", "dist", "avg_len", "meteor"} <= set(obj)
    assert _round(obj["nist"]) == EXPECTED["nist"] and _round(obj["bleu"]) == EXPECTED["bleu"]
    assert obj["meteor"] is None


def test_cli_rejects_misaligned_files(tmp_path):
    (tmp_path / "h.txt").write_text("a\nb\n")
    (tmp_path / "r.txt").write_text("a\n")
    cmd = [
        sys.executable,
        "-m",
        "dialogsmith.metrics",
        "--hyp",
        str(tmp_path / "h.txt"),
        "--refs",
        str(tmp_path / "r.txt"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "has 1 lines but" in proc.stderr


def test_read_lines_like_the_dstc_reader(tmp_path):
    p = tmp_path / "x.txt"
    p.write_bytes(b"a b\r\nc\n\nd")
    assert read_lines(str(p)) == ["a b", "c", "", "d"]
    p.write_bytes(b"\xff\xfe bad\n")
    with pytest.raises(ValueError, match="not valid UTF-8"):
        read_lines(str(p))


# --- mteval tokenization and the DSTC XML writer ---------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Hello, World!", "hello , world !"),
        ("i do n't know.", "i do n't know ."),  # apostrophes are not split
        ("3.5 and 1,000 but x.y", "3.5 and 1,000 but x . y"),  # period/comma kept between digits
        ("e.g. well", "e . g . well"),
        ("a-b 3-4 -5", "a-b 3 - 4 -5"),  # dash split only after a digit
        ('say "hi" (now) $5 @me #tag', 'say " hi " ( now ) $ 5 @ me # tag'),
        ("under_score back\\slash a/b", "under _ score back \\ slash a / b"),
        ("line-\nbreak and\nnewline", "linebreak and newline"),
        ("&quot;x&quot; &amp; &lt;y&gt;", '" x " & < y >'),
        ("ÇA Été", "Ça Été"),  # tr/[A-Z]/[a-z]/ lower-cases ASCII only
        ("  spaced\t\tout\u3000ideographic  ", "spaced out ideographic"),
        ("<skipped>gone", "gone"),
    ],
)
def test_mteval_tokenization(text, expected):
    assert mteval_tokenize(text) == expected


def test_xml_writer_rules():
    assert xml_segment("") == "__empty__"
    assert xml_segment("a & b < c > d") == "a   b   c > d"
    assert xml_segment("&") == " "  # not empty after the replacement: no __empty__, scores as no words
    assert mteval_words("") == ["_", "_", "empty", "_", "_"]  # what the script really scores
    assert mteval_words("&") == []
    assert mteval_words("a\x00b\x1fc") == ["a", "b", "c"]  # characters XML forbids become spaces


def test_closest_reference_length_rules():
    # the worked example in mteval's comments: candidate of 7 tokens, references 11, 8, 6, 7
    assert closest_length(11, 8, 7) == 8
    assert closest_length(8, 6, 7) == 6  # tie: the shorter one
    assert closest_length(6, 7, 7) == 7


def test_ngram_information_follows_perl_truth_of_the_prefix():
    info = ngram_information([["0", "a"], ["x", "a"], ["0", "b"]])
    total = 6
    assert info[("a",)] == pytest.approx(-math.log2(2 / total))
    assert info[("x", "a")] == pytest.approx(-math.log2(1 / 1))  # count(x a) / count(x)
    # Perl tests the prefix string "0" for truth: false, so the script divides by the word total
    assert info[("0", "a")] == pytest.approx(-math.log2(1 / total))


def test_nist_length_penalty():
    assert nist_length_penalty(1.2) == 1.0 and nist_length_penalty(0) == 0.0
    assert nist_length_penalty(1 / 1.5) == pytest.approx(0.5)  # the script's calibration point


def test_bleu_smoothing_and_brevity_penalty():
    # one unigram match out of 3, no bigram match: smoothed bigram precision 1/(2*2)
    nist, bleu = corpus_nist_bleu(["a x y"], [["a b c"]])
    assert bleu[0] == pytest.approx(1 / 3)
    assert bleu[1] == pytest.approx(math.sqrt(1 / 3 * 1 / 4))
    assert bleu[2] == pytest.approx((1 / 3 * 1 / 4 * 1 / 4) ** (1 / 3))  # 1/(4*1) for the trigram
    # hypothesis shorter than the closest reference: brevity penalty exp(1 - r/c)
    _, bleu = corpus_nist_bleu(["a b"], [["a b c d"]])
    assert bleu[0] == pytest.approx(math.exp(1 - 4 / 2))


# --- diversity and length ------------------------------------------------------------------------


def test_diversity_on_whitespace_tokens():
    assert _round(entropy(HYP)) == EXPECTED["entropy"]
    assert _round(distinct(HYP)) == EXPECTED["dist"]
    assert entropy(["", ""]) == [0.0] * 4 and distinct([""]) == [0.0, 0.0] and avg_len([]) == 0.0
    assert distinct(["a a a a"]) == [0.25, pytest.approx(1 / 3)]
    assert entropy(["a b", "a b"])[0] == pytest.approx(math.log(2))


# --- METEOR: the jar or nothing --------------------------------------------------------------------


def test_meteor_requires_the_real_jar(tmp_path):
    with pytest.raises(MeteorError, match="jar not found"):
        meteor_score(HYP, [REF0], str(tmp_path / "meteor-1.5.jar"))


# --- DSTC cleaning --------------------------------------------------------------------------------


def test_dstc_clean_str():
    assert clean_str("I can't do it, he's HERE & won't go") == "i can n't do it , he 's here will n't go"
    assert clean_str("see https://example.com/x?y=1 now") == "see __url__ now"
    assert clean_str("please try [ GitHub ] ( https://github.com )") == "please try github"


# --- properties -----------------------------------------------------------------------------------

WORD = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=8)
LINE = st.lists(WORD, min_size=0, max_size=12).map(" ".join)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check_ranges(nist, bleu):
    assert all(math.isfinite(x) and x >= 0 for x in nist)
    assert all(0.0 <= x <= 1.0 + 1e-12 for x in bleu)
    assert all(
        b >= a - 1e-12 for a, b in zip(nist, nist[1:], strict=False)
    )  # cumulative NIST never decreases


@SETTINGS
@given(hyps=st.lists(LINE, min_size=1, max_size=6), other=st.lists(LINE, min_size=6, max_size=6))
def test_identical_hypothesis_scores_bleu_1(hyps, other):
    # mteval: an order with no n-grams at all contributes precision 1, so a corpus identical to one of
    # its references scores 1 at every order, whatever the sentence lengths (as long as it has a word).
    if sum(len(mteval_words(h)) for h in hyps) == 0:
        return
    for refs in ([hyps], [other[: len(hyps)], hyps]):
        nist, bleu = corpus_nist_bleu(hyps, refs)
        assert bleu == pytest.approx([1.0] * 4)
        _check_ranges(nist, bleu)


@pytest.mark.parametrize("sentence", ["hello", "hello world", "a b c", "a b c d e"])
def test_identical_short_sentences(sentence):
    nist, bleu = corpus_nist_bleu([sentence], [[sentence]])
    assert bleu == pytest.approx([1.0] * 4)
    # NIST weighs matches by information: a lone word of a one-word reference corpus carries none
    assert nist[0] == 0.0 if sentence == "hello" else nist[0] > 0


@SETTINGS
@given(
    hyps=st.lists(st.one_of(st.just(""), WORD, LINE), min_size=1, max_size=5),
    n_refs=st.integers(1, 12),
    data=st.data(),
)
def test_arbitrary_unicode_many_references_empty_and_one_word_lines(hyps, n_refs, data):
    refs = [
        data.draw(st.lists(st.one_of(st.just(""), WORD, LINE), min_size=len(hyps), max_size=len(hyps)))
        for _ in range(n_refs)
    ]
    m = compute_metrics(hyps, refs)
    _check_ranges(m["nist"], m["bleu"])
    assert all(x >= 0 for x in m["entropy"]) and all(0 <= x <= 1 for x in m["dist"])
    assert m["avg_len"] >= 0


def test_all_empty_hypotheses():
    m = compute_metrics(["", ""], [["a b", ""], ["c", "d e f"]])
    # "__empty__" is what the script scores: "_ _ empty _ _", which matches the empty reference line
    assert m["bleu"][0] > 0
    assert m["avg_len"] == 0.0 and m["dist"] == [0.0, 0.0]


def test_one_word_lines_and_many_references():
    hyps = ["yes", "no", "maybe"]
    refs = [["yes", "nope", "maybe"]] + [["ok", "no", "sure"]] * 11
    nist, bleu = corpus_nist_bleu(hyps, refs)
    assert bleu[0] == pytest.approx(1.0)  # every hypothesis word is in one of its references
    assert bleu[1:] == pytest.approx([1.0] * 3)  # no bigrams anywhere: orders 2..4 contribute 1
    _check_ranges(nist, bleu)


def test_unicode_text_kept_whole():
    assert mteval_words("Привет, мир! 你好") == ["Привет", ",", "мир", "!", "你好"]
    nist, bleu = corpus_nist_bleu(["Привет, мир!"], [["привет , мир !"]])
    assert bleu[0] == pytest.approx(0.75)  # Cyrillic is not lower-cased by the script: 3 of 4 words match
