"""The native line parser (``dialogsmith.fastjson``) against the reference ``extract.parse.parse_line``.

Contract: ``parse_lines`` may decline any line (the caller then runs ``parse_line`` on it), but every line
it accepts must give exactly the values ``parse_line(line, kind, fields)`` returns (same Python types,
None for nulls), and it must never accept a line that ``parse_line`` quarantines. Ordinary dump lines
should be accepted (at least 99% of the valid lines of generated dumps).

Skipped when the C extension is not built, unless ``DIALOGSMITH_REQUIRE_NATIVE=1`` (then it fails).
"""

from __future__ import annotations

import json
import math
import os
import random

import numpy as np
import orjson
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialogsmith.extract import dumps, parse
from dialogsmith.extract.parse import COMMENTS, FIELDS, KINDS, REQUIRED, SUBMISSIONS, Quarantined, parse_line

try:
    from dialogsmith import fastjson
except ModuleNotFoundError as e:
    if e.name != "dialogsmith.fastjson":
        raise
    fastjson = None

if fastjson is None:
    _WHY = "dialogsmith.fastjson does not exist"
elif not fastjson.AVAILABLE:
    _WHY = "dialogsmith.fastjson.AVAILABLE is False (C extension not built, or DIALOGSMITH_NATIVE=0)"
else:
    _WHY = None
if _WHY is not None:
    if os.environ.get("DIALOGSMITH_REQUIRE_NATIVE") == "1":
        pytest.fail(f"DIALOGSMITH_REQUIRE_NATIVE=1 but {_WHY}", pytrace=False)
    pytest.skip(f"native JSON parser unavailable: {_WHY}", allow_module_level=True)

ARROW_TYPES = {"str": pa.string(), "int": pa.int64(), "edited": pa.int64(), "bool": pa.bool_()}
C, S = COMMENTS, SUBMISSIONS


def projection(kind: str, columns: tuple[str, ...], month: str | None = "2016-01") -> list[tuple[str, str]]:
    """The fields BlockParser reads for ``columns=`` (required fields, plus created_utc when month is None)."""
    return parse.BlockParser("test", kind, month, columns=columns).fields


FIELD_SETS = {
    C: [FIELDS[C], projection(C, ("score",)), projection(C, ("edited", "author"), month=None)],
    S: [FIELDS[S], projection(S, ("num_comments",)), projection(S, ("over_18", "url"), month=None)],
}


# --- running both parsers -----------------------------------------------------------------------


def pack(lines: list[bytes], gap: bytes = b"\n", lead: bytes = b"") -> tuple[bytes, np.ndarray, np.ndarray]:
    """``lead`` + lines joined by ``gap``, with each line's (start, end) offsets."""
    buf, starts, ends = bytearray(lead), [], []
    for line in lines:
        starts.append(len(buf))
        buf += line
        ends.append(len(buf))
        buf += gap
    return bytes(buf), np.array(starts, dtype=np.int64), np.array(ends, dtype=np.int64)


def reference(line: bytes, kind: str, fields) -> dict | Quarantined:
    try:
        return parse_line(line, kind, fields)
    except Quarantined as q:
        return q


def typed(row: dict) -> dict:
    """Values with their exact types (True == 1 in Python, but a bool is not an int here)."""
    return {k: (type(v).__name__, v) for k, v in row.items()}


def native(data: bytes, starts: np.ndarray, ends: np.ndarray, kind: str, fields) -> tuple[list[int], dict]:
    """parse_lines, its output's shape checked; (accepted line indices, {field: Python values})."""
    rows, cols = fastjson.parse_lines(data, starts, ends, list(fields), REQUIRED[kind])
    assert isinstance(rows, np.ndarray) and rows.dtype == np.int64 and rows.ndim == 1
    assert np.all(np.diff(rows) > 0), "rows must be strictly increasing"
    assert len(rows) == 0 or (rows[0] >= 0 and rows[-1] < len(starts))
    assert set(cols) == {name for name, _ in fields}
    for name, ftype in fields:
        col = cols[name]
        assert isinstance(col, pa.Array) and col.type == ARROW_TYPES[ftype], (name, col.type)
        assert len(col) == len(rows), name
        col.validate(full=True)  # e.g. a string array holding invalid UTF-8
    return rows.tolist(), {name: col.to_pylist() for name, col in cols.items()}


def check_ranges(data: bytes, starts: np.ndarray, ends: np.ndarray, kind: str, fields) -> list[int]:
    """Assert the contract for the lines ``data[starts[i]:ends[i]]``; returns the accepted indices."""
    rows, values = native(data, starts, ends, kind, fields)
    for j, i in enumerate(rows):
        line = data[starts[i] : ends[i]]
        want = reference(line, kind, fields)
        assert not isinstance(want, Quarantined), (
            f"native accepted a line that parse_line quarantines ({want.reason}: {want.detail}): {line!r}"
        )
        got = {name: values[name][j] for name, _ in fields}
        assert typed(got) == typed(want), f"values differ for {line!r}"
    return rows


