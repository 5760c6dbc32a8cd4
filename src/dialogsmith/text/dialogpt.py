"""The released DialoGPT extractor's text normalizations, exactly, and fast.

- ``minimal_normalize``: pass 1 (extract) on comment bodies and titles.
- ``gpt_normalize``: pass 2 (conv) on every turn, ending in NLTK's ``TweetTokenizer(preserve_case=True)``
  (NLTK 3.10). NLTK's tokenizer costs ~48 µs per 17-word text: it tries ~15 alternatives (URLs, phone
  numbers, emoticons, handles, hashtags, emails, emoji sequences, flags, words, ...) at every position and
  runs each call under a ReDoS timeout. After GPT normalization step 3 only ``A-Za-z0-9()[]:,.!?'“”``,
  space and ``_`` (from ``__url__``/``__mention__``) can be left, so most of those alternatives can never
  match. ``_WORD_RE`` keeps, in NLTK's order, exactly the alternatives that can match on that alphabet,
  with character classes reduced to it; ``tests/test_text_dialogpt.py`` proves the equivalence against
  NLTK itself on generated and adversarial strings. ``gpt_normalize_reference`` is the NLTK path.
"""

from __future__ import annotations

import re
from functools import lru_cache

import regex

# --- pass 1 -------------------------------------------------------------------------------------


def minimal_normalize(text: str) -> str:
    """Remove every backslash; ``\\n``, ``\\r``, ``\\t`` each become one space."""
    return text.replace("\\", "").replace("\n", " ").replace("\r", " ").replace("\t", " ")


# --- pass 2 -------------------------------------------------------------------------------------

_ILLEGAL_RE = re.compile(r"[^A-Za-z0-9()\[\]:,.!?'“” ]")

# NLTK's HANG_RE ``([^\p{L}\p{N}])\1{3,}`` on the reduced alphabet: runs of 4+ equal punctuation
# characters (or spaces or underscores) become 3.
_HANG_RE = re.compile(r"([^A-Za-z0-9])\1{3,}")

# NLTK 3.10 ``TweetTokenizer._PHONE_WORD_RE`` restricted to the reduced alphabet, alternatives in NLTK's
# order (first match wins at each position, as in the original alternation). Compiled with the same
# engine (``regex``) and flags (IGNORECASE; VERBOSE is not needed).
#   dropped as impossible here: URL-with-path branch 2 (needs "/"), "<...>" tags, arrows, @handles,
#   #hashtags, e-mails (need "@"), emoji ZWJ/skin-tone sequences, flags; "/", "-", "+", "*", "@", "\\",
#   ";", "=", "<", ">", "{", "}", "|", "%", "`", '"' removed from the classes that contained them.
_URL_PAREN1 = r"\([^\s()]{0,255}?\([^\s()]{1,255}\)[^\s()]{0,255}?\)"
_URL_PAREN2 = r"\([^\s]{1,255}?\)"
_URL_SCHEME = (
    r"https?:[a-z0-9]"  # "/{1,3}" is impossible; "%" is gone
    rf"(?:[^\s()\[\]]+|{_URL_PAREN1}|{_URL_PAREN2})+"
    rf"(?:{_URL_PAREN1}|{_URL_PAREN2}|[^\s!()\[\]:'.,?“”])"
)
_URL_NAKED = r"[a-z0-9]+(?:[.][a-z0-9]+){0,126}[.](?:[a-z]{2,13})\b"
_PHONE = r"(?:(?:[01][ .\)]*)?(?:[\(]?\d{3}[ .\)]*)?\d{3}[ .\)]*\d{4})"
_EMOTICON = r"(?:[:8][o']?[\)\]\(\[dp:]|[\)\]\(\[dp:][o']?[:8])"
_WORDS = (
    r"(?:[^\W\d_](?:[^\W\d_]|['_])+[^\W\d_])"  # words with apostrophes (dashes are gone)
    r"|(?:\d+[,.:]\d+)"  # numbers, fractions, decimals
    r"|(?:[\w_]+)"  # words without apostrophes
    r"|(?:\.(?:[^\S\r\n]*\.){1,})"  # ellipsis dots
    r"|(?:\S)"  # everything else
)
_WORD_RE = regex.compile(f"(?:{_URL_SCHEME}|{_URL_NAKED})|{_PHONE}|{_EMOTICON}|{_WORDS}", regex.I)


