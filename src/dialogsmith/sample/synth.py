"""Synthetic Pushshift-style Reddit dumps: ``RS_YYYY-MM`` and ``RC_YYYY-MM`` files that look like the real ones.

What it writes, per month of ``SynthConfig.months`` (see docs/sample-data.md for the full list):

* era-specific fields and JSON types (string ``created_utc`` 2007-11..2015-11, no ``ups`` from 2016-10,
  null scores in 2017-10/11, raw-API rows in 2015-02, float ``created_utc`` + ``_meta`` from 2023, or the
  BigQuery export shape with every number as a string);
* thread shapes: chains deeper than 10, wide threads, orphans (1% of comments and 1% of submissions are
  never written, as in the real dumps), replies landing in the next month, an optional mega-thread;
  with ``shape="realistic"`` the skewed, deep threads measured on independent months (15% of submissions
  with 0-1 comments, 2% with 500-2,000; long chains of replies to the newest comment), streamed
  to disk in time windows so that memory does not grow with the month;
* text: templated question -> answer chat (learnable by a tiny model) mixed with filler and with text that
  trips every DialoGPT extractor rule;
* malformed lines of every quarantine reason, and duplicated lines, counted exactly in ``SynthReport``;
* real compression: ``.zst`` with a declared 2 GiB window (``zstd --long=31``), ``.bz2``, ``.xz``, ``.gz``, plain.

Deterministic: the same config gives byte-identical files (single-threaded zstd, gzip mtime 0; random
streams are numpy PCG64 and Python's ``random``, both seeded from ``SynthConfig.seed``).

Speed (measured on the 2-core dev box, one core): ~5-7 s per million comment lines written as .zst.
The per-line Python work is one dict and one ``orjson.dumps``; thread structure, ids, times and
scores are drawn with numpy (classic: for a whole month at once; realistic: per time window), text is
picked from pools built once. Peak RSS, realistic: 0.35 GB at 1M lines, 0.42 GB at 5M, 0.50 GB at 16M.
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import lzma
import os
import random
import re
import sys
import time
from calendar import timegm
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import orjson
import zstandard

from dialogsmith import outputs

STAGE = "sample"
COMPRESSIONS = {"zst": ".zst", "bz2": ".bz2", "xz": ".xz", "gz": ".gz", "none": ""}
QUARANTINE_REASONS = ("bad_utf8", "bad_json", "not_object", "missing_field", "bad_type")
COMMENT_REQUIRED = ("id", "link_id", "parent_id", "body")
SUBMISSION_REQUIRED = ("id", "title")
# Words and phrases the generated text contains so that tests can put them in a blocklist
# (the same entries as ../shared/golden/dialogpt-extractor/lists/*.blocklist.txt).
BLOCKLIST_WORDS = ("badword", "slurx", "very offensive phrase")
BLOCKLIST_SUBREDDITS = ("badsub", "anotherbadsub")
ZSTD_WINDOW_LOG = 31  # the real .zst dumps declare a 2 GiB window (zstd --long=31)
MALFORMED_SHARE = 0.005  # of the lines of a file (at least one of every kind when malformed=True)
DUPLICATE_SHARE = 0.002
GHOST_SHARE = 0.01  # comments never written (deleted before the crawl): their replies are orphans
MISSING_SUBMISSION_SHARE = 0.01  # submissions never written: their comments point to an absent t3_
SHAPES = ("classic", "realistic")


@dataclass
class SynthConfig:
    months: list[str] = field(default_factory=lambda: ["2016-01", "2016-02"])
    comments_per_month: int = 20_000
    seed: int = 1234
    compression: str = "zst"  # zst | bz2 | xz | gz | none
    bigquery_shape: bool = False  # every number as a string, nulls elsewhere
    mega_thread: int = 0  # >0: one thread of this many comments in the first month
    malformed: bool = True  # add malformed lines of every kind, and duplicated lines
    # classic: share of the comments of month m+1 replying to threads of month m;
    # realistic: 2x this share of month m's threads get 1-3 replies in month m+1 (default: 10%)
    late_reply_fraction: float = 0.05
    # "classic": the original shapes, planned a month at a time (small samples; bytes kept stable).
    # "realistic": deep, skewed threads as in real months, generated in bounded memory (benchmarks).
    shape: str = "classic"
    chunk_comments: int = 262_144  # realistic: comments generated per time window (memory bound)


@dataclass
class SynthReport:
    # per file name: {"kind", "month", "lines", "valid_distinct", "duplicates", "quarantine": {reason: n}}
    files: dict[str, dict]
    comments: int  # valid, distinct comment ids over all files
    submissions: int  # valid, distinct submission ids over all files
    lines: int
    quarantine: dict[str, int]  # expected quarantine reasons over all files (non-zero reasons only)
    duplicates: int  # extra copies of an already-seen id (duplicated lines)


# --- months and eras ------------------------------------------------------------------------------

_MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")


def parse_month(month: str) -> tuple[int, int]:
    m = _MONTH_RE.match(month)
    if not m or not 1 <= int(m.group(2)) <= 12 or not 2005 <= int(m.group(1)) <= 2099:
        raise ValueError(f"bad month {month!r}: expected YYYY-MM between 2005-01 and 2099-12")
    return int(m.group(1)), int(m.group(2))


def _month_bounds(ym: tuple[int, int]) -> tuple[int, int]:
    y, mo = ym
    nxt = (y + 1, 1) if mo == 12 else (y, mo + 1)
    return timegm((y, mo, 1, 0, 0, 0)), timegm((nxt[0], nxt[1], 1, 0, 0, 0))


def _month_index(ym: tuple[int, int]) -> int:
    return (ym[0] - 2005) * 12 + ym[1] - 1


def file_name(kind: str, month: str, compression: str) -> str:
    """``RC_2016-01.zst`` / ``RS_2016-01.zst``, the real dumps' names."""
    return f"{'RC' if kind == 'comments' else 'RS'}_{month}{COMPRESSIONS[compression]}"


@dataclass(frozen=True)
class _CommentEra:
    created_str: bool  # 2007-11..2015-11: "created_utc": "1293862275"
    api_fields: bool  # 2007-11..2015-07: name, downs, score_hidden, archived
    raw_api_share: float  # 2015-02: ~1% of rows with int created_utc and raw-API fields
    ups: bool  # absent from 2016-10
    null_score_share: float  # 2017-10, 2017-11: score can be null
    submitter_fields: bool  # 2017-01 on: permalink, is_submitter
    collapse_fields: bool  # 2017-06 on: can_gild, collapsed, collapsed_reason
    float_created: bool  # 2023 on: float created_utc and a _meta object


def comment_era(ym: tuple[int, int]) -> _CommentEra:
    return _CommentEra(
        created_str=(2007, 11) <= ym <= (2015, 11),
        api_fields=(2007, 11) <= ym <= (2015, 7),
        raw_api_share=0.01 if ym == (2015, 2) else 0.0,
        ups=ym < (2016, 10),
        null_score_share=0.1 if ym in ((2017, 10), (2017, 11)) else 0.0,
        submitter_fields=ym >= (2017, 1),
        collapse_fields=ym >= (2017, 6),
        float_created=ym >= (2023, 1),
    )


@dataclass(frozen=True)
class _SubmissionEra:
    created_str: bool  # 2014-01..2015-11
    null_subreddit_id_share: float  # 2017: subreddit_id can be null
    retrieved_on: bool  # missing in 2016-07..2016-09 (the real dumps lack it in some months)
    float_created: bool


def submission_era(ym: tuple[int, int]) -> _SubmissionEra:
    return _SubmissionEra(
        created_str=(2014, 1) <= ym <= (2015, 11),
        null_subreddit_id_share=0.03 if ym[0] == 2017 else 0.0,
        retrieved_on=not ((2016, 7) <= ym <= (2016, 9)),
        float_created=ym >= (2023, 1),
    )


# --- base36 ids -----------------------------------------------------------------------------------

_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_B36_BYTES = np.frombuffer(_B36.encode(), dtype=np.uint8)


def b36(n: int) -> str:
    if n == 0:
        return "0"
    out = []
    while n:
        n, d = divmod(n, 36)
        out.append(_B36[d])
    return "".join(reversed(out))


def b36_many(values: np.ndarray) -> list[str]:
    """Vectorised base36 of a non-negative int64 array (~0.1 us per id)."""
    v = np.asarray(values, dtype=np.int64)
    if v.size == 0:
        return []
    width = len(b36(int(v.max())))
    digits = np.empty((v.size, width), dtype=np.uint8)
    rest = v.copy()
    for col in range(width - 1, -1, -1):
        digits[:, col] = _B36_BYTES[rest % 36]
        rest //= 36
    out = digits.view(f"S{width}").ravel().astype(f"U{width}").tolist()
    if int(v.min()) < 36 ** (width - 1):
        out = [s.lstrip("0") or "0" for s in out]
    return out


# --- text -----------------------------------------------------------------------------------------

COMMON_WORDS = (
    "the i you it to a and that is of in this was for on have be not with but just my like they what so "
    "are at if think it's do all can get one your about people would me or there an out no don't more up "
    "good time know really from he some when because will them we even right much also now than only "
    "then how make way see go well why actually very thing need too here same better game want still lot "
    "back new pretty any work never first sure love post reddit yeah looks great guy day year friend "
    "thanks cat dog music movie book school money city number point world long little old best feel "
    "probably maybe nice funny agree lol haha yes true kind totally honestly basically literally weird "
    "cool awesome bad happy sad tired hungry coffee tea pizza weekend today tomorrow night morning home"
).split()

