"""The synthetic dump generator: real compression, exact counts, era rules, thread shapes, text."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import zstandard

from dialogsmith.sample import files, job, vocab
from dialogsmith.sample import realistic as realistic_shape
from dialogsmith.sample.synth import SynthConfig, generate
from dialogsmith.stage import StageError

SMALL = 3000  # comment lines per month: each generate() call below takes well under a second
STAGE_FILES = ("_SUCCESS", "_dialogsmith.json", "stats.json")  # what the stage adds to generate()'s files


def read_raw(path: Path) -> bytes:
    name = path.name
    if name.endswith(".zst"):
        with open(path, "rb") as f:
            return zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(f).read()
    if name.endswith(".bz2"):
        return bz2.decompress(path.read_bytes())
    if name.endswith(".xz"):
        return lzma.decompress(path.read_bytes())
    if name.endswith(".gz"):
        return gzip.decompress(path.read_bytes())
    return path.read_bytes()


def classify(raw: bytes, required: tuple[str, ...]):
    """Independent count with stdlib json: (valid records by id, Counter of reasons, duplicates, lines)."""
    valid: dict[str, dict] = {}
    reasons: Counter[str] = Counter()
    duplicates = 0
    lines = raw.split(b"\n")
    for line in lines:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            reasons["bad_utf8"] += 1
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            reasons["bad_json"] += 1
            continue
        if not isinstance(obj, dict):
            reasons["not_object"] += 1
        elif any(k not in obj for k in required):
            reasons["missing_field"] += 1
        elif any(not isinstance(obj[k], str) for k in required):
            reasons["bad_type"] += 1
        elif obj["id"] in valid:
            assert obj == valid[obj["id"]], "a duplicate must be an exact copy"
            duplicates += 1
        else:
            valid[obj["id"]] = obj
    return valid, reasons, duplicates, len(lines)


def valid_in_file_order(raw: bytes) -> list[dict]:
    out = []
    for line in raw.split(b"\n"):
        try:
            obj = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(obj, dict) and all(isinstance(obj.get(k), str) for k in files.COMMENT_REQUIRED):
            out.append(obj)
    return out


def load(out: Path, report) -> tuple[dict[str, dict[str, dict]], dict[str, dict[str, dict]]]:
    """{month: {id: comment}}, {month: {id: submission}} of the valid records."""
    comments, submissions = {}, {}
    for name, entry in report.files.items():
        required = files.COMMENT_REQUIRED if entry["kind"] == "comments" else files.SUBMISSION_REQUIRED
        valid, *_ = classify(read_raw(out / name), required)
        (comments if entry["kind"] == "comments" else submissions)[entry["month"]] = valid
    return comments, submissions


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """Two consecutive 2016 months with a mega-thread: the shared fixture of most tests."""
    out = tmp_path_factory.mktemp("synth")
    cfg = SynthConfig(months=["2016-01", "2016-02"], comments_per_month=SMALL, seed=7, mega_thread=2500)
    report = generate(out, cfg)
    comments, submissions = load(out, report)
    return out, cfg, report, comments, submissions


def depths(by_id: dict[str, dict]) -> dict[str, int]:
    """Depth of every comment, walking up through the comments present (1: its parent is absent)."""
    depth: dict[str, int] = {}
    for start in by_id:
        chain, cid = [], start
        while cid not in depth:
            c = by_id.get(cid)
            if c is None or not c["parent_id"].startswith("t1_"):
                depth[cid] = 1 if c else 0
                break
            chain.append(cid)
            cid = c["parent_id"][3:]
        for x in reversed(chain):
            depth[x] = depth[by_id[x]["parent_id"][3:]] + 1
    return {c: depth[c] for c in by_id}


def assert_report_is_exact(out: Path, report, comments, submissions, malformed_max: float) -> None:
    """Every figure of the report re-derived by reading the files back with the stdlib."""
    total = Counter()
    for name, entry in report.files.items():
        required = files.COMMENT_REQUIRED if entry["kind"] == "comments" else files.SUBMISSION_REQUIRED
        raw = read_raw(out / name)
        assert not raw.endswith(b"\n"), "the last line has no trailing newline"
        assert b"\n\n" not in raw and not raw.startswith(b"\n"), "no blank lines"
        valid, reasons, dups, lines = classify(raw, required)
        assert entry["lines"] == lines
        assert entry["valid_distinct"] == len(valid)
        assert entry["duplicates"] == dups > 0
        assert entry["quarantine"] == dict(reasons)
        assert set(reasons) == set(files.QUARANTINE_REASONS), f"{name}: every malformed kind present"
        n_bad = sum(reasons.values())
        assert n_bad < max(malformed_max * lines, len(files.QUARANTINE_REASONS) + 1), "a small share"
        assert lines == len(valid) + dups + sum(reasons.values())
        total.update(reasons)
    assert report.comments == sum(len(v) for v in comments.values())
    assert report.submissions == sum(len(v) for v in submissions.values())
    assert report.quarantine == dict(total)
    assert report.lines == sum(e["lines"] for e in report.files.values())
    on_disk = json.loads((out / "synth_report.json").read_text())
    assert on_disk["comments"] == report.comments and on_disk["files"] == report.files


def test_report_matches_an_independent_count(sample):
    out, _, report, comments, submissions = sample
    assert sorted(report.files) == ["RC_2016-01.zst", "RC_2016-02.zst", "RS_2016-01.zst", "RS_2016-02.zst"]
    assert_report_is_exact(out, report, comments, submissions, malformed_max=0.02)


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    cfg = SynthConfig(months=["2011-01", "2011-02"], comments_per_month=800, seed=99, mega_thread=300)
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate(a, cfg)
    # the same config through the CLI in another process, with another string-hash seed
    cmd = [
        sys.executable,
        "-m",
        "dialogsmith.sample.job",
        "--output",
        str(b),
        "--seed",
        "99",
        "--comments",
        "800",
    ]
    cmd += ["--months", "2011-01,2011-02", "--mega-thread", "300"]
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "PYTHONHASHSEED": "12345"})
    generate(c, SynthConfig(months=cfg.months, comments_per_month=800, seed=100, mega_thread=300))
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir() if p.name not in STAGE_FILES)
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "RC_2011-01.zst").read_bytes() != (c / "RC_2011-01.zst").read_bytes()


@pytest.mark.parametrize("compression", ["zst", "bz2", "xz", "gz", "none"])
def test_every_compression_is_real_and_holds_the_same_lines(tmp_path, compression):
    cfg = SynthConfig(months=["2016-03"], comments_per_month=400, seed=5, compression=compression)
    report = generate(tmp_path / compression, cfg)
    suffix = files.COMPRESSIONS[compression]
    assert sorted(report.files) == [f"RC_2016-03{suffix}", f"RS_2016-03{suffix}"]
    raw = read_raw(tmp_path / compression / f"RC_2016-03{suffix}")
    if compression == "gz":
        header = (tmp_path / compression / f"RC_2016-03{suffix}").read_bytes()[:10]
        assert header[4:8] == b"\0\0\0\0", "gzip mtime is 0 (deterministic)"
    reference = generate(tmp_path / "ref", SynthConfig(months=["2016-03"], comments_per_month=400, seed=5))
    assert raw == read_raw(tmp_path / "ref" / "RC_2016-03.zst")
    assert report.comments == reference.comments


def test_zst_declares_a_2gib_window_like_the_real_dumps(sample):
    path = sample[0] / "RC_2016-01.zst"
    data = path.read_bytes()
    params = zstandard.get_frame_parameters(data)
    assert params.window_size == 2**31
    assert params.content_size == zstandard.CONTENTSIZE_UNKNOWN
    with open(path, "rb") as f, pytest.raises(zstandard.ZstdError, match="too much memory"):
        zstandard.ZstdDecompressor().stream_reader(f).read()
    with open(path, "rb") as f:
        assert zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(f).read().startswith(b"{")


def test_ids_are_base36_unique_and_increase_with_time(sample):
    comments = sample[3]
    ids = [c["id"] for month in comments.values() for c in month.values()]
    assert len(ids) == len(set(ids))
    for month in comments.values():
        rows = sorted(month.values(), key=lambda c: int(c["id"], 36))
        assert all(re.fullmatch(r"[0-9a-z]+", c["id"]) for c in rows)
        times = [c["created_utc"] for c in rows]
        assert times == sorted(times), "a later id never has an earlier created_utc"
        assert all(c["link_id"].startswith("t3_") and c["parent_id"][:3] in ("t1_", "t3_") for c in rows)
    # the file is roughly, not strictly, ordered by created_utc
    times = [c["created_utc"] for c in valid_in_file_order(read_raw(sample[0] / "RC_2016-01.zst"))]
    inversions = sum(a > b for a, b in zip(times[:-1], times[1:], strict=True))
    assert 0 < inversions < 0.05 * len(times)


def test_thread_shapes(sample):
    _, cfg, _, comments, submissions = sample
    jan, feb = comments["2016-01"], comments["2016-02"]
    all_ids = set(jan) | set(feb)
    by_id = {**jan, **feb}
    assert max(depths(by_id).values()) >= 10, "deep chains"
    per_link = Counter(c["link_id"] for c in jan.values())
    top_level = Counter(c["link_id"] for c in jan.values() if c["parent_id"].startswith("t3_"))
    assert max(top_level.values()) >= 15, "wide threads"
    assert per_link.most_common(1)[0][1] >= cfg.mega_thread * 0.97, (
        "mega-thread (a few lines lost to malformed)"
    )
    orphans = [
        c for c in by_id.values() if c["parent_id"].startswith("t1_") and c["parent_id"][3:] not in all_ids
    ]
    assert orphans, "replies whose parent comment is absent"
    sub_ids = {s: m for m, subs in submissions.items() for s in subs}
    assert any(c["link_id"][3:] not in sub_ids for c in jan.values()), (
        "comments of a submission absent from RS"
    )
    late = [c for c in feb.values() if sub_ids.get(c["link_id"][3:]) == "2016-01"]
    assert 0.02 * len(feb) < len(late) < 0.1 * len(feb), "replies landing in the next month"
    # num_comments is consistent-ish with the comments generated (some lost, some crawl noise)
    seen = Counter(c["link_id"][3:] for c in by_id.values())
    close = [abs(s["num_comments"] - seen[sid]) <= 3 for sid, s in submissions["2016-01"].items()]
    assert sum(close) > 0.85 * len(close)


def test_text_exercises_every_extractor_rule(sample):
    comments = sample[3]
    bodies = [c["body"] for month in comments.values() for c in month.values()]
    text = "\n".join(bodies)
    checks = {
        "deleted": "[deleted]" in bodies,
        "removed": "[removed]" in bodies,
        "quote": any(b.startswith("&gt; ") for b in bodies),
        "url": "http://" in text and "https://" in text,
        "brackets": "(" in text and "[" in text,
        "shouting": re.search(r"[A-Z]{5,}", text) is not None,
        "repeated": re.search(r"\b(\w+) \1 \1\b", text) is not None,
        "non_english": "ö" in text or "é" in text,
        "long_word": any(len(w) > 30 for w in text.split()),
        "blocklisted": all(w in text.lower() for w in vocab.BLOCKLIST_WORDS),
        "entities": "&amp;" in text and "&lt;" in text,
        "emoji": any(ord(ch) > 0xFFFF for ch in text),
        "abbreviations": all(a in text for a in ("b/c", "w/", "w/o", "j/k")),
        "hashtags": re.search(r"(^|\s)#\w", text) is not None,
        "backslash": "\\" in text,
        "newline_tab": any("\n" in b for b in bodies) and "\t" in text,
    }
    assert all(checks.values()), [k for k, v in checks.items() if not v]
    subreddits = {c["subreddit"] for month in comments.values() for c in month.values()}
    assert set(vocab.BLOCKLIST_SUBREDDITS) <= subreddits
    authors = {c["author"] for month in comments.values() for c in month.values()}
    assert "AutoModerator" in authors and any(a.endswith("_bot") for a in authors) and "[deleted]" in authors
    assert "I am a bot, and this action was performed automatically" in text
    lengths = [len(b.split()) for b in bodies]
    assert min(lengths) == 1 and max(lengths) >= 30


def test_replies_answer_their_parent(sample):
    """The learnable signal: a reply to "what is your favorite X?" mostly says "my favorite X is ..."."""
    by_id = {k: v for month in sample[3].values() for k, v in month.items()}
    pairs = answered = 0
    for c in by_id.values():
        parent = by_id.get(c["parent_id"][3:])
        if parent and c["parent_id"].startswith("t1_"):
            m = re.search(r"what is your favorite (\w+)\?$", parent["body"], re.I)
            if m:
                pairs += 1
                answered += f"favorite {m.group(1)} is" in c["body"].lower()
    assert pairs >= 10
    assert answered > 0.4 * pairs


def test_era_fields_and_types(tmp_path):
    months = ["2011-06", "2014-05", "2015-02", "2016-11", "2017-10"]
    cfg = SynthConfig(months=months, comments_per_month=1500, seed=3, late_reply_fraction=0.0)
    comments, submissions = load(tmp_path, generate(tmp_path, cfg))
    c2011 = list(comments["2011-06"].values())
    assert all(isinstance(c["created_utc"], str) and c["name"] == "t1_" + c["id"] for c in c2011)
    assert all("ups" in c and "downs" in c and "archived" in c for c in c2011)
    assert all(isinstance(s["created_utc"], int) for s in submissions["2011-06"].values())
    assert all(isinstance(s["created_utc"], str) for s in submissions["2014-05"].values())
    raw_api = [c for c in comments["2015-02"].values() if "body_html" in c]
    assert raw_api and all(isinstance(c["created_utc"], int) for c in raw_api)
    assert all(
        isinstance(c["created_utc"], str) for c in comments["2015-02"].values() if "body_html" not in c
    )
    c2016 = list(comments["2016-11"].values())
    assert all("ups" not in c and isinstance(c["created_utc"], int) for c in c2016)
    edited = Counter(type(c["edited"]).__name__ for c in c2016)
    assert edited["bool"] and edited["int"] and edited["float"]
    assert all(c["edited"] is False for c in c2016 if isinstance(c["edited"], bool))
    scores = [c["score"] for c in comments["2017-10"].values()]
    assert None in scores and any(isinstance(s, int) for s in scores)
    assert any(s["subreddit_id"] is None for s in submissions["2017-10"].values())
    for s in submissions["2016-11"].values():
        assert s["permalink"] == f"/r/{s['subreddit']}/comments/{s['id']}/{vocab.slug(s['title'])}/"
        assert isinstance(s["num_comments"], int) and isinstance(s["is_self"], bool)


def test_bigquery_shape_has_numbers_as_strings(tmp_path):
    cfg = SynthConfig(months=["2018-03"], comments_per_month=600, seed=11, bigquery_shape=True)
    comments, submissions = load(tmp_path, generate(tmp_path, cfg))
    for c in comments["2018-03"].values():
        for key in ("created_utc", "retrieved_on", "controversiality", "gilded"):
            assert isinstance(c[key], str) and c[key].lstrip("-").isdigit(), (key, c[key])
        assert c["score"] is None or isinstance(c["score"], str)
        assert c["score_hidden"] is None and c["name"] is None and c["downs"] is None
    for s in submissions["2018-03"].values():
        assert isinstance(s["num_comments"], str) and isinstance(s["score"], str)


def test_no_malformed_option_and_bad_config(tmp_path):
    report = generate(tmp_path, SynthConfig(months=["2016-05"], comments_per_month=300, malformed=False))
    assert report.quarantine == {} and report.duplicates == 0
    assert report.lines == report.comments + report.submissions
    with pytest.raises(ValueError, match="bad month"):
        generate(tmp_path, SynthConfig(months=["2016-13"]))
    with pytest.raises(ValueError, match="compression"):
        generate(tmp_path, SynthConfig(compression="lz4"))


def test_cli(tmp_path, capsys):
    out = tmp_path / "sample"
    argv = ["--output", str(out), "--comments", "200", "--months", "2012-04", "--compression", "gz"]
    assert job.main(argv) == 0
    assert (out / "RC_2012-04.gz").exists() and (out / "RS_2012-04.gz").exists()
    printed = capsys.readouterr().out
    assert "RC_2012-04.gz:" in printed and "comments" in printed
    report = json.loads((out / "synth_report.json").read_text())
    stats = json.loads((out / "stats.json").read_text())
    assert stats["stage"] == "sample" and stats["rows_in"] == stats["rows_out"] == report["lines"]
    assert stats["extra"]["comments"] == report["comments"]
    assert stats["extra"]["malformed"] == report["quarantine"]
    assert stats["extra"]["written"]["RC_2012-04.gz"]["lines"] == report["files"]["RC_2012-04.gz"]["lines"]

    assert job.main(["--output", str(out), "--months", "2012/04"]) == 2
    assert "sample: error: bad month" in capsys.readouterr().err
    assert job.main(["--months", "2012-04"]) == 2
    assert "--output is required" in capsys.readouterr().err


def test_cli_flags_keep_their_old_spellings(tmp_path):
    """--out is the old spelling of --output; --no-malformed still turns malformed lines off; the
    sample has no input, so --input is not a flag."""
    cfg = job.build_parser().parse_args(
        ["--out", str(tmp_path), "--no-malformed", "--months", "2016-01, 2016-02"]
    )
    assert isinstance(cfg, job.SampleConfig)
    assert cfg.output == str(tmp_path) and cfg.malformed is False and cfg.months == ["2016-01", "2016-02"]
    assert job.build_parser().parse_args(["--output", "x"]).malformed is True
    with pytest.raises(SystemExit):
        job.build_parser().parse_args(["--output", "x", "--input", "y"])
    # the same knobs from a --config file, a flag overriding it
    conf = tmp_path / "sample.yaml"
    conf.write_text("months: 2011-01,2011-02\ncomments: 500\nseed: 9\n")
    with pytest.raises(StageError, match="unknown config field 'comments'"):  # field names, not flags
        job.build_parser().parse_args(["--config", str(conf), "--output", "x"])
    conf.write_text("months: [2011-01, 2011-02]\ncomments_per_month: 500\nseed: 9\n")
    cfg = job.build_parser().parse_args(["--config", str(conf), "--output", "x", "--seed", "10"])
    assert (cfg.months, cfg.comments_per_month, cfg.seed) == (["2011-01", "2011-02"], 500, 10)


def test_counts_scale_with_the_size_knob(tmp_path):
    small = generate(tmp_path / "s", SynthConfig(months=["2016-01"], comments_per_month=500, seed=1))
    big = generate(tmp_path / "b", SynthConfig(months=["2016-01"], comments_per_month=5000, seed=1))
    assert 0.97 * 500 < small.files["RC_2016-01.zst"]["lines"] < 1.03 * 500
    assert 0.97 * 5000 < big.files["RC_2016-01.zst"]["lines"] < 1.03 * 5000
    per_link = defaultdict(int)
    for c in valid_in_file_order(read_raw(tmp_path / "b" / "RC_2016-01.zst")):
        per_link[c["link_id"]] += 1
    sizes = sorted(per_link.values())
    assert sizes[len(sizes) // 2] < 10 and sizes[-1] >= 40, "heavy-tailed thread sizes"


# --- realistic shape --------------------------------------------------------------------------------

REALISTIC = 40_000  # comment lines per month: the fixture below takes ~2 s to write and read back


@pytest.fixture(scope="module")
def realistic(tmp_path_factory):
    """Two consecutive months of the realistic shape, each streamed in 5 time windows."""
    out = tmp_path_factory.mktemp("realistic")
    cfg = SynthConfig(
        months=["2016-01", "2016-02"],
        comments_per_month=REALISTIC,
        seed=21,
        shape="realistic",
        chunk_comments=8000,
    )
    report = generate(out, cfg)
    comments, submissions = load(out, report)
    return out, cfg, report, comments, submissions


def test_realistic_report_matches_an_independent_count(realistic):
    out, _, report, comments, submissions = realistic
    assert sorted(report.files) == ["RC_2016-01.zst", "RC_2016-02.zst", "RS_2016-01.zst", "RS_2016-02.zst"]
    assert_report_is_exact(out, report, comments, submissions, malformed_max=0.01)
    for month in ("2016-01", "2016-02"):
        entry = report.files[f"RC_{month}.zst"]
        assert 0.98 * REALISTIC < entry["lines"] < 1.02 * REALISTIC, "lines ~= the size knob"
        assert 0.002 < sum(entry["quarantine"].values()) / entry["lines"] < 0.004, "0.3% malformed"
        assert 0.0015 < entry["duplicates"] / entry["lines"] < 0.003, "0.2% duplicated"
        data = (out / f"RC_{month}.zst").read_bytes()
        assert zstandard.get_frame_parameters(data).window_size == 2**31, "declares the dumps' window"
        with open(out / f"RC_{month}.zst", "rb") as f, pytest.raises(zstandard.ZstdError, match="memory"):
            zstandard.ZstdDecompressor().stream_reader(f).read()


def test_realistic_thread_sizes(realistic):
    _, _, _, comments, submissions = realistic
    per_link = Counter(c["link_id"][3:] for month in comments.values() for c in month.values())
    sizes = [per_link[s] for s in submissions["2016-01"]]  # written comments, late replies included

    def share(lo: int, hi: int) -> float:
        return sum(lo <= s <= hi for s in sizes) / len(sizes)

    # 15% 0-1, 75% 2-30, 8% 30-200, 2% 500-2,000 (as drawn; 3% of comments are never written)
    assert 0.12 < share(0, 1) < 0.22
    assert 0.68 < share(2, 30) < 0.82
    assert 0.05 < share(31, 210) < 0.11
    assert 0.01 < share(440, 2010) < 0.035
    assert share(211, 439) < 0.005, "no medium-large threads (only a thread cut at a window's end)"
    assert max(sizes) <= 2003
    assert sum(s for s in sizes if s >= 440) > 0.4 * sum(sizes), "the big threads hold most comments"
    # num_comments counts them (ghosts and late replies included), give or take the crawl's noise
    close = [
        abs(s["num_comments"] - per_link[sid]) <= 3 + 0.06 * s["num_comments"]
        for sid, s in submissions["2016-01"].items()
    ]
    assert sum(close) > 0.85 * len(close)


def test_realistic_reply_structure(realistic):
    """Long chains, 25% top-level, 3% unseen parents, a few cross-thread parents, replies after parents."""
    _, _, _, comments, _ = realistic
    by_id = {k: v for month in comments.values() for k, v in month.items()}
    depth = depths(by_id)
    # The measured shape gives a 2,000-comment thread a deepest chain of ~18 on average (up to ~25);
    # a ghost or malformed parent cuts a chain here, as it does for an extractor.
    assert max(depth.values()) >= 18, "long chains"
    assert sum(d >= 10 for d in depth.values()) > 0.01 * len(depth)
    top = [c for c in by_id.values() if c["parent_id"].startswith("t3_")]
    assert 0.22 < len(top) / len(by_id) < 0.35
    replies = [c for c in by_id.values() if c["parent_id"].startswith("t1_")]
    unseen = [c for c in replies if c["parent_id"][3:] not in by_id]
    assert 0.02 < len(unseen) / len(replies) < 0.05, "3% of parents are ids never seen"
    seen = [c for c in replies if c["parent_id"][3:] in by_id]
    assert all(by_id[c["parent_id"][3:]]["created_utc"] <= c["created_utc"] for c in seen)
    cross = [c for c in seen if by_id[c["parent_id"][3:]]["link_id"] != c["link_id"]]
    assert 10 <= len(cross) < 0.002 * len(by_id), "0.05% of comments answer another thread's comment"
    # "newest": the parent is the thread's previous comment (by id, i.e. by time) in half the replies
    thread_ids: dict[str, list[int]] = defaultdict(list)
    for cid, c in by_id.items():
        thread_ids[c["link_id"]].append(int(cid, 36))
    previous = {}
    for ids in thread_ids.values():
        ids.sort()
        previous.update(zip(ids[1:], ids[:-1], strict=True))
    same_thread = [c for c in seen if c not in cross]
    newest = sum(previous.get(int(c["id"], 36)) == int(c["parent_id"][3:], 36) for c in same_thread)
    assert 0.42 < newest / len(same_thread) < 0.7


def test_realistic_late_replies_and_times(realistic):
    out, _, _, comments, submissions = realistic
    jan, feb = comments["2016-01"], comments["2016-02"]
    jan_threads = set(submissions["2016-01"])
    late = Counter(c["link_id"][3:] for c in feb.values() if c["link_id"][3:] in jan_threads)
    assert 0.07 < len(late) / len(jan_threads) < 0.13, "~10% of threads get late replies"
    assert max(late.values()) <= 3, "1-3 each"
    assert any(c["parent_id"][3:] in jan for c in feb.values()), "late replies to January comments"
    # a thread's comments spread over hours, sometimes days
    times: dict[str, list[int]] = defaultdict(list)
    for c in jan.values():
        times[c["link_id"]].append(c["created_utc"])
    spans = sorted(max(t) - min(t) for t in times.values() if len(t) >= 20)
    assert 3600 < spans[len(spans) // 2] < 3 * 86400 and spans[-1] > 86400
    for month, rows in comments.items():
        ordered = sorted(rows.values(), key=lambda c: int(c["id"], 36))
        assert [c["created_utc"] for c in ordered] == sorted(c["created_utc"] for c in ordered), month
        in_file = [c["created_utc"] for c in valid_in_file_order(read_raw(out / f"RC_{month}.zst"))]
        inversions = sum(a > b for a, b in zip(in_file[:-1], in_file[1:], strict=True))
        assert 0 < inversions < 0.05 * len(in_file), "roughly ordered by time, like the real dumps"
    bodies = [c["body"] for c in jan.values()]
    words = [len(b.split()) for b in bodies]
    assert sum(2 <= n <= 25 for n in words) > 0.75 * len(words)
    assert sum(re.search(r"[a-z][.!?] [A-Za-z]", b) is not None for b in bodies) > 0.05 * len(bodies)


def test_realistic_same_seed_same_bytes(tmp_path):
    kw = dict(months=["2016-11", "2016-12"], comments_per_month=4000, shape="realistic", chunk_comments=1000)
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    report = generate(a, SynthConfig(seed=5, mega_thread=600, **kw))
    cmd = [
        sys.executable,
        "-m",
        "dialogsmith.sample.job",
        "--output",
        str(b),
        "--seed",
        "5",
        "--comments",
        "4000",
    ]
    cmd += ["--months", "2016-11,2016-12", "--mega-thread", "600", "--shape", "realistic"]
    cmd += ["--chunk-comments", "1000"]
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "PYTHONHASHSEED": "777"})
    generate(c, SynthConfig(seed=6, mega_thread=600, **kw))
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir() if p.name not in STAGE_FILES)
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "RC_2016-11.zst").read_bytes() != (c / "RC_2016-11.zst").read_bytes()
    per_link = Counter(c["link_id"] for c in valid_in_file_order(read_raw(a / "RC_2016-11.zst")))
    assert per_link.most_common(1)[0][1] >= 600 * 0.95, "the mega-thread (a few ghosts and malformed)"
    assert report.files["RC_2016-11.zst"]["lines"] > 4000


def test_realistic_memory_is_bounded_by_the_chunk(tmp_path, monkeypatch):
    """A month of 24 chunks never holds more than about one chunk of comments, in numpy or in Python.

    Observed through the two places where rows are held: the pool of comments not yet written
    (after a window's threads are added: its high-water mark) and the batch turned into lines.
    """
    pool_rows, batch_rows = [], []
    pool_concat, comment_rows = realistic_shape._pool_concat, realistic_shape.comment_rows

    def observed_concat(a, b):
        pool = pool_concat(a, b)
        pool_rows.append(pool["gen"].size)
        return pool

    def observed_rows(*args, **kw):
        batch_rows.append(kw["idnum"].size)
        return comment_rows(*args, **kw)

    monkeypatch.setattr(realistic_shape, "_pool_concat", observed_concat)
    monkeypatch.setattr(realistic_shape, "comment_rows", observed_rows)
    chunk = 1000
    cfg = SynthConfig(months=["2016-03"], comments_per_month=24 * chunk, seed=2, shape="realistic")
    cfg.chunk_comments = chunk
    report = generate(tmp_path, cfg)
    assert len(batch_rows) == len(pool_rows) >= 24, "one batch written per time window"
    assert max(pool_rows) < 2.5 * chunk and max(batch_rows) < 2 * chunk, (max(pool_rows), max(batch_rows))
    assert sum(batch_rows) == report.files["RC_2016-03.zst"]["valid_distinct"] + sum(
        report.files["RC_2016-03.zst"]["quarantine"].values()
    )


@pytest.mark.parametrize(
    ("months", "compression", "bigquery"),
    [(["2015-02", "2023-05"], "bz2", False), (["2017-10"], "gz", True)],
)
def test_realistic_eras_and_compressions(tmp_path, months, compression, bigquery):
    cfg = SynthConfig(
        months=months,
        comments_per_month=1500,
        seed=8,
        shape="realistic",
        chunk_comments=500,
        compression=compression,
        bigquery_shape=bigquery,
    )
    report = generate(tmp_path, cfg)
    comments, submissions = load(tmp_path, report)
    assert_report_is_exact(tmp_path, report, comments, submissions, malformed_max=0.01)
    if bigquery:
        rows = list(comments["2017-10"].values())
        assert all(isinstance(c["created_utc"], str) and c["name"] is None for c in rows)
    else:
        assert any("body_html" in c for c in comments["2015-02"].values()), "2015-02 raw-API rows"
        assert all(isinstance(c["created_utc"], float) for c in comments["2023-05"].values())
        late = [c for c in comments["2023-05"].values() if c["link_id"][3:] in submissions["2015-02"]]
        assert not late, "no late replies into a month that does not follow"


def test_realistic_bad_config(tmp_path):
    with pytest.raises(ValueError, match="shape"):
        generate(tmp_path, SynthConfig(shape="deep"))
    with pytest.raises(ValueError, match="chunk_comments"):
        generate(tmp_path, SynthConfig(shape="realistic", chunk_comments=10))