def _tweet_tokenize_reduced(text: str) -> list[str]:
    """``TweetTokenizer(preserve_case=True).tokenize`` for text over the reduced alphabet only."""
    return _WORD_RE.findall(_HANG_RE.sub(r"\1\1\1", text))


# A whitespace-separated chunk made of letters (apostrophes inside), optionally ending in one of ``,!?.``,
# is tokenized by NLTK as the word, then the punctuation mark: no alternative before "words" can match
# it (no digits, ":", "8", "/", "@"), "words with apostrophes" takes the word whole (greedy, ends in a
# letter), and no token can run into or out of it across the spaces (only phone numbers and ellipses
# span spaces, and they contain no letters) — except a trailing "." followed by a chunk that starts
# with "." (an ellipsis), which takes the full regex. Runs of other chunks go through ``_WORD_RE``.
_SIMPLE_CHUNK_RE = re.compile(r"[A-Za-z](?:[A-Za-z']*[A-Za-z])?[,!?.]?")
# Numbers of 1-3 digits too, in a text without 4 digits in a row: then no phone number can match (NLTK's
# needs ``\d{3}[ .)]*\d{4}``), and the other alternatives that could take digits (``\d+[,.:]\d+``,
# naked URLs, emoticons like ``8)``) need characters a chunk of digits and one [,!?.] does not have, so
# "10?" is "10", "?". Synthetic chat (and much of Reddit) is full of such numbers.
_SIMPLE_OR_NUMBER_RE = re.compile(r"[A-Za-z](?:[A-Za-z']*[A-Za-z])?[,!?.]?|[0-9]{1,3}[,!?.]?")
_FOUR_DIGITS_RE = re.compile(r"[0-9]{4}")


def _tokenize(text: str) -> str:
    """Tokens joined by single spaces (what the released code keeps of the tokenizer's output)."""
    chunks = text.split()
    out: list[str] = []
    slow_from = -1  # first chunk of a pending run that needs the full regex
    last = len(chunks) - 1
    simple = _SIMPLE_CHUNK_RE if _FOUR_DIGITS_RE.search(text) else _SIMPLE_OR_NUMBER_RE
    for i, chunk in enumerate(chunks):
        if chunk.isalpha() or (
            simple.fullmatch(chunk) and not (chunk[-1] == "." and i < last and chunks[i + 1][0] == ".")
        ):
            if slow_from >= 0:
                out.append(" ".join(_tweet_tokenize_reduced(" ".join(chunks[slow_from:i]))))
                slow_from = -1
            if chunk[-1] in ",!?.":
                out.append(chunk[:-1])
                out.append(chunk[-1])
            else:
                out.append(chunk)
        elif slow_from < 0:
            slow_from = i
    if slow_from >= 0:
        out.append(" ".join(_tweet_tokenize_reduced(" ".join(chunks[slow_from:]))))
    return " ".join(" ".join(out).split())


# ASCII fast path of step 3: one bytes.translate instead of a regex over every character.
_ALLOWED_ASCII = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789()[]:,.!?' ")
_ILLEGAL_ASCII_TABLE = bytes(c if c in _ALLOWED_ASCII else 32 for c in range(256))


@lru_cache(maxsize=1)
def _nltk_tokenizer():
    from nltk.tokenize import TweetTokenizer

    return TweetTokenizer(preserve_case=True)


