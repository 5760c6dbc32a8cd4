"""The filter output as a dataset folder, through the real stage: Hugging Face ``datasets`` loads it with
the kept rows per split, the dataset card describes it, the JSON Lines export holds the kept rows, and
the subreddit allow-list selects communities with every other instance counted."""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from filter_helpers import corpus, instance, write_instances_dir

from dialogsmith.filter import job
from dialogsmith.filter.report import HF_SPLITS
from dialogsmith.formats import parquet
from dialogsmith.formats.schemas import DROPPED_TABLE, FILTERED_TABLE
from dialogsmith.formats.stats import StageStats

# Local folders only: never ask the hub (set before datasets reads its configuration).
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SPLITS = ("train", "valid", "test")


def _rows() -> list[dict]:
    rows = corpus()
    for i, r in enumerate(rows):  # several communities, in mixed case as in the dumps' permalinks
        r["subreddit"] = ("AskReddit", "pics", "funny", "Python")[i % 4]
    rows.append(instance(["ça va , mon ami ?", "très bien — thank you for the café 😀"], link="t3_u1"))
    return rows


@pytest.fixture(scope="module")
def instances_dir(tmp_path_factory):
    return write_instances_dir(tmp_path_factory.mktemp("inst"), _rows())


def _run(instances_dir, out, *extra) -> StageStats:
    argv = ["--input", str(instances_dir), "--output", str(out), "--rows-per-task", "50", "--quiet", *extra]
    return job.run(job.build_parser().parse_args(argv))


@pytest.fixture(scope="module")
def filtered(spark, instances_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("filtered") / "out"
    stats = _run(instances_dir, out, "--jsonl", "--export-tsv", "--split", "0.6,0.2,0.2")
    return out, stats


def _table(out, sub, fmt) -> pa.Table:
    files = parquet.files_of(str(out / sub))
    return pa.concat_tables([parquet.read(f, fmt) for f in files])


def test_load_dataset_gives_the_kept_rows_per_split(filtered, tmp_path):
    datasets = pytest.importorskip("datasets")
    out, _ = filtered
    saved = StageStats.read(str(out / "stats.json"))
    dropped = set(_table(out, "dropped", DROPPED_TABLE).column("instance_id").to_pylist())
    assert len(dropped) == sum(saved.dropped.values()) > 0
    by_dir = datasets.load_dataset("parquet", data_dir=str(out), cache_dir=str(tmp_path / "a"))
    by_card = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "b"))  # the card's configs
    for ds in (by_dir, by_card):
        assert set(ds) == {"train", "validation", "test"}
        for ours, theirs in HF_SPLITS.items():
            kept = _table(out, ours, FILTERED_TABLE).column("instance_id").to_pylist()
            assert ds[theirs].num_rows == saved.extra["splits"][ours] == len(kept) > 0, ours
            assert sorted(ds[theirs]["instance_id"]) == sorted(kept)
            assert not dropped & set(ds[theirs]["instance_id"])  # dropped/ does not leak into a split
            assert set(ds[theirs]["split"]) == {ours}
    assert sum(by_dir[s].num_rows for s in by_dir) == saved.rows_out


def test_empty_splits_load_too(spark, instances_dir, tmp_path):
    """Small data leaves valid/test empty at 1%: their files hold no row group, the card lists the other
    splits, and both ways of loading still give the kept rows."""
    datasets = pytest.importorskip("datasets")
    out = tmp_path / "out"
    stats = _run(instances_dir, out, "--profile", "dialogpt", "--split", "1.0,0.0,0.0")
    assert stats.extra["splits"] == {"train": stats.rows_out, "valid": 0, "test": 0}
    for split in ("valid", "test"):
        assert [p.name for p in (out / split).iterdir()] == ["part-empty.parquet"]
        assert pq.ParquetFile(out / split / "part-empty.parquet").metadata.num_row_groups == 0
    header = yaml.safe_load((out / "README.md").read_text(encoding="utf-8").split("---\n")[1])
    assert [c["split"] for c in header["configs"][0]["data_files"]] == ["train"]
    by_card = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "a"))
    train = datasets.load_dataset("parquet", data_dir=str(out), split="train", cache_dir=str(tmp_path / "b"))
    assert set(by_card) == {"train"} and by_card["train"].num_rows == train.num_rows == stats.rows_out


def test_dataset_card_is_committed_and_names_the_counts(filtered):
    out, stats = filtered
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "README.md" in json.loads((out / "_dialogsmith.json").read_text())["files"]
    _, header, body = card.split("---\n", 2)
    meta = yaml.safe_load(header)
    files = {c["split"]: c["path"] for c in meta["configs"][0]["data_files"]}
    assert files == {"train": "train/*.parquet", "validation": "valid/*.parquet", "test": "test/*.parquet"}
    for ours, theirs in HF_SPLITS.items():
        assert f"| {theirs} | `{ours}/*.parquet` | {stats.extra['splits'][ours]:,} |" in body
    assert f"{stats.rows_out:,} instances kept of {stats.rows_in:,}" in body
    funnel = json.loads((out / "funnel.json").read_text())
    for step in funnel["steps"]:
        assert f"| `{step['rule']}` | {step['removed']:,} | {step['remaining']:,} |" in body
    assert "| `turns` | list<string> |" in body and "| `split` | string |" in body
    assert "| 2011-01 | " in body  # the source months
    assert "Pushshift" in body and "https://www.redditinc.com/policies" in body
    assert "`jsonl/{train,valid,test}.jsonl`" in body and "`tsv/<month>.tsv`" in body