_SLOTS = {
    "color": ("blue", "red", "green", "yellow", "purple", "orange", "black", "white"),
    "food": ("pizza", "pasta", "sushi", "tacos", "curry", "ramen", "salad", "burgers"),
    "animal": ("cat", "dog", "horse", "owl", "fox", "dolphin", "rabbit", "turtle"),
    "movie": ("alien", "jaws", "up", "heat", "rocky", "inception", "frozen", "casablanca"),
    "game": ("chess", "tetris", "minecraft", "zelda", "portal", "doom", "skyrim", "pong"),
    "season": ("spring", "summer", "autumn", "winter"),
    "sport": ("soccer", "tennis", "hockey", "baseball", "golf", "rugby", "cricket", "swimming"),
    "drink": ("coffee", "tea", "water", "juice", "milk", "lemonade", "cocoa", "soda"),
    "book": ("dune", "emma", "hamlet", "ulysses", "dracula", "matilda", "beloved", "walden"),
    "band": ("queen", "abba", "blur", "oasis", "muse", "toto", "kiss", "rush"),
}
_CITIES = ("london", "paris", "berlin", "madrid", "tokyo", "boston", "chicago", "toronto", "sydney", "dublin")
_WEATHER = ("sunny", "rainy", "cloudy", "windy", "snowy", "warm", "cold", "foggy")
_NAMES = ("alex", "sam", "jordan", "taylor", "morgan", "casey", "riley", "jamie", "robin", "charlie")
_ADJ = ("great", "fun", "boring", "amazing", "overrated", "underrated", "okay", "weird")


def _build_topics() -> tuple[list[list[str]], list[list[str]]]:
    """Question variants and answer variants per topic: a reply to a question answers it."""
    qs: list[list[str]] = []
    ans: list[list[str]] = []

    def add(questions, answers):
        qs.append(list(questions))
        ans.append(list(answers))

    for thing, values in _SLOTS.items():
        add(
            [
                f"what is your favorite {thing}?",
                f"What is your favorite {thing}?",
                f"whats your favorite {thing}?",
            ],
            [f"my favorite {thing} is {v}" for v in values]
            + [f"My favorite {thing} is {v}." for v in values],
        )
        for v in values:
            add(
                [f"do you like {v}?", f"Do you like {v}?"],
                [f"yes i love {v}", f"yes, {v} is great", f"no i do not like {v}", f"i like {v} a lot"],
            )
            add([f"what do you think about {v}?"], [f"i think {v} is {a}" for a in _ADJ])
    add(
        ["how are you?", "how are you doing today?", "How are you?"],
        ["i am fine thanks", "i am good, thanks for asking", "I am fine, thank you."],
    )
    add(["hi everyone", "hello there", "Hello!"], ["hello", "hey there, nice to meet you", "hi, welcome!"])
    add(["good morning", "Good morning everyone!"], ["good morning to you too", "morning! have a nice day"])
    add(["where are you from?", "Where are you from?"], [f"i am from {c}" for c in _CITIES])
    add(["what is your name?", "whats your name?"], [f"my name is {n}" for n in _NAMES])
    add(["thanks for the help", "thank you so much"], ["you are welcome", "no problem, happy to help"])
    add(["what time is it?"], [f"it is {h} o'clock" for h in range(1, 13)])
    for c in _CITIES:
        add([f"how is the weather in {c}?"], [f"it is {w} in {c} today" for w in _WEATHER])
    for a in range(1, 13):
        for b in range(1, 13):
            add([f"what is {a} plus {b}?", f"What is {a} plus {b}?"], [f"{a} plus {b} is {a + b}"])
    for n in range(1, 50):
        add([f"what comes after {n}?"], [f"{n + 1} comes after {n}", f"after {n} comes {n + 1}"])
    return qs, ans


TOPIC_QUESTIONS, TOPIC_ANSWERS = _build_topics()

# Kinds of comment body. DIALOG answers the parent's question (if any) and may ask a new one; the others
# exercise one extractor rule each.
DIALOG, FILLER, DELETED, REMOVED, QUOTE, URL, BRACKETS, SHOUT, REPEAT, NON_ENGLISH = range(10)
LONG_WORD, BLOCKED, ENTITY, UNICODE, ABBREV, HASHTAG, BACKSLASH, NEWLINE, BOT = range(10, 19)
_KIND_P = np.array(
    [0.58, 0.20, 0.03, 0.02, 0.02, 0.02, 0.02, 0.01, 0.01, 0.02]
    + [0.005, 0.01, 0.01, 0.02, 0.015, 0.01, 0.005, 0.015, 0.01]
)
_KIND_P = _KIND_P / _KIND_P.sum()

_SPECIAL_TEXT = {
    URL: [
        "check this out http://example.com/page",
        "https://www.youtube.com/watch?v=dQw4w9WgXcQ",
        "source: https://en.wikipedia.org/wiki/Cat",
        "i found it on www.google.com and it works",
        "see:http://imgur.com/a/xyz for pics",
        "HTTP://EXAMPLE.ORG/SHOUTING",
        "two links http://a.com and https://b.org/path?x=1&amp;y=2",
    ],
    BRACKETS: [
        "i agree (mostly)",
        "[citation needed]",
        "that is true :)",
        "[link](https://example.com/thing) is where i read it",
        "well (to be fair) it was late",
        "it costs about $5 (plus tax)",
        "[serious] what happened next",
    ],
    SHOUT: [
        "THIS IS AMAZING",
        "WHAT ARE YOU DOING",
        "i LOVE this so much",
        "LOL that is funny",
        "NOOOO way",
        "OK sure",
    ],
    REPEAT: [
        "no no no",
        "yes yes yes i agree",
        "ha ha ha that is funny",
        "very very very good",
        "go go go",
        "no no, that is wrong",
    ],
    NON_ENGLISH: [
        "hola, ¿cómo estás? yo estoy bien",
        "¿dónde está la biblioteca?",
        "me gusta mucho la pizza",
        "je ne sais pas, c'est la vie",
        "très bien, merci beaucoup",
        "où est la gare s'il vous plaît",
        "das ist sehr gut, danke schön",
        "ich möchte ein bier, bitte",
        "wie geht es dir heute?",
        "größer als ein haus",
    ],
    LONG_WORD: [
        "that is supercalifragilisticexpialidocious",
        "pneumonoultramicroscopicsilicovolcanoconiosis is a word",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaargh i hate mondays",
        "hahahahahahahahahahahahahahahahaha yes",
        "my password is correcthorsebatterystaplecorrecthorse",
    ],
    BLOCKED: [
        "that is a badword right there",
        "you are such a slurx",
        "this is a very offensive phrase indeed",
        "BADWORD! said the man",
        "Very Offensive Phrase in title case",
        "badwords is not the same word",  # near miss: must NOT match "badword" at a word boundary
        "the slurx_y variable is fine",  # near miss: "_" is a word character
    ],
    ENTITY: [
        "fish &amp; chips",
        "tom &amp; jerry are the best",
        "i &lt;3 this",
        "1 &lt; 2 and 3 &gt; 2",
        "&amp;gt; is not a quote here",
        "rock &amp; roll &amp;nbsp;forever",
    ],
    UNICODE: [
        "that is so funny 😂😂",
        "great job 👍",
        "love it ❤️",
        "party time 🎉🎉🎉",
        "你好世界 hello",
        "こんにちは everyone",
        "привет друг",
        "καλημέρα friends",
        "مرحبا بكم",
        "the family 👨\u200d👩\u200d👧 emoji",
        "cafe\u0301 with combining accent",
        "non\u00a0breaking space",
        "line\u2028separator inside",
        "“curly quotes” and it’s fine",
        "math ∑ ∞ ≠ ≤",
        "ﬁ ligature and ½ fraction",
    ],
    ABBREV: [
        "i left early b/c i was tired",
        "coffee w/ milk please",
        "pizza w/o cheese is sad",
        "j/k i love it",
        "went there w/ my friend b/c it was cheap",
        "B/C uppercase is not replaced",
        "w/o a doubt j/k",
    ],
    HASHTAG: [
        "#blessed this is great",
        "i love it #summer #fun",
        "#1 fan right here",
        "so true #facts",
        "#tbt to last year",
    ],
    BACKSLASH: [
        "¯\\_(ツ)_/¯",
        "the file is in C:\\Users\\me\\docs",
        "escaped \\* star and \\_ underscore",
        "a literal \\n is not a newline",
        "back\\\\slash twice",
    ],
    NEWLINE: [
        "first line\n\nsecond line",
        "a\tb\tc",
        "windows\r\nline ending",
        "ok thanks\n",
        "  leading and trailing spaces  ",
        "list:\n\n* one\n* two\n* three",
    ],
}
_BOT_AUTHORS = ("AutoModerator", "wiki_summary_bot", "converter_bot", "haiku_bot", "RemindMeBot")
_BOT_TEXT = (
    "Your submission has been automatically flaired. I am a bot, and this action was performed "
    "automatically. Please [contact the moderators of this subreddit](/message/compose/?to=/r/{sub}) "
    "if you have any questions or concerns.",
    "Please remember to follow the rules. *I am a bot, and this action was performed automatically.*",
    "beep boop, 5 miles is about 8 km. ^(I am a bot) ^| ^(opt out)",
    "Here is a summary of the linked article: it was fine. ^(I am a bot, and this action was performed automatically.)",
)
_SUBREDDITS = (
    "AskReddit funny pics gaming worldnews todayilearned movies Music science books food aww "
    "programming MachineLearning askscience de france es badsub anotherbadsub"
).split()
_DOMAINS = ("i.imgur.com", "youtube.com", "en.wikipedia.org", "example.com", "nytimes.com", "github.com")


