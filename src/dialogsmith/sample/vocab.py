"""The generated text: words, question -> answer topics, and text that trips every extractor rule.

``TextBank`` builds the pools once per seed; a comment's body is then picked from them by index (no
per-line random draws).
"""

from __future__ import annotations

import random
import re

import numpy as np

# Words and phrases the generated text contains so that tests can put them in a blocklist
# (the entries of the DialoGPT extractor's word and subreddit blocklists used in the tests).
BLOCKLIST_WORDS = ("badword", "slurx", "very offensive phrase")
BLOCKLIST_SUBREDDITS = ("badsub", "anotherbadsub")

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
KIND_P = np.array(
    [0.58, 0.20, 0.03, 0.02, 0.02, 0.02, 0.02, 0.01, 0.01, 0.02]
    + [0.005, 0.01, 0.01, 0.02, 0.015, 0.01, 0.005, 0.015, 0.01]
)
KIND_P = KIND_P / KIND_P.sum()

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
BOT_AUTHORS = ("AutoModerator", "wiki_summary_bot", "converter_bot", "haiku_bot", "RemindMeBot")
_BOT_TEXT = (
    "Your submission has been automatically flaired. I am a bot, and this action was performed "
    "automatically. Please [contact the moderators of this subreddit](/message/compose/?to=/r/{sub}) "
    "if you have any questions or concerns.",
    "Please remember to follow the rules. *I am a bot, and this action was performed automatically.*",
    "beep boop, 5 miles is about 8 km. ^(I am a bot) ^| ^(opt out)",
    "Here is a summary of the linked article: it was fine. ^(I am a bot, and this action was performed automatically.)",
)
SUBREDDITS = (
    *"AskReddit funny pics gaming worldnews todayilearned movies Music science books food aww "
    "programming MachineLearning askscience de france es".split(),
    *BLOCKLIST_SUBREDDITS,
)
DOMAINS = ("i.imgur.com", "youtube.com", "en.wikipedia.org", "example.com", "nytimes.com", "github.com")


class TextBank:
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


def slug(title: str) -> str:
    words = re.findall(r"[a-z0-9]+", title.lower())
    return "_".join(words)[:50].strip("_") or "untitled"
