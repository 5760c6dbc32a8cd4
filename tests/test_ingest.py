"""Spark ingest job end to end on real compressed files (generator output, broken files, the real fixture)."""

from __future__ import annotations

import bz2
import hashlib
import io
import os
import shutil
import zlib

import orjson
import pyarrow.dataset as ds
import pytest
import zstandard

from dialogsmith import fastjson, fsutil, outputs
from dialogsmith.extract import dumps, plan, staging
from dialogsmith.extract import job as ingest
from dialogsmith.formats import parquet, schemas
from dialogsmith.formats.stats import StageStats
from dialogsmith.sample.synth import SynthConfig, generate
from dialogsmith.stage import StageError


def zstd_long(data: bytes) -> bytes:
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=31, write_content_size=False)
    out = io.BytesIO()
    with zstandard.ZstdCompressor(compression_params=params).stream_writer(out, closefd=False) as w:
        w.write(data)
    return out.getvalue()


def comment(i: int, link: str = "t3_zz1") -> dict:
    return {
        "id": f"x{i}",
        "link_id": link,
        "parent_id": link,
        "author": "a",
        "subreddit": "s",
        "body": f"body {i} " + hashlib.sha256(str(i).encode()).hexdigest() * 4,
        "score": 1,
        "created_utc": 1459468800 + i,
        "edited": False,
    }


def args_for(inp, out, **kw) -> ingest.ExtractConfig:
    argv = ["--input", str(inp), "--output", str(out)]
    for k, v in kw.items():
        argv += [f"--{k.replace('_', '-')}", str(v)]
    return ingest.build_parser().parse_args(argv)


def read_kind(out, kind: str):
    return ds.dataset(os.path.join(out, kind), format="parquet", partitioning="hive").to_table()