def test_jsonl_rows_equal_the_kept_rows(filtered):
    out, stats = filtered
    total = 0
    for split in SPLITS:
        raw = (out / "jsonl" / f"{split}.jsonl").read_bytes()
        got = [json.loads(line) for line in raw.decode("utf-8").splitlines()]
        kept = _table(out, split, FILTERED_TABLE).to_pylist()  # the same order: task after task
        assert got == [
            {
                "context": r["turns"][:-1],
                "response": r["turns"][-1],
                "subreddit": r["subreddit"],
                "id": r["instance_id"],
            }
            for r in kept
        ]
        assert all(list(o) == ["context", "response", "subreddit", "id"] for o in got)
        total += len(got)
    assert total == stats.rows_out
    text = b"".join((out / "jsonl" / f"{s}.jsonl").read_bytes() for s in SPLITS)
    assert "très bien — thank you for the café 😀".encode() in text  # UTF-8, not \\u escapes
    assert b'"response": "the & reply"' in text  # the default profile's unescaped text


def test_subreddit_allow_list(spark, instances_dir, tmp_path, capsys):
    names = tmp_path / "subs.txt"
    names.write_text("# communities to keep\nAskReddit\n  funny  \n#pics\n", encoding="utf-8")
    by_names = _run(instances_dir, tmp_path / "a", "--subreddits", "askreddit,FUNNY")
    by_file = _run(instances_dir, tmp_path / "b", "--subreddits", f"@{names}")
    by_path = _run(instances_dir, tmp_path / "c", "--subreddits", str(names))
    everything = _run(instances_dir, tmp_path / "d")
    rows = [r for r in _rows() if r["turns"]]  # the malformed one is counted before any rule
    others = sum(r["subreddit"].lower() not in ("askreddit", "funny") for r in rows)
    for stats, out in ((by_names, "a"), (by_file, "b"), (by_path, "c")):
        assert stats.check().rows_in == everything.rows_in
        assert stats.dropped["subreddit_not_allowed"] == others
        kept = {
            s
            for split in SPLITS
            for s in _table(tmp_path / out, split, FILTERED_TABLE).column("subreddit").to_pylist()
        }
        assert kept == {"AskReddit", "funny"}
        funnel = json.loads((tmp_path / out / "funnel.json").read_text())
        assert [s["rule"] for s in funnel["steps"][:2]] == ["malformed_instance", "subreddit_not_allowed"]
        dropped = _table(tmp_path / out, "dropped", DROPPED_TABLE).to_pylist()
        assert sum(r["reason"] == "subreddit_not_allowed" for r in dropped) == others
        assert stats.extra["config"]["allow_subreddits"]
    assert by_names.dropped == by_file.dropped == by_path.dropped
    assert by_names.rows_out < everything.rows_out and "subreddit_not_allowed" not in everything.dropped
    argv = ["--input", str(instances_dir), "--output", str(tmp_path / "e"), "--quiet"]
    assert job.main([*argv, "--subreddits", f"@{tmp_path / 'missing.txt'}"]) == 2
    assert "--subreddits" in capsys.readouterr().err and not (tmp_path / "e").exists()
    assert job.main([*argv, "--subreddits", " , "]) == 2
    assert "no subreddit names" in capsys.readouterr().err


def test_flags_keep_their_old_spellings():
    cfg = job.build_parser().parse_args(
        ["--input", "i", "--output", "o", "--disable", "shouting,has_url", "--disable", "self_reply",
         "--bl_words", "w.txt", "--bl_subreddits", "s.txt", "--no-bland-scale", "--no-unescape-html"]
    )  # fmt: skip
    assert cfg.disabled == ("shouting", "has_url", "self_reply")
    assert (cfg.bl_words, cfg.bl_subreddits, cfg.bland_scale, cfg.unescape_html) == (
        "w.txt",
        "s.txt",
        False,
        False,
    )


def test_inactive_blocklist_rules_are_warned_about(spark, instances_dir, tmp_path, capsys):
    """The default profile's blocklist rules with no list drop nothing: a warning names them (and
    stats.json records them); a list with entries, or --disable, silences it."""
    stats = _run(instances_dir, tmp_path / "none")
    err = capsys.readouterr().err
    rules = ["blocklisted_word", "blocklisted_context", "blocklisted_subreddit"]
    assert f"warning: filter: profile 'default': rule(s) {', '.join(rules)} inactive" in err
    assert stats.extra["inactive_rules"] == rules
    words, subs = tmp_path / "words.txt", tmp_path / "subs.txt"
    words.write_text("# words\nbadword\n", encoding="utf-8")
    subs.write_text("# comments only: no entries\n", encoding="utf-8")
    stats = _run(instances_dir, tmp_path / "lists", "--bl-words", str(words), "--bl-subreddits", str(subs))
    assert "rule(s) blocklisted_subreddit inactive" in capsys.readouterr().err
    assert stats.extra["inactive_rules"] == ["blocklisted_subreddit"]
    stats = _run(instances_dir, tmp_path / "off", "--disable", ",".join(rules))
    assert "warning: filter" not in capsys.readouterr().err and stats.extra["inactive_rules"] == []
