"""`make dialogpt-tsv`: its two modes (one task per month; staged ingest -> instances -> filter) write the
same TSVs and the same stats on generated dumps with malformed and duplicated lines; the mode choice."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dialogsmith import ingest
from dialogsmith.filter import dialogpt_tsv
from dialogsmith.synth import SynthConfig, generate

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


def test_fused_and_staged_modes_agree(spark, dumps_dir, tmp_path):
    dumps, report = dumps_dir
    fused, staged = tmp_path / "fused", tmp_path / "staged"
    sf = _run(dumps, fused, "--mode", "fused")
    ss = _run(dumps, staged, "--mode", "staged")
    assert sf.extra["dialogpt_tsv"]["mode"] == "fused" and ss.extra["dialogpt_tsv"]["mode"] == "staged"
    total = 0
    for m in MONTHS:
        a = sorted((fused / f"{m}.tsv").read_bytes().splitlines())
        b = sorted((staged / f"{m}.tsv").read_bytes().splitlines())
        assert a == b, m
        total += len(a)
    assert total > 100 and sf.rows_out == ss.rows_out == total
    for stage in ("extract", "instances", "filter"):
        assert _stats(fused, stage) == _stats(staged, stage), stage
    ex = json.loads((fused / "stats" / "extract.json").read_text())
    whole = report.files["RC_2016-01.zst"]
    assert ex["extra"]["files"]["RC_2016-01.zst"]["lines"] == whole["lines"]
    assert ex["extra"]["files"]["RC_2016-01.zst"]["quarantined"] == whole["quarantine"]
    assert ex["extra"]["files"]["RC_2016-02.zst"]["error"].startswith("truncated_file")
    assert 0 < ex["extra"]["files"]["RC_2016-02.zst"]["lines"] < report.files["RC_2016-02.zst"]["lines"]
    assert ex["quarantined"]["truncated_file"] == 1
    # the fused mode keeps the quarantined lines themselves
    q = pq.read_table(fused / "quarantine")
    assert q.num_rows == sum(ex["quarantined"].values())
    assert set(q.column("reason").to_pylist()) == set(ex["quarantined"])
    assert json.loads((fused / "stats" / "funnel.json").read_text())["kept"] == total


def test_later_duplicates_keeps_the_first_by_source_and_line():
    ids = pa.array(["a", "b", "a", "c", "b", "a"])
    sources = pa.array(["RC_2", "RC_1", "RC_1", "RC_1", "RC_1", "RC_2"])
    lines = np.array([1, 5, 9, 2, 3, 0])
    # a: (RC_1, 9) is first; b: (RC_1, 3) is first; c alone
    assert ingest.later_duplicates(ids, sources, lines).tolist() == [True, True, False, False, False, True]


def test_mode_choice(dumps_dir, tmp_path):
    dumps, _ = dumps_dir
    parse = dialogpt_tsv.build_parser().parse_args
    base = ["--dumps", str(dumps), "--output", str(tmp_path / "o")]
    assert dialogpt_tsv.choose_mode(parse(base))[0] == "fused"
    mode, why = dialogpt_tsv.choose_mode(parse([*base, "--fused-max-gb", "0.001"]))
    assert mode == "staged" and "2016-0" in why
    assert dialogpt_tsv.choose_mode(parse([*base, "--keep-work"]))[0] == "staged"
    assert dialogpt_tsv.choose_mode(parse([*base, "--mode", "staged"]))[0] == "staged"
    with pytest.raises(ValueError, match="--keep-work"):
        dialogpt_tsv.choose_mode(parse([*base, "--mode", "fused", "--keep-work"]))
