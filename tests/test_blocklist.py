"""Blocklists: flashtext semantics (checked against flashtext itself), list files, speed."""

from __future__ import annotations

import random
import time

import pytest

from dialogsmith.text.blocklist import Blocklist, parse_list, parse_subreddit_list, read_subreddit_list


def test_whole_words_case_insensitive_phrases():
    bl = Blocklist(["badword", "Very Offensive Phrase", "x_y"])
    assert len(bl) == 3
    assert bl.contains("a BadWord here")
    assert bl.contains("badword")
    assert bl.contains("(badword)!")
    assert bl.contains("badwordé")  # non-ASCII letters are boundaries, as in flashtext
    assert not bl.contains("badwords")
    assert not bl.contains("_badword")
    assert not bl.contains("badword1")
    assert bl.contains("so very very offensive phrase.")
    assert not bl.contains("very offensive phrases")
    assert bl.contains("x_y")
    assert not bl.contains("x_yz")
    assert bl.find("Badword and very offensive phrase") == ["badword", "Very Offensive Phrase"]
    assert Blocklist([]).contains("anything") is False


def test_list_file(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text("# comment\nbadword  \n\n#notaword\nslur x\n", encoding="utf-8")
    assert parse_list(path.read_text()) == ["badword", "slur x"]
    bl = Blocklist.from_file(str(path))
    assert len(bl) == 2 and bl.contains("a slur x") and not bl.contains("notaword")
    subs = tmp_path / "subs.txt"
    subs.write_text("# subs\nBadSub\nother\n", encoding="utf-8")
    assert read_subreddit_list(str(subs)) == frozenset({"badsub", "other"})


def test_one_comment_rule_for_every_list_file(tmp_path):
    """A line is a comment when its first character is '#' (word lists and subreddit lists alike); a '#'
    further on is part of the line, so an indented '#' line is an entry (one that names no subreddit)."""
    text = "#comment\n# another\nAskReddit\n  pics \n  # indented\nx # y\n\n   \n"
    assert parse_list(text) == ["AskReddit", "  pics", "  # indented", "x # y"]
    assert parse_subreddit_list(text) == frozenset({"askreddit", "pics", "# indented", "x # y"})
    path = tmp_path / "subs.txt"
    path.write_text(text, encoding="utf-8")
    assert read_subreddit_list(str(path)) == parse_subreddit_list(text)
    assert not Blocklist.from_file(str(path)).contains("comment another")


def test_matches_flashtext_on_random_lists_and_texts():
    flashtext = pytest.importorskip("flashtext")
    rng = random.Random(3)
    for _ in range(1500):
        words = [
            "".join(rng.choice("abAB _1-.") for _ in range(rng.randint(1, 4))).strip()
            for _ in range(rng.randint(1, 4))
        ]
        words = [w for w in words if w]
        kp = flashtext.KeywordProcessor()
        for w in words:
            kp.add_keyword(w)
        bl = Blocklist(words)
        for _ in range(30):
            text = "".join(rng.choice("abAB _-.é!1") for _ in range(rng.randint(0, 14)))
            assert bl.contains(text) == bool(kp.extract_keywords(text)), (words, text)
            if all(w[0].isalnum() and w[-1].isalnum() for w in words):
                assert bl.find(text) == kp.extract_keywords(text), (words, text)


def test_fast_on_a_large_list():
    rng = random.Random(5)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = {"".join(rng.choice(letters) for _ in range(rng.randint(4, 9))) for _ in range(10_000)}
    bl = Blocklist(words)
    text = " ".join("".join(rng.choice(letters) for _ in range(rng.randint(2, 8))) for _ in range(20))
    texts = [text] * 5000
    start = time.perf_counter()
    hits = sum(bl.contains(t) for t in texts)
    per_text_us = (time.perf_counter() - start) / len(texts) * 1e6
    # ~2-3 µs per 20-word text on an idle core; generous bound for a loaded CI machine
    assert per_text_us < 200, per_text_us
    assert hits in (0, len(texts))
    assert bl.contains(text + " " + next(iter(words)))
