"""`make dialogpt-tsv` (one Spark session, no intermediate tables) writes the same TSVs and the same stats
as the stages one by one (extract -> instances --profile dialogpt -> filter --profile dialogpt
--export-tsv) on generated dumps with malformed and duplicated lines and a cut file."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dialogsmith.extract import job as ingest
from dialogsmith.recipes import dialogpt_tsv
from dialogsmith.sample.synth import SynthConfig, generate

MONTHS = ["2016-01", "2016-02"]


@pytest.fixture(scope="module")
def dumps_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("dumps")
    report = generate(d, SynthConfig(months=MONTHS, comments_per_month=6000, seed=7))
    assert report.duplicates > 0 and report.quarantine  # the cases the modes must agree on
    cut = d / "RC_2016-02.zst"  # and a file cut in the middle (truncated_file, lines before it kept)
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    return d, report


def _run(dumps, out, *flags):
    argv = ["--dumps", str(dumps), "--output", str(out), "--quiet", *flags]
    return dialogpt_tsv.run(dialogpt_tsv.build_parser().parse_args(argv))


def _stats(out, stage):
    s = json.loads((out / "stats" / f"{stage}.json").read_text())
    return {k: s[k] for k in ("rows_in", "rows_out", "dropped", "quarantined", "merged")}


def test_drop_in_equals_the_stages_one_by_one(spark, dumps_dir, tmp_path):
    from dialogsmith.filter import job
    from dialogsmith.instances import job as conversations

    dumps, report = dumps_dir
    out = tmp_path / "tsv"
    st = _run(dumps, out, "--buckets", "5")
    extract, inst, filt = tmp_path / "extract", tmp_path / "inst", tmp_path / "filt"
    assert ingest.main(["--input", str(dumps), "--output", str(extract), "--buckets", "3"]) == 0
    assert conversations.main(["--input", str(extract), "--output", str(inst), "--profile", "dialogpt"]) == 0
    argv = ["--input", str(inst), "--output", str(filt), "--profile", "dialogpt", "--export-tsv", "--quiet"]
    assert job.main(argv) == 0
    total = 0
    for m in MONTHS:
        a = sorted((out / f"{m}.tsv").read_bytes().splitlines())
        b = sorted((filt / "tsv" / f"{m}.tsv").read_bytes().splitlines())
        assert a == b, m
        total += len(a)
    assert total > 100 and st.rows_out == total
    for stage, path in (("extract", extract), ("instances", inst), ("filter", filt)):
        mine = _stats(out, stage)
        theirs = json.loads((path / "stats.json").read_text())
        assert mine == {k: theirs[k] for k in mine}, stage
    ex = json.loads((out / "stats" / "extract.json").read_text())
    whole = report.files["RC_2016-01.zst"]
    assert ex["extra"]["files"]["RC_2016-01.zst"]["lines"] == whole["lines"]
    assert ex["extra"]["files"]["RC_2016-01.zst"]["quarantined"] == whole["quarantine"]
    assert ex["extra"]["files"]["RC_2016-02.zst"]["error"].startswith("truncated_file")
    assert 0 < ex["extra"]["files"]["RC_2016-02.zst"]["lines"] < report.files["RC_2016-02.zst"]["lines"]
    assert ex["quarantined"]["truncated_file"] == 1
    # the quarantined lines themselves are kept
    q = pq.read_table(out / "quarantine")
    assert q.num_rows == sum(ex["quarantined"].values())
    assert set(q.column("reason").to_pylist()) == set(ex["quarantined"])
    assert json.loads((out / "stats" / "funnel.json").read_text())["kept"] == total
    assert not (out / "_work").exists()


def test_later_duplicates_keeps_the_first_by_source_and_line():
    ids = pa.array(["a", "b", "a", "c", "b", "a"])
    sources = pa.array(["RC_2", "RC_1", "RC_1", "RC_1", "RC_1", "RC_2"])
    lines = np.array([1, 5, 9, 2, 3, 0])
    # a: (RC_1, 9) is first; b: (RC_1, 3) is first; c alone
    assert ingest.later_duplicates(ids, sources, lines).tolist() == [True, True, False, False, False, True]


def test_inactive_blocklists_are_warned_about_and_recorded(spark, dumps_dir, tmp_path, capsys):
    """Without lists the released rules for blocklisted words and subreddits do nothing: say so (stderr
    and stats.json); with --keys the key files carry the release's own filtering: nothing to say."""
    dumps, _ = dumps_dir
    st = _run(dumps, tmp_path / "none")
    err = capsys.readouterr().err
    assert "warning: dialogpt-tsv: no --bl_words list" in err and "no --bl_subreddits list" in err
    assert len(st.extra["inactive_blocklists"]) == 2
    words, subs = tmp_path / "words.txt", tmp_path / "subs.txt"
    words.write_text("# offensive words\nbadword\n")
    subs.write_text("# none yet\n")  # comments only: empty
    st = _run(dumps, tmp_path / "lists", "--bl_words", str(words), "--bl_subreddits", str(subs))
    err = capsys.readouterr().err
    assert "no --bl_words" not in err and "no --bl_subreddits list (or it is empty)" in err
    assert st.extra["inactive_blocklists"] == [
        "no --bl_subreddits list (or it is empty): no subreddit is blocked"
    ]
