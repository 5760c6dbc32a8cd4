"""The one command line: ``dialogsmith <stage>`` (console script and ``python -m dialogsmith``), the make
targets that call it, and the progress line a stage prints."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dialogsmith.cli import COMMANDS

REPO = Path(__file__).resolve().parents[1]
CONSOLE_SCRIPT = Path(sys.executable).parent / "dialogsmith"
STAGES = ["sample", "extract", "instances", "filter", "dialogpt-tsv", "tokenize", "train", "chat", "eval", "metrics",
          "demo", "pipeline"]  # fmt: skip


def _run(args: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=REPO, **kw)


def test_every_stage_is_a_subcommand():
    assert set(STAGES) <= set(COMMANDS)


@pytest.mark.parametrize("entry", ["console-script", "python -m"])
def test_help_lists_every_stage(entry):
    cmd = [str(CONSOLE_SCRIPT)] if entry == "console-script" else [sys.executable, "-m", "dialogsmith"]
    if entry == "console-script" and not CONSOLE_SCRIPT.exists():
        pytest.skip("the package is not installed with its console script (make setup installs it)")
    r = _run([*cmd, "--help"])
    assert r.returncode == 0, r.stderr
    listed = re.findall(r"^  (\S+)\s", r.stdout, re.M)
    assert set(STAGES) <= set(listed)


def test_every_subcommand_has_help():
    """`dialogsmith <stage> --help` for every command, in one interpreter (importing torch/Spark per
    subprocess would take minutes): exit 0 and a usage line naming the subcommand."""
    code = (
        "import contextlib, io, sys\n"
        "from dialogsmith.cli import COMMANDS, main\n"
        "bad = []\n"
        "for name in COMMANDS:\n"
        "    out = io.StringIO()\n"
        "    try:\n"
        "        with contextlib.redirect_stdout(out):\n"
        "            rc = main([name, '--help'])\n"
        "    except SystemExit as e:\n"
        "        rc = e.code\n"
        "    text = out.getvalue()\n"
        "    if rc not in (0, None) or 'usage:' not in text or f'dialogsmith {name}' not in text:\n"
        "        bad.append((name, rc, text[:200]))\n"
        "print(bad)\n"
    )
    r = _run([sys.executable, "-c", code])
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]", r.stdout


def test_an_unknown_subcommand_is_an_error():
    r = _run([sys.executable, "-m", "dialogsmith", "extrakt"])
    assert r.returncode == 2 and "unknown command 'extrakt'" in r.stderr


@pytest.mark.parametrize(
    "target, variables",
    [
        ("sample", ["DUMPS=d"]),
        ("extract", ["DUMPS=d", "OUT=o"]),
        ("instances", ["IN=i", "OUT=o"]),
        ("filter", ["IN=i", "OUT=o"]),
        ("dialogpt-tsv", ["DUMPS=d", "OUT=o"]),
        ("tokenize", ["IN=i", "OUT=o"]),
        ("pipeline", ["DUMPS=d", "OUT=o"]),
        ("train", ["DATA_DIR=d", "OUT=o"]),
        ("chat", ["MODEL=m"]),
        ("eval", ["MODEL=m"]),
        ("metrics", ["HYP=h", "REFS=r"]),
        ("demo", []),
    ],
)
def test_make_targets_call_the_cli(target, variables):
    r = _run(["make", "-n", target, *variables, f"VENV={Path(sys.executable).parent.parent}"])
    assert r.returncode == 0, r.stderr
    calls = [line for line in r.stdout.splitlines() if re.search(r"/dialogsmith \S", line)]
    assert any(re.search(rf"/bin/dialogsmith {re.escape(target)}( |$)", line) for line in calls), r.stdout


def test_a_stage_prints_one_progress_summary_line_in_logs(spark, tmp_path, capfd, monkeypatch):
    """Not a terminal (a log, CI): one summary line per stage on stderr, after the stage's Spark jobs."""
    from dialogsmith.extract import job as extract
    from dialogsmith.sample import job as sample

    monkeypatch.delenv("DIALOGSMITH_PROGRESS", raising=False)
    assert sample.main(["--output", str(tmp_path / "dumps"), "--comments", "300", "--seed", "3"]) == 0
    capfd.readouterr()
    assert extract.main(["--input", str(tmp_path / "dumps"), "--output", str(tmp_path / "x")]) == 0
    err = capfd.readouterr().err
    lines = [
        line
        for line in err.splitlines()
        if re.fullmatch(r"extract: (\d+)/\1 tasks in \d+ jobs?, [\d.]+ s", line)
    ]
    assert len(lines) == 1, err
    capfd.readouterr()
    assert extract.main(["--input", str(tmp_path / "dumps"), "--output", str(tmp_path / "y"), "--quiet"]) == 0
    assert "tasks in" not in capfd.readouterr().err
    assert os.environ.get("DIALOGSMITH_PROGRESS") is None
