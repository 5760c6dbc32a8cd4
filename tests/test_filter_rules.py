"""Unit tests of every filter rule (exact reason strings) and of the vectorized path's exactness."""

from __future__ import annotations

import random

import numpy as np
import pytest
from filter_helpers import instance, table

from dialogsmith.filter import engine, profiles, rules, wordlists
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
    assert rules.response_trigrams("A b C d") == ["a b c", "b c d"]


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
        assert name in profiles.DEFAULT_ORDER
    assert profiles.DIALOGPT_ORDER == (
        "blocklisted_word", "tgt_too_short", "long_token", "too_many_tokens",
        "has_url", "has_brackets", "shouting", "repeated_word",
    )  # fmt: skip
    with pytest.raises(ValueError, match="no rule"):
        make_profile("dialogpt", FilterParams(disabled=("bland_response",)))


_ALPHABET = ["a", "b", "AB", "CDEFG", "__url__", "(", "x]", "1.0", "0.0", "é", "“q”", "\t", "\u00a0", "", "  ", "I",
             "the", "x" * 31, "x" * 30, "beep boop", "&amp;", "\u2028"]  # fmt: skip


def _random_turn(rng: random.Random) -> str:
    return " ".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, 7)))


def test_vectorized_rules_equal_per_instance_rules_on_random_text():
    rng = random.Random(7)
    rows = []
    for _ in range(600):
        k = rng.randint(1, 4)
        turns = [_random_turn(rng) for _ in range(k)]
        weights = [rng.choice([1.0, 0.0]) for _ in range(k)]
        authors = [rng.choice(["u1", "u2", "AutoModerator", "x_bot", None]) for _ in range(k)]
        raw = [rng.choice(["t", "[removed]", " [deleted] "]) for _ in range(k)]
        rows.append(instance(turns, weights=weights, wit=rng.random() < 0.5, authors=authors, raw=raw))
    rows.append(instance(["a " * 150, "b " * 60]))
    batch, _ = engine.make_batch(table(rows))
    assert batch.fast.any() and (~batch.fast).any()
    params = FilterParams(
        subreddits=frozenset({"pics"}), frequent=frozenset({"a b a"}), words=Blocklist(["beep", "the"])
    )
    assert any(rule_fails for rule_fails in RULES["blocklisted_word"].vector(batch, params))
    for rule in RULES.values():
        if rule.vector is None:
            continue
        vec = rule.vector(batch, params)
        ref = np.array([rule.check(batch.view(i), params) is not None for i in range(batch.n)])
        rows_to_compare = np.ones(batch.n, bool) if rule.exact_all else batch.fast
        assert (vec[rows_to_compare] == ref[rows_to_compare]).all(), rule.name
        # judge() (vector + fallback) agrees with the reference on every row
        codes = engine.judge(batch, [rule], params)
        assert ((codes == 0) == ref).all(), rule.name
