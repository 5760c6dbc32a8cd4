"""The filter job end to end on hand-built instances, with the real local Spark session."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from filter_helpers import instance, table

from dialogsmith import outputs
from dialogsmith.filter import job
from dialogsmith.schemas import INSTANCES, INSTANCES_VERSION, with_metadata
from dialogsmith.stats import StageStats


def _corpus() -> list[dict]:
    rows = []
    for k in range(60):  # 60 threads, 3 clean instances each
        for j in range(3):
            rows.append(
                instance(
                    [f"question number {k} is here", f"an answer {j} to the thing {k}"],
                    link=f"t3_l{k}",
                    parent=f"t1_q{k}",
                    created=k * 10 + j,
                )
            )
    rows += [
        instance(["hi there", "one"]),  # tgt_too_short
        instance(["hi there", "see __url__ now"]),  # has_url
        instance(["hi there", "WHATS this"]),  # shouting
        instance(["hi there", "the (thing)"]),  # has_brackets
        instance(["hi there", "und para mit"]),  # no_common_word (paper, default)
        instance(["the q", "the reply"], raw=["[removed]", "the reply"]),  # removed_comment (default)
        instance(["the q", "the reply by a bot"], authors=["u", "AutoModerator"]),  # bot_author (default)
        instance(["same context is here", "the same reply"], link="t3_d1", created=5),
        instance(["same context is here", "the same reply"], link="t3_d2", created=1),  # wins the dedup
        instance(["the q", "the &amp; reply"]),  # kept; default unescapes to "&"
        {**instance(["x"]), "turns": []},  # malformed_instance
    ]
    return rows


@pytest.fixture(scope="module")
def instances_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("conv")
    (d / "instances").mkdir()
    t = table(_corpus()).cast(with_metadata(INSTANCES, "instances", INSTANCES_VERSION))
    # two files, small row groups: several tasks
    pq.write_table(t.slice(0, 100), d / "instances" / "part-00000.parquet", row_group_size=40)
    pq.write_table(t.slice(100), d / "instances" / "part-00001.parquet", row_group_size=40)
    (d / "stats.json").write_text(
        json.dumps({"stage": "instances", "extra": {"config": {"profile": "test"}}})
    )
    outputs.write_marker(str(d), "instances")
    return d


def _run(spark, instances_dir, out, *extra):
    argv = ["--input", str(instances_dir), "--output", str(out), "--rows-per-task", "50", "--quiet", *extra]
    return job.run(job.build_parser().parse_args(argv))


def _read(out, sub):
    return pq.read_table(out / sub).to_pylist()


@pytest.mark.parametrize("profile", ["dialogpt", "paper", "default"])
def test_accounting_adds_up_per_profile(spark, instances_dir, tmp_path, profile):
    out = tmp_path / "out"
    stats = _run(spark, instances_dir, out, "--profile", profile)
    n_in = len(_corpus())
    assert stats.rows_in == n_in == stats.rows_out + sum(stats.dropped.values())
    saved = StageStats.read(str(out / "stats.json"))
    assert saved.check().rows_in == n_in and saved.stage == "filter"
    kept = sum(len(_read(out, s)) for s in ("train", "valid", "test"))
    dropped = _read(out, "dropped")
    assert kept == stats.rows_out == sum(saved.extra["splits"].values())
    assert len(dropped) == sum(stats.dropped.values())
    by_reason = {}
    for r in dropped:
        by_reason[r["reason"]] = by_reason.get(r["reason"], 0) + 1
    assert by_reason == stats.dropped
    assert stats.dropped["malformed_instance"] == 1
    for reason in ("tgt_too_short", "has_url", "shouting", "has_brackets"):
        assert stats.dropped[reason] == 1, reason
    funnel = json.loads((out / "funnel.json").read_text())
    assert funnel["steps"][-1]["remaining"] == stats.rows_out
    assert [s["rule"] for s in funnel["steps"]][:3] == ["malformed_instance", *job.ORDERS[profile][:2]]
    assert (out / "_SUCCESS").exists()
    if profile == "dialogpt":
        assert "no_common_word" not in stats.dropped
    else:
        assert stats.dropped["no_common_word"] == 1
    if profile == "default":
        assert stats.dropped["removed_comment"] == 1 and stats.dropped["bot_author"] == 1
        assert stats.dropped["duplicate_pair"] == 1
        dup = [r for r in dropped if r["reason"] == "duplicate_pair"]
        assert dup[0]["link_id"] == "t3_d1"  # the earlier-posted copy (t3_d2) is kept
        texts = {t for s in ("train", "valid", "test") for r in _read(out, s) for t in r["turns"]}
        assert "the & reply" in texts and "the &amp; reply" not in texts


def test_splits_are_by_thread_and_stable(spark, instances_dir, tmp_path):
    a = _run(spark, instances_dir, tmp_path / "a", "--profile", "dialogpt", "--split", "0.6,0.2,0.2")
    b = _run(
        spark,
        instances_dir,
        tmp_path / "b",
        "--profile",
        "dialogpt",
        "--split",
        "0.6,0.2,0.2",
        "--rows-per-task",
        "7",
    )
    assert a.extra["splits"] == b.extra["splits"]
    seen = {}
    for s in ("train", "valid", "test"):
        ra = sorted(r["instance_id"] for r in _read(tmp_path / "a", s))
        rb = sorted(r["instance_id"] for r in _read(tmp_path / "b", s))
        assert ra == rb and ra, s
        for r in _read(tmp_path / "a", s):
            assert r["split"] == s
            assert seen.setdefault(r["link_id"], s) == s  # no thread in two splits


def test_tsv_exports_and_refs(spark, instances_dir, tmp_path):
    out = tmp_path / "out"
    stats = _run(
        spark, instances_dir, out, "--profile", "dialogpt", "--export-tsv", "--refs", "--split", "0.5,0.0,0.5"
    )
    lines = (out / "tsv" / "2011-01.tsv").read_text().splitlines()
    assert len(lines) == stats.rows_out
    line = next(x for x in lines if x.startswith("t3_l3,t1_q3,"))
    ids, src, tgt = line.split("\t")
    assert src == "question number 3 is here" and tgt.startswith("an answer ")
    two = (out / "tsv" / "train.tsv").read_text().splitlines() + (
        out / "tsv" / "test.tsv"
    ).read_text().splitlines()
    assert sorted(two) == sorted(x.split("\t", 1)[1] for x in lines)
    refs = (out / "tsv" / "test.refs.txt").read_text().splitlines()
    assert refs and stats.extra["refs_contexts"] == len(refs)
    questions = [r.split("\t") for r in refs if r.startswith("question number")]
    assert questions
    for cols in questions:
        assert len(cols) == 4  # src + its 3 sibling responses
        assert all(c.startswith("1.0|an answer ") for c in cols[1:])


def test_bland_response_corpus_pass(spark, tmp_path):
    d = tmp_path / "conv" / "instances"
    d.mkdir(parents=True)
    rows = [instance(["q", "i do not know ."], link=f"t3_b{i}") for i in range(8)]
    rows += [
        instance(["q", "i do not know why ."], link="t3_c1"),
        instance(["q", "i like the red car"], link="t3_c2"),
    ]
    pq.write_table(table(rows), d / "part-0.parquet")
    # "i do not", "do not know", "not know ." are seen 9, 9, 8 times: frequent when seen more than 7 times
    stats = job.run(
        job.build_parser().parse_args(
            [
                "--input",
                str(d),  # a plain directory of instance Parquet files (not a stage output)
                "--output",
                str(tmp_path / "o"),
                "--profile",
                "paper",
                "--no-bland-scale",
                "--bland-min-count",
                "7",
                "--quiet",
            ]
        )
    )
    assert stats.dropped == {"bland_response": 8}  # "i do not know why ." has 2/4 frequent trigrams
    assert stats.extra["frequent_trigrams"] == 3


def test_bad_input_gives_clear_errors(spark, tmp_path, capsys):
    assert job.main(["--input", str(tmp_path / "nope"), "--output", str(tmp_path / "o")]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="no instance Parquet"):
        job.main(["--input", str(tmp_path / "empty"), "--output", str(tmp_path / "o")])
    with pytest.raises(SystemExit, match="three fractions"):
        job.main(["--input", str(tmp_path / "empty"), "--output", str(tmp_path / "o"), "--split", "0.5,0.5"])
    assert not (tmp_path / "o").exists()
