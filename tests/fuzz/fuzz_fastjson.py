"""Fuzz campaign for the C line parser (``src/dialogsmith/_fastjson.c``) under ASan + UBSan.

    .venv/bin/python tests/fuzz/fuzz_fastjson.py --seconds 600 [--seed S] [--corpus DIR]

This script (the supervisor) compiles ``_fastjson.c`` with AddressSanitizer and UndefinedBehaviorSanitizer
into ``build/fuzz/<key>/`` (cached; the key hashes the source, the flags, the compiler and the Python), then
runs a worker (this file with ``--worker``) in a Python that has the sanitizer runtime preloaded. The worker
loads that build as ``dialogsmith._fastjson``, so ``dialogsmith.fastjson.parse_lines`` calls it, and feeds
it dump lines: synthetic dumps of every era (``dialogsmith.sample.synth``), the real thread of
``../shared/fixtures/real`` when present and the hand-written cases of tests/test_fastjson.py, mutated
byte by byte and field by field, one line at a time and in whole blocks split the way ``BlockParser``
splits them. Each call is checked with the oracle of tests/test_fastjson.py: every accepted line gives
exactly ``extract.parse.parse_line``'s values, and no line that parse_line quarantines is accepted (declining a
valid line is allowed). ``newlines`` and ``token_counts``, the module's other functions, are checked too.

A finding (a sanitizer report, a signal, a disagreement) is saved as a case in ``--corpus``
(tests/fuzz/regressions by default); tests/test_fastjson_fuzz.py replays every case on the normal build.
A case is one JSON object per line of a ``.ndjson`` file: ``kind``, ``fields`` ([name, type] pairs),
``ranges`` ([start, end] byte offsets of the lines given to parse_lines), ``finding`` (what went wrong),
and ``data``, the buffer's bytes as a latin-1 string.

Exit status: 0 nothing found, 1 findings (printed, with the input), 2 no sanitizer runtime or no build.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import platform
import random
import shlex
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
REPO = TESTS.parent
SOURCE = REPO / "src" / "dialogsmith" / "_fastjson.c"
BUILD = REPO / "build" / "fuzz"
CORPUS = HERE / "regressions"
REAL = REPO.parent / "shared" / "fixtures" / "real"

SANITIZE = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined"]
CFLAGS = [*SANITIZE, "-g", "-O1", "-std=c99", "-Wall", "-Wno-unused-function", "-shared", "-fPIC"]
RUNTIME = ("libasan.so", "libubsan.so")

# Bugs found and not fixed yet, by the stem of their case in the corpus: the normal-build replay marks the
# case xfail(strict=True); the campaign does not replay it (it would abort the run or fail it again), does not
# generate that shape of input, and does not count problems matching KNOWN_PROBLEMS. Delete the entry once
# the code is fixed.
KNOWN_BUGS: dict[str, str] = {}  # regression case name -> the bug, for cases found and not yet fixed
KNOWN_PROBLEMS: dict[str, str] = {}  # known bug -> the text of the problem it causes


def known(problem: str) -> bool:
    return any(bug in KNOWN_BUGS and text in problem for bug, text in KNOWN_PROBLEMS.items())


# How often the worker prints its counters; the supervisor keeps the last ones when a worker dies.
STATS_EVERY_S = 2.0
MAX_FINDINGS = 8  # per run: the first ones are enough to act on
MAX_RESTARTS = 4  # workers started again after a crash, each with the next seed
MINIMIZE_S = 5.0
FOUND = 3  # the worker's exit status when it saved findings (1 is a Python error, a signal is negative)


class SanitizerUnavailable(RuntimeError):
    """No compiler, no sanitizer runtime, or the sanitized build failed."""


# --- the sanitized build --------------------------------------------------------------------------------


def compiler() -> list[str]:
    return shlex.split(os.environ.get("CC") or "gcc")


def runtime_libraries(cc: list[str]) -> list[str]:
    """The sanitizer runtimes to preload (the interpreter is not built with them, the module is)."""
    libs = []
    for name in RUNTIME:
        try:
            out = subprocess.run(
                [*cc, f"-print-file-name={name}"], capture_output=True, text=True, check=True
            )
        except (OSError, subprocess.CalledProcessError) as e:
            raise SanitizerUnavailable(f"cannot ask {cc[0]} for {name}: {e}") from None
        path = out.stdout.strip()
        if not os.path.isabs(path) or not os.path.exists(path):  # gcc echoes the bare name when it has none
            raise SanitizerUnavailable(
                f"{cc[0]} has no {name} (Debian: apt-get install libasan8 libubsan1, or gcc's full install)"
            )
        libs.append(os.path.realpath(path))
    return libs


def build_key(cc: list[str]) -> str:
    try:
        version = subprocess.run([*cc, "--version"], capture_output=True, text=True).stdout
    except OSError as e:
        raise SanitizerUnavailable(f"no C compiler ({cc[0]}): {e}") from None
    h = hashlib.sha256(SOURCE.read_bytes())
    for part in (*cc, *CFLAGS, version, sys.version, sysconfig.get_config_var("EXT_SUFFIX") or ""):
        h.update(part.encode() + b"\0")
    return h.hexdigest()[:16]


def build_sanitized(build_dir: Path = BUILD) -> Path:
    """``_fastjson.c`` compiled with the sanitizers, as an extension importable as dialogsmith._fastjson."""
    cc = compiler()
    out = build_dir / build_key(cc) / ("_fastjson" + (sysconfig.get_config_var("EXT_SUFFIX") or ".so"))
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}")
    cmd = [*cc, *CFLAGS, f"-I{sysconfig.get_paths()['include']}", str(SOURCE), "-o", str(tmp)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise SanitizerUnavailable(f"sanitized build failed: {shlex.join(cmd)}\n{proc.stderr[-3000:]}")
    os.replace(tmp, out)  # atomic: concurrent runs share the cache
    return out


def prepare(build_dir: Path = BUILD) -> tuple[Path, list[str]]:
    """(the sanitized module, the runtimes to preload); raises SanitizerUnavailable."""
    if platform.system() != "Linux":
        raise SanitizerUnavailable("the sanitized campaign runs on Linux only (LD_PRELOAD)")
    preload = runtime_libraries(compiler())
    so = build_sanitized(build_dir)
    # the runtime must start in this Python (an old libasan can fail under a kernel's larger mmap
    # randomization, for one): that is the machine's, not a finding
    load = (
        "import importlib.util as u, sys\n"
        "spec = u.spec_from_file_location('dialogsmith._fastjson', sys.argv[1])\n"
        "spec.loader.exec_module(u.module_from_spec(spec))"
    )
    env = sanitized_env(preload)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", load, so], env=env, capture_output=True, text=True, timeout=120
        )
    except subprocess.TimeoutExpired:
        raise SanitizerUnavailable("a Python with the sanitizer runtime preloaded hangs at start") from None
    if proc.returncode != 0:
        raise SanitizerUnavailable(f"the sanitized module does not load here:\n{proc.stderr[-2000:]}")
    return so, preload


def sanitized_env(preload: list[str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        LD_PRELOAD=":".join(preload),
        # leaks off: CPython itself "leaks" at exit. abort_on_error: a report ends the worker with a signal.
        ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:allocator_may_return_null=1:handle_abort=1",
        UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:abort_on_error=1",
        PYTHONMALLOC="malloc",  # Python objects from malloc: ASan sees the bounds of each bytes object
        ARROW_DEFAULT_MEMORY_POOL="system",  # Arrow buffers from malloc too (token_counts reads them)
        DIALOGSMITH_NATIVE="1",
        PYTHONFAULTHANDLER="1",
        PYTHONHASHSEED="0",  # a seed gives the same inputs
    )
    env.pop("PYTHONSTARTUP", None)
    return env


# --- cases ---------------------------------------------------------------------------------------------


@dataclass
class Case:
    kind: str
    fields: list[tuple[str, str]]
    data: bytes
    starts: np.ndarray
    ends: np.ndarray
    finding: str = ""
    source: str = ""  # where it was read from: "path" or "path#k" (not saved)

    def lines(self) -> list[bytes]:
        return [self.data[a:b] for a, b in zip(self.starts.tolist(), self.ends.tolist(), strict=True)]

    def to_json(self) -> str:
        ranges = [[a, b] for a, b in zip(self.starts.tolist(), self.ends.tolist(), strict=True)]
        return json.dumps(
            {
                "kind": self.kind,
                "fields": [list(f) for f in self.fields],
                "ranges": ranges,
                "finding": self.finding,
                "data": self.data.decode("latin-1"),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Case:
        d = json.loads(text)
        ranges = np.array(d["ranges"], dtype=np.int64).reshape(-1, 2)
        return cls(
            d["kind"],
            [tuple(f) for f in d["fields"]],
            d["data"].encode("latin-1"),
            ranges[:, 0].copy(),
            ranges[:, 1].copy(),
            d.get("finding", ""),
        )

    def name(self) -> str:
        return hashlib.sha1(self.to_json().encode()).hexdigest()[:12]


def same_input(a: Case, b: Case) -> bool:
    return (a.kind, list(map(tuple, a.fields)), a.data) == (b.kind, list(map(tuple, b.fields)), b.data) and (
        np.array_equal(a.starts, b.starts) and np.array_equal(a.ends, b.ends)
    )


def single(kind: str, fields, line: bytes) -> Case:
    return Case(kind, list(fields), line, np.zeros(1, np.int64), np.array([len(line)], np.int64))


def load_cases(corpus: Path = CORPUS) -> list[tuple[str, Case]]:
    """(name, case) of every case in the corpus: the file's stem, with #k for its k-th line after the first."""
    out = []
    for path in sorted(Path(corpus).glob("*.ndjson")):
        rows = [r for r in path.read_text(encoding="ascii").splitlines() if r.strip()]
        for k, row in enumerate(rows):
            case = Case.from_json(row)
            case.source = f"{path}#{k}"
            out.append((path.stem if k == 0 else f"{path.stem}#{k}", case))
    return out