def _gpt_steps_1_to_3(text: str) -> str:
    if "#" not in text and "http" not in text.lower():
        return _gpt_steps_2_3(" ".join(text.split()))
    words = []
    for word in text.split():
        if word[0] == "#":  # no hashtags
            continue
        i = word.lower().find("http")  # index in the lower-cased word, applied to the word (as released)
        if i >= 0:
            word = word[:i] + " " + "__url__"
        words.append(word.strip())
    return _gpt_steps_2_3(" ".join(words))


def _gpt_steps_2_3(text: str) -> str:
    text = text.replace("\\", "")
    text = (
        text.replace("b/c", "because")
        .replace("j/k", "just kidding")
        .replace("w/o", "without")
        .replace("w/", "with")
    )
    text = text.replace("__mention__", "MENTION").replace("__url__", "URL")
    if text.isascii():
        text = text.encode("ascii").translate(_ILLEGAL_ASCII_TABLE).decode("ascii")
    else:
        text = _ILLEGAL_RE.sub(" ", text)
    return text.replace("MENTION", "__mention__").replace("URL", "__url__")


def gpt_normalize(text: str) -> str:
    """The released ``gpt_norm_sentence``: urls, hashtags, shorthands, illegal characters, TweetTokenizer."""
    return _tokenize(_gpt_steps_1_to_3(text))


def gpt_normalize_reference(text: str) -> str:
    """The same through NLTK's own tokenizer (slow; the reference the tests compare against)."""
    tokens = _nltk_tokenizer().tokenize(_gpt_steps_1_to_3(text))
    return " ".join((" " + " ".join(tokens) + " ").split())


# --- the same, for a batch of texts at once (Arrow) ------------------------------------------------

# A text whose whitespace chunks are all "simple" after step 3 (a word of letters with inner apostrophes,
# or, when no 4 digits follow each other, a number of 1-3 digits; each with at most one trailing ,!?.)
# is tokenized by splitting that punctuation off: see _SIMPLE_CHUNK_RE above for why this is exact.
_CHUNK_WORD = r"[A-Za-z](?:[A-Za-z']*[A-Za-z])?[,!?.]?"
_CHUNK_WORD_OR_NUMBER = rf"(?:{_CHUNK_WORD}|[0-9]{{1,3}}[,!?.]?)"
_ALL_SIMPLE_WORDS = rf"^(?:{_CHUNK_WORD}(?: {_CHUNK_WORD})*)?$"
_ALL_SIMPLE_OR_NUMBERS = rf"^(?:{_CHUNK_WORD_OR_NUMBER}(?: {_CHUNK_WORD_OR_NUMBER})*)?$"
_ILLEGAL_CLASS = r"[^A-Za-z0-9()\[\]:,.!?'“” ]"
# Python's str.split() whitespace (the 29 str.isspace characters) other than " ", or " " at an end or
# twice: a text without any is unchanged by " ".join(text.split())
_PY_SPACE = (
    r"\t\n\x0b\x0c\r\x1c-\x1f\x85\xa0\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}"
)
NOT_SINGLE_SPACED = rf"[{_PY_SPACE}]|  |^ | $"