def check(lines: list[bytes], kind: str, fields, gap: bytes = b"\n", lead: bytes = b"") -> list[int]:
    return check_ranges(*pack(lines, gap, lead), kind, fields)


def accepted(line: bytes, kind: str, fields) -> bool:
    return check([line], kind, fields) == [0]


# --- hand-written lines -------------------------------------------------------------------------

BASE = {
    C: {
        "id": "c1",
        "link_id": "t3_a",
        "parent_id": "t1_b",
        "author": "u",
        "subreddit": "s",
        "subreddit_id": "t5_x",
        "body": "hello",
        "score": 5,
        "created_utc": 1451606400,
        "edited": False,
        "gilded": 0,
        "controversiality": 0,
        "distinguished": None,
        "stickied": False,
    },
    S: {
        "id": "s1",
        "author": "u",
        "subreddit": "s",
        "subreddit_id": "t5_x",
        "title": "t",
        "selftext": "",
        "num_comments": 3,
        "score": 1,
        "created_utc": 1451606400,
        "domain": "self.s",
        "permalink": "/r/s/",
        "url": "http://x",
        "is_self": True,
        "over_18": False,
        "stickied": False,
    },
}
DROP = b"<drop>"
TEXT = {C: "body", S: "title"}


def obj(kind: str, head: bytes = b"", tail: bytes = b"", **raw: bytes) -> bytes:
    """The kind's base record as one line; ``raw`` replaces values by raw JSON bytes (DROP: no key);
    ``head``/``tail`` are raw members put before/after the fields (``head`` ends, ``tail`` starts with ',')."""
    vals = {k: orjson.dumps(v) for k, v in BASE[kind].items()}
    for k, v in raw.items():
        if v is DROP:
            vals.pop(k, None)
        else:
            vals[k] = v
    return b"{" + head + b",".join(b'"%s":%s' % (k.encode(), v) for k, v in vals.items()) + tail + b"}"


def spots(kind: str, token: bytes) -> dict[str, bytes]:
    """A raw JSON string token put in every kind of place of a line."""
    return {
        "text": obj(kind, **{TEXT[kind]: token}),
        "optional": obj(kind, author=token),
        "unknown": obj(kind, tail=b',"x":' + token),
        "nested": obj(kind, tail=b',"x":{"y":[1,' + token + b"]}"),
        "key": obj(kind, tail=b"," + token + b":1"),
    }