def save_case(case: Case, corpus: Path, prefix: str) -> Path:
    corpus.mkdir(parents=True, exist_ok=True)
    path = corpus / f"{prefix}-{case.name()}.ndjson"
    if not path.exists():
        path.write_text(case.to_json() + "\n", encoding="ascii")
    return path


def show(data: bytes, limit: int = 1500) -> str:
    text = repr(data)
    return text if len(text) <= limit else text[:limit] + f"... ({len(data)} bytes)"


# --- the oracle (tests/test_fastjson.py) ---------------------------------------------------------------


def oracle():
    """tests/test_fastjson.py: the contract's helpers (native, reference, typed) and its hand-written lines."""
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    import test_fastjson

    return test_fastjson


def exact(data: bytes) -> np.ndarray:
    """A heap buffer holding exactly ``data``: ASan flags a read one byte past the end."""
    return np.frombuffer(data, dtype=np.uint8).copy()


def disagreements(case: Case) -> list[str]:
    """What breaks the contract when parse_lines runs on ``case`` (empty: nothing)."""
    return check(case)[0]


def check(case: Case) -> tuple[list[str], list[int], int]:
    """(what breaks the contract when parse_lines runs on ``case``, the indices of the lines it accepted,
    how many lines parse_line takes). Also a crash of parse_line itself: it decides the declined lines."""
    from dialogsmith import fastjson

    orc = oracle()
    fastjson._SCRATCH.__dict__.pop("buffers", None)  # fresh, exactly sized string buffers: ASan sees overruns
    buf = exact(case.data)
    try:
        rows, values = orc.native(buf, case.starts, case.ends, case.kind, case.fields)
    except AssertionError as e:
        return [f"malformed output: {e}"], [], 0
    except Exception as e:  # any exception is a finding here
        return [f"parse_lines raised {type(e).__name__}: {e}"], [], 0
    problems = []
    wanted = {}
    for i, line in enumerate(case.lines()):
        try:
            wanted[i] = orc.reference(line, case.kind, case.fields)
        except Exception as e:  # parse_line must quarantine bad lines, never crash
            problems.append(f"line {i}: parse_line raised {type(e).__name__}: {str(e)[:200]}")
    for j, i in enumerate(rows):
        want = wanted.get(i)
        if want is None:
            continue
        if isinstance(want, orc.Quarantined):
            problems.append(
                f"line {i}: accepted, but parse_line quarantines it ({want.reason}: {want.detail})"
            )
            continue
        got = {name: values[name][j] for name, _ in case.fields}
        if orc.typed(got) != orc.typed(want):
            diff = {k: (got[k], want[k]) for k in got if orc.typed({k: got[k]}) != orc.typed({k: want[k]})}
            problems.append(f"line {i}: values differ (native, parse_line): {diff!r}")
    want_nl = np.flatnonzero(buf == 10)
    got_nl = fastjson.newlines(buf)
    if not np.array_equal(got_nl, want_nl):
        problems.append(f"newlines: {got_nl.tolist()[:20]} != {want_nl.tolist()[:20]}")
    for name, ftype in case.fields:
        if ftype == "str" and rows:
            problems += _token_count_problems(name, values[name])
    valid = sum(not isinstance(w, orc.Quarantined) for w in wanted.values())
    return problems, rows, valid


