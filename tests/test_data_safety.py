"""Data safety through the real entry points: a stage never destroys what it did not write, commits
atomically (kill tests), refuses incomplete inputs, reports broken inputs, and handles odd paths."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from dialogsmith import outputs
from dialogsmith.extract import job as ingest
from dialogsmith.filter import job as filter_job
from dialogsmith.formats.stats import EXIT_STRICT, StageStats
from dialogsmith.instances import job as conversations
from dialogsmith.recipes import dialogpt_tsv
from dialogsmith.sample.synth import SynthConfig, generate
from dialogsmith.stage import StageError
from dialogsmith.tokenize import job as tokenize_stage
from dialogsmith.tokenize.bpe import train_small_bpe

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dumps_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("dumps")
    generate(d, SynthConfig(months=["2016-01"], comments_per_month=3000, seed=11))
    return d


@pytest.fixture(scope="module")
def extract_out(spark, dumps_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("stages") / "extract"
    assert ingest.main(["--input", str(dumps_dir), "--output", str(out)]) == 0
    return out


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


# --- 1. a stage never deletes what it did not write ------------------------------------------------


def test_out_equal_to_the_input_or_its_parent_is_refused_and_nothing_is_touched(
    spark, dumps_dir, tmp_path, capsys
):
    user = tmp_path / "u"
    user.mkdir()
    (user / "MARKER").write_text("keep")
    shutil.copy(dumps_dir / "RC_2016-01.zst", user)
    before = _tree(tmp_path)
    assert ingest.main(["--input", str(user), "--output", str(user)]) == 2  # OUT = DUMPS
    assert "never writes into its input" in capsys.readouterr().err
    assert ingest.main(["--input", str(user), "--output", str(tmp_path)]) == 2  # OUT = the parent of DUMPS
    assert "holds the input" in capsys.readouterr().err
    assert ingest.main(["--input", str(user), "--output", str(user / "sub")]) == 2  # OUT inside DUMPS
    assert _tree(tmp_path) == before


def test_a_users_directory_or_another_stages_output_is_refused(
    spark, dumps_dir, extract_out, tmp_path, capsys
):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes")
    assert ingest.main(["--input", str(dumps_dir), "--output", str(mine)]) == 2
    err = capsys.readouterr().err
    assert f"OUT {mine} exists and is not a dialogsmith extract output; choose another or remove it" in err
    assert (
        ingest.main(["--input", str(dumps_dir), "--output", str(mine), "--force"]) == 2
    )  # never with --force
    assert (mine / "notes.txt").read_text() == "my notes"
    # instances IN=X OUT=X
    assert conversations.main(["--input", str(extract_out), "--output", str(extract_out)]) == 2
    assert (extract_out / "_SUCCESS").exists()
    # another stage's output is not this stage's, --force or not
    other = tmp_path / "copy"
    shutil.copytree(extract_out, other)
    for extra in ([], ["--force"]):
        assert conversations.main(["--input", str(extract_out), "--output", str(other), *extra]) == 2
        assert "it is a dialogsmith extract output" in capsys.readouterr().err
    assert _tree(other) == _tree(extract_out)


def test_tokenize_into_a_directory_with_a_user_file_is_refused(spark, tmp_path, capsys):
    from test_tokenize_stage import make_rows, write_filter_output  # noqa: PLC0415

    inp = write_filter_output(tmp_path / "filter", {"train": make_rows(20, "train", 1)}, files_per_split=1)
    outputs.write_marker(str(inp), "filter")
    target = tmp_path / "shards"
    target.mkdir()
    (target / "model.safetensors").write_bytes(b"weights")
    tok = tmp_path / "tok"
    train_small_bpe(["hello world"] * 50, tok, vocab_size=300)
    rc = tokenize_stage.main(["--input", str(inp), "--output", str(target), "--tokenizer", str(tok)])
    assert rc == 2 and "not a dialogsmith tokenize output" in capsys.readouterr().err
    assert (target / "model.safetensors").read_bytes() == b"weights"


def test_sample_refuses_a_directory_of_real_dumps(tmp_path, capsys):
    from dialogsmith.sample import job as sample

    real = tmp_path / "reddit"
    real.mkdir()
    (real / "RC_2016-01.zst").write_bytes(b"a user's real dump")
    assert sample.main(["--out", str(real), "--comments", "50", "--months", "2016-01"]) == 2
    assert "not a dialogsmith sample output" in capsys.readouterr().err
    assert (real / "RC_2016-01.zst").read_bytes() == b"a user's real dump"
    fresh = tmp_path / "sample"
    assert sample.main(["--out", str(fresh), "--comments", "50", "--months", "2016-01"]) == 0
    assert (
        sample.main(["--out", str(fresh), "--comments", "60", "--months", "2016-01"]) == 0
    )  # its own: replaced


# --- 3 and 8. atomic commit, SIGKILL at every phase, leftovers cleaned ----------------------------


def _stage_cmd(dumps: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        str(REPO / "extract" / "ingest.py"),
        "--input",
        str(dumps),
        "--output",
        str(out),
        *extra,
    ]


def _env(**kw) -> dict:
    env = {**os.environ, "SPARK_LOG_LEVEL": "ERROR", **kw}
    env.pop("PYSPARK_GATEWAY_PORT", None)
    return env


def _kill_when(cmd: list[str], ready, timeout: float = 120.0) -> None:
    """Start ``cmd`` in its own process group and SIGKILL the whole group once ``ready()`` is true."""
    proc = subprocess.Popen(
        cmd, env=_env(), start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if proc.poll() is not None:
                raise AssertionError(
                    f"the stage ended before the kill point: {proc.stderr.read().decode()[-2000:]}"
                )
            if time.monotonic() > deadline:
                raise AssertionError("the kill point was never reached")
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        _wait_group_gone(proc.pid)


def _wait_group_gone(pgid: int) -> None:
    for _ in range(500):
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.01)


def _tmp_dirs(out: Path) -> list[Path]:
    return sorted(p for p in out.parent.iterdir() if p.name.startswith(out.name + "."))


def _glob_ready(out: Path, pattern: str):
    def ready() -> bool:
        return any(list(t.glob(pattern)) for t in _tmp_dirs(out) if ".tmp-" in t.name)

    return ready


def _complete(out: Path) -> StageStats:
    outputs.require_input(str(out), "extract")  # _SUCCESS, marker, every listed file at its size
    return StageStats.read(str(out / "stats.json")).check()


@pytest.fixture(scope="module")
def big_dumps(tmp_path_factory) -> Path:
    """A month big enough that decoding and writing take a moment (a kill lands inside them)."""
    d = tmp_path_factory.mktemp("bigdumps")
    generate(d, SynthConfig(months=["2016-03"], comments_per_month=150_000, seed=5))
    return d


def test_sigkill_at_every_phase_leaves_a_complete_output_and_the_next_run_cleans_up(
    spark, big_dumps, tmp_path
):
    out = tmp_path / "extract"
    old = ingest.run(
        ingest.build_parser().parse_args(["--input", str(big_dumps), "--output", str(out), "--buckets", "3"])
    )
    old_marker = json.loads((out / outputs.MARKER).read_text())
    kill_points = [
        ("during decode", _glob_ready(out, "_staging/*/*.arrow")),
        ("during write", _glob_ready(out, "comments/bucket=*/*.parquet")),
    ]
    for label, ready in kill_points:
        _kill_when(_stage_cmd(big_dumps, out, "--buckets", "4"), ready)
        assert json.loads((out / outputs.MARKER).read_text()) == old_marker, label  # the old output, intact
        assert _complete(out).rows_out == old.rows_out, label
        assert any(".tmp-" in p.name for p in _tmp_dirs(out)), label  # the dead run's tmp is still there
    for point in ("commit:before_swap", "commit:after_swap", "commit:before_delete_old"):
        r = subprocess.run(_stage_cmd(big_dumps, out, "--buckets", "4"), env=_env(DIALOGSMITH_FAULT=point),
                           capture_output=True, text=True)  # fmt: skip
        assert r.returncode == -signal.SIGKILL, (point, r.stderr[-2000:])
        stats = _complete(out)
        n_buckets = stats.extra["n_buckets"]
        assert n_buckets == (3 if point == "commit:before_swap" else 4), (
            point
        )  # old before the swap, new after
    # the next run cleans up the leftovers of the killed ones (and only those) and says so
    (tmp_path / "extract.tmp-notours").mkdir()  # not a stage's tmp dir: left alone
    r = subprocess.run(
        _stage_cmd(big_dumps, out, "--buckets", "2"), env=_env(), capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "left over by an interrupted extract run" in r.stderr
    assert _complete(out).extra["n_buckets"] == 2
    assert [p.name for p in _tmp_dirs(out)] == ["extract.tmp-notours"]


def test_a_kill_between_the_two_renames_of_the_fallback_commit_is_repaired(spark, extract_out, tmp_path):
    """Filesystems without an atomic exchange: old -> OUT.old-*, new -> OUT. Killed in between, OUT is
    missing for a moment; the next run puts the old output back, then replaces it."""
    out = tmp_path / "extract"
    shutil.copytree(extract_out, out)
    new = tmp_path / "extract.tmp-dead"
    shutil.copytree(extract_out, new)
    script = (
        "import sys; from dialogsmith import outputs as o\n"
        "o.exchange = lambda a, b: False\n"
        "o.commit(sys.argv[1], sys.argv[2], 'extract')\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", script, str(new), str(out)], env=_env(DIALOGSMITH_FAULT="commit:after_aside")
    )
    assert r.returncode == -signal.SIGKILL
    assert not out.exists() and [p for p in _tmp_dirs(out) if ".old-" in p.name]
    messages = []
    outputs.clean_leftovers(str(out), "extract", messages.append)
    assert out.exists() and _complete(out) and any("restored" in m for m in messages)


def test_a_failed_run_leaves_the_old_output_and_no_tmp(spark, dumps_dir, tmp_path):
    out = tmp_path / "extract"
    assert ingest.main(["--input", str(dumps_dir), "--output", str(out)]) == 0
    before = _tree(out)
    with pytest.raises(StageError):
        ingest.run(
            ingest.build_parser().parse_args(
                ["--input", str(dumps_dir), "--output", str(out), "--buckets", "0"]
            )
        )
    assert _tree(out) == before and _tmp_dirs(out) == []


# --- 4. later stages refuse incomplete earlier outputs ----------------------------------------------


def test_instances_refuses_an_incomplete_extract_output(spark, extract_out, tmp_path, capsys):
    broken = tmp_path / "e"
    shutil.copytree(extract_out, broken)
    shutil.rmtree(next((broken / "comments").glob("bucket=*")))
    rc = conversations.main(["--input", str(broken), "--output", str(tmp_path / "i")])
    err = capsys.readouterr().err
    assert rc == 2 and "incomplete extract output" in err and "file(s) missing: comments/bucket=" in err
    (broken / "_SUCCESS").unlink()
    shutil.rmtree(broken / "submissions")
    rc = conversations.main(["--input", str(broken), "--output", str(tmp_path / "i")])
    err = capsys.readouterr().err
    assert rc == 2 and "_SUCCESS is missing" in err and "submissions/" in err
    assert not (tmp_path / "i").exists()


def test_filter_and_tokenize_refuse_incomplete_inputs(spark, extract_out, tmp_path, capsys):
    inst = tmp_path / "inst"
    assert conversations.main(["--input", str(extract_out), "--output", str(inst)]) == 0
    part = next((inst / "instances").glob("*.parquet"))
    part.write_bytes(part.read_bytes()[:100])  # truncated in place: size differs from the marker's
    assert filter_job.main(["--input", str(inst), "--output", str(tmp_path / "f"), "--quiet"]) == 2
    assert "changed size" in capsys.readouterr().err
    filt = tmp_path / "filt"  # a filter output whose run died before _SUCCESS
    (filt / "train").mkdir(parents=True)
    (filt / "stats.json").write_text(json.dumps({"stage": "filter"}))
    rc = tokenize_stage.main(
        ["--input", str(filt), "--output", str(tmp_path / "s"), "--tokenizer", str(filt)]
    )
    assert rc == 2 and "_SUCCESS is missing" in capsys.readouterr().err


# --- 7. broken inputs are reported, --strict fails -------------------------------------------------


def test_broken_input_is_reported_and_strict_fails(spark, dumps_dir, tmp_path, capsys):
    d = tmp_path / "dumps"
    d.mkdir()
    shutil.copy(dumps_dir / "RS_2016-01.zst", d)
    data = (dumps_dir / "RC_2016-01.zst").read_bytes()
    (d / "RC_2016-01.zst").write_bytes(data[: len(data) // 2])
    assert dialogpt_tsv.main(["--dumps", str(d), "--output", str(tmp_path / "t"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "warning: extract: some input could not be read" in err
    assert (
        "RC_2016-01.zst: " in err
        and "truncated_file 1" in err
        and "the lines before the break were kept" in err
    )
    rc = dialogpt_tsv.main(["--dumps", str(d), "--output", str(tmp_path / "t"), "--quiet", "--strict"])
    assert rc == EXIT_STRICT
    assert ingest.main(["--input", str(d), "--output", str(tmp_path / "e"), "--strict"]) == EXIT_STRICT
    assert "bad_json" in capsys.readouterr().err  # the generator's malformed lines, per file and reason


# --- 9. input names ----------------------------------------------------------------------------------


def test_input_names_are_validated_and_skips_listed(spark, dumps_dir, tmp_path, capsys):
    d = tmp_path / "dumps"
    (d / "a").mkdir(parents=True)
    (d / "b").mkdir()
    shutil.copy(dumps_dir / "RC_2016-01.zst", d / "a")
    shutil.copy(dumps_dir / "RC_2016-01.zst", d / "b")  # same name, another directory
    (d / "RC_2099-13.zst").write_bytes((dumps_dir / "RC_2016-01.zst").read_bytes())
    (d / "RC_2016-01.zst.md5").write_text("d41d8cd98f00b204e9800998ecf8427e  RC_2016-01.zst\n")
    (d / "RC_garbage.zst").write_bytes(b"??")
    out = tmp_path / "e"
    assert ingest.main(["--input", str(d), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    stats = StageStats.read(str(out / "stats.json"))
    assert stats.extra["skipped_inputs"] == {
        "RC_2016-01.zst.md5": "checksum_file",
        "RC_2099-13.zst": "invalid_month",
        "RC_garbage.zst": "not_a_dump_name",
    }
    for name in stats.extra["skipped_inputs"]:
        assert name in printed
    assert sorted(stats.extra["files"]) == ["a/RC_2016-01.zst", "b/RC_2016-01.zst"]
    one = stats.extra["files"]["a/RC_2016-01.zst"]
    assert one == stats.extra["files"]["b/RC_2016-01.zst"] and one["lines"] > 0
    # the second file's comments are duplicates (merged), its malformed lines are its own
    quarantined = pq.read_table(out / "quarantine", columns=["source"]).column("source").unique().to_pylist()
    assert sorted(quarantined) == ["a/RC_2016-01.zst", "b/RC_2016-01.zst"]
    assert stats.merged["duplicate_id"] >= one["parsed"] - 10  # the second copy of every comment
    with pytest.raises(ValueError, match="2099-13 is not a month"):
        ingest.scan_inputs(str(d / "RC_2099-13.zst"))


# --- 10. paths with spaces, commas, brackets through make ---------------------------------------------


def test_make_targets_take_paths_with_spaces_commas_and_brackets(dumps_dir, tmp_path):
    if shutil.which("make") is None or not (REPO / ".venv" / "bin" / "python").exists():
        pytest.skip("needs make and the project's .venv (make setup)")
    odd = tmp_path / "my dumps, 2016 [jan]"
    odd.mkdir()
    shutil.copy(dumps_dir / "RC_2016-01.zst", odd)
    shutil.copy(dumps_dir / "RS_2016-01.zst", odd)
    out = tmp_path / "out put, [1]"
    r = subprocess.run(["make", "-s", "extract", f"DUMPS={odd}", f"OUT={out}"], cwd=REPO, env=_env(),
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    stats = StageStats.read(str(out / "stats.json"))
    assert sorted(stats.extra["files"]) == ["RC_2016-01.zst", "RS_2016-01.zst"]
