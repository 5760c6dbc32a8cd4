"""`dialogsmith pipeline`: every data stage in one Spark session; a re-run resumes at the first step whose
output is missing or stale, and leaves the others as they are."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from dialogsmith import pipeline
from dialogsmith.sample.synth import SynthConfig, generate
from dialogsmith.tokenize.bpe import train_small_bpe

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dumps_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("dumps")
    generate(d, SynthConfig(months=["2016-01"], comments_per_month=2000, seed=4))
    return d


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok") / "bpe"
    train_small_bpe(["what is the best thing to do today", "i like red cars"] * 50, d, vocab_size=300)
    return d


def _record(out):
    return json.loads((out / pipeline.RECORD).read_text())["steps"]


def _markers(out):
    return {s: (out / s / "_dialogsmith.json").read_bytes() for s in pipeline.STEPS if (out / s).exists()}


def test_pipeline_runs_every_step_then_resumes_after_a_removed_output(
    spark, dumps_dir, tokenizer, tmp_path, capsys
):
    out = tmp_path / "run"
    argv = ["--input", str(dumps_dir), "--output", str(out), "--tokenizer", str(tokenizer), "--quiet"]
    assert pipeline.main(argv) == 0
    assert sorted(_record(out)) == ["extract", "filter", "instances", "tokenize"]
    assert (out / "tokenize" / "manifest.json").exists() and (out / "filter" / "train").is_dir()
    first = _markers(out)
    capsys.readouterr()
    # nothing changed: every step is skipped
    assert pipeline.main(argv) == 0
    assert capsys.readouterr().err.count("up to date, skipped") == 4
    assert _markers(out) == first
    # the filter output removed: extract and instances are skipped, filter and tokenize run again
    shutil.rmtree(out / "filter")
    assert pipeline.main(argv) == 0
    err = capsys.readouterr().err
    assert "extract: up to date" in err and "instances: up to date" in err
    assert "filter: running" in err and "tokenize: running" in err
    assert _markers(out)["extract"] == first["extract"] and (out / "filter" / "_SUCCESS").exists()
    # an option of a step changed: that step and the later ones run again
    assert pipeline.main([*argv, "--filter-args", "--split 0.8,0.1,0.1"]) == 0
    err = capsys.readouterr().err
    assert "instances: up to date" in err and "filter: running" in err and "tokenize: running" in err
    # an incomplete output (a file gone) is noticed too
    next((out / "instances" / "instances").glob("*.parquet")).unlink()
    assert pipeline.main(argv) == 0
    assert "instances: output incomplete, running it again" in capsys.readouterr().err


def test_pipeline_refuses_a_foreign_directory(spark, dumps_dir, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert pipeline.main(["--input", str(dumps_dir), "--output", str(mine)]) == 2
    assert "not a dialogsmith pipeline output" in capsys.readouterr().err
    assert (mine / "notes.txt").read_text() == "keep"


def test_make_pipeline_resumes_after_a_removed_stage_output(dumps_dir, tokenizer, tmp_path):
    """The make target, as a user runs it: a second run after `rm -rf OUT/instances` runs instances and
    what follows it again, and skips extract."""
    if shutil.which("make") is None or not (REPO / ".venv" / "bin" / "dialogsmith").exists():
        pytest.skip("needs make and the project's .venv (make setup)")
    out = tmp_path / "made"
    cmd = ["make", "-s", "pipeline", f"DUMPS={dumps_dir}", f"OUT={out}", f"TOKENIZER={tokenizer}",
           "PIPELINE_ARGS=--quiet"]  # fmt: skip
    env = {**os.environ, "SPARK_LOG_LEVEL": "ERROR"}
    env.pop("PYSPARK_GATEWAY_PORT", None)  # a session of its own, not the tests' one
    first = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    assert (out / "tokenize" / "manifest.json").exists()
    extract_marker = (out / "extract" / "_dialogsmith.json").read_bytes()
    shutil.rmtree(out / "instances")
    again = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "extract: up to date, skipped" in again.stderr
    for step in ("instances", "filter", "tokenize"):
        assert f"{step}: running" in again.stderr
    assert (out / "extract" / "_dialogsmith.json").read_bytes() == extract_marker
    assert (out / "instances" / "_SUCCESS").exists() and (out / "tokenize" / "manifest.json").exists()
