"""Word and phrase blocklists with ``flashtext.KeywordProcessor`` default semantics, on Aho-Corasick.

Semantics (what the released DialoGPT extractor gets from flashtext):
- case-insensitive: the keywords and the text are lower-cased with ``str.lower()``;
- a keyword (a word or a multi-word phrase) matches only as a whole: the character before it and the
  character after it must not be word characters ``[A-Za-z0-9_]`` (or be the start/end of the text).
  Any other character, including non-ASCII letters, is a boundary, as in flashtext;
- in list files, lines starting with ``#`` are comments, trailing whitespace is stripped, empty lines
  are ignored (``parse_list``; subreddit lists use the same rule, ``read_subreddit_list``).

``find`` returns matches as flashtext's ``extract_keywords`` does: scanning left to right, the longest
keyword at each start, non-overlapping. ``contains`` stops at the first valid match.

Speed: one C-level Aho-Corasick pass (pyahocorasick) finds every candidate occurrence, then a boundary
check per candidate; cost grows with the text, not with the size of the list.
"""

from __future__ import annotations

from collections.abc import Iterable

import ahocorasick

from dialogsmith import fsutil

_WORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


class Blocklist:
    def __init__(self, words: Iterable[str]):
        self._automaton = ahocorasick.Automaton()
        n = 0
        for word in words:
            key = word.lower()
            if not key:
                continue
            if key not in self._automaton:
                n += 1
            self._automaton.add_word(
                key, (len(key), word)
            )  # a later duplicate names the match, as in flashtext
        self._n = n
        if n:
            self._automaton.make_automaton()

    @classmethod
    def from_file(cls, path: str) -> Blocklist:
        text = fsutil.read_bytes(path).decode("utf-8")
        return cls(parse_list(text))

    def __len__(self) -> int:
        return self._n

    def keywords(self) -> list[str]:
        """The lower-cased keywords (to build other matchers from the list)."""
        return list(self._automaton.keys()) if self._n else []

    def _valid(self, text: str, end: int, length: int) -> bool:
        start = end - length + 1
        if start > 0 and text[start - 1] in _WORD_CHARS:
            return False
        return not (end + 1 < len(text) and text[end + 1] in _WORD_CHARS)

    def contains(self, text: str) -> bool:
        if not self._n or not text:
            return False
        text = text.lower()
        for end, (length, _) in self._automaton.iter(text):
            if self._valid(text, end, length):
                return True
        return False

    def find(self, text: str) -> list[str]:
        if not self._n or not text:
            return []
        text = text.lower()
        best: dict[int, tuple[int, str]] = {}  # start -> (longest valid length, keyword)
        for end, (length, word) in self._automaton.iter(text):
            if self._valid(text, end, length):
                start = end - length + 1
                if length > best.get(start, (0, ""))[0]:
                    best[start] = (length, word)
        found = []
        next_free = 0
        for start in sorted(best):
            if start >= next_free:
                length, word = best[start]
                found.append(word)
                next_free = start + length
        return found


def parse_list(text: str) -> list[str]:
    """Entries of a list file: a line whose first character is ``#`` is a comment (a ``#`` later in a
    line is part of the entry), trailing whitespace is stripped, empty lines are skipped."""
    out = []
    for line in text.split("\n"):
        if not line or line[0] == "#":
            continue
        entry = line.rstrip()
        if entry:
            out.append(entry)
    return out


def parse_subreddit_list(text: str) -> frozenset[str]:
    """Subreddit names of a list file's text (``parse_list``'s comments and empty lines), one a line,
    surrounding whitespace stripped, lower-cased with ``str.lower`` (the rules compare lower-cased names)."""
    return frozenset(name for name in (e.strip().lower() for e in parse_list(text)) if name)


def read_subreddit_list(path: str) -> frozenset[str]:
    """A subreddit list file (blocklist or allow-list): see ``parse_subreddit_list``."""
    return parse_subreddit_list(fsutil.read_bytes(path).decode("utf-8"))


def released_lists_inactive(bl_words: str | None, bl_subreddits: str | None, keys: str | None) -> list[str]:
    """What the released extractor's list rules (``--bl_words``: turn weights 0.0 and dropped targets;
    ``--bl_subreddits``: skipped subreddits) will not do in a run, one line each: no list, or a list
    without entries. Nothing with DialoGPT's key files (``keys``): they carry the release's own
    filtering (its published lists are empty files)."""
    if keys:
        return []
    lines = []
    if not bl_words or not parse_list(fsutil.read_bytes(bl_words).decode("utf-8")):
        lines.append(
            "no --bl_words list (or it is empty): offensive turns are neither weighted 0.0 nor dropped"
        )
    if not bl_subreddits or not read_subreddit_list(bl_subreddits):
        lines.append("no --bl_subreddits list (or it is empty): no subreddit is blocked")
    return lines