def _token_count_problems(name: str, strings: list) -> list[str]:
    import pyarrow as pa

    from dialogsmith import fastjson

    arr = pa.array(strings, pa.string())
    problems = []
    for skip in (False, True):
        got = fastjson.token_counts(arr, skip_backslash=skip).tolist()
        want = [len((s.replace("\\", "") if skip else s).split()) if s is not None else 0 for s in strings]
        if got != want:
            bad = [(s, g, w) for s, g, w in zip(strings, got, want, strict=True) if g != w][:3]
            problems.append(f"token_counts({name}, skip_backslash={skip}) differs: {bad!r}")
    return problems


# --- inputs ---------------------------------------------------------------------------------------------

DIGITS = b"0123456789"
INT_TOKENS = [
    b"0", b"-0", b"1", b"-1", b"2", b"7", b"1451606400", b"1672557213", b"999999999999999999",
    b"-999999999999999999", b"1000000000000000000", b"9223372036854775807", b"9223372036854775808",
    b"-9223372036854775808", b"-9223372036854775809", b"18446744073709551615", b"18446744073709551616",
    b"1" + b"0" * 199, b"1" + b"0" * 200, b"9" * 200, b"9" * 201, b"-" + b"9" * 200, b"00", b"01", b"-01",
]  # fmt: skip
FLOAT_TOKENS = [
    b"0.0", b"-0.0", b"1.5", b"-1.5", b"0.5", b"-0.5", b"0.9999999999999999", b"-0.9999999999999999",
    b"1e5", b"1E5", b"1e+2", b"1e-2", b"25e-1", b"1e0", b"1e00", b"1e001", b"1e99", b"-1e99", b"1e100",
    b"1e18", b"9.223372036854775e18", b"9.223372036854776e18", b"9223372036854775807.0",
    b"9223372036854775808.0", b"-9223372036854775808.0", b"-9223372036854777856.0", b"9223372036854774784.0",
    b"-9223372036854774784.0", b"1.7976931348623157e308", b"1e308", b"1e309", b"5e-324", b"1e-400",
    b"1672557213.0", b"1672557213.999999", b"4503599627370496.5", b"9007199254740993.0", b"9007199254740993",
    b"0." + b"0" * 300 + b"1", b"1." + b"9" * 40, b"9" * 199 + b"e99", b"9" * 200 + b".5e99", b"1e-99",
    b"123456789012345678901234567890.5e-10", b"0.1e1", b"1.9999999999999999999", b"-9.9e-1",
    b"9223372036854775295.9", b"9223372036854775296.0", b"-9223372036854775808.9",
]  # fmt: skip
BAD_NUMBERS = [
    b"-", b"1.", b".5", b"+1", b"1e", b"1e+", b"--1", b"1..2", b"0x1F", b"NaN", b"Infinity", b"-Infinity",
    b"1_0", b"\xd9\xa1", b"1e1.5", b"1.5.5", b"0e", b"-e1", b"1 2", b"1-", b"1ee5",
]  # fmt: skip
INT_STRING_TOKENS = [
    b'"0"', b'"1"', b'"-0"', b'"-1"', b'"2"', b'"007"', b'"00"', b'""', b'"-"', b'"+1"', b'" 1"', b'"1 "',
    b'"999999999999999999"', b'"-999999999999999999"', b'"1000000000000000000"', b'"9223372036854775807"',
    b'"9223372036854775808"', b'"1451606400"', b'"1.0"', b'"1e5"', b'"\\u0031"', b'"1\\u0030"', b'"\xd9\xa1"',
    b'"1_000"', b'"0x10"', b'"1.5e9"', b'"--5"', b'"\xef\xbc\x91"', b'"5\\u0000"',
]  # fmt: skip
WORD_STRING_TOKENS = [
    b'"null"', b'"NULL"', b'"Null"', b'"nUlL"', b'"none"', b'"None"', b'"NONE"', b'"true"', b'"TRUE"',
    b'"True"', b'"false"', b'"FALSE"', b'"fAlSe"', b'" true "', b'"nul"', b'"nulll"', b'"t"', b'"f"', b'"yes"',
    b'"\\u0074rue"', b'"n\\u0075ll"', b'"tru\\u0065"', b'"[deleted]"', b'"\xc4\xb0"', b'"nuLL\\u0000"',
]  # fmt: skip
STRING_TOKENS = [
    b'"\\ud800"', b'"\\udc00\\ud800"', b'"\\ud800\\udc00"', b'"\\ud83d\\ude00"', b'"\\uDBFF\\uDFFF"', b'"\\udfff"',
    b'"\\ud800\\u0041"', b'"\\ud800\\\\"', b'"\\ud800\\"', b'"\\ud800\\u"', b'"\\ud800\\udc0"', b'"a\\ud800"',
    b'"\\u0000"', b'"\\x41"', b'"\\u12"', b'"\\u12G4"', b'"\\a"', b'"\\0"', b'"\\U0041"', b'"\\"', b'"\\\\"',
    b'"\\/"', b'"abc', b'"\x00"', b'"\x01"', b'"\x1f"', b'"\x7f"', b'"\xc0\xaf"', b'"\xc0\x80"', b'"\xe0\x80\x80"',
    b'"\xf0\x80\x80\x80"', b'"\xed\xa0\x80"', b'"\xed\xb0\x80\xed\xa0\x80"', b'"\xf4\x90\x80\x80"', b'"\xf5"',
    b'"\xff"', b'"\x80"', b'"\xc3"', b'"\xe2\x82"', b'"\xf0\x9f\x98"', b'"\xf0\x9f\x98\x80"', b'"\xef\xbb\xbf"',
    b'"\xe2\x80\xa8\xe2\x80\xa9"', b'"' + b"x" * 15 + b'\\n"', b'"' + b"x" * 16 + b'\\n"', b'"' + b"y" * 31 + b'"',
    b'"' + b"\xc3\xa9" * 40 + b'"', b'"' + b"a\\u00e9" * 30 + b'"', b'"' + b"z" * 5000 + b'"',
]  # fmt: skip
LITERALS = [
    b"true", b"false", b"null", b"True", b"False", b"NULL", b"nul", b"tru", b"fals", b"nulll", b"truee",
    b"[]", b"{}", b"[1]", b'{"a":1}', b"[null]", b'["x"]', b"[", b"{", b"]", b"}", b"", b" ", b'{"a":}',
]  # fmt: skip
TYPE_TOKENS = {
    "int": INT_TOKENS + FLOAT_TOKENS + INT_STRING_TOKENS,
    "edited": INT_TOKENS + FLOAT_TOKENS + INT_STRING_TOKENS + WORD_STRING_TOKENS,
    "bool": [b"0", b"1", b"2", b"-0", b"-1", b"0.0", b"1.0", b"1e0"] + WORD_STRING_TOKENS + INT_STRING_TOKENS,
    "str": STRING_TOKENS + WORD_STRING_TOKENS,
}
ALL_TOKENS = INT_TOKENS + FLOAT_TOKENS + BAD_NUMBERS + INT_STRING_TOKENS + WORD_STRING_TOKENS + STRING_TOKENS
ALL_TOKENS += LITERALS
# 2-4 byte sequences: valid, overlong, surrogates, beyond U+10FFFF, truncated, stray continuation bytes
UTF8_SEQS = [
    b"\xc2\x80", b"\xdf\xbf", b"\xe0\xa0\x80", b"\xed\x9f\xbf", b"\xee\x80\x80", b"\xef\xbf\xbf",
    b"\xf0\x90\x80\x80", b"\xf4\x8f\xbf\xbf", b"\xc0\xaf", b"\xc1\xbf", b"\xe0\x9f\xbf", b"\xf0\x8f\xbf\xbf",
    b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xf4\x90\x80\x80", b"\xf8\x88\x80\x80\x80", b"\xc3", b"\xe2\x82",
    b"\xf0\x9f\x98", b"\x80", b"\xbf", b"\xfe", b"\xff", b"\xc2\xa0", b"\xe2\x80\x83", b"\xe3\x80\x80",
    b"\xc2\x85", b"\xe1\x9a\x80", b"\xe2\x81\x9f", b"\x1c", b"\x1f", b"\x0b", b"\x0c",
]  # fmt: skip
SPLICE = b'"\\{}[],: \t\r\n0123456789-+.eEnultrfasu'
WS = [
    b"",
    b"",
    b"",
    b" ",
    b"\t",
    b"\r",
    b"\n",
    b"\r\n",
    b"  ",
]  # JSON's 4 whitespace bytes; \n splits a block line