STRINGS = {
    "unicode": orjson.dumps(
        "h\u00e9llo w\u00f6rld \u4e16\u754c \U0001f600 \u2028\u2029 \ufeff \x7f \U0010ffff"
    ),
    "ascii-escaped": json.dumps("h\u00e9llo \u4e16\u754c \U0001f600 \U0010ffff").encode(),
    "short-escapes": b'"q\\"b\\\\s\\/f\\bf\\fn\\nr\\rt\\t"',
    "nul": b'"a\\u0000b"',
    "only-nul": b'"\\u0000"',
    "hex-case": b'"\\u00E9\\u00e9\\uABCD\\uabcd"',
    "bmp-edges": b'"\\u007f\\u0080\\u07ff\\u0800\\ud7ff\\ue000\\ufffd\\uffff"',
    "pair": b'"\\ud83d\\ude00"',
    "pair-upper": b'"\\uD83D\\uDE00"',
    "pair-min": b'"\\ud800\\udc00"',
    "pair-max": b'"\\udbff\\udfff"',
    "empty": b'""',
    "null-word": b'"null"',
    "none-word": b'"None"',
    "true-word": b'"true"',
    "digits": b'"123"',
    "brackets": b'"]}{[,:\\""',
    "lone-high": b'"\\ud800"',
    "lone-high-at-end": b'"abc\\udbff"',
    "high-then-char": b'"\\ud83dx"',
    "high-high": b'"\\ud83d\\ud83d"',
    "high-then-bmp": b'"\\ud800\\u0041"',
    "high-then-short-escape": b'"\\ud800\\n"',
    "lone-low": b'"\\udc00"',
    "low-then-high": b'"\\ude00\\ud83d"',
    "escape-x": b'"\\x41"',
    "escape-U": b'"\\U0041"',
    "escape-short-u": b'"\\u12"',
    "escape-bad-hex": b'"\\u12G4"',
    "escape-a": b'"\\a"',
    "escape-0": b'"\\0"',
    "escape-space": b'"\\ "',
    "escape-eats-quote": b'"abc\\"',
    "unterminated": b'"abc',
}
UTF8 = {
    "2-byte-min": b"\xc2\x80",
    "2-byte-max": b"\xdf\xbf",
    "3-byte-min": b"\xe0\xa0\x80",
    "before-surrogates": b"\xed\x9f\xbf",
    "after-surrogates": b"\xee\x80\x80",
    "3-byte-max": b"\xef\xbf\xbf",
    "4-byte-min": b"\xf0\x90\x80\x80",
    "4-byte-max": b"\xf4\x8f\xbf\xbf",
    "overlong-2-slash": b"\xc0\xaf",
    "overlong-2-nul": b"\xc0\x80",
    "overlong-2-max": b"\xc1\xbf",
    "overlong-3": b"\xe0\x80\x80",
    "overlong-3-max": b"\xe0\x9f\xbf",
    "overlong-4": b"\xf0\x80\x80\x80",
    "overlong-4-max": b"\xf0\x8f\xbf\xbf",
    "surrogate-high": b"\xed\xa0\x80",
    "surrogate-low": b"\xed\xbf\xbf",
    "surrogate-pair-cesu": b"\xed\xa0\xbd\xed\xb8\x80",
    "above-10ffff": b"\xf4\x90\x80\x80",
    "f5": b"\xf5\x80\x80\x80",
    "f8": b"\xf8\x88\x80\x80\x80",
    "fe": b"\xfe",
    "ff": b"\xff",
    "lone-continuation": b"\x80",
    "lone-bf": b"\xbf",
    "truncated-2": b"\xc3",
    "truncated-3": b"\xe2\x82",
    "truncated-4": b"\xf0\x9f\x98",
    "lead-then-ascii": b"\xc2A",
    "3-byte-bad-second": b"\xe2(\xa1",
    "4-byte-bad-third": b"\xf0\x9f(\x80",
}
NUMBERS = {
    "zero": b"0",
    "minus-zero": b"-0",
    "minus-zero-float": b"-0.0",
    "negative": b"-17",
    "exp": b"1e5",
    "exp-upper": b"1E5",
    "exp-plus": b"1e+2",
    "exp-minus": b"25e-1",
    "fraction": b"1.5",
    "neg-fraction": b"-1.5",
    "fraction-exp": b"0.1e1",
    "rounds-up": b"1.9999999999999999999",
    "rounds-big": b"123456789.99999999999",
    "tiny": b"1e-400",
    "int64-max": b"9223372036854775807",
    "int64-max+1": b"9223372036854775808",
    "int64-min": b"-9223372036854775808",
    "int64-min-1": b"-9223372036854775809",
    "uint64-max": b"18446744073709551615",
    "uint64-max+1": b"18446744073709551616",
    "huge": b"123456789012345678901234567890",
    "huge-negative": b"-123456789012345678901234567890",
    "float-2^63": b"9.223372036854775807e18",
    "float-int64-max": b"9223372036854775807.0",
    "float-int64-min": b"-9223372036854775808.0",
    "float-below-2^63": b"9223372036854774784.0",
    "float-2^53+1": b"9007199254740993.0",
    "inf": b"1e400",
    "minus-inf": b"-1e400",
    "leading-zero": b"01",
    "leading-zero-neg": b"-01",
    "double-zero": b"00",
    "dot-end": b"1.",
    "dot-start": b".5",
    "plus": b"+1",
    "minus-only": b"-",
    "exp-empty": b"1e",
    "exp-sign-only": b"1e+",
    "hex": b"0x10",
    "underscore": b"1_000",
    "NaN": b"NaN",
    "Infinity": b"Infinity",
    "minus-Infinity": b"-Infinity",
}
INT_STRINGS = [
    "123", "-7", "+5", "", "null", "NULL", "None", "none", " null ", "abc", " 5", "5 ", "\t5\n", "1.5e9", "1.5",
    "-1.5", "1e5", ".5", "5.", "0x10", "1_000", "1__0", "1e400", "inf", "-inf", "nan", "Infinity",
    "9223372036854775807", "9223372036854775808", "-9223372036854775808", "-9223372036854775809",
    "9.3e18", "00012", "-0", "- 5", "--5", "1,000", "true", "false", "\u0661\u0662\u0663",
    "\uff11\uff12", "\u00a05", "\u20035\u2003", "5\u0000", "1e",
]  # fmt: skip
BOOL_VALUES = [
    b"true", b"false", b"null", b"0", b"1", b"2", b"-1", b"1.0", b"0.0", b"-0", b"1e0", b'"true"', b'"false"',
    b'"TRUE"', b'" True "', b'"0"', b'"1"', b'"2"', b'""', b'"null"', b'"none"', b'"yes"', b'"t"', b'"1.0"',
    b"[]", b"{}", b'"\\u0074rue"',
]  # fmt: skip
EDITED_VALUES = [
    b"false", b"true", b"null", b"0", b"1451606400", b"1451606400.5", b"-1.5", b'"false"', b'"true"',
    b'"FALSE"', b'""', b'"null"', b'"1451606400"', b'"1451606400.7"', b'"abc"', b"1e400", b'"1e400"',
    b"9223372036854775808", b"[]", b"{}", b'"1e5"', b"[false]",
]  # fmt: skip
TYPE_MATRIX = [
    DROP, b"null", b"true", b"false", b"0", b"1", b"2", b"-1", b"1.5", b'""', b'"x"', b'"1"', b"[]", b"{}",
    b'["x"]', b'{"a":1}', b"[null]",
]  # fmt: skip
WHITESPACE = {
    "space": b" ",
    "tab": b"\t",
    "cr": b"\r",
    "crcr": b"\r\r",
    "crlf-inline": b"\r\n",
    "mixed": b" \t\r ",
    "form-feed": b"\x0c",
    "vertical-tab": b"\x0b",
    "nbsp": b"\xc2\xa0",
    "nul": b"\x00",
}
NOT_OBJECTS = [
    b"[]", b"[1,2]", b'[{"id":"a"}]', b"42", b"-1", b'"str"', b"null", b"true", b"false", b"{}", b"{ }",
    b"{}}", b"{", b"}", b"{{}}", b'{"id"}', b'{"id":}', b'{"id" "x"}', b"{'id': 'x'}", b"<html>", b"{,}",
    b'{"id":"x",}', b"\xef\xbb\xbf{}",
]  # fmt: skip
EMPTY = [b"", b" ", b"\t", b"\r", b"  \r", b"\r\n"]


