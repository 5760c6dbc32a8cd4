"""The filter job end to end on hand-built instances, with the real local Spark session."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from filter_helpers import corpus, instance, table, write_instances_dir

from dialogsmith.filter import job, profiles
from dialogsmith.formats.stats import StageStats


def _corpus() -> list[dict]:
    return corpus()


@pytest.fixture(scope="module")
def instances_dir(tmp_path_factory):
    return write_instances_dir(tmp_path_factory.mktemp("conv"), _corpus())


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
    assert [s["rule"] for s in funnel["steps"]][:3] == ["malformed_instance", *profiles.ORDERS[profile][:2]]
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
    assert job.main(["--input", str(tmp_path / "empty"), "--output", str(tmp_path / "o")]) == 2
    assert "filter: error: --input" in capsys.readouterr().err  # no instance Parquet files
    assert (
        job.main(["--input", str(tmp_path / "empty"), "--output", str(tmp_path / "o"), "--split", "0.5,0.5"])
        == 2
    )
    assert "three fractions" in capsys.readouterr().err
    argv = ["--input", str(tmp_path / "empty"), "--output", str(tmp_path / "o"), "--disable", "nope"]
    assert job.main(argv) == 2 and "has no rule(s) ['nope']" in capsys.readouterr().err
    assert job.main([*argv[:4], "--bl-words", str(tmp_path / "nope.txt")]) == 2
    assert "list file not found" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# --- the corpus rules against the reference semantics ------------------------------------------


def _reference_reasons(rows: list[dict], profile_name: str, threshold: int, words=None) -> dict[str, str]:
    """instance_id -> reason (or "kept") the way the filter is specified: per-instance rules in order
    through ``Rule.check``, frequent trigrams counted with Python strings over every well-formed
    instance, duplicate pairs among the rows every other rule kept (earliest (created, id) wins)."""
    import html
    from collections import Counter

    from dialogsmith.filter import InstanceView, rules_paper
    from dialogsmith.filter.profiles import FilterParams, make_profile

    prof = make_profile(profile_name, FilterParams(bland_fraction=0.9))
    out, views = {}, []
    for r in rows:
        turns, weights = r["turns"], r["turn_weights"]
        if (
            not turns
            or any(t is None for t in turns)
            or (r["weights_in_text"] and len(weights) != len(turns))
        ):
            out[r["instance_id"]] = "malformed_instance"
            continue
        shown = [html.unescape(t) for t in turns] if prof.params.unescape_html else list(turns)
        v = InstanceView.from_turns(
            shown,
            weights if r["weights_in_text"] else None,
            turns_raw=r["turns_raw"],
            authors=r["turn_authors"],
            subreddit=r["subreddit"],
        )
        views.append((r, shown, v))
    counts = Counter(g for _, _, v in views for g in rules_paper.response_trigrams(v.response))
    params = FilterParams(words=words, frequent=frozenset(g for g, c in counts.items() if c > threshold))
    survivors = []
    for r, shown, v in views:
        reason = next((rule.name for rule in prof.rules() if rule.check(v, params) is not None), None)
        out[r["instance_id"]] = reason or "kept"
        if reason is None:
            survivors.append((tuple(shown), (r["target_created_utc"] or 0, r["instance_id"])))
    if prof.dedup:
        winner = {}
        for key, rank in survivors:
            winner[key] = min(winner.get(key, rank), rank)
        n_key = Counter(key for key, _ in survivors)
        for key, (_, iid) in survivors:
            if n_key[key] > 1 and iid != winner[key][1]:
                out[iid] = "duplicate_pair"
    return out


def _corpus_rows(seed: int, n: int) -> list[dict]:
    """Bland and non-bland responses, exact duplicate pairs (bland and not, created ties, the same pair
    in several tasks), Unicode, HTML entities, and every per-instance rule now and then."""
    import random

    rng = random.Random(seed)
    words = ["i", "do", "not", "know", "the", "a", "thing", "is", "it", "so", "what", "ok", "&amp;", "Ünï"]
    common = ["i do not know .", "it is what it is", "the thing is the thing", "I DO NOT KNOW ."]
    rows = []
    for _ in range(n):
        k = rng.randint(1, 4)
        ctx = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 6))) for _ in range(k)]
        if rng.random() < 0.4:
            resp = rng.choice(common)
        else:
            resp = " ".join(rng.choice(words) for _ in range(rng.randint(1, 9)))
        if rng.random() < 0.1:
            resp = rng.choice(["[removed]", "see (this)", "SHOUTING here is the", "no no no it is"])
        rows.append(
            instance(
                [*ctx, resp],
                link=f"t3_{rng.randint(0, 40)}",
                created=rng.randint(0, 5),
                authors=[rng.choice(["u1", "u2", "u3", "u4", "u5"] * 10 + ["a_bot"]) for _ in range(k + 1)],
                sub=rng.choice(["pics", "AskReddit"]),
            )
        )
        if rng.random() < 0.25:  # an exact duplicate of an earlier pair, maybe posted at the same second
            src = rng.choice(rows)
            rows.append(
                instance(
                    list(src["turns"]),
                    link=f"t3_{rng.randint(0, 40)}",
                    created=rng.choice([src["target_created_utc"], rng.randint(0, 5)]),
                    authors=list(src["turn_authors"]),
                )
            )
    rows.append({**instance(["x"]), "turns": []})  # malformed
    return rows


@pytest.mark.parametrize("profile", ["paper", "default"])
def test_corpus_rules_match_the_reference_semantics(spark, tmp_path, profile):
    rows = _corpus_rows(5, 700)
    d = tmp_path / "in"
    d.mkdir()
    t = table(rows)
    # three files, small row groups: duplicate groups span tasks
    for j, (a, b) in enumerate(((0, 300), (300, 600), (600, t.num_rows))):
        pq.write_table(t.slice(a, b - a), d / f"part-{j}.parquet", row_group_size=60)
    stats = _run(
        spark, d, tmp_path / "out", "--profile", profile, "--no-bland-scale", "--bland-min-count", "20",
        "--rows-per-task", "100",
    )  # fmt: skip
    expected = _reference_reasons(rows, profile, 20)
    got = {r["instance_id"]: r["reason"] for r in _read(tmp_path / "out", "dropped")}
    for s in ("train", "valid", "test"):
        got.update({r["instance_id"]: "kept" for r in _read(tmp_path / "out", s)})
    assert got == expected
    reasons = set(expected.values())
    assert {"bland_response", "kept", "malformed_instance"} <= reasons
    if profile == "default":
        assert "duplicate_pair" in reasons
        groups = {}
        for r in rows:
            groups.setdefault(tuple(r["turns"]), []).append(expected[r["instance_id"]])
        dup_groups = [g for g in groups.values() if len(g) > 1]
        assert any(set(g) == {"bland_response"} for g in dup_groups)  # a bland group: all bland
        assert any("duplicate_pair" in g and "kept" in g for g in dup_groups)
    assert stats.extra["tasks"] >= 6
    assert not (tmp_path / "out" / "_stage").exists()
    timing = stats.extra["timing"]
    assert timing["task_cpu_seconds"] > 0 and "reduce" in timing["pass_seconds"]
