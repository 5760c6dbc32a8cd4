"""Fixed word lists used by the paper and default profiles (published here, versioned with the code).

TOP50_ENGLISH: the 50 most frequent English words of the Oxford English Corpus, as listed in
Wikipedia's "Most common words in English" (ranks 1-50: the, be, to, of, and, a, in, that, have, I,
...). The list ranks lemmas (`be` stands for is/are/was/...), so the rule matches the inflected forms of
the 12 verbs on the list too (TOP50_FORMS); a response "contains" a word when the word occurs at ASCII
word boundaries, case-insensitively ("I'm" contains "I"; "don't" does not contain "do").

KNOWN_BOTS: Reddit accounts that post machine-written comments and do not end in "bot" (lower-case).
"""

from __future__ import annotations

TOP50_ENGLISH: tuple[str, ...] = (
    "the", "be", "to", "of", "and", "a", "in", "that", "have", "I",
    "it", "for", "not", "on", "with", "he", "as", "you", "do", "at",
    "this", "but", "his", "by", "from", "they", "we", "say", "her", "she",
    "or", "an", "will", "my", "one", "all", "would", "there", "their", "what",
    "so", "up", "out", "if", "about", "who", "get", "which", "go", "me",
)  # fmt: skip

# Inflected forms of the lemmas above (the corpus list counts them under their lemma).
INFLECTIONS: dict[str, tuple[str, ...]] = {
    "be": ("is", "are", "was", "were", "been", "being", "am"),
    "have": ("has", "had", "having"),
    "do": ("does", "did", "doing", "done"),
    "say": ("says", "said", "saying"),
    "go": ("goes", "went", "gone", "going"),
    "get": ("gets", "got", "gotten", "getting"),
}

TOP50_FORMS: tuple[str, ...] = tuple(
    dict.fromkeys(w.lower() for lemma in TOP50_ENGLISH for w in (lemma, *INFLECTIONS.get(lemma, ())))
)

KNOWN_BOTS: frozenset[str] = frozenset(
    name.lower()
    for name in (
        "AutoModerator",
        "TweetPoster",
        "imgurtranscriber",
        "totesmessenger",
        "MTGCardFetcher",
        "Mentioned_Videos",
        "youtubefactsbot",
        "timezone_bot",
        "converter-bot",
        "PoliticBot",
        "Website_Mirror_Bot",
        "autotldr",
        "TotesMessenger",
        "CommonMisspellingBot",
        "GoodBot_BadBot",
        "LinkFixerBot",
        "HelperBot_",
        "Decronym",
        "RepostSleuthBot",
        "SnapshillBot",
        "transcribot",
        "ttumblrbots",
        "xkcd_transcriber",
        "WikiTextBot",
        "RemindMeBot",
        "sneakpeekbot",
        "gifv-bot",
        "image_linker_bot",
        "Marketron-I",
        "alternate-source-bot",
    )
)

# Phrases bots put in their comments (matched case-insensitively in any turn, after normalization).
BOT_BOILERPLATE_REGEX = (
    r"(?i)(?:\bI am a bot\b|\bI'm a bot\b|\bI ' m a bot\b|this action was performed automatically"
    r"|\bbeep,? boop\b|\bbleep,? bloop\b|contact the moderators of this subreddit)"
)