class _TextBank:
    """Text pools built once per seed; comments then pick from them by index (no per-line RNG work)."""

    def __init__(self, seed: int, shape: str = "classic"):
        rnd = random.Random(seed * 7919 + 17)
        weights = [1.0 / (i + 3) for i in range(len(COMMON_WORDS))]  # Zipf-like word frequencies
        self.filler = [self._sentence(rnd, weights) for _ in range(8192)]
        self.authors = self._authors(rnd, 4000)
        self.flairs = ["", "verified", "mod", "Team Blue", "🦊 fox fan", "moderator &amp; friend"]
        if shape == "realistic":  # its own stream: the classic pools above stay as they were
            chat = random.Random(seed * 7919 + 29)
            self.filler = [self._chat_body(chat, weights) for _ in range(8192)]

    @staticmethod
    def _chat_body(rnd: random.Random, weights: list[float]) -> str:
        # 2..25 words, mostly short; a third of the longer ones are two or three sentences.
        n = 2 + int(23 * rnd.random() ** 1.6)
        parts = 1 if n < 8 or rnd.random() < 0.67 else rnd.choice((2, 2, 3))
        cuts = sorted(rnd.sample(range(2, n - 1), parts - 1)) if parts > 1 else []
        words = rnd.choices(COMMON_WORDS, weights, k=n)
        sentences = []
        for lo, hi in zip([0, *cuts], [*cuts, n], strict=True):
            s = " ".join(words[lo:hi])
            if rnd.random() < 0.5:
                s = s[0].upper() + s[1:]
            ends = ("", ".", "!", "?", " lol") if hi == n else (".", ".", "!", "?", "...")
            sentences.append(s + rnd.choice(ends))
        return " ".join(sentences)

    @staticmethod
    def _sentence(rnd: random.Random, weights: list[float]) -> str:
        # Lengths 1..40 words, mostly short (like chat).
        n = 1 + int(39 * rnd.random() ** 2.5)
        words = rnd.choices(COMMON_WORDS, weights, k=n)
        if n > 6 and rnd.random() < 0.3:
            words[rnd.randrange(2, n - 1)] += ","
        s = " ".join(words)
        if rnd.random() < 0.4:
            s = s[0].upper() + s[1:]
        return s + rnd.choice(("", ".", ".", "!", "?", "...", " lol"))

    @staticmethod
    def _authors(rnd: random.Random, n: int) -> list[str]:
        first = (
            "quiet",
            "happy",
            "sad",
            "big",
            "little",
            "red",
            "blue",
            "dark",
            "lazy",
            "super",
            "Mr",
            "The",
        )
        second = ("fox", "cat", "Bear", "owl", "panda", "Wolf", "gamer", "reader", "cook", "Pilot", "coder")
        seen: set[str] = set()
        out: list[str] = []
        while len(out) < n:
            name = (
                rnd.choice(first)
                + rnd.choice(("", "_", "-"))
                + rnd.choice(second)
                + str(rnd.randrange(10000))
            )
            if name not in seen:
                seen.add(name)
                out.append(name)
        return out

    def body(self, kind: int, ptopic: int, ask: int, r: int, sub: str) -> str:
        """The comment text for one body kind; ``ptopic`` is the question the parent asked (-1: none)."""
        if kind == DIALOG:
            if ptopic >= 0:
                answers = TOPIC_ANSWERS[ptopic]
                s = answers[r % len(answers)]
                if ask >= 0:
                    q = TOPIC_QUESTIONS[ask]
                    return s + (". ", ", ", "! ", " and ")[(r >> 8) & 3] + q[(r >> 10) % len(q)]
                if (r >> 8) & 7 == 0:
                    return s + ". " + self.filler[(r >> 11) % 8192]
                return s
            if ask >= 0:
                q = TOPIC_QUESTIONS[ask]
                if (r >> 8) & 7 == 0:
                    return self.filler[(r >> 11) % 8192] + " " + q[r % len(q)]
                return q[r % len(q)]
            return self.filler[(r >> 11) % 8192]
        if kind == FILLER:
            return self.filler[r % 8192]
        if kind == DELETED:
            return "[deleted]"
        if kind == REMOVED:
            return "[removed]"
        if kind == QUOTE:
            quoted = TOPIC_QUESTIONS[ptopic][0] if ptopic >= 0 else self.filler[(r >> 11) % 8192]
            reply = TOPIC_ANSWERS[ptopic][r % len(TOPIC_ANSWERS[ptopic])] if ptopic >= 0 else "this"
            return "&gt; " + quoted + "\n\n" + reply
        if kind == BOT:
            return _BOT_TEXT[r % len(_BOT_TEXT)].replace("{sub}", sub)
        pool = _SPECIAL_TEXT[kind]
        s = pool[r % len(pool)]
        if ptopic >= 0 and (r >> 12) & 1:  # half of them inside an otherwise good answer
            answers = TOPIC_ANSWERS[ptopic]
            return answers[(r >> 13) % len(answers)] + " " + s
        return s


def _slug(title: str) -> str:
    words = re.findall(r"[a-z0-9]+", title.lower())
    return "_".join(words)[:50].strip("_") or "untitled"


# --- thread structure (numpy, a whole month at once) ---------------------------------------------

_NORMAL, _CHAIN, _WIDE, _MEGA = 0, 1, 2, 3


@dataclass
class _MonthPlan:
    month: str
    ym: tuple[int, int]
    start: int
    end: int
    sbase: int
    # submissions, index = rank by created_utc (id = sbase + index)
    s_time: np.ndarray
    s_topic: np.ndarray  # question asked by the title, -1: none
    s_sub: np.ndarray  # subreddit index
    s_author: np.ndarray
    s_ncomments: np.ndarray  # comments created (written or not) in this month and in the next
    s_missing: np.ndarray  # never written to RS
    # comments, index = generation order
    c_idnum: np.ndarray
    c_time: np.ndarray
    c_link: np.ndarray  # submission id number
    c_parent: np.ndarray  # comment id number, -1 for a top-level comment
    c_ptopic: np.ndarray  # question the parent asked
    c_ask: np.ndarray  # question this comment asks
    c_kind: np.ndarray
    c_ghost: np.ndarray  # never written
    c_sub: np.ndarray
    c_link_author: np.ndarray
    c_thread_topic: np.ndarray
    c_order: np.ndarray  # output order (roughly by created_utc)


