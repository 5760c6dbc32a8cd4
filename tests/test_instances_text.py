"""Text helpers of the instances stage (light normalization, whitespace token counts, Python's lower)
and dialogpt pass 1 over submissions, against Python's own string functions."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from dialogsmith.instances.dialogpt_pass1 import dialogpt_submissions
from dialogsmith.instances.text import (
    light_normalize,
    light_normalize_array,
    python_lower,
    whitespace_token_counts,
)
from dialogsmith.text.dialogpt import minimal_normalize


def test_light_normalize():
    assert light_normalize("Tom &amp;amp; Jerry &gt; you") == "Tom &amp; Jerry > you"  # unescaped once
    assert light_normalize("&gt; quoted line\nmy reply\n  > another quote\nmore") == "my reply more"
    assert light_normalize("&gt; only a quote") == ""
    assert light_normalize("see [the docs](https://x.org/a_(b)) now") == "see the docs now"
    assert light_normalize("  many\n\n spaces\t here ") == "many spaces here"
    assert light_normalize("[removed] stays text") == "[removed] stays text"


@pytest.mark.parametrize("native", [True, False], ids=["c", "numpy"])
def test_whitespace_token_counts_match_python_split(native, monkeypatch):
    """The vectorized too_few_tokens count is ``len(text.split())`` for every Python whitespace character,
    in the C module and in the numpy path alike; ``skip_backslash`` counts the text without "\\"."""
    from dialogsmith import fastjson

    if native and not fastjson.AVAILABLE:
        pytest.skip("the C module is not built")
    monkeypatch.setattr(fastjson, "AVAILABLE", native)

    spaces = [chr(c) for c in range(0x110000) if chr(c).isspace()]
    pool = [*spaces, "a", "b", "\\", "\u200b", "\ufeff", "é"]  # zero-width space, BOM: not whitespace
    rng = random.Random(3)
    texts = ["", " ", "a", *spaces]
    texts += ["".join(rng.choice(pool) for _ in range(rng.randint(0, 8))) for _ in range(5000)]
    got = whitespace_token_counts(pa.array(texts + [None])).to_pylist()
    assert got == [len(t.split()) for t in texts] + [None]
    got = whitespace_token_counts(pa.array(texts + [None]), skip_backslash=True).to_pylist()
    assert got == [len(t.replace("\\", "").split()) for t in texts] + [None]
    # every ASCII whitespace, sliced and chunked arrays, nulls
    ascii_pool = [chr(c) for c in range(128) if chr(c).isspace()] + ["a", "b", "\\", "x y"]
    texts = ["", " ", "a", *(t for t in spaces if t.isascii())]
    texts += ["".join(rng.choice(ascii_pool) for _ in range(rng.randint(0, 9))) for _ in range(5000)]
    arr = pa.array([None, *texts, None])
    want = [None, *(len(t.split()) for t in texts), None]
    assert whitespace_token_counts(arr).to_pylist() == want
    assert whitespace_token_counts(arr.slice(7, 900)).to_pylist() == want[7:907]
    chunked = pa.chunked_array([arr.slice(0, 100), arr.slice(100)])
    assert whitespace_token_counts(chunked).to_pylist() == want


def _submissions_row_by_row(subs):
    """Pass 1 over submissions as the released code reads them: one row at a time, a later id wins."""
    subs = subs.sort_by([("source", "ascending"), ("line", "ascending")])
    kept, title, subreddit = set(), {}, {}
    for sid, raw, permalink, n in zip(
        *(subs[c].to_pylist() for c in ("id", "title", "permalink", "num_comments")), strict=True
    ):
        if sid is None or n is None or n < 2:
            continue
        link = "t3_" + sid
        kept.add(link)
        raw = "None" if raw is None else raw
        if not minimal_normalize(raw).rstrip():
            title.pop(link, None)
            subreddit.pop(link, None)
            continue
        title[link] = raw
        parts = str(permalink).split("/")
        subreddit[link] = parts[2].lower() if len(parts) > 2 else ""
    return kept, title, subreddit


def test_dialogpt_submissions_match_the_row_by_row_reading():
    """The vectorized pass 1 over submissions: duplicates (the last wins, also when its title is empty),
    null ids and titles, titles that normalize to nothing (backslashes, Unicode spaces), odd permalinks."""
    rng = random.Random(5)
    titles = [
        None,
        "",
        " ",
        "\\",
        "\\\\ \\",
        "\u3000",
        "\x1c",
        "a",
        " a ",
        "A title",
        "x\\",
        "\u200b",
        "é",
        "\t\n",
    ]
    permalinks = [None, "", "/r/AskReddit/comments/x/", "/r/ÉCOLE/x", "/r/İx/y", "a/b", "/r/"]
    schema = pa.schema(
        [
            ("id", pa.string()),
            ("title", pa.string()),
            ("permalink", pa.string()),
            ("num_comments", pa.int64()),
        ]
        + [("source", pa.string()), ("line", pa.int64())]
    )
    for _ in range(300):
        n = rng.randint(0, 40)
        lines = list(range(n))
        rng.shuffle(lines)
        table = pa.table(
            {
                "id": [rng.choice([None, "a", "b", "c", "d"]) for _ in range(n)],
                "title": [rng.choice(titles) for _ in range(n)],
                "permalink": [rng.choice(permalinks) for _ in range(n)],
                "num_comments": [rng.choice([None, 0, 1, 2, 5]) for _ in range(n)],
                "source": [rng.choice(["RS_a", "RS_b"]) for _ in range(n)],
                "line": lines,
            },
            schema=schema,
        )
        got = dialogpt_submissions(table)
        assert (got.kept_links, got.title, got.subreddit) == _submissions_row_by_row(table)
        assert got.read == n


def test_light_normalize_array_and_python_lower_match_one_by_one():
    rng = random.Random(4)
    pieces = [
        "Tom &amp;amp; Jerry",
        "&gt; quoted\n",
        "[a](http://x.y/(z))",
        "  ",
        "\u00a0",
        "İSTANBUL",
        "ß",
        "ǅ",
        "a",
    ]
    texts = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 5))) for _ in range(2000)] + [None]
    arr = pa.array(texts)
    assert light_normalize_array(arr).to_pylist() == [
        None if t is None else light_normalize(t) for t in texts
    ]
    assert python_lower(arr).to_pylist() == [None if t is None else t.lower() for t in texts]
