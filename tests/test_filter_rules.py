"""Unit tests of every filter rule (exact reason strings) and of the vectorized path's exactness."""

from __future__ import annotations

import random

import numpy as np
import pytest
from filter_helpers import instance, table

from dialogsmith.filter import engine, profiles, rules, rules_paper, wordlists
from dialogsmith.filter.profiles import FilterParams, bland_threshold, make_profile
from dialogsmith.filter.rules import RULES, InstanceView
from dialogsmith.text.blocklist import Blocklist

P = FilterParams()


def V(*turns, weights=None, **kw) -> InstanceView:
    return InstanceView.from_turns(list(turns), weights, **kw)


def W(*turns, **kw) -> InstanceView:
    """As DialoGPT's TSV shows them with leaves_only + clean: every turn prefixed "1.0 "."""
    return V(*turns, weights=[1.0] * len(turns), **kw)


@pytest.fixture(scope="module")
def blocklist(tmp_path_factory):
    from dialogsmith.text.blocklist import Blocklist

    path = tmp_path_factory.mktemp("bl") / "words.txt"
    path.write_text("# words\nbadword\nvery offensive phrase\n")
    return Blocklist.from_file(str(path))


def test_blocklisted_word_only_without_weight_prefix(blocklist):
    p = FilterParams(words=blocklist)
    assert rules.blocklisted_word(V("hi there", "a BadWord here"), p) == "blocklisted_word"
    assert rules.blocklisted_word(V("hi there", "very offensive phrase indeed"), p) == "blocklisted_word"
    assert rules.blocklisted_word(V("hi there", "badwords are fine"), p) is None  # whole words only
    assert (
        rules.blocklisted_word(W("hi there", "a badword here"), p) is None
    )  # leaves_only on: weight 0.0 instead
    assert rules.blocklisted_word(V("hi", "a badword"), P) is None  # no list, no rule


def test_blocklisted_context(blocklist):
    p = FilterParams(words=blocklist)
    assert rules.blocklisted_context(V("a badword", "fine reply"), p) == "blocklisted_context"
    assert rules.blocklisted_context(V("fine", "a badword"), p) is None


def test_tgt_too_short_counts_the_weight_prefix():
    assert rules.tgt_too_short(V("a b", "word"), P) == "tgt_too_short"
    assert rules.tgt_too_short(V("a b", ""), P) == "tgt_too_short"
    assert rules.tgt_too_short(W("a b", "word"), P) is None  # "1.0 word" has 2 tokens, as released
    assert rules.tgt_too_short(V("a b", "two words"), P) is None


def test_long_token():
    assert rules.long_token(V("a", "ok " + "x" * 31), P) == "long_token"
    assert rules.long_token(V("a", "ok " + "x" * 30), P) is None
    assert rules.long_token(V("x" * 40, "ok fine"), P) is None  # tgt only


def test_too_many_tokens_counts_weights_and_eos():
    turns = ["w " * 49 + "w"] * 4  # 4 x 50 tokens = 200
    assert rules.too_many_tokens(V(*turns), P) == "too_many_tokens"  # 200 + 3 EOS
    assert rules.too_many_tokens(V("a " * 99 + "a", "b " * 99 + "b"), P) is None  # exactly 200
    assert rules.too_many_tokens(W("a " * 98 + "a", "b " * 98 + "b"), P) is None  # 99 + 1 + 99 + 1
    assert rules.too_many_tokens(W("a " * 99 + "a", "b " * 98 + "b"), P) == "too_many_tokens"


def test_has_url_brackets_shouting():
    assert rules.has_url(V("see __url__", "ok then"), P) == "has_url"
    assert rules.has_url(V("see url", "ok then"), P) is None
    assert rules.has_brackets(V("a", "b ( c"), P) == "has_brackets"
    assert rules.has_brackets(V("a ]", "b c"), P) == "has_brackets"
    assert rules.has_brackets(V("a", "b c"), P) is None
    assert rules.shouting(V("a HELLO", "b c"), P) == "shouting"
    assert rules.shouting(V("a HELL", "O c"), P) is None  # the join's space breaks a run
    assert rules.shouting(V("a Hello", "b c"), P) is None


def test_repeated_word_weight_is_token_zero():
    assert rules.repeated_word(V("a", "no no no way"), P) == "repeated_word"
    assert rules.repeated_word(V("a", "no no way no"), P) is None
    assert rules.repeated_word(W("a", "1.0 1.0 x"), P) == "repeated_word"  # "1.0 1.0 1.0 x"