def _string_cases():
    for name, token in STRINGS.items():
        for kind in KINDS:
            yield f"str-{name}-text-{kind}", kind, spots(kind, token)["text"]
        for spot, line in spots(C, token).items():
            if spot != "text":
                yield f"str-{name}-{spot}", C, line
    for name, seq in UTF8.items():
        for kind in KINDS:
            yield f"utf8-{name}-text-{kind}", kind, spots(kind, b'"a' + seq + b'"')["text"]
        yield f"utf8-{name}-text-then-ascii", C, obj(C, body=b'"a' + seq + b'b"')
        for spot, line in spots(C, b'"a' + seq + b'b"').items():
            if spot != "text":
                yield f"utf8-{name}-{spot}", C, line
        yield f"utf8-{name}-outside-strings", C, obj(C, tail=b"," + seq + b'"x":1')
    for c in range(32):
        raw = b'"a' + bytes([c]) + b'b"'
        for spot in ("text", "unknown", "key"):
            yield f"ctl-{c:02x}-{spot}", C, spots(C, raw)[spot]


def _key_cases():
    yield "dup-id-last-wins", C, obj(C, head=b'"id":"first",')
    yield "dup-id-last-null", C, obj(C, tail=b',"id":null')
    yield "dup-id-last-int", C, obj(C, tail=b',"id":5')
    yield "dup-id-first-null", C, obj(C, head=b'"id":null,')
    yield "dup-score-bad-then-good", C, obj(C, head=b'"score":"abc",')
    yield "dup-score-good-then-bad", C, obj(C, tail=b',"score":"abc"')
    yield "dup-score-then-null", C, obj(C, tail=b',"score":null')
    yield "dup-stickied", C, obj(C, tail=b',"stickied":true')
    yield "dup-edited", C, obj(C, tail=b',"edited":1451606401')
    yield "dup-title", S, obj(S, tail=b',"title":"second"')
    yield "dup-unknown", C, obj(C, tail=b',"x":1,"x":[2]')
    yield "escaped-key-id", C, obj(C, id=DROP, head=b'"\\u0069d":"esc",')
    yield "escaped-key-id-upper", C, obj(C, id=DROP, head=b'"\\u0049\\u0044":"esc",')
    yield "escaped-key-link", C, obj(C, link_id=DROP, tail=b',"link\\u005fid":"t3_z"')
    yield "escaped-key-dup-score", C, obj(C, tail=b',"sc\\u006fre":"7"')
    yield "escaped-key-slash", C, obj(C, tail=b',"sc\\/ore":7')
    yield "escaped-key-over18", S, obj(S, tail=b',"over\\u005f18":true')
    yield "key-with-nul", C, obj(C, tail=b',"score\\u0000":"abc"')
    for key in (b"ID", b"id ", b" id", b"ids", b"i", b"", b"i\\u0064x", b'i\\"d'):
        yield f"lookalike-key-{key!r}", C, obj(C, id=DROP, tail=b',"' + key + b'":"x"')
        yield f"lookalike-key-extra-{key!r}", C, obj(C, tail=b',"' + key + b'":5')
    yield "nested-required-names", C, obj(C, tail=b',"x":{"id":5,"body":null,"score":"abc"}')
    yield "nested-required-only", C, obj(C, id=DROP, tail=b',"x":{"id":"inner"}')
    yield "key-not-string", C, obj(C, tail=b",5:1")
    yield "key-null", C, obj(C, tail=b",null:1")


def _number_cases():
    for name, num in NUMBERS.items():
        for field in ("score", "edited", "stickied", "gilded"):
            yield f"num-{name}-{field}", C, obj(C, **{field: num})
        yield f"num-{name}-unknown", C, obj(C, tail=b',"x":' + num)
        yield f"num-{name}-nested", C, obj(C, tail=b',"x":[{"y":' + num + b"}]")
        yield f"num-{name}-num_comments", S, obj(S, num_comments=num)
        yield f"num-{name}-id", C, obj(C, id=num)
    for s in INT_STRINGS:
        token = json.dumps(s).encode()
        for field in ("score", "edited", "controversiality"):
            yield f"intstr-{s!r}-{field}", C, obj(C, **{field: token})
        yield f"intstr-{s!r}-created_utc", S, obj(S, created_utc=token)
        yield f"intstr-{s!r}-ascii-escaped", C, obj(C, score=json.dumps(s, ensure_ascii=True).encode())
    for v in BOOL_VALUES:
        yield f"bool-{v!r}-stickied", C, obj(C, stickied=v)
        yield f"bool-{v!r}-is_self", S, obj(S, is_self=v)
    for v in EDITED_VALUES:
        yield f"edited-{v!r}", C, obj(C, edited=v)