def _thread_sizes(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Heavy-tailed thread sizes summing to n, and a thread type each (chain, wide, normal)."""
    sizes, types = [], []
    total = 0
    cap = max(40, n // 20)
    while total < n:
        m = max(64, (n - total) // 4)
        s = 1 + np.floor(rng.lognormal(1.0, 1.1, m)).astype(np.int64)
        np.minimum(s, cap, out=s)
        t = rng.choice(3, m, p=[0.88, 0.06, 0.06])
        u = rng.random(m)
        s = np.where(t == _CHAIN, np.maximum(s, 12 + (u * 25).astype(np.int64)), s)
        s = np.where(t == _WIDE, np.maximum(s, 15 + (u * 40).astype(np.int64)), s)
        sizes.append(s)
        types.append(t)
        total += int(s.sum())
    size = np.concatenate(sizes) if sizes else np.zeros(0, np.int64)
    typ = np.concatenate(types) if types else np.zeros(0, np.int64)
    if n == 0:
        return size[:0], typ[:0]
    cs = np.cumsum(size)
    cut = int(np.searchsorted(cs, n))
    size, typ = size[: cut + 1].copy(), typ[: cut + 1].copy()
    size[-1] -= int(cs[cut]) - n
    return size, typ


def _plan_month(
    cfg: SynthConfig, k: int, month: str, prev: _MonthPlan | None, n_authors: int, n_topics: int
) -> _MonthPlan:
    ym = parse_month(month)
    start, end = _month_bounds(ym)
    span = end - start
    rng = np.random.default_rng([cfg.seed, 1, _month_index(ym)])
    consecutive = prev is not None and _month_bounds(prev.ym)[1] == start and prev.c_idnum.size > 0
    n_late = int(round(cfg.comments_per_month * cfg.late_reply_fraction)) if consecutive else 0
    n_own = max(0, cfg.comments_per_month - n_late)

    size, typ = _thread_sizes(rng, n_own)
    if cfg.mega_thread > 0 and k == 0:
        size = np.append(size, cfg.mega_thread)
        typ = np.append(typ, _MEGA)
    n_zero = int(len(size) * 0.25)  # submissions without comments
    size = np.concatenate([size, np.zeros(n_zero, np.int64)])
    typ = np.concatenate([typ, np.zeros(n_zero, np.int64)])
    n_threads = len(size)
    t_start = start + (rng.random(n_threads) * (span - 3600)).astype(np.int64)
    t_start = np.where(typ == _MEGA, start + (rng.random(n_threads) * span * 0.05).astype(np.int64), t_start)
    # Threads sorted by creation time: thread index == rank == id offset (ids increase with time).
    by_time = np.argsort(t_start, kind="stable")
    size, typ, t_start = size[by_time], typ[by_time], t_start[by_time]
    mult = max(10**6, 2 * cfg.comments_per_month + 2)
    sbase = 36**4 + _month_index(ym) * mult
    s_topic = np.where(rng.random(n_threads) < 0.55, rng.integers(0, n_topics, n_threads), -1)
    s_sub = np.minimum((len(_SUBREDDITS) * rng.random(n_threads) ** 2).astype(np.int64), len(_SUBREDDITS) - 1)
    # Zipf-like authors: a few are very active.
    s_author = (n_authors * rng.random(n_threads) ** 3).astype(np.int64)

    # Own comments: parent = the submission, the previous comment (chains) or an earlier one.
    n = int(size.sum())
    thread = np.repeat(np.arange(n_threads), size)
    offset = np.concatenate([[0], np.cumsum(size)[:-1]]).astype(np.int64)
    pos = np.arange(n, dtype=np.int64) - offset[thread]
    p_top = np.array([0.35, 0.05, 0.9, 0.25])[typ][thread]
    p_chain = np.array([0.35, 0.92, 0.05, 0.3])[typ][thread]
    u, r = rng.random(n), rng.random(n)
    top = (pos == 0) | (u < p_top)
    chain = ~top & (u < p_top + p_chain)
    back = np.where(chain, 1, 1 + np.floor(r * r * pos).astype(np.int64))  # recent parents more likely
    parent_local = np.where(top, -1, offset[thread] + pos - back)
    # Times: per-thread cumulative gaps (median ~10 min, heavy tail); a reply is never before its parent.
    scale = np.where(typ == _MEGA, np.maximum(1.0, (end - t_start) / np.maximum(size, 1) / 2.2), 600.0)
    gaps = 1 + np.floor(np.exp(rng.normal(0.0, 1.0, n)) * scale[thread]).astype(np.int64)
    cs = np.cumsum(gaps)
    first = offset[thread]
    c_time = np.minimum(t_start[thread] + cs - cs[first] + gaps[first], end - 1)

    kind = rng.choice(len(_KIND_P), n + n_late, p=_KIND_P)
    ask = np.where(
        (kind == DIALOG) & (rng.random(n + n_late) < 0.55), rng.integers(0, n_topics, n + n_late), -1
    )
    safe_parent = np.where(top, 0, parent_local)
    own_ptopic = np.where(top, s_topic[thread], ask[:n][safe_parent] if n else ask[:0])
    c_link = sbase + thread

    # Late replies: comments of this month in threads of the previous month.
    if n_late:
        pick = rng.integers(0, prev.c_idnum.size, n_late)
        late_top = rng.random(n_late) < 0.35
        late_time = start + np.minimum(rng.exponential(span / 10, n_late).astype(np.int64), span - 1)
        late_parent = np.where(late_top, -1, prev.c_idnum[pick])
        late_ptopic = np.where(late_top, prev.c_thread_topic[pick], prev.c_ask[pick])
        late_link, late_sub = prev.c_link[pick], prev.c_sub[pick]
        late_link_author, late_thread_topic = prev.c_link_author[pick], prev.c_thread_topic[pick]
        in_prev = (late_link >= prev.sbase) & (late_link < prev.sbase + prev.s_ncomments.size)
        prev.s_ncomments += np.bincount(late_link[in_prev] - prev.sbase, minlength=prev.s_ncomments.size)
    else:
        late_time = late_parent = late_ptopic = late_link = np.zeros(0, np.int64)
        late_sub = late_link_author = late_thread_topic = np.zeros(0, np.int64)
        late_top = np.zeros(0, bool)

    times = np.concatenate([c_time, late_time])
    total = times.size
    rank = np.empty(total, np.int64)
    rank[np.argsort(times, kind="stable")] = np.arange(total)
    cmult = max(10**8, 2 * (cfg.comments_per_month + cfg.mega_thread) + 2)
    c_idnum = 36**6 + _month_index(ym) * cmult + rank
    own_parent = np.where(top, -1, c_idnum[:n][safe_parent] if n else safe_parent)
    is_top = np.concatenate([top, late_top])
    kind[(kind == BOT) & ~is_top] = FILLER  # bots only answer the submission
    # Roughly ordered by created_utc, as in the real dumps: 3% of lines are off by up to 2 minutes.
    jitter = np.where(rng.random(total) < 0.03, rng.integers(-120, 121, total), 0)
    order = np.argsort(times + jitter, kind="stable")
    s_ncomments = np.bincount(thread, minlength=n_threads).astype(np.int64)
    return _MonthPlan(
        month=month,
        ym=ym,
        start=start,
        end=end,
        sbase=sbase,
        s_time=t_start,
        s_topic=s_topic,
        s_sub=s_sub,
        s_author=s_author,
        s_ncomments=s_ncomments,
        s_missing=(rng.random(n_threads) < MISSING_SUBMISSION_SHARE) & (size > 0),
        c_idnum=c_idnum,
        c_time=times,
        c_link=np.concatenate([c_link, late_link]),
        c_parent=np.concatenate([own_parent, late_parent]),
        c_ptopic=np.concatenate([own_ptopic, late_ptopic]),
        c_ask=ask,
        c_kind=kind,
        c_ghost=rng.random(total) < GHOST_SHARE,
        c_sub=np.concatenate([s_sub[thread], late_sub]),
        c_link_author=np.concatenate([s_author[thread], late_link_author]),
        c_thread_topic=np.concatenate([s_topic[thread], late_thread_topic]),
        c_order=order,
    )


# --- realistic threads, streamed month by month in time windows ------------------------------------
#
# The shape measured on independent benchmark months (../shared/specs/performance-notes.md,
# "Measured 2026-11-30"): per submission 15% get 0-1 comments, 75% 2-30, 8% 30-200, 2% 500-2,000;
# a reply goes to the submission with p=0.25, else to the newest comment of the thread with p=0.5,
# else to a uniformly random earlier one; 3% of parents are never seen; ~10% of threads get 1-3 late
# replies the next month; a few comments (0.05%) reply to a comment of another thread.
#
# Memory: a month is cut into equal time windows of about ``chunk_comments`` comments each. The
# threads *started* in window w are drawn whole (their comments spread over hours, sometimes days),
# then every comment created before the end of window w is final: those are sorted, given ids in
# time order and written. Comments created later wait in a pool (a few columns of numpy ints), so
# what is held is one window's threads plus the tail of the threads still active, whatever the
# month's size. Ids are assigned when written; a waiting reply gets its parent's id when the
# parent is written (a parent is never created after its reply).

_R_SIZE_P = np.array([0.15, 0.75, 0.08, 0.02])
_R_SIZE_LO = np.array([0, 2, 30, 500])
_R_SIZE_HI = np.array([1, 30, 200, 2000])  # inclusive
_R_P_TOP = 0.25  # a reply to the submission
_R_P_NEWEST = 0.25 + 0.75 * 0.5  # else the newest comment of the thread (long chains)
_R_GHOST_SHARE = 0.03  # comments never written (deleted before the crawl): 3% of parents unseen
_R_CROSS_SHARE = 0.0005  # comments whose parent is a comment of another thread of the month
_R_MALFORMED_SHARE = 0.003
_R_LATE_TRIES = 3  # 1..3 late replies for a thread that gets some
_R_LIFETIME_S = 7200.0  # median mean offset of a thread's comments from its start (2 hours)
_R_LIFETIME_MAX_S = 86400.0
# The compressor's real window while streaming; the frame still declares ZSTD_WINDOW_LOG (see
# _declare_zstd_window). 128 MiB: level 3 finds almost all its matches within a few MB anyway.
_R_ZSTD_WINDOW_LOG = 27

_POOL_COLUMNS = (
    "gen",  # generation number within the month: the pool is kept in this order
    "time",
    "link",  # submission id number
    "top",  # a reply to the submission
    "parent_gen",  # gen of the parent comment while its id is unknown, else -1
    "parent_num",  # id number of the parent comment once written, -1 for a top-level comment
    "ptopic",
    "ask",
    "kind",
    "ghost",
    "sub",
    "link_author",
)


@dataclass
class _Submissions:
    """One window's submissions, shaped like the _MonthPlan fields _submission_records reads."""

    ym: tuple[int, int]
    sbase: int
    s_time: np.ndarray
    s_topic: np.ndarray
    s_sub: np.ndarray
    s_author: np.ndarray
    s_ncomments: np.ndarray
    s_missing: np.ndarray


def _pool_take(pool: dict[str, np.ndarray], idx) -> dict[str, np.ndarray]:
    return {k: v[idx] for k, v in pool.items()}


def _pool_concat(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([a[k], b[k]]) for k in _POOL_COLUMNS}


def _pool_empty() -> dict[str, np.ndarray]:
    return {k: np.zeros(0, bool if k in ("top", "ghost") else np.int64) for k in _POOL_COLUMNS}


def _realistic_sizes(rng: np.random.Generator, quota: int) -> np.ndarray:
    """Thread sizes (0 allowed) from the measured buckets, log-uniform within a bucket, summing to quota."""
    if quota <= 0:
        return np.zeros(0, np.int64)
    parts, total = [], 0
    while total < quota:
        m = max(64, quota // 30)  # ~36 comments a thread on average
        bucket = rng.choice(4, m, p=_R_SIZE_P)
        u = rng.random(m)
        lo, hi = np.maximum(_R_SIZE_LO[bucket], 1), _R_SIZE_HI[bucket]
        s = np.floor(np.exp(np.log(lo) + u * (np.log(hi + 1) - np.log(lo)))).astype(np.int64)
        s = np.where(bucket == 0, (u * 2).astype(np.int64), np.minimum(s, hi))
        parts.append(s)
        total += int(s.sum())
    size = np.concatenate(parts)
    cs = np.cumsum(size)
    cut = int(np.searchsorted(cs, quota))
    size = size[: cut + 1].copy()
    size[-1] -= int(cs[cut]) - quota
    return size


def _realistic_threads(
    rng: np.random.Generator,
    ym: tuple[int, int],
    quota: int,
    mega: int,
    window: tuple[int, int],
    end: int,
    next_end: int,
    sbase: int,
    gen0: int,
    late_share: float,
    n_authors: int,
    n_topics: int,
) -> tuple[_Submissions, dict[str, np.ndarray]]:
    """The threads started in ``window``: their submissions, and all their comments as pool rows.

    Comments created after ``end`` are this month's late replies (next month's lines): they stay in
    the pool when the month is done and are carried over with their parent ids resolved.
    """
    t0, t1 = window
    size = _realistic_sizes(rng, quota)
    if mega:
        size = np.append(size, mega)
    n_threads = size.size
    starts = t0 + (rng.random(n_threads) * (t1 - t0)).astype(np.int64)
    order = np.argsort(starts, kind="stable")  # thread index == rank by time == id offset
    size, t_start = size[order], starts[order]
    s_topic = np.where(rng.random(n_threads) < 0.55, rng.integers(0, n_topics, n_threads), -1)
    s_sub = np.minimum((len(_SUBREDDITS) * rng.random(n_threads) ** 2).astype(np.int64), len(_SUBREDDITS) - 1)
    s_author = (n_authors * rng.random(n_threads) ** 3).astype(np.int64)

    n = int(size.sum())
    thread = np.repeat(np.arange(n_threads), size)
    offset = np.concatenate([[0], np.cumsum(size)[:-1]]).astype(np.int64)
    pos = np.arange(n, dtype=np.int64) - offset[thread]
    # Times: each thread's comments are exponential offsets from its start (mean `scale`, bigger
    # threads live longer), drawn directly as sorted order statistics: the i-th gap is Exp(1)/(n-i).
    scale = _R_LIFETIME_S * np.exp(rng.normal(0.0, 0.8, n_threads)) * (1.0 + size / 1000.0)
    scale = np.minimum(scale, _R_LIFETIME_MAX_S)
    if mega:  # it was appended last, before the sort by start time
        scale[np.flatnonzero(order == n_threads - 1)] = _R_LIFETIME_MAX_S
    gaps = rng.exponential(1.0, n) / (size[thread] - pos)
    cs = np.cumsum(gaps)
    off = (cs - cs[offset[thread]] + gaps[offset[thread]]) * scale[thread]
    # A thread started late in the month is compressed to end within it (same order of comments).
    last = np.zeros(n_threads)
    nonempty = size > 0
    last[nonempty] = off[offset[nonempty] + size[nonempty] - 1]
    room = np.maximum(0, end - 2 - t_start).astype(np.float64)
    squeeze = np.minimum(1.0, room / np.maximum(last, 1.0))
    c_time = np.minimum(t_start[thread] + 1 + np.floor(off * squeeze[thread]).astype(np.int64), end - 1)

    u, r = rng.random(n), rng.random(n)
    top = (pos == 0) | (u < _R_P_TOP)
    newest = ~top & (u < _R_P_NEWEST)
    back = np.where(newest, 1, 1 + np.floor(r * pos).astype(np.int64))
    parent_local = np.where(top, -1, np.arange(n) - back)
    kind = rng.choice(len(_KIND_P), n, p=_KIND_P)
    ask = np.where((kind == DIALOG) & (rng.random(n) < 0.55), rng.integers(0, n_topics, n), -1)
    # Cross-thread replies: an earlier comment of another thread of this window (half the draws fail).
    cand = np.flatnonzero(rng.random(n) < 2 * _R_CROSS_SHARE)
    other = rng.integers(0, max(n, 1), cand.size)
    ok = (c_time[other] < c_time[cand]) & (thread[other] != thread[cand])
    top[cand[ok]] = False
    parent_local[cand[ok]] = other[ok]
    kind[(kind == BOT) & ~top] = FILLER  # bots only answer the submission
    ptopic = np.where(top, s_topic[thread], ask[np.maximum(parent_local, 0)] if n else ask)
    ghost = rng.random(n) < _R_GHOST_SHARE

    # Late replies (next month): 1..3 for a share of the threads, to the submission or any comment.
    if late_share > 0:
        n_late = np.where(
            rng.random(n_threads) < late_share, rng.integers(1, _R_LATE_TRIES + 1, n_threads), 0
        )
    else:
        n_late = np.zeros(n_threads, np.int64)
    late_thread = np.repeat(np.arange(n_threads), n_late)
    n_l = late_thread.size
    late_top = (size[late_thread] == 0) | (rng.random(n_l) < _R_P_TOP)
    late_parent = offset[late_thread] + np.floor(rng.random(n_l) * size[late_thread]).astype(np.int64)
    late_parent = np.where(late_top, -1, late_parent)
    late_time = end + np.minimum(
        rng.exponential(3 * 86400.0, n_l).astype(np.int64), max(next_end - end - 1, 0)
    )
    late_kind = rng.choice(len(_KIND_P), n_l, p=_KIND_P)
    late_ask = np.where((late_kind == DIALOG) & (rng.random(n_l) < 0.55), rng.integers(0, n_topics, n_l), -1)
    late_kind[(late_kind == BOT) & ~late_top] = FILLER
    late_ptopic = np.where(late_top, s_topic[late_thread], ask[np.maximum(late_parent, 0)] if n else -1)
    late_ghost = rng.random(n_l) < _R_GHOST_SHARE

    all_thread = np.concatenate([thread, late_thread])
    all_top = np.concatenate([top, late_top])
    all_parent = np.concatenate([parent_local, late_parent])
    rows = {
        "gen": gen0 + np.arange(n + n_l, dtype=np.int64),
        "time": np.concatenate([c_time, late_time]),
        "link": sbase + all_thread,
        "top": all_top,
        "parent_gen": np.where(all_top, -1, gen0 + all_parent),
        "parent_num": np.full(n + n_l, -1, np.int64),
        "ptopic": np.concatenate([ptopic, late_ptopic]),
        "ask": np.concatenate([ask, late_ask]),
        "kind": np.concatenate([kind, late_kind]),
        "ghost": np.concatenate([ghost, late_ghost]),
        "sub": s_sub[all_thread],
        "link_author": s_author[all_thread],
    }
    s_ncomments = size + n_late
    subs = _Submissions(
        ym=ym,
        sbase=sbase,
        s_time=t_start,
        s_topic=s_topic,
        s_sub=s_sub,
        s_author=s_author,
        s_ncomments=s_ncomments,
        s_missing=(rng.random(n_threads) < MISSING_SUBMISSION_SHARE) & (s_ncomments > 0),
    )
    return subs, rows


def _realistic_month(
    cfg: SynthConfig,
    k: int,
    month: str,
    carry: dict[str, np.ndarray] | None,
    next_end: int,
    bank: _TextBank,
    rs: _ChunkedFile,
    rc: _ChunkedFile,
) -> dict[str, np.ndarray] | None:
    """Stream one month into ``rs`` and ``rc``; return its late replies (pool rows of next month)."""
    ym = parse_month(month)
    start, end = _month_bounds(ym)
    span = end - start
    mi = _month_index(ym)
    era = comment_era(ym)
    n_gen = int(round(cfg.comments_per_month / (1 - _R_GHOST_SHARE)))  # lines come out ~= the knob
    pool = _pool_empty() if carry is None else {**carry, "gen": np.arange(carry["gen"].size, dtype=np.int64)}
    next_gen = pool["gen"].size
    n_own = max(0, n_gen - next_gen)
    windows = max(1, -(-n_own // cfg.chunk_comments))
    sbase = 36**4 + mi * max(10**6, 2 * n_gen + 2)
    cbase = 36**6 + mi * max(10**8, 2 * (n_gen + cfg.mega_thread) + 2)
    late_share = min(1.0, 2 * cfg.late_reply_fraction) if next_end else 0.0  # default 0.05 -> 10%
    next_thread = next_id = 0
    for w in range(windows):
        t0, t1 = start + span * w // windows, start + span * (w + 1) // windows
        quota = n_own * (w + 1) // windows - n_own * w // windows
        mega = cfg.mega_thread if k == 0 and w == 0 else 0
        subs, rows = _realistic_threads(
            np.random.default_rng([cfg.seed, 11, mi, w]),
            ym,
            quota,
            mega,
            (t0, t1),
            end,
            next_end,
            sbase + next_thread,
            next_gen,
            late_share,
            len(bank.authors),
            len(TOPIC_QUESTIONS),
        )
        next_thread += subs.s_time.size
        next_gen += rows["gen"].size
        rs.write_chunk(
            _submission_records(subs, bank, cfg, np.random.default_rng([cfg.seed, 13, mi, w])),
            int((~subs.s_missing).sum()),
        )
        del subs
        pool = _pool_concat(pool, rows)
        del rows

        # Everything created before t1 is final: ids in time order, then resolve waiting parents.
        t_limit = end if w == windows - 1 else t1
        done = np.flatnonzero(pool["time"] < t_limit)  # ascending gen
        by_time = done[np.lexsort((pool["gen"][done], pool["time"][done]))]
        ids = np.full(pool["gen"].size, -1, np.int64)
        ids[by_time] = cbase + next_id + np.arange(by_time.size)
        next_id += by_time.size
        waiting = np.flatnonzero(pool["parent_gen"] >= 0)
        if done.size and waiting.size:
            done_gen = pool["gen"][done]
            j = np.minimum(np.searchsorted(done_gen, pool["parent_gen"][waiting]), done.size - 1)
            hit = done_gen[j] == pool["parent_gen"][waiting]
            pool["parent_num"][waiting[hit]] = ids[done[j[hit]]]
            pool["parent_gen"][waiting[hit]] = -1
        if (pool["parent_gen"][done] >= 0).any():
            raise AssertionError("a comment is written before its parent")  # a generator bug

        # File order: roughly by created_utc, as in the real dumps (3% of lines off by up to 2 min).
        rng = np.random.default_rng([cfg.seed, 12, mi, w])
        t = pool["time"][by_time]
        jitter = np.where(rng.random(t.size) < 0.03, rng.integers(-120, 121, t.size), 0)
        written = by_time[np.argsort(t + jitter, kind="stable")]
        written = written[~pool["ghost"][written]]
        batch = _pool_take(pool, written)
        rc.write_chunk(
            _comment_rows(
                bank,
                era,
                cfg.bigquery_shape,
                rng,
                idnum=ids[written],
                parent_num=np.where(batch["top"], -1, batch["parent_num"]),
                link_num=batch["link"],
                created=batch["time"],
                sub_i=batch["sub"],
                link_author_idx=batch["link_author"],
                kind=batch["kind"],
                ptopic=batch["ptopic"],
                ask=batch["ask"],
            ),
            written.size,
        )
        del batch, ids
        keep = np.ones(pool["gen"].size, bool)
        keep[done] = False
        pool = _pool_take(pool, keep)
    if (pool["time"] < end).any() or (pool["parent_gen"] >= 0).any():
        raise AssertionError("comments of the month left unwritten")  # a generator bug
    return pool if next_end else None


# --- lines ----------------------------------------------------------------------------------------


def _comment_records(plan: _MonthPlan, bank: _TextBank, cfg: SynthConfig):
    """Yield (id, dict) for every written comment of the month, in file order."""
    keep = plan.c_order[~plan.c_ghost[plan.c_order]]
    # Whole-month columns as numpy arrays (8 bytes a value); Python lists only per chunk below.
    yield from _comment_rows(
        bank,
        comment_era(plan.ym),
        cfg.bigquery_shape,
        np.random.default_rng([cfg.seed, 2, _month_index(plan.ym)]),
        idnum=plan.c_idnum[keep],
        parent_num=plan.c_parent[keep],
        link_num=plan.c_link[keep],
        created=plan.c_time[keep],
        sub_i=plan.c_sub[keep],
        link_author_idx=plan.c_link_author[keep],
        kind=plan.c_kind[keep],
        ptopic=plan.c_ptopic[keep],
        ask=plan.c_ask[keep],
    )


def _comment_rows(
    bank: _TextBank,
    era: _CommentEra,
    bq: bool,
    rng: np.random.Generator,
    *,
    idnum: np.ndarray,
    parent_num: np.ndarray,  # -1: a top-level comment
    link_num: np.ndarray,
    created: np.ndarray,
    sub_i: np.ndarray,
    link_author_idx: np.ndarray,
    kind: np.ndarray,
    ptopic: np.ndarray,
    ask: np.ndarray,
):
    """Yield (id, dict) for the given comments in the given order; other fields drawn from ``rng``."""
    m = idnum.size
    author_idx = (len(bank.authors) * rng.random(m) ** 3).astype(np.int64)
    rbits_a = rng.integers(0, 2**31, m)
    # Scores: mostly small positive, a tail of big ones, ~12% zero or negative.
    mag = np.floor(np.exp(rng.normal(0.3, 1.4, m))).astype(np.int64)
    score_a = np.where(rng.random(m) < 0.12, 1 - mag, 1 + mag)
    null_score_a = rng.random(m) < era.null_score_share
    u_edit = rng.random(m)
    edit_time = created + 60 + (rng.random(m) * 86400).astype(np.int64)
    edit_kind_a = np.where(u_edit < 0.04, 1, np.where(u_edit < 0.05, 2, 0))  # 1: int, 2: float
    contro_a = (rng.random(m) < 0.05).astype(np.int64)
    gilded_a = np.where(rng.random(m) < 0.01, 1, 0)
    retrieved_a = created + 86400 * 30 + (rng.random(m) * 86400 * 60).astype(np.int64)
    flair_a = np.where(rng.random(m) < 0.05, rng.integers(1, len(bank.flairs), m), 0)
    raw_api_a = rng.random(m) < era.raw_api_share
    sub_names = np.array(_SUBREDDITS, dtype=object)
    sub_id_names = np.array(_SUBREDDIT_IDS, dtype=object)
    author_names = np.array(bank.authors, dtype=object)
    for lo in range(0, m, _CHUNK):
        sl = slice(lo, min(m, lo + _CHUNK))
        yield from _comment_chunk(
            bank,
            era,
            bq,
            ids=b36_many(idnum[sl]),
            parents=b36_many(np.maximum(parent_num[sl], 0)),
            links=b36_many(link_num[sl]),
            kinds=kind[sl].tolist(),
            ptopics=ptopic[sl].tolist(),
            asks=ask[sl].tolist(),
            tops=(parent_num[sl] < 0).tolist(),
            created_l=created[sl].tolist(),
            subs=sub_names[sub_i[sl]].tolist(),
            sub_ids=sub_id_names[sub_i[sl]].tolist(),
            authors=author_names[author_idx[sl]].tolist(),
            link_authors=author_names[link_author_idx[sl]].tolist(),
            rbits=rbits_a[sl].tolist(),
            score_l=score_a[sl].tolist(),
            null_score=null_score_a[sl].tolist(),
            edited_l=edit_time[sl].tolist(),
            edit_kind=edit_kind_a[sl].tolist(),
            contro=contro_a[sl].tolist(),
            gilded=gilded_a[sl].tolist(),
            retrieved=retrieved_a[sl].tolist(),
            flair=flair_a[sl].tolist(),
            raw_api=raw_api_a[sl].tolist(),
        )


_CHUNK = 65536


def _comment_chunk(
    bank,
    era,
    bq,
    *,
    ids,
    parents,
    links,
    kinds,
    ptopics,
    asks,
    tops,
    created_l,
    subs,
    sub_ids,
    authors,
    link_authors,
    rbits,
    score_l,
    null_score,
    edited_l,
    edit_kind,
    contro,
    gilded,
    retrieved,
    flair,
    raw_api,
):
    bodies = bank.body
    flairs = bank.flairs
    for j in range(len(ids)):
        kind = kinds[j]
        body = bodies(kind, ptopics[j], asks[j], rbits[j], subs[j])
        author = authors[j]
        distinguished = None
        stickied = False
        if kind == DELETED or (kind == REMOVED and rbits[j] % 10 < 7):
            author = "[deleted]"
        elif kind == BOT:
            author = _BOT_AUTHORS[rbits[j] % len(_BOT_AUTHORS)]
            if author == "AutoModerator":
                distinguished = "moderator"
                stickied = rbits[j] & 32 == 0
        cid = ids[j]
        parent_id = "t3_" + links[j] if tops[j] else "t1_" + parents[j]
        link_id = "t3_" + links[j]
        sc = None if null_score[j] else score_l[j]
        fl = flairs[flair[j]] or None
        if bq:
            yield (
                cid,
                {
                    "body": body,
                    "score_hidden": None,
                    "archived": None,
                    "name": None,
                    "author": author,
                    "author_flair_text": fl,
                    "downs": None,
                    "created_utc": str(created_l[j]),
                    "subreddit_id": sub_ids[j],
                    "link_id": link_id,
                    "parent_id": parent_id,
                    "score": None if sc is None else str(sc),
                    "retrieved_on": str(retrieved[j]),
                    "controversiality": str(contro[j]),
                    "gilded": str(gilded[j]),
                    "id": cid,
                    "subreddit": subs[j],
                    "ups": str(sc) if era.ups and sc is not None else None,
                    "distinguished": distinguished,
                    "author_flair_css_class": None,
                },
            )
            continue
        ek = edit_kind[j]
        edited = False if ek == 0 else (edited_l[j] if ek == 1 else float(edited_l[j]))
        if era.created_str and not raw_api[j]:
            # 2007-11..2015-11 key order, as in those dumps.
            d = {}
            if era.api_fields:
                d["score_hidden"] = False
                d["name"] = "t1_" + cid
            d["link_id"] = link_id
            d["body"] = body
            if era.api_fields:
                d["downs"] = 0
            d["created_utc"] = str(created_l[j])
            d["score"] = sc
            d["author"] = author
            d["distinguished"] = distinguished
            d["id"] = cid
            if era.api_fields:
                d["archived"] = True
            d["parent_id"] = parent_id
            d["subreddit"] = subs[j]
            d["author_flair_css_class"] = None
            d["author_flair_text"] = fl
            d["gilded"] = gilded[j]
            d["retrieved_on"] = retrieved[j]
            d["ups"] = sc
            d["controversiality"] = contro[j]
            d["subreddit_id"] = sub_ids[j]
            d["edited"] = edited
            d["stickied"] = stickied
            yield cid, d
            continue
        d = {
            "author": author,
            "author_flair_css_class": None,
            "author_flair_text": fl,
            "body": body,
            "controversiality": contro[j],
            "created_utc": float(created_l[j]) if era.float_created else created_l[j],
            "distinguished": distinguished,
            "edited": edited,
            "gilded": gilded[j],
            "id": cid,
            "link_id": link_id,
            "parent_id": parent_id,
            "retrieved_on": retrieved[j],
            "score": sc,
            "stickied": stickied,
            "subreddit": subs[j],
            "subreddit_id": sub_ids[j],
        }
        if era.ups:
            d["ups"] = sc
        if era.submitter_fields:
            d["is_submitter"] = author == link_authors[j]
            d["permalink"] = f"/r/{subs[j]}/comments/{links[j]}/_/{cid}/"
        if era.collapse_fields:
            d["can_gild"] = True
            d["collapsed"] = sc is not None and sc < -4
            d["collapsed_reason"] = None
        if era.float_created:
            d["_meta"] = {"retrieved_2nd_on": retrieved[j] + 86400 * 365}
        if raw_api[j]:  # 2015-02: rows straight from the API
            d["body_html"] = '&lt;div class="md"&gt;&lt;p&gt;' + body + "&lt;/p&gt;\n&lt;/div&gt;"
            d["created"] = float(created_l[j] + 28800)
            d["replies"] = ""
            d["likes"] = None
            d["user_reports"] = []
            d["mod_reports"] = []
            d["saved"] = False
            d["num_reports"] = None
            d["name"] = "t1_" + cid
        yield cid, d


_SUBREDDIT_IDS = ["t5_" + b36(36**4 * 2 + 7919 * 31 * (i + 1)) for i in range(len(_SUBREDDITS))]


def _submission_records(plan, bank: _TextBank, cfg: SynthConfig, rng: np.random.Generator | None = None):
    """Yield (id, dict) per written submission of ``plan`` (a _MonthPlan or a realistic _Submissions)."""
    era = submission_era(plan.ym)
    bq = cfg.bigquery_shape
    if rng is None:
        rng = np.random.default_rng([cfg.seed, 3, _month_index(plan.ym)])
    n = plan.s_time.size
    ids = b36_many(plan.sbase + np.arange(n))
    rb = rng.integers(0, 2**31, n).tolist()
    u = rng.random((n, 4)).tolist()
    mag = np.floor(np.exp(rng.normal(1.0, 1.8, n))).astype(np.int64).tolist()
    noise = rng.integers(-2, 4, n).tolist()
    created_l = plan.s_time.tolist()
    for t in range(n):
        if plan.s_missing[t]:
            continue
        sid = ids[t]
        sub_i = int(plan.s_sub[t])
        sub = _SUBREDDITS[sub_i]
        r = rb[t]
        topic = int(plan.s_topic[t])
        if topic >= 0:
            title = TOPIC_QUESTIONS[topic][r % len(TOPIC_QUESTIONS[topic])]
        elif u[t][0] < 0.2:
            kind = (URL, BRACKETS, SHOUT, NON_ENGLISH, ENTITY, UNICODE, BACKSLASH, NEWLINE)[r % 8]
            title = bank.body(kind, -1, -1, r >> 3, sub)
        else:
            title = bank.filler[r % 8192]
        is_self = u[t][1] < 0.5
        if is_self:
            domain = "self." + sub
            url = f"https://www.reddit.com/r/{sub}/comments/{sid}/{_slug(title)}/"
            v = u[t][2]
            selftext = (
                "[deleted]"
                if v < 0.05
                else "[removed]"
                if v < 0.1
                else ""
                if v < 0.5
                else bank.filler[(r >> 13) % 8192]
            )
        else:
            domain = _DOMAINS[r % len(_DOMAINS)]
            url = f"https://{domain}/{b36(r)}"
            selftext = ""
        ncom = int(plan.s_ncomments[t])
        if u[t][3] < 0.1:  # the crawl's count disagrees with the comments present
            ncom = max(0, ncom + noise[t])
        author = "[deleted]" if u[t][2] < 0.03 else bank.authors[int(plan.s_author[t])]
        created = created_l[t]
        score = mag[t] if r & 7 else -mag[t] // 3
        sub_id = _SUBREDDIT_IDS[sub_i]
        if era.null_subreddit_id_share and u[t][3] > 1 - era.null_subreddit_id_share:
            sub_id = None
        permalink = f"/r/{sub}/comments/{sid}/{_slug(title)}/"
        if bq:
            yield (
                sid,
                {
                    "id": sid,
                    "title": title,
                    "subreddit": sub,
                    "num_comments": str(ncom),
                    "score": str(score),
                    "created_utc": str(created),
                    "domain": domain,
                    "permalink": permalink,
                    "url": url,
                    "is_self": is_self,
                    "selftext": selftext,
                    "over_18": r % 50 == 0,
                    "author": author,
                    "stickied": False,
                    "subreddit_id": sub_id,
                    "retrieved_on": str(created + 86400 * 40),
                },
            )
            continue
        d = {
            "id": sid,
            "title": title,
            "subreddit": sub,
            "num_comments": ncom,
            "score": score,
            "created_utc": str(created)
            if era.created_str
            else float(created)
            if era.float_created
            else created,
            "domain": domain,
            "permalink": permalink,
            "url": url,
            "is_self": is_self,
            "selftext": selftext,
            "over_18": r % 50 == 0,
            "author": author,
            "stickied": r % 97 == 0,
            "subreddit_id": sub_id,
        }
        if era.retrieved_on:
            d["retrieved_on"] = created + 86400 * 40
        yield sid, d


# --- malformed lines -------------------------------------------------------------------------------

_BAD_UTF8 = (b"\xff", b"\xc3(", b"\xc0\xaf", b"\xe2\x82 ")  # invalid for every strict UTF-8 decoder
_BAD_JSON = (b"<html><body>502 Bad Gateway</body></html>", b"{'id': 'x', 'body': 'single quotes'}", b"}")
_NOT_OBJECT = (b"[1, 2, 3]", b'"just a string"', b"42", b"null", b"true", b'[{"id": "abc123"}]')
_BAD_VALUES = (["x"], {"a": 1}, [], {"t3": 1})


def _malformed_line(reason: str, variant: int, d: dict, required: tuple[str, ...]) -> bytes:
    """A line that a reader must quarantine with ``reason`` (derived from a record that is then lost)."""
    if reason == "bad_utf8":
        line = orjson.dumps(d)
        cut = line.find(b'"id":')
        cut = cut if cut > 0 else 1
        return line[:cut] + _BAD_UTF8[variant % len(_BAD_UTF8)] + line[cut:]
    if reason == "bad_json":
        if variant % 2 == 0:  # truncated JSON, cut on a character boundary (else it would be bad_utf8)
            text = orjson.dumps(d).decode()
            return text[: max(1, (len(text) * (1 + variant % 7)) // 9)].encode()
        return _BAD_JSON[(variant // 2) % len(_BAD_JSON)]
    if reason == "not_object":
        return _NOT_OBJECT[variant % len(_NOT_OBJECT)]
    d = dict(d)
    name = required[variant % len(required)]
    if reason == "missing_field":
        del d[name]
    else:  # bad_type: present but not a string (never an int: readers may coerce those)
        d[name] = _BAD_VALUES[variant % len(_BAD_VALUES)]
    return orjson.dumps(d)


# --- files ----------------------------------------------------------------------------------------


class _Writer:
    """Compressed output, deterministic bytes; lines joined by newlines, none after the last line."""

    def __init__(self, path: Path, compression: str, zstd_window_log: int = ZSTD_WINDOW_LOG):
        self.tmp = path.with_name(path.name + ".tmp")
        self.path = path
        self.raw = open(self.tmp, "wb")
        self.zstd_window_log = zstd_window_log if compression == "zst" else ZSTD_WINDOW_LOG
        if compression == "zst":
            params = zstandard.ZstdCompressionParameters.from_level(
                3, window_log=zstd_window_log, write_content_size=False, write_checksum=True, threads=0
            )
            self.f = zstandard.ZstdCompressor(compression_params=params).stream_writer(
                self.raw, closefd=False
            )
        elif compression == "bz2":
            self.f = bz2.BZ2File(self.raw, "wb", compresslevel=9)
        elif compression == "xz":
            self.f = lzma.LZMAFile(self.raw, "wb", preset=6)
        elif compression == "gz":
            self.f = gzip.GzipFile(filename="", mode="wb", fileobj=self.raw, compresslevel=6, mtime=0)
        else:
            self.f = None
        # Lines go into one reused bytearray, freed line by line: holding thousands of line objects
        # and joining them made glibc trim and re-fault its heap (measured: 1.7 page faults a line,
        # ~2.5 s of system time per 300K lines; this way ~0.05 s).
        self.buf = bytearray()
        self.sep = b""  # newline *before* every line but the first: no newline after the last line
        self.lines = 0
        self.bytes_out = 0

    def write(self, line: bytes) -> None:
        buf = self.buf
        buf += self.sep
        buf += line
        self.sep = b"\n"
        self.lines += 1
        if len(buf) >= 1 << 22:
            self.flush()

    def flush(self) -> None:
        self.bytes_out += len(self.buf)
        (self.f or self.raw).write(self.buf)
        del self.buf[:]

    def close(self) -> None:
        self.flush()
        if self.f is not None:
            self.f.close()
        self.raw.close()
        if self.zstd_window_log != ZSTD_WINDOW_LOG:
            _declare_zstd_window(self.tmp, self.zstd_window_log, ZSTD_WINDOW_LOG)
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        """Drop the partial file (no half-written file under the final name)."""
        try:
            if self.f is not None:
                self.f.close()
        finally:
            self.raw.close()
            self.tmp.unlink(missing_ok=True)


def _zstd_window_descriptor(window_log: int) -> int:
    return (window_log - 10) << 3  # exponent in the high 5 bits, mantissa 0: exactly 2**window_log


def _declare_zstd_window(path: Path, used_log: int, declared_log: int) -> None:
    """Rewrite the frame header's window descriptor: the frame declares 2**declared_log bytes.

    The header is ``magic, frame header descriptor, window descriptor`` (no content size, no
    dictionary, so no single-segment flag) and no checksum covers it. Declaring a window larger
    than the one the compressor used is valid zstd: the window is an upper bound on match
    distances, and a decoder must still allocate (and accept) the declared 2 GiB as for the real
    dumps. The compressor, though, touches only its real window: streaming a month with
    window_log 31 grew RSS by up to 2 GiB per open file (it keeps that much history).
    """
    with open(path, "r+b") as f:
        head = f.read(6)
        # An empty file's frame declares the smallest window (zstd knew the size: 0 bytes).
        if head[:5] != b"\x28\xb5\x2f\xfd\x04" or head[5] > _zstd_window_descriptor(used_log):
            raise RuntimeError(f"{path}: unexpected zstd frame header {head.hex()}")
        f.seek(5)
        f.write(bytes([_zstd_window_descriptor(declared_log)]))


def _write_lines(write, records, first: int, mal, dups, pending, required, quarantine) -> tuple[int, int]:
    """Write records at file positions first, first+1, ..., malformed or duplicated as planned.

    ``mal``: position -> quarantine reason; ``dups``: positions whose line is written twice (the copy
    waits in ``pending`` for its position, possibly past these records). Returns (valid, duplicates).
    """
    valid = duplicates = 0
    dumps = orjson.dumps
    for pos, (_, d) in enumerate(records, first):
        reason = mal.get(pos)
        if reason is not None:
            write(_malformed_line(reason, pos, d, required))
            quarantine[reason] += 1
        else:
            line = dumps(d)
            write(line)
            valid += 1
            if pos in dups:  # half right after the original, half up to 50 lines later
                later = pos + (0 if pos % 2 else 1 + pos % 50)
                pending.setdefault(later, []).append(line)
        if pending:
            extra = pending.pop(pos, None)
            if extra:
                for line in extra:
                    write(line)
                duplicates += len(extra)
    return valid, duplicates


def _write_file(path: Path, records, n_records: int, kind: str, month: str, cfg: SynthConfig) -> dict:
    """Write records (id, dict) plus malformed and duplicated lines; return this file's report entry."""
    required = COMMENT_REQUIRED if kind == "comments" else SUBMISSION_REQUIRED
    rng = random.Random(f"{cfg.seed}/{kind}/{month}")  # same lines whatever the compression
    mal: dict[int, str] = {}
    dups: set[int] = set()
    if cfg.malformed and n_records:
        n_mal = max(len(QUARANTINE_REASONS), int(n_records * MALFORMED_SHARE))
        positions = rng.sample(range(n_records), min(n_mal, n_records))  # random order: reasons cycle
        for i, pos in enumerate(positions):
            mal[pos] = QUARANTINE_REASONS[i % len(QUARANTINE_REASONS)]
        free = [p for p in range(n_records) if p not in mal] if n_records < 100_000 else None
        n_dup = max(1, int(n_records * DUPLICATE_SHARE))
        if free is not None:
            dups = set(rng.sample(free, min(n_dup, len(free))))
        else:
            while len(dups) < n_dup:
                p = rng.randrange(n_records)
                if p not in mal:
                    dups.add(p)
    quarantine: Counter[str] = Counter()
    pending: dict[int, list[bytes]] = {}  # duplicates waiting for their line position
    writer = _Writer(path, cfg.compression)
    write = writer.write
    try:
        valid, duplicates = _write_lines(write, records, 0, mal, dups, pending, required, quarantine)
        for _, extra in sorted(pending.items()):
            for line in extra:
                write(line)
            duplicates += len(extra)
    finally:
        writer.close()
    return {
        "kind": kind,
        "month": month,
        "lines": writer.lines,
        "valid_distinct": valid,
        "duplicates": duplicates,
        "quarantine": dict(sorted(quarantine.items())),
        "bytes_uncompressed": writer.bytes_out,
    }


class _ChunkedFile:
    """A file written a chunk of records at a time, malformed and duplicated lines planned per chunk.

    The totals are those of _write_file's plan (at least one line of every quarantine reason, then
    ``malformed_share`` of the lines, ``DUPLICATE_SHARE`` duplicated), reached chunk by chunk;
    positions are drawn within each chunk from a stream seeded by (seed, kind, month, chunk).
    """

    def __init__(self, path: Path, kind: str, month: str, cfg: SynthConfig, malformed_share: float):
        self.kind, self.month, self.cfg = kind, month, cfg
        self.required = COMMENT_REQUIRED if kind == "comments" else SUBMISSION_REQUIRED
        self.malformed_share = malformed_share
        self.writer = _Writer(path, cfg.compression, _R_ZSTD_WINDOW_LOG)
        self.records = self.chunks = self.n_malformed = self.n_duplicated = 0
        self.valid = self.duplicates = 0
        self.pending: dict[int, list[bytes]] = {}
        self.quarantine: Counter[str] = Counter()

    def write_chunk(self, records, n: int) -> None:
        """Write ``n`` records (id, dict) that follow the ones written so far."""
        mal: dict[int, str] = {}
        dups: set[int] = set()
        first = self.records
        if self.cfg.malformed and n:
            rng = random.Random(f"{self.cfg.seed}/{self.kind}/{self.month}/{self.chunks}")
            total = first + n
            n_reasons = len(QUARANTINE_REASONS)
            target = min(total, max(n_reasons, int(total * self.malformed_share)))
            k = min(n, max(0, target - self.n_malformed))
            for p in rng.sample(range(n), k):  # random order: reasons cycle over the whole file
                mal[first + p] = QUARANTINE_REASONS[self.n_malformed % n_reasons]
                self.n_malformed += 1
            n_dup = min(n - k, max(0, max(1, int(total * DUPLICATE_SHARE)) - self.n_duplicated))
            while len(dups) < n_dup:
                p = first + rng.randrange(n)
                if p not in mal:
                    dups.add(p)
            self.n_duplicated += n_dup
        counted = _Counted(records)
        valid, duplicates = _write_lines(
            self.writer.write, counted, first, mal, dups, self.pending, self.required, self.quarantine
        )
        if counted.n != n:
            raise AssertionError(f"{self.kind} chunk: {counted.n} records, expected {n}")  # a bug
        self.valid += valid
        self.duplicates += duplicates
        self.records += n
        self.chunks += 1

    def close(self) -> dict:
        for _, extra in sorted(self.pending.items()):
            for line in extra:
                self.writer.write(line)
            self.duplicates += len(extra)
        self.pending.clear()
        self.writer.close()
        return {
            "kind": self.kind,
            "month": self.month,
            "lines": self.writer.lines,
            "valid_distinct": self.valid,
            "duplicates": self.duplicates,
            "quarantine": dict(sorted(self.quarantine.items())),
            "bytes_uncompressed": self.writer.bytes_out,
        }


class _Counted:
    def __init__(self, items):
        self.items, self.n = items, 0

    def __iter__(self):
        for item in self.items:
            self.n += 1
            yield item


def _check_config(cfg: SynthConfig) -> None:
    if not cfg.months:
        raise ValueError("SynthConfig.months is empty: give at least one YYYY-MM")
    for m in cfg.months:
        parse_month(m)
    if len(set(cfg.months)) != len(cfg.months):
        raise ValueError(f"duplicate months in {cfg.months}")
    if cfg.compression not in COMPRESSIONS:
        raise ValueError(f"compression {cfg.compression!r} not one of {sorted(COMPRESSIONS)}")
    if cfg.comments_per_month < 0 or cfg.mega_thread < 0:
        raise ValueError("comments_per_month and mega_thread must be >= 0")
    if not 0.0 <= cfg.late_reply_fraction <= 0.5:
        raise ValueError(f"late_reply_fraction must be within [0, 0.5], got {cfg.late_reply_fraction}")
    if cfg.shape not in SHAPES:
        raise ValueError(f"shape {cfg.shape!r} not one of {list(SHAPES)}")
    if cfg.chunk_comments < 100:
        raise ValueError(f"chunk_comments must be >= 100, got {cfg.chunk_comments}")


def generate(out_dir: str | Path, config: SynthConfig) -> SynthReport:
    """Write RS_/RC_ files for every month of ``config`` into ``out_dir`` plus ``synth_report.json``."""
    _check_config(config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bank = _TextBank(config.seed, config.shape)
    months = sorted(config.months)
    files: dict[str, dict] = {}
    if config.shape == "realistic":
        _generate_realistic(out, config, bank, months, files)
        return _finish_report(out, files)

    def write_month(plan: _MonthPlan) -> None:
        for kind, recs, n in (
            ("submissions", _submission_records, int((~plan.s_missing).sum())),
            ("comments", _comment_records, int((~plan.c_ghost).sum())),
        ):
            name = file_name(kind, plan.month, config.compression)
            files[name] = _write_file(out / name, recs(plan, bank, config), n, kind, plan.month, config)

    prev: _MonthPlan | None = None
    for k, month in enumerate(months):
        plan = _plan_month(config, k, month, prev, len(bank.authors), len(TOPIC_QUESTIONS))
        if prev is not None:  # prev's num_comments now include this month's late replies
            write_month(prev)
        prev = plan
    write_month(prev)
    return _finish_report(out, files)


def _generate_realistic(
    out: Path, config: SynthConfig, bank: _TextBank, months: list[str], files: dict
) -> None:
    carry = None
    for k, month in enumerate(months):
        nxt = months[k + 1] if k + 1 < len(months) else None
        end = _month_bounds(parse_month(month))[1]
        next_end = 0
        if nxt is not None and _month_bounds(parse_month(nxt))[0] == end:
            next_end = _month_bounds(parse_month(nxt))[1]
        rs_name = file_name("submissions", month, config.compression)
        rc_name = file_name("comments", month, config.compression)
        rs = _ChunkedFile(out / rs_name, "submissions", month, config, _R_MALFORMED_SHARE)
        rc = _ChunkedFile(out / rc_name, "comments", month, config, _R_MALFORMED_SHARE)
        try:
            carry = _realistic_month(config, k, month, carry, next_end, bank, rs, rc)
        except BaseException:
            rs.writer.abort()
            rc.writer.abort()
            raise
        files[rs_name] = rs.close()
        files[rc_name] = rc.close()


def _finish_report(out: Path, files: dict[str, dict]) -> SynthReport:
    quarantine: Counter[str] = Counter()
    for f in files.values():
        quarantine.update(f["quarantine"])
    report = SynthReport(
        files=dict(sorted(files.items())),
        comments=sum(f["valid_distinct"] for f in files.values() if f["kind"] == "comments"),
        submissions=sum(f["valid_distinct"] for f in files.values() if f["kind"] == "submissions"),
        lines=sum(f["lines"] for f in files.values()),
        quarantine=dict(sorted(quarantine.items())),
        duplicates=sum(f["duplicates"] for f in files.values()),
    )
    tmp = out / "synth_report.json.tmp"
    tmp.write_bytes(orjson.dumps(asdict(report), option=orjson.OPT_INDENT_2))
    os.replace(tmp, out / "synth_report.json")
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m dialogsmith.sample.synth",
        description="Write synthetic Pushshift-style RS_/RC_ dumps (real-looking fields per era, thread "
        "shapes, text that exercises every DialoGPT rule, malformed lines) and synth_report.json with the "
        "exact counts an ingest must reproduce.",
    )
    p.add_argument(
        "--out",
        required=True,
        help="output directory (created; replaced atomically when it is an earlier sample output)",
    )
    p.add_argument(
        "--force", action="store_true", help="replace an earlier sample output that holds other files too"
    )
    p.add_argument(
        "--seed", type=int, default=1234, help="random seed; same seed and options -> identical bytes"
    )
    p.add_argument("--comments", type=int, default=20_000, help="comment lines per month, approximately")
    p.add_argument(
        "--months", default="2016-01,2016-02", help="comma-separated YYYY-MM list (default: %(default)s)"
    )
    p.add_argument("--compression", default="zst", choices=sorted(COMPRESSIONS), help="default: %(default)s")
    p.add_argument("--bigquery", action="store_true", help="BigQuery export shape: numbers as strings, nulls")
    p.add_argument("--mega-thread", type=int, default=0, metavar="N", help="add one thread of N comments")
    p.add_argument(
        "--late-fraction",
        type=float,
        default=0.05,
        help="classic: share of next-month replies; realistic: half the share of threads that get 1-3 "
        "of them (default 0.05)",
    )
    p.add_argument("--no-malformed", action="store_true", help="no malformed or duplicated lines")
    p.add_argument(
        "--shape",
        default="classic",
        choices=SHAPES,
        help="classic: the original thread shapes (small samples); realistic: deep, skewed threads as in "
        "real months, streamed in bounded memory (benchmarks). Default: %(default)s",
    )
    p.add_argument(
        "--chunk-comments",
        type=int,
        default=262_144,
        metavar="N",
        help="realistic: comments generated per time window; bounds memory, part of the output's "
        "identity like the seed (default: %(default)s)",
    )
    args = p.parse_args(argv)
    cfg = SynthConfig(
        months=[m.strip() for m in args.months.split(",") if m.strip()],
        comments_per_month=args.comments,
        seed=args.seed,
        compression=args.compression,
        bigquery_shape=args.bigquery,
        mega_thread=args.mega_thread,
        malformed=not args.no_malformed,
        late_reply_fraction=args.late_fraction,
        shape=args.shape,
        chunk_comments=args.chunk_comments,
    )
    try:
        _check_config(cfg)
    except ValueError as e:
        p.error(str(e))
    t0 = time.perf_counter()
    try:
        with outputs.stage_output(args.out, STAGE, force=args.force) as tmp:
            report = generate(tmp, cfg)
    except outputs.OutputRefused as e:
        print(f"sample: error: {e}", file=sys.stderr)
        return 2
    secs = time.perf_counter() - t0
    for name, f in report.files.items():
        q = sum(f["quarantine"].values())
        print(
            f"{name:>16}: {f['lines']:>9,} lines  {f['valid_distinct']:>9,} valid  {f['duplicates']:>5} dup  {q:>5} malformed"
        )
    print(
        f"{report.comments:,} comments, {report.submissions:,} submissions, {report.lines:,} lines in "
        f"{secs:.1f}s -> {args.out} (counts in synth_report.json)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