def test_blocklisted_subreddit():
    p = FilterParams(subreddits=frozenset({"badsub"}))
    assert rules.blocklisted_subreddit(V("a", "b c", subreddit="BadSub"), p) == "blocklisted_subreddit"
    assert rules.blocklisted_subreddit(V("a", "b c", subreddit="pics"), p) is None


def test_no_common_word_uses_the_published_top50_list():
    assert len(wordlists.TOP50_ENGLISH) == 50 and wordlists.TOP50_ENGLISH[:3] == ("the", "be", "to")
    assert rules.no_common_word(V("a", "und para mit por las"), P) == "no_common_word"
    assert rules.no_common_word(V("a", "lol same here"), P) == "no_common_word"
    assert rules.no_common_word(V("a", "THE same here"), P) is None
    assert rules.no_common_word(V("a", "I'm done"), P) is None  # I at a word boundary
    assert rules.no_common_word(V("a", "it is fine"), P) is None
    assert rules.no_common_word(V("a", "theme park"), P) == "no_common_word"  # whole words only
    assert rules.no_common_word(V("a", "was fine"), P) is None  # inflected form of "be"


def test_bland_response_on_a_known_corpus():
    p = FilterParams(frequent=frozenset({"i do n't", "do n't know", "n't know ."}), bland_fraction=0.9)
    assert rules.bland_response(V("q", "I do n't know ."), p) == "bland_response"  # 3/3
    assert rules.bland_response(V("q", "I do n't know why ."), p) is None  # 2/4
    assert rules.bland_response(V("q", "ok ."), p) is None  # no trigram
    assert rules_paper.response_trigrams("A b C d") == ["a b c", "b c d"]


def test_bland_threshold_scales_with_corpus_size():
    assert bland_threshold(FilterParams(), profiles.PAPER_CORPUS_INSTANCES) == 1000
    assert bland_threshold(FilterParams(), 14_684_622) == 100
    assert bland_threshold(FilterParams(), 1000) == 5  # floor
    assert bland_threshold(FilterParams(bland_scale=False), 1000) == 1000


def test_default_profile_rules():
    assert rules.removed_comment(V("a b", "c d", turns_raw=["[removed]", "c d"]), P) == "removed_comment"
    assert rules.removed_comment(V("a b", "c d", turns_raw=["a b", "[deleted]"]), P) == "removed_comment"
    assert rules.removed_comment(V("a b", "c d", turns_raw=["a b", "c d"]), P) is None
    assert rules.empty_turn(V("", "c d"), P) == "empty_turn"
    assert rules.empty_turn(V("a", "c d"), P) is None
    for bot in ("AutoModerator", "RemindMeBot", "some_bot", "totesmessenger"):
        assert rules.bot_author(V("a", "c d", authors=["u1", bot]), P) == "bot_author", bot
    assert rules.bot_author(V("a", "c d", authors=["u1", None]), P) is None
    assert rules.bot_boilerplate(V("a", "I am a bot , beep"), P) == "bot_boilerplate"
    assert rules.bot_boilerplate(V("This action was performed automatically .", "ok"), P) == "bot_boilerplate"
    assert rules.bot_boilerplate(V("a", "I am a robot fan"), P) is None
    assert rules.self_reply(V("a", "b c", authors=["u1", "u1"]), P) == "self_reply"
    assert rules.self_reply(V("a", "b c", authors=["u1", "u2"]), P) is None
    assert rules.self_reply(V("a", "b c", authors=["[deleted]", "[deleted]"]), P) is None
    assert rules.echo_response(V("this", "This"), P) == "echo_response"
    assert rules.echo_response(V("this", "that"), P) is None