def _type_matrix_cases():
    for kind in KINDS:
        for field, _ in FIELDS[kind]:
            for v in TYPE_MATRIX:
                yield f"type-{kind}-{field}-{v!r}", kind, obj(kind, **{field: v})


def _structure_cases():
    yield "plain-comment", C, obj(C)
    yield "plain-submission", S, obj(S)
    nested = {
        "mixed": b'{"a":[1,{"b":null}],"c":"d","e":[true,false,-1.5e3]}',
        "empty-array": b"[]",
        "empty-object": b"{}",
        "spaced": b'{ "a" : [ 1 , 2 ] , "b" : { } }',
        "arrays": b"[[[[]]],[[]]]",
        "deep-ok": b"[" * 1023 + b"]" * 1023,  # with the line's object: depth 1024, orjson's limit
        "deep-over": b"[" * 1024 + b"]" * 1024,
        "deep-objects-ok": b'{"a":' * 1023 + b"1" + b"}" * 1023,
        "deep-objects-over": b'{"a":' * 1024 + b"1" + b"}" * 1024,
        "very-deep": b"[" * 5000 + b"]" * 5000,
        "unbalanced": b"[1,2}",
        "unbalanced-object": b'{"a":1]',
        "unclosed": b"[1,2",
        "extra-close": b"[1]]",
        "trailing-comma": b"[1,]",
        "trailing-comma-object": b'{"a":1,}',
        "missing-comma": b"[1 2]",
        "missing-colon": b'{"a" 1}',
        "non-string-key": b"{1:2}",
        "bad-literal": b"[tru]",
        "bad-literal-null": b"nul",
        "literal-case": b"True",
        "bad-number": b"[1.e5]",
        "bad-escape": b'["\\q"]',
        "lone-surrogate": b'["\\udfff"]',
        "bad-utf8": b'["\xff"]',
        "control-char": b'["\x01"]',
        "brackets-in-strings": b'["]}","{[\\"",{"]":"}"}]',
    }
    for name, value in nested.items():
        yield f"nested-{name}", C, obj(C, tail=b',"x":' + value)
        yield f"nested-{name}-first", S, obj(S, head=b'"x":' + value + b",")
    for name, ws in WHITESPACE.items():
        yield f"trailing-{name}", C, obj(C) + ws
        yield f"leading-{name}", C, ws + obj(C)
        yield f"inside-{name}", C, obj(C, head=b'"x"' + ws + b":" + ws + b"1" + ws + b",")
    yield "spaced-python-json", C, json.dumps(BASE[C]).encode()
    yield "spaced-everywhere", S, json.dumps(BASE[S], separators=(" ,\t", " :\r")).encode()
    yield "indented", C, json.dumps(BASE[C], indent=1).encode()
    for tail in (b"x", b"}", b",", b"{}", b" x", b"\x00", b"//", b"\xff", b" {}", b"]", b'"'):
        yield f"garbage-after-{tail!r}", C, obj(C) + tail
    yield "two-objects", C, obj(C) + obj(C)
    yield "two-objects-spaced", C, obj(C) + b" " + obj(C)
    for i, line in enumerate(NOT_OBJECTS):
        yield f"not-object-{i}-{line[:12]!r}", C, line
    for i, line in enumerate(EMPTY):
        yield f"empty-{i}", C, line
    full = obj(C, body=STRINGS["ascii-escaped"])
    for cut in (1, 2, 10, len(full) // 2, len(full) - 2, len(full) - 1):
        yield f"truncated-at-{cut}", C, full[:cut]


def _cases():
    for gen in (_string_cases, _key_cases, _number_cases, _type_matrix_cases, _structure_cases):
        for name, kind, line in gen():
            yield pytest.param(kind, line, id=name)


CASES = list(_cases())


@pytest.mark.parametrize("kind, line", CASES)
def test_hand_written_line(kind, line):
    for fields in FIELD_SETS[kind]:
        check([line], kind, fields)


def test_hand_written_lines_in_one_call():
    """All the cases at once (rows and arrays must stay aligned), then each against the other kind."""
    lines = [p.values[1] for p in CASES]
    for kind in KINDS:
        for fields in FIELD_SETS[kind]:
            check(lines, kind, fields)


ORDINARY = {
    "comment": (C, obj(C)),
    "submission": (S, obj(S)),
    "python-json-comment": (C, json.dumps(BASE[C]).encode()),
    "python-json-submission": (S, json.dumps(BASE[S]).encode()),
    "raw-unicode": (C, obj(C, body=STRINGS["unicode"])),
    "ascii-escapes": (C, obj(C, body=STRINGS["ascii-escaped"], author=b'"\\u00e9t\\u00e9"')),
    "short-escapes": (S, obj(S, title=STRINGS["short-escapes"], selftext=b'"a\\nb\\u2019c"')),
    "surrogate-pair": (C, obj(C, body=STRINGS["pair"])),
    "created-as-string": (C, obj(C, created_utc=b'"1451606400"')),
    "created-as-float": (C, obj(C, created_utc=b"1672557213.0")),
    "edited-epoch": (C, obj(C, edited=b"1451606999")),
    "edited-true": (C, obj(C, edited=b"true")),
    "null-score": (C, obj(C, score=b"null")),
    "nulls": (S, obj(S, author=b"null", subreddit_id=b"null", distinguished=b"null")),
    "bigquery-numbers": (S, obj(S, num_comments=b'"2"', score=b'"12"', created_utc=b'"1462064224"')),
    "meta-object": (C, obj(C, tail=b',"_meta":{"retrieved_2nd_on":1708750443,"note":"x"}')),
    "awardings": (C, obj(C, tail=b',"all_awardings":[{"name":"Gold","count":1,"icon":null}],"ups":5')),
    "moderator": (C, obj(C, distinguished=b'"moderator"', stickied=b"true")),
    "trailing-cr": (C, obj(C) + b"\r"),
}


@pytest.mark.parametrize("kind, line", list(ORDINARY.values()), ids=list(ORDINARY))
def test_ordinary_lines_are_accepted(kind, line):
    assert not isinstance(reference(line, kind, FIELDS[kind]), Quarantined)
    for fields in FIELD_SETS[kind]:
        assert accepted(line, kind, fields), f"native declined an ordinary line: {line!r}"


UNREAD_BAD = {
    "stickied": b"3",
    "edited": b'"abc"',
    "author": b"5",
    "created_utc": b'"x"',
    "gilded": b"[1]",
    "distinguished": b"{}",
}


@pytest.mark.parametrize("field, value", list(UNREAD_BAD.items()), ids=list(UNREAD_BAD))
def test_projection_ignores_unread_fields(field, value):
    """columns=("score",) reads id, link_id, parent_id, body, score: a bad unread field does not matter."""
    line = obj(C, **{field: value})
    fields = projection(C, ("score",))
    assert isinstance(reference(line, C, FIELDS[C]), Quarantined)
    assert not isinstance(reference(line, C, fields), Quarantined)
    check([line], C, FIELDS[C])
    assert accepted(line, C, fields), f"native declined a line whose bad field is not read: {line!r}"


# --- ranges ---------------------------------------------------------------------------------------


def test_no_lines():
    for kind in KINDS:
        rows, values = native(b"", np.zeros(0, np.int64), np.zeros(0, np.int64), kind, FIELDS[kind])
        assert rows == [] and all(v == [] for v in values.values())
        rows, _ = native(b"{}\n", np.zeros(0, np.int64), np.zeros(0, np.int64), kind, FIELDS[kind])
        assert rows == []


def test_prefixes_never_read_past_end():
    """Every prefix of a line, with the rest of the line still in the buffer right after ``end``."""
    line = obj(C, body=STRINGS["unicode"], tail=b',"x":{"y":[1,"\\ud83d\\ude00"]}')
    starts = np.zeros(len(line) + 1, dtype=np.int64)
    ends = np.arange(len(line) + 1, dtype=np.int64)
    for fields in FIELD_SETS[C]:
        assert check_ranges(line, starts, ends, C, fields) in ([], [len(line)])


def test_ranges_inside_a_buffer():
    """Lines that do not start at 0, separated by junk, adjacent lines, and a subset of a block."""
    lines = [obj(C, id=json.dumps(f"c{i}").encode(), score=str(i).encode()) for i in range(200)]
    lines[7] = b'{"id":"broken"'
    lines[50] = b""
    for gap, lead in ((b"\n", b""), (b"", b""), (b'\n}}"\\\n', b'GARBAGE{"id":"lead",'), (b"\xff", b"\x00{")):
        for fields in FIELD_SETS[C]:
            rows = check(lines, C, fields, gap=gap, lead=lead)
            assert 7 not in rows and 50 not in rows
    data, starts, ends = pack(lines)
    keep = np.arange(3, 200, 3)
    rows = check_ranges(data, starts[keep], ends[keep], C, FIELDS[C])
    assert len(rows) >= len(keep) - 1, "declined ordinary lines given as a subset of a block"


def test_many_lines_align():
    """Accepted rows and arrays align over thousands of distinct lines mixed with quarantined ones."""
    rnd = random.Random(5)
    lines, bad = [], set()
    for i in range(3000):
        d = dict(BASE[C], id=f"c{i}", score=rnd.randint(-(10**6), 10**6), body=f"b\u00e9{i}\n\U0001f600")
        d["stickied"] = bool(i % 2)
        line = orjson.dumps(d) if i % 3 else json.dumps(d).encode()
        if i % 37 == 0:  # truncated
            line = line[:-1]
            bad.add(i)
        lines.append(line)
    rows, values = native(*pack(lines), C, FIELDS[C])
    assert not bad & set(rows)
    assert len(rows) >= 0.99 * (len(lines) - len(bad))
    for j, i in enumerate(rows):
        assert values["id"][j] == f"c{i}" and values["stickied"][j] is bool(i % 2)
    check(lines, C, FIELDS[C])


# --- property test --------------------------------------------------------------------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(["", "null", "true", "false", "0", "1", " 7 ", "1.5e9", "abc", "-0", "None"]),
    st.integers(-(2**63), 2**63 - 1).map(str),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
INT64 = st.integers(-(2**63), 2**63 - 1)
GOOD = {  # values parse_line takes, in every form it takes them
    "str": st.one_of(st.text(max_size=30), st.none(), st.sampled_from(["null", "None", "", "true", "0"])),
    "int": st.one_of(
        INT64,
        INT64.map(str),
        st.floats(-1e15, 1e15),
        st.floats(-1e15, 1e15).map(repr),
        st.none(),
        st.sampled_from(["", "null", " 7 ", "1.5e9", "-0", "None", "+3"]),
    ),
    "bool": st.one_of(
        st.booleans(), st.none(), st.sampled_from([0, 1, "true", "false", "0", "1", "", " TRUE ", "null"])
    ),
    "edited": st.one_of(
        st.booleans(), st.none(), INT64, st.floats(-1e12, 1e12), st.sampled_from(["false", "", "12", "true"])
    ),
}
WILD = {t: st.one_of(good, st.integers(), st.floats(), VALUES) for t, good in GOOD.items()}
UNKNOWN_KEYS = ("x", "_meta", "ups", "ID", "author_flair_text", "")


def _record(kind: str, clean: bool):
    """A record of ``kind``: clean ones hold only values parse_line takes (in any of its forms)."""
    text = st.text(max_size=30)
    required = {f: text if clean else st.one_of(text, text, text, VALUES) for f in REQUIRED[kind]}
    optional = {f: (GOOD if clean else WILD)[t] for f, t in FIELDS[kind] if f not in REQUIRED[kind]}
    optional.update({k: VALUES for k in UNKNOWN_KEYS})
    return st.fixed_dictionaries(required, optional=optional)


RECORDS = st.one_of(*(st.booleans().flatmap(lambda clean, k=k: _record(k, clean)) for k in KINDS))
WS = (b" ", b"  ", b"\t", b"\r", b"\n", b" \r\n")
SHORT_ESCAPES = {'"': b'\\"', "\\": b"\\\\", "/": b"\\/", "\b": b"\\b", "\f": b"\\f", "\n": b"\\n", "\r": b"\\r",
                 "\t": b"\\t"}  # fmt: skip
INTERESTING = (
    b'"\\{}[],: \t\r\n0123456789-+.eEnultrfasu\x00\x01\x1f\x7f\x80\xbf\xc0\xc2\xe0\xed\xf0\xf4\xf5\xff'
)


def _ws(rnd: random.Random) -> bytes:
    return rnd.choice(WS) if rnd.random() < 0.3 else b""


def _escape(ch: str, rnd: random.Random) -> bytes:
    if ch in SHORT_ESCAPES and rnd.random() < 0.5:
        return SHORT_ESCAPES[ch]
    c = ord(ch)
    units = [c] if c < 0x10000 else [0xD800 + ((c - 0x10000) >> 10), 0xDC00 + ((c - 0x10000) & 0x3FF)]
    fmt = "\\u%04x" if rnd.random() < 0.5 else "\\u%04X"
    return "".join(fmt % u for u in units).encode()


def _string(s: str, rnd: random.Random) -> bytes:
    out = [b'"']
    for ch in s:
        must = ch in '"\\' or ord(ch) < 0x20
        out.append(_escape(ch, rnd) if must or rnd.random() < 0.15 else ch.encode())
    if rnd.random() < 0.02:  # a lone surrogate escape: orjson rejects the line
        out.insert(rnd.randrange(1, len(out) + 1), b"\\u%04x" % rnd.randrange(0xD800, 0xE000))
    return b"".join(out) + b'"'


def _number(v: float, rnd: random.Random) -> bytes:
    if not math.isfinite(v):
        return rnd.choice([b"1e999", b"-1e999", b"NaN", b"Infinity"])
    return rnd.choice([repr(v), f"{v:.17e}", f"{v:.17E}", f"{v:.3f}"]).encode()


def _fancy(v, rnd: random.Random) -> bytes:
    """JSON with random whitespace, escapes, key order and overridden duplicate keys."""
    if v is None or isinstance(v, bool):
        return json.dumps(v).encode()
    if isinstance(v, int):
        return str(v).encode()
    if isinstance(v, float):
        return _number(v, rnd)
    if isinstance(v, str):
        return _string(v, rnd)
    if isinstance(v, list):
        return b"[" + _ws(rnd) + b",".join(_ws(rnd) + _fancy(x, rnd) + _ws(rnd) for x in v) + b"]"
    members = [(k, _fancy(x, rnd)) for k, x in v.items()]
    rnd.shuffle(members)
    if members and rnd.random() < 0.2:  # an earlier duplicate: the last value wins
        k = rnd.choice(members)[0]
        members.insert(0, (k, _fancy(rnd.choice([None, 1, "abc", [], True]), rnd)))
    body = b",".join(
        _ws(rnd) + _string(k, rnd) + _ws(rnd) + b":" + _ws(rnd) + x + _ws(rnd) for k, x in members
    )
    return b"{" + body + b"}"


def _serialize(record: dict, rnd: random.Random) -> bytes:
    how = rnd.randrange(3)
    if how == 0:
        try:
            return orjson.dumps(record)
        except orjson.JSONEncodeError:  # integers beyond 64 bits
            return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()
    if how == 1:
        return json.dumps(record, ensure_ascii=True).encode()  # \u escapes; NaN/Infinity: not JSON
    return _ws(rnd) + _fancy(record, rnd) + _ws(rnd)


def _mutate(line: bytes, rnd: random.Random) -> bytes:
    for _ in range(rnd.choice([0, 0, 0, 1, 2])):
        pos = rnd.randrange(len(line) + 1)
        byte = bytes([rnd.choice(INTERESTING) if rnd.random() < 0.7 else rnd.randrange(256)])
        op = rnd.randrange(5)
        if op == 0:
            line = line[:pos]
        elif op == 1:
            line = line[:pos] + byte + line[pos:]
        elif op == 2:
            line = line[:pos] + byte + line[pos + 1 :]
        elif op == 3:
            line = line + byte  # after the closing brace
        else:
            line = line[:pos] + line[pos + 1 :]
    return line


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=st.lists(RECORDS, min_size=1, max_size=4), rnd=st.randoms(use_true_random=False))
def test_property_random_lines(records, rnd):
    lines = [_mutate(_serialize(r, rnd), rnd) for r in records]
    gap, lead = rnd.choice([(b"\n", b""), (b"", b""), (b"\n\xff\x00", b'{"id":"x",')])
    for kind in KINDS:
        for fields in [*FIELD_SETS[kind], FIELDS[kind][::-1]]:
            check(lines, kind, fields, gap=gap, lead=lead)