class Inputs:
    """Random dump lines and blocks, from seeds, the hand-written cases and interesting tokens."""

    def __init__(self, seed: int, seed_lines: dict[str, list[bytes]], hand: list[tuple[str, bytes]]):
        import orjson

        from dialogsmith.extract.parse import FIELDS, KINDS, REQUIRED

        self.rnd = random.Random(seed)
        self.fields, self.kinds, self.required = FIELDS, KINDS, REQUIRED
        self.seed_lines = seed_lines
        self.hand = hand
        self.records: dict[str, list[dict]] = {k: [] for k in KINDS}
        for kind, lines in seed_lines.items():
            for line in lines:
                try:
                    obj = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                if type(obj) is dict:
                    self.records[kind].append(obj)
        self.pool: list[tuple[str, bytes]] = []  # mutated lines the C parser accepted: near its edge
        self.orjson = orjson

    # pieces ----------------------------------------------------------------------------------------
    def ws(self) -> bytes:
        return self.rnd.choice(WS)

    def number(self) -> bytes:
        rnd = self.rnd
        out = b"-" if rnd.random() < 0.3 else b""
        n = rnd.choice([1, 1, 2, 5, 17, 18, 19, 20, rnd.randrange(1, 230)])
        out += bytes([rnd.choice(DIGITS[1:])]) + bytes(rnd.choice(DIGITS) for _ in range(n - 1))
        if rnd.random() < 0.4:
            out += b"." + bytes(rnd.choice(DIGITS) for _ in range(rnd.choice([1, 3, 17, 40, 300])))
        if rnd.random() < 0.3:
            out += rnd.choice([b"e", b"E"]) + rnd.choice([b"", b"+", b"-"])
            out += bytes(rnd.choice(DIGITS) for _ in range(rnd.choice([1, 2, 2, 3, 4])))
        return out

    def string(self) -> bytes:
        """A JSON string token, mostly valid: escapes, surrogates, UTF-8, lengths around the 16-byte steps."""
        rnd = self.rnd
        parts = []
        for _ in range(rnd.choice([0, 1, 3, 8, 15, 16, 17, 30, 70])):
            r = rnd.random()
            if r < 0.55:
                parts.append(bytes([rnd.randrange(0x20, 0x7F)]).replace(b'"', b"'").replace(b"\\", b"/"))
            elif r < 0.65:
                parts.append(rnd.choice([b'\\"', b"\\\\", b"\\/", b"\\b", b"\\f", b"\\n", b"\\r", b"\\t"]))
            elif r < 0.75:
                cp = rnd.choice([rnd.randrange(0x10000), rnd.randrange(0xD800, 0xE000), rnd.randrange(0x80)])
                parts.append(b"\\u%04x" % cp if rnd.random() < 0.5 else b"\\u%04X" % cp)
            elif r < 0.82:
                cp = rnd.randrange(0x10000, 0x110000) - 0x10000
                parts.append(b"\\u%04x\\u%04x" % (0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF)))
            elif r < 0.92:
                cp = rnd.choice(
                    [rnd.randrange(0x80, 0x800), rnd.randrange(0xE000, 0x10000), 0x10FFFF, 0x2028]
                )
                parts.append(chr(cp).encode("utf-8", "surrogatepass"))
            elif r < 0.97:
                parts.append(rnd.choice(UTF8_SEQS))
            else:
                parts.append(bytes([rnd.randrange(0x20)]))
        return b'"' + b"".join(parts) + b'"'

    def deep(self) -> bytes:
        rnd = self.rnd
        d = rnd.choice([2, 100, 510, 511, 512, 513, 1022, 1023, 1024, 1025, rnd.randrange(1, 1200)])
        if rnd.random() < 0.5:
            inner = rnd.choice([b"", b"1", b'"x"', b"null"])
            return b"[" * d + inner + b"]" * (d - rnd.choice([0, 0, 0, 1]))
        return b'{"a":' * d + rnd.choice([b"1", b"[]", b"{}"]) + b"}" * (d + rnd.choice([0, 0, 0, -1, 1]))

    def token(self, ftype: str | None = None) -> bytes:
        rnd = self.rnd
        r = rnd.random()
        if r < 0.5:
            return rnd.choice(TYPE_TOKENS[ftype] if ftype and rnd.random() < 0.7 else ALL_TOKENS)
        if r < 0.7:
            return self.number()
        if r < 0.9:
            return self.string()
        if r < 0.95:
            return self.deep()
        return b"[" + b",".join(self.token() for _ in range(rnd.randrange(4))) + b"]"

    def key(self, name: str, tricky: bool) -> bytes:
        """A key token for ``name``: plain, or (tricky) escaped to the same name, or a near miss."""
        rnd = self.rnd
        raw = name.encode()
        if not tricky or not raw:
            return b'"' + raw + b'"'
        if rnd.random() < 0.5:
            i = rnd.randrange(len(raw))
            esc = b"\\/" if raw[i : i + 1] == b"/" else b"\\u%04x" % raw[i]
            return b'"' + raw[:i] + esc + raw[i + 1 :] + b'"'
        near = [
            raw.upper(),
            raw + b" ",
            b" " + raw,
            raw[:-1],
            raw + b"\x00",
            raw + b"\\u0000",
            raw + b"\xc2\xa0",
        ]
        return b'"' + rnd.choice(near) + b'"'

    # lines --------------------------------------------------------------------------------------------
    def structured(self, kind: str) -> bytes:
        """A seed record of ``kind`` (or of the other kind) with members replaced, dropped, repeated, added."""
        rnd = self.rnd
        source = kind if rnd.random() < 0.85 or not self.records[self.other(kind)] else self.other(kind)
        rec = rnd.choice(self.records[source]) if self.records[source] else {}
        members = [(k, self.orjson.dumps(v)) for k, v in rec.items()]
        types = dict(self.fields[kind])
        for _ in range(rnd.choice([1, 1, 1, 2, 3])):
            op = rnd.random()
            name = rnd.choice(list(types))
            if op < 0.45:
                at = next((i for i, (k, _) in enumerate(members) if k == name), len(members))
                members = [(k, v) for k, v in members if k != name]
                members.insert(at, (name, self.token(types[name])))
            elif op < 0.55:
                members = [(k, v) for k, v in members if k != name]
            elif op < 0.65:  # the same key twice: orjson keeps the last
                at = rnd.randrange(len(members) + 1)
                members.insert(at, (name, rnd.choice([self.token(types[name]), b"null", b'"x"', b"1"])))
            elif op < 0.85:
                extra = rnd.choice(
                    ["x", "_meta", "ups", "all_awardings", "", "a" * 70, "\u00e9", name.upper()]
                )
                members.insert(rnd.randrange(len(members) + 1), (extra, self.token()))
            else:
                members = [(rnd.choice(list(types)), v) if rnd.random() < 0.1 else (k, v) for k, v in members]
        trick = rnd.randrange(len(members)) if members and rnd.random() < 0.15 else -1
        keys = [self.key(k, i == trick) for i, (k, _) in enumerate(members)]
        values = [v for _, v in members]
        style = rnd.random()  # compact as the dumps are, spaced as Python's json writes, or anything
        if style < 0.6:
            return b"{" + b",".join(k + b":" + v for k, v in zip(keys, values, strict=True)) + b"}"
        if style < 0.85:
            return b"{" + b", ".join(k + b": " + v for k, v in zip(keys, values, strict=True)) + b"}"
        ws = self.ws
        body = b",".join(ws() + k + ws() + b":" + ws() + v + ws() for k, v in zip(keys, values, strict=True))
        return ws() + b"{" + body + b"}" + ws()

    def mutate(self, line: bytes, times: int | None = None) -> bytes:
        rnd = self.rnd
        for _ in range(times if times is not None else rnd.choice([1, 1, 2, 3, 6])):
            pos = rnd.randrange(len(line) + 1)
            op = rnd.randrange(11)
            if op == 0:
                line = line[:pos]
            elif op == 1 and line:
                pos = min(pos, len(line) - 1)
                line = line[:pos] + bytes([line[pos] ^ (1 << rnd.randrange(8))]) + line[pos + 1 :]
            elif op == 2:
                line = line[:pos] + bytes([rnd.randrange(256)]) + line[pos:]
            elif op == 3:
                line = line[:pos] + bytes([rnd.choice(SPLICE)]) + line[pos + 1 :]
            elif op == 4:
                line = line[:pos] + line[pos + rnd.choice([1, 1, 2, 4, 16]) :]
            elif op == 5:
                end = min(len(line), pos + rnd.randrange(1, 40))
                line = line[:pos] + line[pos:end] * rnd.choice([2, 3]) + line[end:]
            elif op == 6:
                line = line[:pos] + self.token() + line[pos:]
            elif op == 7:
                line = line[:pos] + rnd.choice(UTF8_SEQS) + line[pos:]
            elif op == 8:
                other = self.seed_line()[1]
                line = line[:pos] + other[rnd.randrange(len(other) + 1) :]
            elif op == 9:  # every byte value somewhere
                line = (
                    line[:pos] + bytes([rnd.randrange(256) for _ in range(rnd.randrange(1, 4))]) + line[pos:]
                )
            else:
                line = line + rnd.choice([b"\x00", b"}", b" ", b"\r", b",", b"x", b"\n"])
        return line

    def other(self, kind: str) -> str:
        return self.kinds[1] if kind == self.kinds[0] else self.kinds[0]

    def seed_line(self, kind: str | None = None) -> tuple[str, bytes]:
        """A line to start from: of ``kind`` mostly (a seed, a line the parser took, a hand-written case)."""
        rnd = self.rnd
        if kind is None or rnd.random() < 0.1:
            kind = rnd.choice(self.kinds)
        if self.pool and rnd.random() < 0.2:
            return rnd.choice(self.pool)
        if self.hand and rnd.random() < 0.15:
            return rnd.choice(self.hand)
        return kind, rnd.choice(self.seed_lines[kind]) if self.seed_lines[kind] else b"{}"

    def line(self, kind: str) -> bytes:
        rnd = self.rnd
        r = rnd.random()
        if r < 0.25:
            line = self.seed_line(kind)[1]
            return self.mutate(line, rnd.choice([1, 1, 1, 2, 4])) if rnd.random() < 0.6 else line
        if r < 0.75:
            line = self.structured(kind)
            return self.mutate(line, 1) if rnd.random() < 0.15 else line
        if r < 0.85:
            orc = oracle()
            rec = rnd.choice(self.records[kind]) if self.records[kind] else {}
            return orc._mutate(orc._serialize(rec, rnd), rnd)  # the property test's serializer and mutator
        if r < 0.93:
            a, b = self.seed_line(kind)[1], self.seed_line(kind)[1]
            return a[: rnd.randrange(len(a) + 1)] + b[rnd.randrange(len(b) + 1) :]
        if r < 0.97:
            return bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 64)))
        return (
            b'{"id":"a","link_id":"t3_b","parent_id":"t1_c","body":"d","title":"t","x":' + self.deep() + b"}"
        )

    def field_set(self, kind: str) -> list[tuple[str, str]]:
        rnd = self.rnd
        fields = self.fields[kind]
        required = self.required[kind]
        r = rnd.random()
        if r < 0.4:
            return list(fields)
        if r < 0.6:
            return list(rnd.choice(oracle().FIELD_SETS[kind]))
        if r < 0.9:  # a projection, in any order
            keep = [f for f in fields if f[0] in required or rnd.random() < 0.4]
            rnd.shuffle(keep)
            return keep
        # names of either kind and unknown ones, with any type; required fields are strings (the schema's)
        names = {n for k in self.kinds for n, _ in self.fields[k]} | {"x", "ups", "_meta", "a" * 63}
        if "non-ascii-field-name" not in KNOWN_BUGS:
            names |= {"\u00e9", "\u00e9t\u00e9", "\u4e16"}
        picked = [n for n in sorted(names) if n not in required and rnd.random() < 0.3]
        spec = [(n, "str") for n in required] + [
            (n, rnd.choice(["str", "int", "bool", "edited"])) for n in picked
        ]
        rnd.shuffle(spec)
        return spec

    def case(self, overlapping: bool = False) -> Case:
        from dialogsmith.extract.parse import line_bounds

        rnd = self.rnd
        kind = rnd.choice(self.kinds)
        fields = self.field_set(kind)
        r = rnd.random()
        if r < 0.5:
            return single(kind, fields, self.line(kind))
        lines = [self.line(kind) for _ in range(rnd.choice([2, 5, 20, 60]))]
        # a newline inside a line (JSON whitespace, or a mutation) cuts it in a block: mostly keep lines whole
        lines = [x.replace(b"\n", b" ") if rnd.random() < 0.9 else x for x in lines]
        if r < 0.85:  # a block the way BlockParser cuts it: at every newline (a line holding one is split)
            data = b"\n".join(lines) + rnd.choice([b"\n", b""])
            starts, ends = line_bounds(data)
            return Case(kind, fields, data, starts, ends)
        if r < 0.97 or not overlapping:  # ranges with junk between them, or adjacent, in any order
            gap, lead = rnd.choice([(b"", b""), (b"\n\xff\x00", b'{"id":"x",'), (b'"}\\', b"\x00")])
            data, starts, ends = oracle().pack(lines, gap, lead)
            if rnd.random() < 0.3:
                order = np.array(rnd.sample(range(len(starts)), len(starts)), dtype=np.int64)
                starts, ends = starts[order], ends[order]
            return Case(kind, fields, data, starts, ends)
        # ranges sharing bytes: a few lines given again and again, or prefixes of one line
        data, starts, ends = oracle().pack(lines[: rnd.randint(1, 3)])
        n, k = len(lines), len(starts)
        if rnd.random() < 0.5:
            pick = np.array(sorted(rnd.randrange(k) for _ in range(n)), dtype=np.int64)
            return Case(kind, fields, data, starts[pick], ends[pick])
        data = lines[0]
        ends = np.array(sorted(rnd.randrange(len(data) + 1) for _ in range(n)) + [len(data)] * 2, np.int64)
        return Case(kind, fields, data, np.zeros(len(ends), np.int64), ends)


