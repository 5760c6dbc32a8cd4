"""The instances stage (``dialogsmith instances``) on small extract-like fixtures (real Parquet, real Spark)."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dialogsmith import fsutil, outputs
from dialogsmith.formats import parquet
from dialogsmith.formats.schemas import COMMENTS_TABLE, INSTANCES_TABLE, SUBMISSIONS_TABLE, link_bucket
from dialogsmith.formats.stats import StageStats
from dialogsmith.instances import job as instances
from dialogsmith.stage import StageError

N_BUCKETS = 3


def comment(cid, link, parent, body, month="2011-01", score=5, sub="AskReddit", line=1):
    return dict(
        id=cid, link_id=link, parent_id=parent, author=f"u_{cid}", subreddit=sub, subreddit_id="t5_x", body=body,
        score=score, created_utc=1293840000, edited=None, gilded=0, controversiality=0, distinguished=None,
        stickied=False, month=month, source=f"RC_{month}.zst", line=line,
    )  # fmt: skip


def submission(sid, title, month="2011-01", num_comments=5, sub="AskReddit"):
    return dict(
        id=sid, link_id="t3_" + sid, author="op", subreddit=sub, subreddit_id="t5_x", title=title, selftext="",
        num_comments=num_comments, score=10, created_utc=1293840000, domain="self." + sub,
        permalink=f"/r/{sub}/comments/{sid}/some_title/", url="", is_self=True, over_18=False, stickied=False,
        month=month, source=f"RS_{month}.zst", line=1,
    )  # fmt: skip


def write_ingest(root, comments, submissions, n_buckets=N_BUCKETS):
    for kind, rows, fmt in (
        ("comments", comments, COMMENTS_TABLE),
        ("submissions", submissions, SUBMISSIONS_TABLE),
    ):
        by_bucket: dict[int, list] = {}
        for r in rows:
            by_bucket.setdefault(link_bucket(r["link_id"], n_buckets), []).append(r)
        for b, rs in by_bucket.items():
            uri = os.path.join(root, kind, f"bucket={b}", "part-00000.parquet")
            parquet.write(uri, pa.Table.from_pylist(rs, schema=fmt.schema), fmt)
    fsutil.write_json(
        os.path.join(root, "stats.json"), {"stage": "extract", "extra": {"n_buckets": n_buckets}}
    )
    outputs.write_marker(str(root), "extract")  # a committed extract output (_SUCCESS + file list)
    return str(root)


@pytest.fixture(scope="module")
def ingest_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("ingest")
    comments = [
        # thread s1 (AskReddit): c1 <- c2 <- c3 (c3 posted the next month), c1 <- c4 removed, c1 <- c5 quote
        comment("c1", "t3_s1", "t3_s1", "hello there friend"),
        comment("c2", "t3_s1", "t1_c1", "hi back to you"),
        comment("c3", "t3_s1", "t1_c2", "a late reply here", month="2011-02"),
        comment("c4", "t3_s1", "t1_c1", "[removed]"),
        comment("c5", "t3_s1", "t1_c1", "&gt; hello there\n\nquoting my friend"),
        comment("c6", "t3_s1", "t1_c1", "low score reply", score=None),
        # thread s2: a self-parent and a 2-cycle
        comment("d1", "t3_s2", "t1_d1", "i am my own parent"),
        comment("d2", "t3_s2", "t1_d3", "cycle member one"),
        comment("d3", "t3_s2", "t1_d2", "cycle member two"),
        comment("d4", "t3_s2", "t3_s2", "a normal top comment"),
        comment("d5", "t3_s2", "t1_d4", "[deleted]"),
        # thread s3 in a blocked subreddit
        comment("e1", "t3_s3", "t3_s3", "top level words", sub="BadSub"),
        comment("e2", "t3_s3", "t1_e1", "reply words here", sub="BadSub"),
    ]
    subs = [
        submission("s1", "What is up?"),
        submission("s2", "Second"),
        submission("s3", "Bad", sub="BadSub"),
    ]
    return write_ingest(root, comments, subs)


def args_for(input_dir, output, **kw):
    argv = ["--input", input_dir, "--output", str(output)]
    for k, v in kw.items():
        argv += [f"--{k.replace('_', '-')}", str(v)]
    return instances.build_parser().parse_args(argv)


def read_instances(out):
    rows = []
    for f in fsutil.list_files(os.path.join(out, "instances"), ".parquet"):
        rows += parquet.read(f, INSTANCES_TABLE).to_pylist()  # the table's name and version checked
    return {r["target_id"]: r for r in rows}


def test_default_profile_whole_corpus_threads(spark, ingest_dir, tmp_path):
    out = tmp_path / "out"
    stats = instances.run(args_for(ingest_dir, out, use_title=1))
    assert (out / "_SUCCESS").exists()
    assert StageStats.read(str(out / "stats.json")).to_dict() == stats.to_dict()
    got = read_instances(out)
    # the late reply joins its thread: turns oldest first, ending in the target, topped by the title
    late = got["t1_c3"]
    assert late["month"] == "2011-02" and late["link_id"] == "t3_s1" and late["parent_id"] == "t1_c2"
    assert late["turn_ids"] == ["t3_s1", "t1_c1", "t1_c2", "t1_c3"]
    assert late["turn_authors"] == [None, "u_c1", "u_c2", "u_c3"]
    assert late["turns_raw"][0] == "title: What is up?"
    assert late["turns"] == [
        "title: What is up?",
        "hello there friend",
        "hi back to you",
        "a late reply here",
    ]
    assert late["turn_weights"] == [1.0] * 4 and late["weights_in_text"] is False
    assert late["subreddit"] == "askreddit"
    # a quote is stripped, the reply kept; [removed]/[deleted] are gone; cycles are dropped, not followed
    assert got["t1_c5"]["turns"][-1] == "quoting my friend"
    assert got["t1_c5"]["turns_raw"][-1] == "&gt; hello there\n\nquoting my friend"
    assert "t1_c4" not in got and "t1_d1" not in got and "t1_d2" not in got
    assert got["t1_e2"]["turns"] == ["title: Bad", "top level words", "reply words here"]
    assert stats.rows_in == 13 and stats.rows_out == len(got)
    assert stats.dropped["deleted"] == 2
    assert stats.dropped["parent_cycle"] == 3
    assert stats.extra["config"]["profile"] == "default" and stats.extra["config"]["use_title"] is True
    stats.check()


def test_dialogpt_profile_month_isolation_and_weights(spark, ingest_dir, tmp_path, shared_dir):
    lists = shared_dir / "golden" / "dialogpt-extractor" / "lists"
    out = tmp_path / "out"
    stats = instances.run(
        args_for(
            ingest_dir, out, profile="dialogpt", min_score=0, use_title=1, leaves_only=1,
            bl_words=lists / "words.blocklist.txt", bl_subreddits=lists / "subreddits.blocklist.txt",
        )
    )  # fmt: skip
    got = read_instances(out)
    assert "t1_c3" not in got  # the late reply is lost, as in the released extractor
    assert stats.dropped["submission_not_kept"] == 1  # c3: its thread has no submission in 2011-02
    assert (
        stats.dropped["quote"] == 1 and stats.dropped["deleted"] == 1
    )  # c5, d5 ([removed] is not dropped here)
    assert stats.dropped["too_few_tokens"] == 1  # c4 "[removed]" is one token
    assert stats.dropped["blocked_subreddit"] == 1  # e2 (e1 is not a leaf)
    c2 = got["t1_c2"]  # a leaf once c3 is gone from its month
    assert c2["turns"] == ["title : What is up ?", "hello there friend", "hi back to you"]
    assert c2["weights_in_text"] is True and c2["turn_weights"] == [1.0, 1.0, 1.0]
    assert got["t1_c6"]["target_score"] is None  # None counts as 0 >= min_score 0
    # a self-parent replies to itself, so it is no leaf; cycle members neither (and their walks are bounded)
    assert "t1_d1" not in got and "t1_d2" not in got and "t1_d3" not in got
    stats.check()
    assert stats.rows_in == 13
    # a stricter score rule and a bigger min_depth, through the CLI entry point
    rc = instances.main(
        ["--input", ingest_dir, "--output", str(tmp_path / "o2"), "--profile", "dialogpt", "--min_depth", "3"]
    )
    assert rc == 0
    s2 = StageStats.read(str(tmp_path / "o2" / "stats.json"))
    assert s2.extra["config"]["min_score"] == 1 and s2.dropped["low_score"] == 1  # c6: None -> 0 < 1


def test_bad_input_gives_clear_errors(tmp_path, capsys):
    assert instances.main(["--input", str(tmp_path / "nope"), "--output", str(tmp_path / "o")]) == 2
    assert "not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        instances.build_parser().parse_args(["--input", "a", "--output", "b", "--use_title", "yes"])
    cfg = instances.build_parser().parse_args(["--input", "a", "--output", "b", "--keys", str(tmp_path)])
    with pytest.raises(StageError, match="only applies"):
        cfg.validate()
    assert instances.main(["--input", "a", "--output", "b", "--keys", str(tmp_path)]) == 2
    assert "instances: error: --keys (DialoGPT key files) only applies" in capsys.readouterr().err
    with pytest.raises(StageError, match="min-depth must be >= 1"):
        instances.build_parser().parse_args(["--input", "a", "--output", "b", "--min-depth", "0"]).build()


def test_released_flag_spellings_and_profile_defaults(tmp_path):
    def parse(*flags):
        return instances.build_parser().parse_args(["--input", "a", "--output", "b", *flags])

    released = [
        "--min_score",
        "2",
        "--min_depth",
        "3",
        "--max_depth",
        "4",
        "--use_title",
        "1",
        "--leaves_only",
        "0",
        "--max_len",
        "0",
        "--rows_per_task",
        "7",
        "--bl_words",
        "w",
        "--bl_subreddits",
        "s",
    ]
    hyphenated = ["--min-score", "2", "--min-depth", "3", "--max-depth", "4", "--use-title", "1",
                  "--leaves-only", "0", "--max-words", "0", "--rows-per-task", "7", "--bl-words", "w",
                  "--bl-subreddits", "s"]  # fmt: skip
    assert parse(*released) == parse(*hyphenated)
    built = parse("--max-words", "0", "--months", "2011-01, 2011-02", "--use-title", "true").build()
    assert built.max_len is None and built.months == ["2011-01", "2011-02"] and built.use_title is True
    dialogpt = parse("--profile", "dialogpt").build()
    assert (dialogpt.min_score, dialogpt.leaves_only, dialogpt.max_len, dialogpt.weights_in_text) == (
        1,
        True,
        30,
        True,
    )
    assert parse("--profile", "dialogpt", "--clean", "0").build().weights_in_text is False
    assert parse().build().min_score is None and not parse().build().leaves_only
    # a --config file sets fields (a YAML list of months too); flags override it
    config = tmp_path / "instances.yaml"
    config.write_text("profile: dialogpt\nmonths: [2011-01]\nmax_words: 12\nmin_depth: 2\n")
    built = parse("--config", str(config), "--min-depth", "3").build()
    assert (built.profile, built.months, built.max_len, built.min_depth) == ("dialogpt", ["2011-01"], 12, 3)


def test_giant_thread_is_sharded_and_bounded(spark, tmp_path):
    """A 100,000-comment thread (a binary tree, depth ~17) under default executor memory, split into shards."""
    n = 100_000
    rows = [comment("r0", "t3_big", "t3_big", "root of it all")]
    rows += [
        comment(f"r{i}", "t3_big", f"t1_r{(i - 1) // 2}", f"reply number {i}", line=i) for i in range(1, n)
    ]
    ingest = write_ingest(tmp_path / "ingest", rows, [submission("big", "Big")])
    out = tmp_path / "out"
    stats = instances.run(args_for(ingest, out, rows_per_task=40_000))
    assert stats.extra["tasks"] == 3  # one bucket, three shards
    assert stats.rows_out == n - 1 and stats.dropped == {"too_shallow": 1}
    table = pq.read_table(out / "instances", columns=["target_id", "turn_ids"])
    assert table.num_rows == n - 1 and len(set(table["target_id"].to_pylist())) == n - 1
    depth = [len(t) for t in table["turn_ids"].to_pylist()]
    assert max(depth) == 5 and min(depth) == 2


def test_dialogpt_profile_without_lists_says_what_is_inactive(spark, ingest_dir, tmp_path, capsys):
    words = tmp_path / "words.txt"
    words.write_text("# offensive words\nbadword\n")
    stats = instances.run(args_for(ingest_dir, tmp_path / "none", profile="dialogpt"))
    err = capsys.readouterr().err
    assert "warning: instances: no --bl_words list" in err and "no --bl_subreddits list" in err
    assert len(stats.extra["inactive_blocklists"]) == 2
    stats = instances.run(args_for(ingest_dir, tmp_path / "words", profile="dialogpt", bl_words=str(words)))
    assert stats.extra["inactive_blocklists"] == [
        "no --bl_subreddits list (or it is empty): no subreddit is blocked"
    ]
    stats = instances.run(args_for(ingest_dir, tmp_path / "default"))
    assert stats.extra["inactive_blocklists"] == []  # the default profile's list rules are the filter's