def first_valid_comment(path) -> dict:
    head = zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(open(path, "rb")).read(1 << 20)
    for line in head.split(b"\n")[:-1]:
        try:
            dumps.parse_line(line, "comments")
        except dumps.Quarantined:
            continue
        return orjson.loads(line)
    raise AssertionError("no valid comment")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Generator output + a truncated .zst + a file with invalid UTF-8 lines + a duplicating export."""
    d = tmp_path_factory.mktemp("dumps")
    report = generate(d, SynthConfig(months=["2016-01", "2016-02"], comments_per_month=1500, seed=7))
    # RC_2016-04: 2000 good lines, zstd stream cut in the middle
    blob = zstd_long(b"\n".join(orjson.dumps(comment(i)) for i in range(2000)) + b"\n")
    (d / "RC_2016-04.zst").write_bytes(blob[: len(blob) // 2])
    # RC_2016-05: invalid UTF-8 on two lines
    lines = [orjson.dumps(comment(1000 + i, "t3_zz2")) for i in range(20)]
    lines[5] = lines[5][:30] + b"\xff" + lines[5][30:]
    lines[12] = b"\xc3(" + lines[12]
    (d / "RC_2016-05.bz2").write_bytes(bz2.compress(b"\n".join(lines)))
    # export.ndjson (not an RC_ name): one copy of a comment from RC_2016-01 plus one new comment
    first = first_valid_comment(d / "RC_2016-01.zst")
    (d / "export.ndjson").write_bytes(orjson.dumps(first) + b"\n" + orjson.dumps(comment(5000)) + b"\n")
    return d, report, first


@pytest.fixture(scope="module")
def ingested(spark, corpus, tmp_path_factory):
    d, report, first = corpus
    out = tmp_path_factory.mktemp("out") / "extract"
    # small blocks and forced slices: several tasks share each file
    stats = ingest.run(args_for(d, out, buckets=5, slices=3, block_size=32 << 10), spark=spark)
    return out, stats


def test_counts_match_the_generator_exactly(corpus, ingested):
    d, report, _ = corpus
    out, stats = ingested
    comments, subs = read_kind(out, "comments"), read_kind(out, "submissions")
    # + the kept lines of the truncated file + 18 valid lines of the bad-UTF-8 file + 1 new in export
    truncated_kept = stats.extra["files"]["RC_2016-04.zst"]["parsed"]
    assert 0 < truncated_kept < 2000
    assert comments.num_rows == report.comments + truncated_kept + 18 + 1
    assert subs.num_rows == report.submissions
    assert stats.extra["comments"] == comments.num_rows and stats.extra["submissions"] == subs.num_rows
    assert len(set(comments.column("id").to_pylist())) == comments.num_rows
    # stats add up exactly: lines = written + duplicates + quarantined
    on_disk = StageStats.read(os.path.join(out, "stats.json"))
    assert on_disk.check().rows_out == comments.num_rows + subs.num_rows
    assert on_disk.merged == {"duplicate_id": report.duplicates + 1}
    expected_q = dict(report.quarantine)
    expected_q["bad_utf8"] = expected_q.get("bad_utf8", 0) + 2
    expected_q["truncated_file"] = 1
    assert on_disk.quarantined == dict(sorted(expected_q.items()))
    assert on_disk.rows_in == report.lines + truncated_kept + 1 + 20 + 2
    for name, f in report.files.items():
        got = on_disk.extra["files"][name]
        assert (got["lines"], got["quarantined"]) == (f["lines"], f["quarantine"])
    assert os.path.exists(os.path.join(out, "_SUCCESS"))


def test_buckets_hold_whole_threads_with_their_submission(ingested):
    out, stats = ingested
    assert stats.extra["n_buckets"] == 5
    for kind in ("comments", "submissions"):
        t = read_kind(out, kind)
        for link, bucket in zip(t.column("link_id").to_pylist(), t.column("bucket").to_pylist(), strict=True):
            assert schemas.link_bucket(link, 5) == int(bucket)
        parquet.open_file(os.path.join(out, kind, "bucket=0", "part-00000.parquet"), schemas.TABLES[kind])


def test_duplicates_written_once_keeping_the_first(corpus, ingested):
    _, _, first = corpus
    out, _ = ingested
    t = read_kind(out, "comments")
    rows = [r for r in t.select(["id", "source"]).to_pylist() if r["id"] == first["id"]]
    assert rows == [{"id": first["id"], "source": "RC_2016-01.zst"}]  # not export.ndjson's copy


def test_broken_files_keep_lines_before_the_break(ingested):
    out, stats = ingested
    files = stats.extra["files"]
    assert files["RC_2016-04.zst"]["error"].startswith("truncated_file")
    assert files["RC_2016-05.bz2"] == {
        "lines": 20,
        "parsed": 18,
        "quarantined": {"bad_utf8": 2},
        "error": None,
        "kind": "comments",
    }
    q = ds.dataset(os.path.join(out, "quarantine"), format="parquet").to_table().to_pylist()
    cut = [r for r in q if r["source"] == "RC_2016-04.zst"]
    assert [r["reason"] for r in cut] == ["truncated_file"] and "zstd" in cut[0]["detail"]
    assert sorted(r["line"] for r in q if r["source"] == "RC_2016-05.bz2") == [6, 13]
    t = read_kind(out, "comments")
    kept = sorted(
        int(i[1:])
        for i, s in zip(t["id"].to_pylist(), t["source"].to_pylist(), strict=True)
        if s == "RC_2016-04.zst"
    )
    assert kept == list(range(len(kept)))  # a prefix of the file, nothing lost before the break


def test_rerun_overwrites_safely(spark, corpus, ingested, tmp_path):
    d, _, _ = corpus
    out, stats = ingested
    target = tmp_path / "again"
    shutil.copytree(out, target)
    again = ingest.run(args_for(d, target, buckets=5), spark=spark)  # its own output: replaced
    assert again.rows_out == stats.rows_out and again.quarantined == stats.quarantined
    (target / "notes.txt").write_text("the user's own file")  # now it holds a foreign file: refused ...
    with pytest.raises(outputs.OutputRefused, match="did not write .notes.txt"):
        ingest.run(args_for(d, target, buckets=5), spark=spark)
    assert (target / "notes.txt").exists() and (target / "_SUCCESS").exists()
    argv = ["--input", str(d), "--output", str(target), "--buckets", "5", "--force"]
    again = ingest.run(ingest.build_parser().parse_args(argv), spark=spark)  # ... unless --force
    assert again.rows_out == stats.rows_out and not (target / "notes.txt").exists()
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p or ".old-" in p]
    assert not fsutil.exists(str(target / "_staging"))


def test_real_fixture_ingests_to_13_typed_rows(spark, shared_dir, tmp_path):
    src = shared_dir / "fixtures" / "real" / "polyai-thread-82ymmx.ndjson"
    stats = ingest.run(args_for(src, tmp_path / "out"), spark=spark)
    t = read_kind(tmp_path / "out", "comments")
    assert t.num_rows == 13 and stats.rows_in == 13 and stats.rows_out == 13
    assert t.schema.field("created_utc").type == "int64" and t.schema.field("score").type == "int64"
    assert set(t.column("month").to_pylist()) == {"2018-03"}


def test_clear_errors_for_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        dumps.scan_inputs(str(tmp_path / "nope"))
    (tmp_path / "README.txt").write_text("not a dump")
    with pytest.raises(FileNotFoundError, match="no dump files"):
        dumps.scan_inputs(str(tmp_path))
    assert ingest.main(["--input", str(tmp_path / "nope"), "--output", str(tmp_path / "o")]) == 2


@pytest.mark.parametrize("flag", ["--buckets", "--slices", "--block-size"])
def test_flags_are_validated_before_anything_runs(tmp_path, capsys, flag):
    argv = ["--input", str(tmp_path), "--output", str(tmp_path / "o"), flag, "0"]
    cfg = ingest.build_parser().parse_args(argv)
    assert isinstance(cfg, ingest.ExtractConfig) and getattr(cfg, flag[2:].replace("-", "_")) == 0
    with pytest.raises(StageError, match=f"{flag} must be >= 1, got 0"):
        ingest.run(cfg)
    assert ingest.main(argv) == 2
    assert f"extract: error: {flag} must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_bucket_hash_matches_schemas():
    import pyarrow as pa

    ids = ["t3_" + "".join(chr(97 + (i * 7 + j) % 26) for j in range(i % 9)) for i in range(500)] + ["t3_é😀"]
    got = staging.bucket_of(pa.array(ids), 13).tolist()
    assert got == [schemas.link_bucket(x, 13) for x in ids]
    # the numpy code (executors without the C module) gives the same buckets, nulls as ""
    with_null = pa.array([*ids, None])
    assert fastjson.crc32(with_null, native=False).tolist() == [zlib.crc32(x.encode()) for x in ids] + [0]
    assert (fastjson.crc32(pa.array(ids), native=False) == fastjson.crc32(pa.array(ids))).all()


def test_slices_are_contiguous_byte_ranges_balanced_by_work():
    # one big month beside a small one on 2 cores: the big one's first slice takes a full core's share,
    # its last slice (which decodes the whole stream) a lighter one that leaves room for the small file
    cuts = plan.slice_bounds(4 << 30, (5 << 30) * (1 + plan.DECODE_COST) / 2, 2)
    assert len(cuts) == 1 and 0.5 < cuts[0] < 0.75
    cuts = plan.slice_bounds(64 << 30, 1 << 30, 8)  # capped: equal work, later slices parse less
    assert len(cuts) == 7 and all(a < b for a, b in zip(cuts, cuts[1:], strict=False)) and cuts[-1] < 1
    widths = [b - a for a, b in zip([0, *cuts], [*cuts, 1], strict=True)]
    assert widths == sorted(widths, reverse=True)
    assert plan.slice_bounds(10 << 20, 1 << 20, 8) == []  # small files are never sliced


def test_auto_plan_slices_big_files_only():
    assert plan.auto_slices(10 << 20, 10 << 20, 8) == 1  # small: never sliced
    assert plan.auto_slices(4 << 30, 4 << 30, 2) == 2  # one big month on 2 cores
    assert plan.auto_slices(4 << 30, 4 << 30, 64) == plan.MAX_SLICES
    assert plan.auto_slices(1 << 30, 8 << 30, 8) == 1  # one of eight equal months
    assert plan.default_buckets(0) == plan.MIN_BUCKETS
    assert plan.default_buckets(100 << 30) == 200


def test_dedup_keeps_first_copy_by_source_and_line():
    import pyarrow as pa

    t = pa.table(
        {
            "id": ["a", "b", "a", "c", "b", "a"],
            "source": ["RC_2", "RC_1", "RC_1", "RC_1", "RC_1", "RC_1"],
            "line": [1, 9, 5, 2, 3, 7],
        }
    )
    got = ingest.dedup_first(t).to_pylist()
    assert got == [
        {"id": "a", "source": "RC_1", "line": 5},
        {"id": "c", "source": "RC_1", "line": 2},
        {"id": "b", "source": "RC_1", "line": 3},
    ]


def test_realistic_shape_counts_match_exactly(spark, tmp_path):
    d = tmp_path / "dumps"
    cfg = SynthConfig(
        months=["2016-01", "2016-02"], comments_per_month=6000, seed=7, shape="realistic",
        chunk_comments=1500, mega_thread=800,
    )  # fmt: skip
    report = generate(d, cfg)
    out = tmp_path / "extract"
    ingest.run(args_for(d, out, buckets=5, slices=3, block_size=32 << 10), spark=spark)
    on_disk = StageStats.read(os.path.join(out, "stats.json"))
    assert read_kind(out, "comments").num_rows == report.comments
    assert read_kind(out, "submissions").num_rows == report.submissions
    assert on_disk.merged == {"duplicate_id": report.duplicates}
    assert on_disk.quarantined == report.quarantine and on_disk.rows_in == report.lines