def seed_lines() -> dict[str, list[bytes]]:
    """Lines of small synthetic dumps of every era (malformed lines included) and the real thread."""
    from dialogsmith.extract.dumps import COMMENTS, SUBMISSIONS, parse_dump_name
    from dialogsmith.sample.synth import SynthConfig, generate

    out: dict[str, list[bytes]] = {COMMENTS: [], SUBMISSIONS: []}
    with tempfile.TemporaryDirectory(prefix="fuzz-seeds-") as tmp:
        months = ["2008-03", "2015-02", "2016-11", "2017-10", "2023-01"]
        generate(
            Path(tmp, "eras"), SynthConfig(months=months, comments_per_month=150, seed=3, compression="none")
        )
        bq = SynthConfig(
            months=["2016-05"], comments_per_month=150, seed=4, compression="none", bigquery_shape=True
        )
        generate(Path(tmp, "bq"), bq)
        for path in sorted(Path(tmp).glob("*/R[CS]_*")):
            kind, _ = parse_dump_name(path.name)
            out[kind] += [line for line in path.read_bytes().split(b"\n") if line]
    if REAL.is_dir():
        for path in sorted(REAL.glob("*.ndjson")):
            for line in path.read_bytes().split(b"\n"):
                if line:
                    out[
                        SUBMISSIONS if b'"title"' in line and b'"parent_id"' not in line else COMMENTS
                    ].append(line)
    return out