def test_every_rule_name_is_its_reason_and_in_a_profile():
    for name, rule in RULES.items():
        assert rule.name == name and name.islower() and " " not in name
        assert name in profiles.DEFAULT_ORDER or rule.since is None
    # the profiles' orders, derived from the registry, are the published ones
    assert profiles.DIALOGPT_ORDER == (
        "blocklisted_word", "tgt_too_short", "long_token", "too_many_tokens",
        "has_url", "has_brackets", "shouting", "repeated_word",
    )  # fmt: skip
    assert profiles.PAPER_ORDER == profiles.DIALOGPT_ORDER + (
        "blocklisted_subreddit", "blocklisted_context", "no_common_word", "bland_response",
    )  # fmt: skip
    assert profiles.DEFAULT_ORDER == (
        ("removed_comment", "empty_turn", "bot_author", "bot_boilerplate")
        + profiles.PAPER_ORDER
        + ("self_reply", "echo_response", "duplicate_pair")
    )
    with pytest.raises(ValueError, match="no rule"):
        make_profile("dialogpt", FilterParams(disabled=("bland_response",)))
    # the allow-list is a selection every profile applies first, only when it is given
    assert make_profile("dialogpt", FilterParams(allow_subreddits="pics")).order[0] == "subreddit_not_allowed"
    assert "subreddit_not_allowed" not in make_profile("default", FilterParams()).order


def test_subreddit_allow_list():
    p = FilterParams(allowed_subreddits=frozenset({"askreddit", "i̇stanbul"}))
    assert rules.subreddit_not_allowed(V("a", "b c", subreddit="AskReddit"), p) is None
    assert rules.subreddit_not_allowed(V("a", "b c", subreddit="İstanbul"), p) is None  # str.lower
    assert rules.subreddit_not_allowed(V("a", "b c", subreddit="pics"), p) == "subreddit_not_allowed"
    assert rules.subreddit_not_allowed(V("a", "b c", subreddit=None), p) == "subreddit_not_allowed"
    assert rules.subreddit_not_allowed(V("a", "b c", subreddit="pics"), P) is None  # no list, no rule
    assert profiles.allow_list("AskReddit, pics,,") == frozenset({"askreddit", "pics"})


def test_a_rule_without_a_vector_twin_is_judged_row_by_row():
    """A new rule is one function and one registration; without a twin the engine checks it per row."""

    def ends_with_question(v, p):
        return "ends_with_question" if v.response.rstrip().endswith("?") else None

    rule = rules.Rule(ends_with_question)
    assert rule.name == "ends_with_question" and rule.vector is None
    batch, _ = engine.make_batch(
        table([instance(["q", "ok?"]), instance(["q", "because it is"]), instance(["q", "why is it ?"])])
    )
    assert engine.judge(batch, [RULES["tgt_too_short"], rule], P).tolist() == [0, -1, 1]


# Tokens that exercise every vector form's edge: Unicode whitespace (U+0085, U+00A0, U+2028, U+3000, the
# separators \x1c-\x1f) and a non-space look-alike (U+200B), letters whose case differs between Python and
# Arrow/RE2 (U+212A Kelvin sign, U+017F long s, U+0130, final sigma), brackets, URLs, shouting, bot phrases
# (also spelled with the long s and the Kelvin sign, which RE2's (?i) would match), top-50 words in odd
# cases, repeats, [removed] with odd whitespace, HTML entities, long tokens.
_ALPHABET = ["a", "b", "AB", "CDEFG", "__url__", "(", "x]", "1.0", "0.0", "é", "“q”", "\t", "\u00a0", "", "  ",
             "I", "the", "THE", "tHe", "x" * 31, "x" * 30, "é" * 31, "beep boop", "beep, boop", "&amp;", "&lt;3",
             "\u2028", "\x1c", "\x85", "\u3000", "\u200b", "\u212a", "\u017f", "thi\u017f", "İ", "ΑΣ", "σ",
             "I'm a bot", "I am a bot", "thi\u017f action wa\u017f performed automatically", "\u212aeep",
             "this action was performed automatically", "no no no", "No no", "\x0b", "[removed]",
             "w\u212ay", "don't", "ǅ"]  # fmt: skip
_AUTHORS = ["u1", "u2", "AutoModerator", "x_bot", "xBOT", "İbot", "\u212abot", "RemindMeBot", "[deleted]", "",
            None]  # fmt: skip
_RAW = ["t", "[removed]", " [deleted] ", "\x1c[deleted]\u3000", "[Removed]", "x\n[deleted]", "\u200b[removed]",
        None]  # fmt: skip


def _random_turn(rng: random.Random) -> str:
    seps = [" ", " ", " ", "  ", "\t", "\u00a0", "\x1f", ""]
    out = ""
    for _ in range(rng.randint(0, 7)):
        out += rng.choice(_ALPHABET) + rng.choice(seps)
    return out if rng.random() < 0.8 else out.strip()