def collapse_whitespace(a, mask):
    """``" ".join(t.split())`` on the rows of ``mask`` (Arrow's whitespace is Python's: tested)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    rows = np.flatnonzero(pc.fill_null(mask, False).to_numpy(zero_copy_only=False))
    if not len(rows):
        return a
    sub = a.take(pa.array(rows))
    fixed = pc.binary_join(pc.utf8_split_whitespace(pc.utf8_trim_whitespace(sub)), " ")
    full = np.zeros(len(a), dtype=bool)
    full[rows] = True
    return pc.replace_with_mask(a, pa.array(full), fixed)


def minimal_normalize_array(texts):
    """``minimal_normalize`` of every string of an Arrow string array (str.replace is replace_substring)."""
    import pyarrow.compute as pc

    out = pc.replace_substring(texts, "\\", "")
    for ch in ("\n", "\r", "\t"):
        out = pc.replace_substring(out, ch, " ")
    return out


def gpt_normalize_array(texts):
    """``gpt_normalize`` of every string of an Arrow string array (nulls stay null), exact.

    Steps 1-3 are Arrow string kernels (``str.replace`` is ``replace_substring``; the illegal characters
    one RE2 class: one code point each, as Python's re). Texts with a chunk that is not simple after
    step 3 (see ``_tokenize``), and non-ASCII texts with a ``#`` or an ``http``, go through
    ``gpt_normalize`` one by one; the others are tokenized by one regex replacement. On generated
    Reddit-like text ~93% of the bodies take the batch path."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if not len(texts):
        return texts
    filled = pc.fill_null(texts, "")
    a = collapse_whitespace(
        filled, pc.match_substring_regex(filled, NOT_SINGLE_SPACED)
    )  # " ".join(t.split())
    # step 1 on ASCII texts: tokens starting with "#" dropped, a token's rest from its first "http" (any
    # case) replaced by " __url__" (RE2's case folding on ASCII text is Python's); texts that are not
    # ASCII and have a "#" or an "http" take the exact slow path
    special = pc.or_(pc.match_substring(a, "#"), pc.match_substring(a, "http", ignore_case=True))
    rows = np.flatnonzero(pc.fill_null(special, False).to_numpy(zero_copy_only=False))
    if len(rows):
        sub = a.take(pa.array(rows))
        step1 = pc.replace_substring_regex(
            pc.replace_substring_regex(sub, "(?:^| )#[^ ]*", ""), "(?i)http[^ ]*", " __url__"
        )
        step1 = collapse_whitespace(step1, pc.match_substring_regex(step1, "  |^ | $"))
        ascii_ = pc.string_is_ascii(sub).to_numpy(zero_copy_only=False)
        mask = np.zeros(len(a), dtype=bool)
        mask[rows[ascii_]] = True
        a = pc.replace_with_mask(a, pa.array(mask), step1.filter(pa.array(ascii_)))
        still = np.zeros(len(a), dtype=bool)
        still[rows[~ascii_]] = True
        special = pa.array(still)
    else:
        special = pa.array(np.zeros(len(a), dtype=bool))
    a = pc.replace_substring(a, "\\", "")
    for old, new in (("b/c", "because"), ("j/k", "just kidding"), ("w/o", "without"), ("w/", "with")):
        a = pc.replace_substring(a, old, new)
    a = pc.replace_substring(pc.replace_substring(a, "__mention__", "MENTION"), "__url__", "URL")
    a = pc.replace_substring_regex(a, _ILLEGAL_CLASS, " ")
    a = pc.replace_substring(pc.replace_substring(a, "MENTION", "__mention__"), "URL", "__url__")
    # only " " can separate chunks now: collapse its runs where there are any
    a = collapse_whitespace(a, pc.match_substring_regex(a, "  |^ | $"))
    four = pc.match_substring_regex(a, "[0-9]{4}")
    simple = pc.if_else(
        four,
        pc.match_substring_regex(a, _ALL_SIMPLE_WORDS),
        pc.match_substring_regex(a, _ALL_SIMPLE_OR_NUMBERS),
    )
    tokenized = pc.replace_substring_regex(a, "([,!?.])( |$)", r" \1\2")
    slow = np.flatnonzero(
        pc.fill_null(pc.or_(special, pc.invert(simple)), True).to_numpy(zero_copy_only=False)
        & pc.is_valid(texts).to_numpy(zero_copy_only=False)
    )
    out = pc.if_else(pc.is_valid(texts), tokenized, pa.scalar(None, pa.string()))
    if len(slow):
        fixed = [gpt_normalize(t) for t in texts.take(pa.array(slow)).to_pylist()]
        mask = np.zeros(len(texts), dtype=bool)
        mask[slow] = True
        out = pc.replace_with_mask(out, pa.array(mask), pa.array(fixed, pa.string()))
    return out