# --- the worker (in the sanitized Python) ----------------------------------------------------------------


def load_sanitized(so: Path) -> None:
    """Make ``so`` the dialogsmith._fastjson that dialogsmith.fastjson uses (before anything imports it)."""
    if "dialogsmith.fastjson" in sys.modules:
        raise RuntimeError("dialogsmith.fastjson was imported before the sanitized module was loaded")
    spec = importlib.util.spec_from_file_location("dialogsmith._fastjson", so)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    import dialogsmith

    sys.modules["dialogsmith._fastjson"] = module
    dialogsmith._fastjson = module
    from dialogsmith import fastjson

    if fastjson._fastjson is not module or not fastjson.AVAILABLE:
        raise RuntimeError(f"dialogsmith.fastjson does not use {so}")
    with open("/proc/self/maps") as maps:
        if "libasan" not in maps.read():
            raise RuntimeError("the ASan runtime is not loaded (LD_PRELOAD)")


class Current:
    """The input about to run, written before each call: what a crash leaves behind for the supervisor."""

    def __init__(self, path: Path):
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)

    def write(self, case: Case) -> None:
        text = case.to_json().encode()
        os.pwrite(self.fd, text, 0)
        os.ftruncate(self.fd, len(text))


def minimize(case: Case, fails, budget_s: float = MINIMIZE_S) -> Case:
    """A smaller case that still ``fails``: a failing line alone, then chunks of its bytes removed."""
    deadline = time.monotonic() + budget_s
    if len(case.starts) > 1:
        for line in case.lines():
            alone = single(case.kind, case.fields, line)
            if fails(alone):
                case = alone
                break
    if len(case.starts) != 1:
        return case
    line = case.data[case.starts[0] : case.ends[0]]
    chunk = max(1, len(line) // 2)
    while chunk >= 1 and time.monotonic() < deadline:
        i, changed = 0, False
        while i < len(line) and time.monotonic() < deadline:
            shorter = line[:i] + line[i + chunk :]
            if fails(single(case.kind, case.fields, shorter)):
                line, changed = shorter, True
            else:
                i += chunk
        if not changed:
            chunk //= 2
    return single(case.kind, case.fields, line)


def read_case(ref: str) -> Case:
    """``path`` or ``path#k`` (the k-th case of the file)."""
    path, _, k = ref.partition("#")
    rows = [r for r in Path(path).read_text(encoding="ascii").splitlines() if r.strip()]
    return Case.from_json(rows[int(k or 0)])


def worker(args) -> int:
    """Runs in the sanitized Python (or, with --replay and no --so, in a plain one on the normal build)."""
    if args.so:
        load_sanitized(Path(args.so))
    orc = oracle()
    current = Current(Path(args.current)) if args.current else None
    stats = {"execs": 0, "lines": 0, "valid": 0, "accepted": 0, "known": 0, "findings": 0, "replayed": 0}
    stats["seconds"] = 0.0
    started = time.monotonic()

    def report() -> None:
        stats["seconds"] = round(time.monotonic() - started, 1)
        print("STATS " + json.dumps(stats), flush=True)

    def run(case: Case, drop_known: bool = True) -> tuple[list[str], list[int]]:
        if current is not None:
            current.write(case)
        stats["execs"] += 1
        stats["lines"] += len(case.starts)
        problems, rows, valid = check(case)
        stats["accepted"] += len(rows)
        stats["valid"] += valid
        stats["known"] += sum(map(known, problems))
        return [p for p in problems if not (drop_known and known(p))], rows

    if args.replay:  # one case, or each of its lines alone (crash reduction): stops at the first problem
        case = read_case(args.replay)
        tries = [single(case.kind, case.fields, line) for line in case.lines()] if args.each_line else [case]
        for c in tries:
            problems, _ = run(c, drop_known=False)
            if problems:
                print("\n".join(problems))
                return 1
        return 0

    corpus = Path(args.corpus)
    if args.seed == args.first_seed:  # the corpus first, once per campaign
        for name, case in load_cases(corpus):
            if name.split("#")[0] in KNOWN_BUGS:
                continue
            stats["replayed"] += 1
            problems, _ = run(case)
            if problems:
                stats["findings"] += 1
                print(f"FINDING {name}: still fails: {'; '.join(problems)[:500]}", flush=True)

    hand = [(p.values[0], p.values[1]) for p in orc.CASES] + list(orc.ORDINARY.values())
    inputs = Inputs(args.seed, seed_lines(), hand)
    overlapping = args.overlapping or "overlapping-ranges" not in KNOWN_BUGS
    last = time.monotonic()
    while time.time() < args.until and stats["findings"] < MAX_FINDINGS:
        case = inputs.case(overlapping)
        problems, rows = run(case)
        if problems:
            small = minimize(case, lambda c: bool(run(c)[0]))
            small.finding = "disagreement: " + "; ".join(run(small)[0] or problems)[:2000]
            stats["findings"] += 1
            print(f"FINDING {save_case(small, corpus, 'disagreement')}", flush=True)
        elif rows and len(case.starts) == 1 and len(inputs.pool) < 5000:
            inputs.pool.append((case.kind, case.data))  # accepted: a line near the parser's edges
        if time.monotonic() - last > STATS_EVERY_S:
            report()
            last = time.monotonic()
    report()
    return FOUND if stats["findings"] else 0


# --- the supervisor ------------------------------------------------------------------------------------


def sanitizer_report(stderr: str, frames: int = 10) -> str:
    """The sanitizer's (or Python's fatal error) report in ``stderr``: its first frames, up to its summary."""
    lines = stderr.splitlines()
    start = next(
        (
            i
            for i, x in enumerate(lines)
            if "ERROR: AddressSanitizer" in x or "runtime error:" in x or "Fatal Python" in x
        ),
        max(0, len(lines) - 40),
    )
    out = []
    for line in lines[start:]:
        if line.startswith("Shadow bytes around"):
            break
        frame = line.strip().split(" ", 1)[0]
        if frame.startswith("#") and frame[1:].isdigit() and int(frame[1:]) >= frames:
            continue
        out.append(line)
    return "\n".join(out)


def _first_error_line(report: str) -> str:
    for line in report.splitlines():
        if "ERROR:" in line or "runtime error:" in line or "Fatal Python error" in line:
            return line.strip()[:300]
    return report.strip().splitlines()[-1][:300] if report.strip() else "signal"


class Supervisor:
    """Runs the workers in the sanitized Python and keeps what a dead one was running."""

    def __init__(self, so: Path, preload: list[str], corpus: Path, state: Path):
        self.env = sanitized_env(preload)
        self.state = state
        self.current = state / "current.json"
        self.base = [sys.executable, str(Path(__file__).resolve()), "--worker", "--so", str(so)]
        self.base += ["--current", str(self.current), "--corpus", str(corpus)]

    def run(self, extra: list[str], timeout: float) -> subprocess.CompletedProcess:
        cmd = [*self.base, *extra]
        try:
            return subprocess.run(
                cmd, env=self.env, capture_output=True, text=True, timeout=timeout, cwd=REPO
            )
        except subprocess.TimeoutExpired as e:  # a C loop that never ends, most likely
            out = e.stdout.decode() if isinstance(e.stdout, bytes) else e.stdout or ""
            err = e.stderr.decode() if isinstance(e.stderr, bytes) else e.stderr or ""
            return subprocess.CompletedProcess(cmd, -9, out, err + f"\nhang: no answer after {timeout:.0f} s")

    def last_input(self) -> Case | None:
        if self.current.exists() and self.current.stat().st_size:
            return Case.from_json(self.current.read_text())
        return None

    def reduce(self, case: Case) -> Case:
        """The crashing line alone when one crashes by itself (one more sanitized process), else the case."""
        if len(case.starts) <= 1:
            return case
        path = self.state / "crash.ndjson"
        path.write_text(case.to_json() + "\n")
        proc = self.run(["--replay", str(path), "--each-line"], timeout=300)
        small = self.last_input()
        if proc.returncode not in (0, 1) and small is not None:
            small.finding = case.finding
            return small
        return case


def campaign(seconds: float, seed: int, corpus: Path, build_dir: Path, overlapping: bool) -> int:
    t0 = time.time()
    deadline = t0 + seconds
    try:
        so, preload = prepare(build_dir)
    except SanitizerUnavailable as e:
        print(f"SANITIZER UNAVAILABLE: {e}")
        return 2
    print(f"sanitized module: {so} (ready in {time.time() - t0:.1f} s); preloaded: {':'.join(preload)}")
    state = Path(tempfile.mkdtemp(prefix="state-", dir=build_dir))
    sup = Supervisor(so, preload, corpus, state)
    totals = {"execs": 0, "lines": 0, "valid": 0, "accepted": 0, "known": 0, "seconds": 0.0, "replayed": 0}
    findings: list[str] = []
    for k in range(MAX_RESTARTS + 1):
        if time.time() > deadline - 3:
            break
        extra = ["--seed", str(seed + k), "--first-seed", str(seed), "--until", str(deadline)]
        proc = sup.run(
            extra + (["--overlapping"] if overlapping else []), timeout=deadline - time.time() + 60
        )
        last = {}
        for line in proc.stdout.splitlines():
            if line.startswith("STATS "):
                last = json.loads(line[6:])
            elif line.startswith("FINDING "):
                findings.append(_describe(line[8:]))
        for key in totals:
            totals[key] += last.get(key, 0)
        if proc.returncode in (0, FOUND):
            break
        if proc.returncode == 1:  # a Python error in the worker: a bug of this script, or of the oracle
            findings.append(f"worker failed:\n{proc.stderr[-3000:]}")
            break
        # a sanitizer report, a signal or a hang: the input is the one the worker wrote last
        report = sanitizer_report(proc.stderr)
        crash = sup.last_input()
        if crash is None:
            findings.append(f"worker died (rc {proc.returncode}) before any input:\n{report}")
            break
        saved = [name for name, case in load_cases(corpus) if same_input(case, crash)]
        if saved:  # a case of the corpus (replayed first) crashes again
            findings.append(f"{saved[0]} crashes again:\n{report}")
            continue
        crash.finding = f"crash (rc {proc.returncode}): " + _first_error_line(report)
        crash = sup.reduce(crash)
        path = save_case(crash, corpus, "crash")
        findings.append(f"{_describe(str(path))}\n{report}")
    for p in state.iterdir():
        p.unlink()
    state.rmdir()
    rate = totals["execs"] / totals["seconds"] if totals["seconds"] else 0.0
    print(
        f"fuzz_fastjson: seed {seed}, {time.time() - t0:.0f} s wall, {totals['execs']} calls of parse_lines "
        f"({rate:.0f}/s), {totals['lines']} lines ({totals['valid']} valid for parse_line, "
        f"{totals['accepted']} accepted by the C parser), "
        f"{totals['replayed']} corpus cases replayed, {len(findings)} findings "
        f"(and {totals['known']} problems of known bugs: {', '.join(KNOWN_BUGS) or 'none'})"
    )
    for f in findings:
        print("\nFINDING " + f)
    return 1 if findings else 0


def _describe(finding: str) -> str:
    """A saved case: its path, what went wrong and its input; anything else as it is."""
    path = Path(finding.strip())
    if path.suffix == ".ndjson" and path.is_file():
        case = read_case(str(path))
        return f"{path}\n  {case.finding}\n  {case.kind}, {len(case.starts)} lines: {show(case.data)}"
    return finding


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--seconds", type=float, default=60.0, help="wall time of the whole campaign, build included"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--corpus", type=Path, default=CORPUS, help="where findings are saved (and replayed from)"
    )
    ap.add_argument("--build-dir", type=Path, default=BUILD)
    ap.add_argument(
        "--overlapping", action="store_true", help="also give parse_lines overlapping line ranges"
    )
    # the worker's own arguments
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--so", help=argparse.SUPPRESS)
    ap.add_argument("--current", help=argparse.SUPPRESS)
    ap.add_argument("--until", type=float, default=0.0, help=argparse.SUPPRESS)
    ap.add_argument("--first-seed", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--replay", help=argparse.SUPPRESS)
    ap.add_argument("--each-line", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args)
    args.build_dir.mkdir(parents=True, exist_ok=True)
    return campaign(
        args.seconds, args.seed, args.corpus.resolve(), args.build_dir.resolve(), args.overlapping
    )


if __name__ == "__main__":
    sys.exit(main())
