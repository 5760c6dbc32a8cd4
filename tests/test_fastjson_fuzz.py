"""The C line parser fuzzed under AddressSanitizer + UndefinedBehaviorSanitizer (tests/fuzz/fuzz_fastjson.py),
and every case the fuzzing found (tests/fuzz/regressions) replayed on the normal build.

The campaign runs DIALOGSMITH_FUZZ_SECONDS (default 60, 0 skips it) of wall time, build included, with the
seed DIALOGSMITH_FUZZ_SEED (default 0): the same sequence of inputs every run. It skips when the compiler has no
sanitizer runtime, unless DIALOGSMITH_REQUIRE_NATIVE=1 (CI), where it fails. A longer run:
``.venv/bin/python tests/fuzz/fuzz_fastjson.py --seconds 600 --seed 7``.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

FUZZ_PATH = Path(__file__).resolve().parent / "fuzz" / "fuzz_fastjson.py"
_spec = importlib.util.spec_from_file_location("fuzz_fastjson", FUZZ_PATH)
fuzz = importlib.util.module_from_spec(_spec)
sys.modules["fuzz_fastjson"] = fuzz  # dataclasses look their module up
_spec.loader.exec_module(fuzz)

fuzz.oracle()  # tests/test_fastjson.py: skips (or fails under DIALOGSMITH_REQUIRE_NATIVE=1) without the C module

SECONDS = float(os.environ.get("DIALOGSMITH_FUZZ_SECONDS", "60"))
SEED = int(os.environ.get("DIALOGSMITH_FUZZ_SEED", "0"))


def _params():
    for name, case in fuzz.load_cases():
        bug = fuzz.KNOWN_BUGS.get(name.split("#")[0])
        marks = [pytest.mark.xfail(strict=True, reason=bug)] if bug else []
        yield pytest.param(case, id=name, marks=marks)


@pytest.mark.parametrize("case", list(_params()))
def test_regression_case(case):
    """A saved finding, on the normal build: the contract holds. Crash cases run in a child process."""
    where = f"{case.source}: {case.finding}\ninput: {fuzz.show(case.data)}"
    if case.finding.startswith("crash"):
        cmd = [sys.executable, str(FUZZ_PATH), "--worker", "--replay", case.source]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"rc {proc.returncode}\n{proc.stdout}{proc.stderr[-3000:]}\n{where}"
    else:
        problems = fuzz.disagreements(case)
        assert not problems, "\n".join(problems) + "\n" + where


def test_corpus_is_small():
    sizes = {p.name: p.stat().st_size for p in fuzz.CORPUS.glob("*.ndjson")}
    assert sum(sizes.values()) < 64 << 10, f"keep the regression corpus small (minimize the cases): {sizes}"


@pytest.mark.slow
@pytest.mark.skipif(SECONDS <= 0, reason="DIALOGSMITH_FUZZ_SECONDS=0")
def test_sanitized_fuzz_campaign():
    """No sanitizer report, crash, hang or disagreement with parse_line in SECONDS of fuzzing."""
    try:
        fuzz.prepare()
    except fuzz.SanitizerUnavailable as e:
        if os.environ.get("DIALOGSMITH_REQUIRE_NATIVE") == "1":
            pytest.fail(f"DIALOGSMITH_REQUIRE_NATIVE=1 but no sanitized build: {e}", pytrace=False)
        pytest.skip(f"no sanitized build of the C parser: {e}")
    cmd = [sys.executable, str(FUZZ_PATH), "--seconds", str(SECONDS), "--seed", str(SEED)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=SECONDS + 600)
    print(proc.stdout)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr[-3000:]}"
    assert "0 findings" in proc.stdout, proc.stdout
