"""The DialoGPT normalizations: exact behaviour, and the fast tokenizer proven equal to NLTK's."""

from __future__ import annotations

import random

import pytest

from dialogsmith.text.dialogpt import gpt_normalize, gpt_normalize_reference, minimal_normalize

ADVERSARIAL = [
    "",
    "   ",
    "Hello world",
    "title: For made going don't very",
    "Smile :) frown :( tongue :P backwards (: and 8o) and Do8 or xD :D",
    "It costs 1,000.5 dollars at 3:45 on 12:30:45, version 1.2.3.4",
    "Call 555 123 4567 or (555) 123-4567 or 1 800 555 1234 or 555.123.4567 or 5551234567",
    "Wait... what.... no. . . really .. ok",
    "!!!!! ???? ,,,,, '''' ))))) ::::: ____",
    "it's don't y'all rock'n'roll o'clock ''quoted'' 'single'",
    "“Curly quotes” and “nested “ones””",
    "see http://example.com/a?b=c and HTTPS://X.Y and xhttp and #hashtag here",
    "b/c j/k w/o w/ b/c/w/ shorthand",
    "URL and __url__ and MENTION and __mention__ and CURLY",
    "google.com example.co.uk x.comm a.b.c.d.e x.abcdefghijklmnop www.reddit.com/r/x",
    "withttp:foo.com w/ttp:abc(def)g",
    "back\\slash and tab\tnew\nline and\r\ncrlf",
    "&amp; &gt; &lt; &#39; non-ascii é İ ß ﬁ 😀 日本",
    "e.g. U.S.A. i.e. 0. .5 5. a.",
    "abc123 123abc a1 ab1 abc1 _a_ a_b __init__",
    "[brackets] (parens) [[double]] ((double))",
    "ALLCAPS SHOUTING lower Mixed",
    "word, word. word! word? word: word; word' 'word",
]

PIECES = (
    "1 0 555 1234 (555) 555. . ... .... !!!!! ?? :) :( :P (: 8o) Do8 :D xD 1,000.5 3:45 google.com a.b.co "
    "http:x(y)z https:ab(c(d)e)f it's don't ' “ ” __url__ __mention__ URL word Word WORD a _ __ [ ] ab_cd "
    "e.g. U.S.A. 0. .5 12:30:45 1.2.3.4 www.x.org x.comm #tag http://x.com/a?b=c HTTPS://Y b/c w/o w/ j/k "
    "\\ é İ &amp; &gt; - / <3 ;) :-) @user MENTION word. word, so! what? a' 's o' it''s ab. .ab"
).split(" ") + [" ", " ", "  ", "\n", "\t"]


def test_minimal_normalize():
    assert minimal_normalize("a\\b\nc\rd\te\\\\") == "ab c d e"
    assert minimal_normalize("&amp; stays") == "&amp; stays"  # no HTML unescaping in the released code


@pytest.mark.parametrize("text", ADVERSARIAL)
def test_gpt_normalize_matches_nltk_on_adversarial_strings(text):
    assert gpt_normalize(text) == gpt_normalize_reference(text)


def test_gpt_normalize_matches_nltk_on_generated_strings():
    rng = random.Random(20260)
    mismatches = []
    for _ in range(4000):
        text = "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 16)))
        if gpt_normalize(text) != gpt_normalize_reference(text):
            mismatches.append(text)
    assert mismatches == []


NUMBER_PIECES = (
    "1 10 100 999 1000 12345 8 0 00 007 555 1234 10? 8. 1. 5, 3! 8) (8 :8 8: 1,000 2.5 12:30 0. .5 .. 8o) "
    "do8 b8 1st x2 what is plus ? . a. ok it's"
).split(" ")


def test_gpt_normalize_matches_nltk_on_numbers():
    """Chunks of 1-3 digits take the fast path unless the text has 4 digits in a row (phone numbers)."""
    rng = random.Random(8)
    mismatches = []
    for i in range(4000):
        pieces = [rng.choice(NUMBER_PIECES + PIECES) for _ in range(rng.randint(1, 14))]
        text = " ".join(pieces) if i % 3 else "".join(pieces)
        if gpt_normalize(text) != gpt_normalize_reference(text):
            mismatches.append(text)
    assert mismatches == []
    assert gpt_normalize("what is 10 plus 7?") == "what is 10 plus 7 ?"
    assert gpt_normalize("call 555 1234 now") == gpt_normalize_reference("call 555 1234 now")


def test_gpt_normalize_matches_nltk_on_random_characters():
    rng = random.Random(7)
    alphabet = "abcDEFxyz0123456789()[]:,.!?'“”_ 8oOdDpP"
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30)))
        assert gpt_normalize(text) == gpt_normalize_reference(text), text


def test_gpt_normalize_known_outputs():
    assert gpt_normalize("title: For made going") == "title : For made going"
    assert gpt_normalize("see http://x.com now") == "see __url__ now"
    assert gpt_normalize("#tag only words") == "only words"
    assert gpt_normalize("wow!!!!! really") == "wow ! ! ! really"  # runs of 4+ cut to 3, as NLTK does
    assert (
        gpt_normalize("I like b/c it's 1,000.5") == "I like because it's 1,000 . 5"
    )  # NLTK: one separator per number
    assert gpt_normalize("CURLY") == "C__url__Y"  # a literal URL becomes __url__ (released behaviour)


def _batch_equals_one_by_one(texts):
    import pyarrow as pa

    from dialogsmith.text.dialogpt import gpt_normalize_array, minimal_normalize_array

    arr = pa.array(texts, pa.string())
    assert gpt_normalize_array(arr).to_pylist() == [None if t is None else gpt_normalize(t) for t in texts]
    assert minimal_normalize_array(arr).to_pylist() == [
        None if t is None else minimal_normalize(t) for t in texts
    ]


def test_batch_normalization_equals_one_by_one_on_adversarial_strings():
    extra = [None, "a, b. c! d? e", "Hi... there", "x,", ",x", "a.", "word . word", "it's 123 ok", "1234 a, b",
             "a1, b", "don't.", "'quoted'", "a  b\t c\u00a0d", "w/o b/c j/k w/", "Kelvin \u212a ſ", "end, "]  # fmt: skip
    _batch_equals_one_by_one(ADVERSARIAL + extra)


def test_batch_normalization_equals_one_by_one_on_generated_strings():
    rng = random.Random(7)
    words = list(PIECES) + ["hello", "world", "it's", "ok,", "yes!", "no?", "end.", "12", "123,", "99."]
    texts = []
    for _ in range(3000):
        n = rng.randint(0, 14)
        seps = [" ", " ", " ", "  ", "\t", "\n", "\u00a0", ""]
        texts.append("".join(rng.choice(words) + rng.choice(seps) for _ in range(n)))
    _batch_equals_one_by_one(texts)


def test_batch_normalization_hashtags_and_urls():
    _batch_equals_one_by_one(
        ["see http://x.com now", "#tag first", "last #tag", "#a #b c", "xhttp://y z", "HTTP://Y and HtTp",
         "a#b keeps", "#", "http", "#http://x", "it's http://a.b/c?d=e, ok.", "two httphttp tokens",
         "Ünï http://x", "#ü tag", "  #lead  and  http://trail  "]
    )  # fmt: skip
