"""The DSTC-7 evaluation's text cleaning (``clean_str``): lower-case, URLs -> ``__url__``, drop characters
outside ``A-Za-z0-9():,.!?"'``, NLTK's TweetTokenizer, contractions split (``do n't``, ``'s``).

The paper's test files are already in this form (``i do n't know .``); generated responses are not, so
``make eval`` applies it to hypotheses and references by default (``--no-clean`` turns it off).
"""

from __future__ import annotations

import re
from functools import lru_cache

_MD_URL = re.compile(r"\[([^\]]*)\] \( *__url__ *\)")
_ILLEGAL = re.compile(r"[^A-Za-z0-9():,.!?\"\']")
_CONTRACTIONS = ["'s", "'m", "'re", "n't", "'ll", "'ve", "'d", "'em"]


@lru_cache(maxsize=1)
def _tweet_tokenizer():
    from nltk.tokenize import TweetTokenizer

    return TweetTokenizer(preserve_case=False)


def clean_str(txt: str) -> str:
    txt = f" {txt.lower()} "
    words = []
    for word in txt.split():
        i = word.find("http")
        if i >= 0:
            word = word[:i] + " " + "__url__"
        words.append(word.strip())
    txt = " ".join(words)
    txt = _MD_URL.sub(r"\1", txt)  # markdown link [text] ( url ) -> text
    txt = txt.replace("__url__", "URL")
    txt = _ILLEGAL.sub(" ", txt)
    txt = txt.replace("URL", "__url__")
    txt = " " + " ".join(_tweet_tokenizer().tokenize(txt)) + " "
    txt = txt.replace(" won't ", " will n't ").replace(" can't ", " can n't ")
    for a in _CONTRACTIONS:
        txt = txt.replace(a + " ", " " + a + " ")
    return " ".join(txt.split())
