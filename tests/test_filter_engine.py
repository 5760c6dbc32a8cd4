"""The filter engine's building blocks: 64-bit hashes (C and numpy twins, against a pure-Python
definition), the exact-set lookup, pair keys, and the facts the vectorized rules rest on (Python's
whitespace set in Arrow and RE2, Python's str.lower, case-insensitive patterns without RE2's folding)."""

from __future__ import annotations

import random
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from filter_helpers import instance, table

from dialogsmith import fastjson
from dialogsmith.filter import engine, rules_paper, tasks, vector, wordlists
from dialogsmith.text.blocklist import Blocklist

NATIVE = [False, True] if fastjson._fastjson is not None else [False]
M64 = (1 << 64) - 1


def _fmix(k: int) -> int:
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & M64
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & M64
    return k ^ (k >> 33)


def _hash64(data: bytes) -> int:
    """The documented definition, in plain Python."""
    acc = 0
    for k in range(0, len(data), 8):
        w = int.from_bytes(data[k : k + 8].ljust(8, b"\0"), "little")
        acc = (acc + _fmix((w + (k // 8) * int(fastjson.H_POS) + int(fastjson.H_SEED)) & M64)) & M64
    return _fmix((acc + len(data) * int(fastjson.H_LEN) + int(fastjson.H_SEED)) & M64)


def _ascii_lower(s: str) -> str:
    return "".join(c.lower() if "A" <= c <= "Z" else c for c in s)


_PIECES = ["a", "B", "Zz", " ", "  ", "\t", "\u00a0", "\u2028", "\u3000", "\x1c", "\x85", "\u1680", "\u205f",
           "\u200a", "\u200b", "é", "İ", "😀", "\x00", "xyz" * 5, "w" * 17, "€"]  # fmt: skip


def _strings(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    out = ["".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 25))) for _ in range(n)]
    return out + ["", " ", "a", "a b c", "x" * 5000, "y " * 3000]


@pytest.mark.parametrize("native", NATIVE)
def test_hash64_is_the_documented_function(native):
    strings = _strings(1, 400)
    got = fastjson.hash64(pa.array(strings), native=native)
    assert got.tolist() == [_hash64(s.encode()) for s in strings]
    assert len(set(got.tolist())) == len(set(strings))
    lowered = fastjson.hash64(pa.array(strings), ascii_lower=True, native=native)
    assert lowered.tolist() == [_hash64(_ascii_lower(s).encode()) for s in strings]


@pytest.mark.parametrize("native", NATIVE)
@pytest.mark.parametrize("lower", [False, True])
def test_token_and_trigram_hashes_follow_str_split(native, lower):
    strings = _strings(2, 400)
    counts, hashes = fastjson.token_hash64(pa.array(strings), ascii_lower=lower, native=native)
    tokens = [t for s in strings for t in (_ascii_lower(s) if lower else s).split()]
    assert counts.tolist() == [len(s.split()) for s in strings]
    assert hashes.tolist() == [_hash64(t.encode()) for t in tokens]
    grams, tri = fastjson.trigram_hash64(pa.array(strings), ascii_lower=lower, native=native)
    assert grams.tolist() == [max(len(s.split()) - 2, 0) for s in strings]
    # a trigram's hash is that of the string "a b c" of its three tokens
    joined = [
        " ".join(t) for s in strings for t in zip(s.split(), s.split()[1:], s.split()[2:], strict=False)
    ]
    _, again = fastjson.trigram_hash64(pa.array([_ascii_lower(j) if lower else j for j in joined]))
    assert tri.tolist() == again.tolist()


def test_c_and_numpy_hashes_agree_on_slices_chunks_and_large_strings():
    if fastjson._fastjson is None:
        pytest.skip("the C module is not built")
    arr = pa.array(_strings(3, 3000))
    for a in (
        arr,
        arr.slice(7, 1000),
        pa.chunked_array([arr.slice(0, 10), arr.slice(10)]),
        arr.cast(pa.large_string()),
    ):
        assert (fastjson.hash64(a) == fastjson.hash64(a, native=False)).all()
        for f in (fastjson.token_hash64, fastjson.trigram_hash64):
            (c1, h1), (c2, h2) = f(a, True), f(a, True, native=False)
            assert (c1 == c2).all() and (h1 == h2).all()


def test_hash_set_is_exact():
    rng = np.random.default_rng(0)
    for n in (0, 1, 7, 5000):
        values = rng.integers(0, 2**64 - 1, n, dtype=np.uint64)
        values[: min(n, 3)] = np.array([0, 1 << 40, 2 << 40], np.uint64)[: min(n, 3)]  # 0, equal low bits
        queries = np.concatenate(
            [values, rng.integers(0, 2**64 - 1, 3000, dtype=np.uint64), np.array([0, 3 << 40], np.uint64)]
        )
        assert (rules_paper.HashSet64(values).contains(queries) == np.isin(queries, values)).all(), n


def test_pair_keys_separate_every_turn_list():
    lists = [
        ["a", "b"],
        ["a", "b"],
        ["ab"],
        ["a\x00b"],
        ["a", "\x00b"],
        ["b", "a"],
        [""],
        ["", ""],
        ["a", "b", ""],
    ]
    keys = engine.pair_keys(pa.array(lists, pa.list_(pa.string()))).tolist()
    assert keys[0] == keys[1]
    assert len(set(keys[1:])) == len(lists) - 1


def test_python_whitespace_in_arrow_and_re2():
    everything = [chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000]
    spaces = "".join(c for c in everything if c.isspace())
    assert spaces == vector.PY_WHITESPACE
    arr = pa.array(everything)
    assert (
        "".join(np.array(everything)[vector.mask(pc.match_substring_regex(arr, f"^[{vector.WS_CLASS}]$"))])
        == spaces
    )
    trimmed = pc.utf8_trim_whitespace(pa.array([c + "x" + c for c in everything])).to_pylist()
    assert "".join(c for c, t in zip(everything, trimmed, strict=True) if t == "x") == spaces
    assert vector.token_counts(pa.array([f"a{c}b" for c in spaces])).tolist() == [2] * len(spaces)


def test_python_lower_and_byte_scans():
    strings = _strings(4, 500) + ["ΑΣ", "İx", "\u212a", "ǅ", None]
    arr = pa.array(strings)
    assert vector.python_lower(arr).to_pylist() == [s.lower() if s is not None else None for s in strings]
    assert vector.strings_with_bytes(arr, b"ab").tolist() == [
        s is not None and ("a" in s or "b" in s) for s in strings
    ]
    assert vector.strings_with_bytes(arr.slice(3), b"\xc3").tolist() == [
        s is not None and "é" in s for s in strings[3:]
    ]  # a UTF-8 byte of é


def test_case_insensitive_patterns_ignore_unicode_case_folding():
    """re.IGNORECASE | re.ASCII finds nothing in "thiſ" (long s) or "\u212a" (Kelvin sign); RE2's (?i) and
    [sS] classes would. ascii_case_pattern on byte-wise lower-cased text finds exactly what Python finds."""
    texts = ["thi\u017fx", "x\u017fo", "I \u212anow", "THIS", "This Action Was Performed Automatically",
             "beep,boop", "BEEP, BOOP", "i'm a bot", "I\u017fa bot", "contact the moderators of thi\u017f subreddit"]  # fmt: skip
    for pattern, flags in (
        (rules_paper.TOP50_PATTERN, re.IGNORECASE | re.ASCII),
        (wordlists.BOT_BOILERPLATE_REGEX, re.ASCII),
    ):
        python = [bool(re.search(pattern, t, flags)) for t in texts]
        low = vector.ascii_case_pattern(pattern)
        assert vector.mask(pc.match_substring_regex(pc.ascii_lower(pa.array(texts)), low)).tolist() == python
        assert (
            python
            != vector.mask(pc.match_substring_regex(pa.array(texts), pattern, ignore_case=True)).tolist()
        )
    with pytest.raises(ValueError):
        vector.ascii_case_pattern("[ab]")


def test_blocklist_hits_equal_contains():
    words = Blocklist(["beep", "no no", "é", "i̇", "\u212aeep", "(x", "a.b"])
    texts = _strings(5, 300) + [
        "beep",
        "Beep!",
        "xbeep",
        "no no no",
        "(x)",
        "a.b",
        "aXb",
        "\u212aEEP",
        "İ",
        None,
    ]
    arr = pa.array(texts)
    expected = [t is not None and words.contains(t) for t in texts]
    assert vector.blocklist_hits(words, arr).tolist() == expected

    class Plain:  # a blocklist without an automaton to read: every string through contains()
        def __len__(self):
            return len(words)

        def contains(self, t):
            return words.contains(t)

    assert vector.blocklist_hits(Plain(), arr).tolist() == expected


def test_plan_tasks_balances_the_cores(tmp_path):
    t = table([instance(["q", f"a reply {i}"]) for i in range(1000)])
    import pyarrow.parquet as pq

    pq.write_table(t.slice(0, 700), tmp_path / "a.parquet", row_group_size=50)
    pq.write_table(t.slice(700), tmp_path / "b.parquet", row_group_size=50)
    files = sorted(str(p) for p in tmp_path.glob("*.parquet"))
    planned = tasks.plan_tasks(files, 300, parallelism=2)
    assert len(planned) == 4 and sum(x.rows for x in planned) == 1000
    assert max(x.rows for x in planned) - min(x.rows for x in planned) <= 100
    assert [x.rows for x in tasks.plan_tasks(files, 300)] == [250, 250, 250, 250]  # 4 even shares
    assert len(tasks.plan_tasks(files, 300, parallelism=3)) == 6
    assert len(tasks.plan_tasks(files, 10_000, parallelism=2)) == 1


def test_judge_instances_without_spark():
    """The profile's rules on an in-memory table (the dialogpt-tsv recipe's path): the same reasons as the
    stage, and the kept rows' DialoGPT TSV lines."""
    from filter_helpers import corpus

    from dialogsmith.filter import concat_lines, judge_instances, make_profile, tsv_lines

    rows = corpus()
    judged = judge_instances(table(rows), make_profile("dialogpt"))
    assert judged.dropped == {
        "malformed_instance": 1, "tgt_too_short": 1, "has_url": 1, "shouting": 1, "has_brackets": 1,
    }  # fmt: skip
    assert judged.rows_in == len(rows) == judged.kept.num_rows + sum(judged.dropped.values())
    lines = concat_lines(tsv_lines(judged.kept, judged.src, judged.tgt)).decode().splitlines()
    assert len(lines) == judged.kept.num_rows
    assert lines[0].split("\t") == [
        "t3_l0,t1_q0," + rows[0]["target_id"],
        rows[0]["turns"][0],
        rows[0]["turns"][1],
    ]
    with pytest.raises(ValueError, match="corpus rules"):
        judge_instances(table(rows), make_profile("default"))