def _random_rows(rng: random.Random, count: int) -> list[dict]:
    rows = []
    for _ in range(count):
        k = rng.randint(1, 5)
        turns = [_random_turn(rng) for _ in range(k)]
        if rng.random() < 0.1 and k > 1:
            turns[-1] = rng.choice(turns[:-1]).upper()  # an echo, modulo case
        weights = [rng.choice([1.0, 0.0, 0.5, -1.0]) for _ in range(k)]
        authors = [rng.choice(_AUTHORS) for _ in range(k)]
        if rng.random() < 0.2 and k > 1:
            authors[-1] = authors[-2]
        raw = [rng.choice(_RAW) for _ in range(k)]
        sub = rng.choice(["pics", "PICS", "İstanbul", "istanbul", "\u212aids", None])
        rows.append(
            instance(turns, weights=weights, wit=rng.random() < 0.5, authors=authors, raw=raw, sub=sub)
        )
    rows.append(instance(["a " * 150, "b " * 60]))
    rows.append(instance(["a\u2028" * 101, "b\x1c" * 100]))
    # top-50 words spelled with the long s: RE2's (?i) would find "so", "this", "has" (a word character
    # next to the long s makes the ASCII word boundary)
    rows += [instance(["q", r]) for r in ("x\u017fo", "thi\u017fx", "ha\u017f1", "\u017fo", "İ", "ΑΣ ΑΣ ΑΣ")]
    # echoes only under Python's str.lower (U+0130 -> "i" + U+0307, final sigma), not Arrow's utf8_lower
    rows += [instance(["i\u0307 x", "\u0130 X"]), instance(["ας", " ΑΣ "]), instance(["b", "a ας", "A ΑΣ"])]
    return rows


def _random_params(batch) -> FilterParams:
    grams = sorted(
        {g for i in range(batch.n) for g in rules_paper.response_trigrams(batch.response[i].as_py())}
    )
    frequent = frozenset(random.Random(3).sample(grams, len(grams) // 2))
    return FilterParams(
        subreddits=frozenset({"pics", "i̇stanbul", "kids"}),
        allowed_subreddits=frozenset({"pics", "i̇stanbul"}),
        frequent=frequent,
        words=Blocklist(["beep", "the", "no no", "é", "i̇", "\u212aeep", "a b", "(x"]),
        max_token_chars=30,
        max_tokens=60,
    )


@pytest.mark.parametrize("profile", ["dialogpt", "paper", "default"])
def test_vectorized_rules_equal_per_instance_rules_on_random_text(profile):
    prof = make_profile(profile, FilterParams(allow_subreddits="pics,i̇stanbul"))  # + subreddit_not_allowed
    batch, _ = engine.make_batch(table(_random_rows(random.Random(7), 1500)), prof.params.unescape_html)
    params = _random_params(batch)
    views = [batch.view(i) for i in range(batch.n)]
    for rule in prof.rules():
        assert rule.vector is not None, rule.name  # no built-in rule needs the per-row path
        vec = np.asarray(rule.vector(batch, params), dtype=bool)
        ref = np.array([rule.check(v, params) is not None for v in views])
        bad = np.flatnonzero(vec != ref)
        assert not len(bad), (rule.name, [views[i] for i in bad[:3]])
        assert ref.any() or rule.name in ("blocklisted_subreddit",) and profile == "dialogpt", rule.name
    # judge(): the first failing rule of the profile, row by row
    rs = prof.rules()
    codes = engine.judge(batch, rs, params)
    expected = [next((k for k, r in enumerate(rs) if r.check(v, params) is not None), -1) for v in views]
    assert codes.tolist() == expected


def test_vectorized_rules_agree_without_the_c_module(monkeypatch):
    """The numpy twins of the C token functions give the same decisions (executors without the module)."""
    from dialogsmith import fastjson

    rows = table(_random_rows(random.Random(11), 400))
    prof = make_profile("default", FilterParams())
    batch, _ = engine.make_batch(rows, True)
    params = _random_params(batch)
    native = engine.judge(batch, prof.rules(), params)
    monkeypatch.setattr(fastjson, "AVAILABLE", False)
    monkeypatch.setattr(fastjson, "_fastjson", None)
    batch2, _ = engine.make_batch(rows, True)
    assert engine.judge(batch2, prof.rules(), params).tolist() == native.tolist()