# --- generated dumps ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dump_paths(tmp_path_factory) -> list:
    from dialogsmith.sample.synth import SynthConfig, generate

    out = tmp_path_factory.mktemp("fastjson-dumps")
    months = ["2012-06", "2015-02", "2016-11", "2017-10", "2023-01"]
    generate(out / "eras", SynthConfig(months=months, comments_per_month=2500, seed=11, compression="none"))
    bq = SynthConfig(
        months=["2016-05"], comments_per_month=2000, seed=12, compression="none", bigquery_shape=True
    )
    generate(out / "bigquery", bq)
    return sorted(p for p in out.glob("*/R[CS]_*"))


def _bounds(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    nl = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == ord("\n"))
    starts = np.concatenate(([0], nl + 1)).astype(np.int64)
    ends = np.append(nl, len(data)).astype(np.int64)
    return (starts[:-1], ends[:-1]) if data.endswith(b"\n") else (starts, ends)


def _python_json(block: bytes) -> bytes:
    """Valid lines re-encoded the way Python's json writes them (", " / ": ", \\u escapes)."""
    out = []
    for line in block.split(b"\n"):
        try:
            out.append(json.dumps(orjson.loads(line)).encode())
        except orjson.JSONDecodeError:
            out.append(line)
    return b"\n".join(out)


@pytest.mark.parametrize("encoding", ["as-written", "python-json"])
def test_generated_dumps(dump_paths, encoding):
    """Every line of generated dumps (every era, BigQuery shape, malformed lines): the contract holds,
    and the native parser takes at least 99% of the lines parse_line accepts, per file and field set."""
    assert len(dump_paths) == 12
    for path in dump_paths:
        kind, _ = dumps.parse_dump_name(path.name)
        for fields in FIELD_SETS[kind]:
            valid = taken = 0
            declined = []
            for block in dumps.DumpReader(str(path), block_size=64 << 10):
                data = block.data if encoding == "as-written" else _python_json(block.data)
                starts, ends = _bounds(data)
                rows = set(check_ranges(data, starts, ends, kind, fields))
                for i, (a, b) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
                    if not isinstance(reference(data[a:b], kind, fields), Quarantined):
                        valid += 1
                        taken += i in rows
                        if i not in rows and len(declined) < 3:
                            declined.append(data[a:b][:300])
            assert valid > 0
            assert taken >= 0.99 * valid, (
                f"{path.parent.name}/{path.name} ({len(fields)} fields): native took {taken} of {valid} "
                f"valid lines; declined e.g. {declined}"
            )
