"""Dump reader: real compressed files, chunk edges, broken streams, quarantine reasons, type coercion."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma

import orjson
import pyarrow as pa
import pytest
import zstandard

from dialogsmith import fastjson
from dialogsmith.extract import dumps

ENGINES = ["native", "python"] if fastjson.AVAILABLE else ["python"]


@pytest.fixture(autouse=True, params=ENGINES)
def engine(request, monkeypatch):
    """Every test here runs with each engine: the C line parser (parse_line for the lines it declines),
    and parse_line for every line (executors without the C module)."""
    monkeypatch.setattr(fastjson, "AVAILABLE", request.param == "native")
    return request.param


def comment(i: int, **over) -> dict:
    d = {
        "id": f"c{i}",
        "link_id": "t3_abc",
        "parent_id": "t3_abc" if i % 2 else f"t1_c{i - 1}",
        "author": f"user{i}",
        "subreddit": "AskReddit",
        "subreddit_id": "t5_2qh1i",
        "body": f"héllo wörld 😀 number {i} &gt; quoted",
        "score": i,
        "created_utc": 1451606400 + i,
        "edited": False,
        "gilded": 0,
        "controversiality": 0,
        "distinguished": None,
        "stickied": False,
    }
    d.update(over)
    return d


def ndjson(rows, final_newline: bool = True) -> bytes:
    data = b"\n".join(r if isinstance(r, bytes) else orjson.dumps(r) for r in rows)
    return data + (b"\n" if final_newline else b"")


def zstd_long(data: bytes) -> bytes:
    """Like the real dumps: the frame header declares a 2 GiB window (zstd --long=31)."""
    params = zstandard.ZstdCompressionParameters.from_level(
        3, window_log=31, write_checksum=True, write_content_size=False
    )
    out = io.BytesIO()
    with zstandard.ZstdCompressor(compression_params=params).stream_writer(out, closefd=False) as w:
        w.write(data)
    return out.getvalue()


COMPRESS = {
    "zst": zstd_long,
    "bz2": bz2.compress,
    "xz": lzma.compress,
    "gz": gzip.compress,
    "plain": lambda b: b,
}
EXT = {"zst": ".zst", "bz2": ".bz2", "xz": ".xz", "gz": ".gz", "plain": ""}


def write(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_file_names():
    assert dumps.parse_dump_name("RC_2016-01.zst") == ("comments", "2016-01")
    assert dumps.parse_dump_name("/x/RS_v2_2008-03.xz") == ("submissions", "2008-03")
    assert dumps.parse_dump_name("RC_2005-12") == ("comments", "2005-12")
    assert dumps.parse_dump_name("polyai-thread.ndjson") == (None, None)
    assert dumps.compression_of("RC_2016-01.zst") == "zst"
    assert dumps.compression_of("x.ndjson") == "plain"


def test_real_dumps_need_a_long_window(tmp_path):
    blob = zstd_long(ndjson([comment(1)]) * 10)
    with pytest.raises(zstandard.ZstdError):  # a default decoder refuses the 2 GiB window
        zstandard.ZstdDecompressor().decompressobj().decompress(blob)
    rows, _, st = dumps.read_dump(write(tmp_path, "RC_2016-01.zst", blob))
    assert rows.num_rows == 10 and st.error is None


@pytest.mark.parametrize("comp", sorted(COMPRESS))
def test_every_compression_same_rows(tmp_path, comp):
    data = ndjson([comment(i) for i in range(500)], final_newline=False)
    rows, quarantine, st = dumps.read_dump(write(tmp_path, "RC_2016-01" + EXT[comp], COMPRESS[comp](data)))
    assert st.to_dict() == {"lines": 500, "parsed": 500, "quarantined": {}, "error": None}
    assert quarantine.num_rows == 0
    assert rows.column("id").to_pylist() == [f"c{i}" for i in range(500)]
    assert rows.column("line").to_pylist() == list(range(1, 501))  # the last line had no newline
    assert set(rows.column("month").to_pylist()) == {"2016-01"}
    assert rows.column("body")[499].as_py() == "héllo wörld 😀 number 499 &gt; quoted"


@pytest.mark.parametrize("block_size", [1, 5, 37, 4096])
def test_lines_and_utf8_split_across_blocks(tmp_path, block_size):
    # multi-byte characters everywhere, so small blocks cut inside them and inside lines
    rows_in = [comment(i, body="é😀中" * (i % 7) + "x") for i in range(60)]
    path = write(tmp_path, "RC_2016-01.zst", zstd_long(ndjson(rows_in, final_newline=False)))
    blocks = list(dumps.DumpReader(path, block_size))
    assert b"".join(b.data for b in blocks) == ndjson(rows_in, final_newline=False)
    assert [b.first_line for b in blocks] == [
        1 + sum(x.n_lines for x in blocks[:i]) for i in range(len(blocks))
    ]
    rows, _, st = dumps.read_dump(path, block_size=block_size)
    assert st.parsed == 60 and not st.quarantined
    assert rows.column("body").to_pylist() == [r["body"] for r in rows_in]


def test_block_slices_partition_the_file(tmp_path):
    path = write(tmp_path, "RC_2016-01.gz", gzip.compress(ndjson([comment(i) for i in range(300)])))
    blocks = list(dumps.DumpReader(path, 256))
    k = 3
    seen = []
    for s in range(k):  # what slice s of k parses: blocks with index % k == s (boundaries agree)
        seen += [(b.first_line, b.data) for b in dumps.DumpReader(path, 256) if b.index % k == s]
    assert sorted(seen) == [(b.first_line, b.data) for b in blocks]


@pytest.mark.parametrize("cut_at", [None, 0.4, 0.9])
def test_byte_range_slices_partition_the_file(tmp_path, cut_at):
    # what the ingest's slices read: decoded byte ranges; each block and the break belong to one range
    data = zstd_long(ndjson([comment(i, body=f"é {i * 7919 % 10007} " * (i % 50)) for i in range(3000)]))
    path = write(tmp_path, "RC_2016-01.zst", data[: int(len(data) * cut_at)] if cut_at else data)
    whole = dumps.DumpReader(path, 4096)
    blocks = list(whole)
    assert (whole.error is not None) == (cut_at is not None)
    size = sum(len(b.data) for b in blocks)
    assert size > 100_000
    cuts = sorted({1, 700, size // 3, size // 3 + 1, size - 10, size, size + 999})
    for bounds in ([0, None], [0, size // 2, None], [0, *cuts, None], [0, 7000, 7001, 50_000, None]):
        seen, errors = [], []
        for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
            reader = dumps.DumpReader(path, 4096, (start, stop))
            got = list(reader)
            assert all(start <= b.offset and (stop is None or b.offset < stop) for b in got)
            seen += [(b.index, b.first_line, b.data, b.n_lines) for b in got]
            if reader.error and reader.owns(reader.error_offset):
                errors.append((reader.error, reader.error_line, reader.tail))
        assert seen == [(b.index, b.first_line, b.data, b.n_lines) for b in blocks], bounds
        assert errors == ([(whole.error, whole.error_line, whole.tail)] if whole.error else []), bounds


def test_quarantine_reasons_per_line(tmp_path):
    good = [comment(i) for i in range(6)]
    lines = [
        orjson.dumps(good[0]),
        b"",  # empty_line
        orjson.dumps(good[1])[:20] + b"\xff\xfe" + orjson.dumps(good[1])[20:],  # bad_utf8
        orjson.dumps(good[2])[:-5],  # bad_json (truncated)
        b"[1, 2, 3]",  # not_object
        orjson.dumps({k: v for k, v in good[3].items() if k != "parent_id"}),  # missing_field
        orjson.dumps(comment(99, body=None)),  # missing_field (null)
        orjson.dumps(comment(98, id=12345)),  # bad_type: required field not a string
        orjson.dumps(comment(97, score="abc")),  # bad_type: not coercible
        orjson.dumps(comment(96, stickied=3)),  # bad_type
        b"\xc3( not even json",  # bad_utf8 comes before bad_json
        orjson.dumps(good[4]),
        orjson.dumps(good[5]),
    ]
    path = write(tmp_path, "RC_2016-01.bz2", bz2.compress(ndjson(lines)))
    for native in (None, False):  # the engine, then parse_line for every line
        rows, q, st = dumps.read_dump(path, native=native)
        assert rows.column("id").to_pylist() == ["c0", "c4", "c5"]
        assert rows.column("line").to_pylist() == [1, 12, 13]
        assert q.column("reason").to_pylist() == [
            "empty_line",
            "bad_utf8",
            "bad_json",
            "not_object",
            "missing_field",
            "missing_field",
            "bad_type",
            "bad_type",
            "bad_type",
            "bad_utf8",
        ]
        assert q.column("line").to_pylist() == list(range(2, 12))
        assert st.lines == 13 and st.parsed + sum(st.quarantined.values()) == 13
        assert "score" in q.column("detail")[7].as_py()
        assert q.column("head")[3].as_py() == "[1, 2, 3]"


def test_truncated_zst_keeps_lines_before_the_break(tmp_path):
    data = ndjson([comment(i, body="some text " * 20 + str(i)) for i in range(3000)])
    blob = zstd_long(data)
    path = write(tmp_path, "RC_2016-01.zst", blob[: len(blob) // 2])
    rows, q, st = dumps.read_dump(path, block_size=4096)
    assert st.error and st.error.startswith("truncated_file")
    assert 0 < rows.num_rows < 3000
    # every line before the break is kept, in order, and nothing after it
    assert rows.column("id").to_pylist() == [f"c{i}" for i in range(rows.num_rows)]
    assert q.column("reason").to_pylist() == ["truncated_file"]
    assert q.column("line")[0].as_py() == rows.num_rows + 1
    assert st.lines == rows.num_rows + 1 and st.quarantined == {"truncated_file": 1}


@pytest.mark.parametrize("comp", ["bz2", "xz", "gz"])
def test_truncated_stdlib_formats(tmp_path, comp):
    blob = COMPRESS[comp](ndjson([comment(i) for i in range(2000)]))
    rows, q, st = dumps.read_dump(write(tmp_path, "RC_2016-01" + EXT[comp], blob[: len(blob) * 2 // 3]))
    assert st.quarantined in ({"truncated_file": 1}, {"decode_error": 1})
    assert rows.column("id").to_pylist() == [f"c{i}" for i in range(rows.num_rows)]
    assert st.lines == rows.num_rows + 1


def test_corrupt_zst_is_a_decode_error(tmp_path):
    blob = bytearray(zstd_long(ndjson([comment(i, body=f"text {i} " * 30) for i in range(3000)])))
    for k in range(len(blob) // 2, len(blob) // 2 + 64):
        blob[k] ^= 0xA5
    rows, q, st = dumps.read_dump(write(tmp_path, "RC_2016-01.zst", bytes(blob)))
    assert st.quarantined == {"decode_error": 1}, st
    # the flipped bytes decode without complaint; the frame checksum catches them at its end, after
    # every line was decoded: all are kept (as `zstd -dc` writes them) and the break is counted
    assert rows.num_rows <= 3000 and st.lines == st.parsed + 1


def test_types_across_eras_engine_equals_reference(tmp_path):
    rows_in = [
        comment(0, created_utc="1262304000", score=5),  # 2007-11..2015-11: string created_utc
        comment(1, created_utc=1262304001.0, edited=1262309999.5),  # 2023+: float times
        comment(2, score=None, edited=1262309999, _meta={"retrieved_2nd_on": 1}),  # 2017-10: null score
        comment(3, score="7", gilded="0", controversiality="1", stickied="false", edited="false"),  # BigQuery
        comment(4, score="null", edited=True, distinguished="moderator"),
        comment(5, score="1.5e1", created_utc=" 1262304005 "),
    ]
    path = write(tmp_path, "RC_2010-01.xz", lzma.compress(ndjson(rows_in)))
    got_rows, _, st = dumps.read_dump(path, block_size=64)
    ref, _, _ = dumps.read_dump(path, native=False)
    assert got_rows.sort_by("line").equals(ref.sort_by("line"))
    assert st.parsed == 6
    got = {r["id"]: r for r in got_rows.to_pylist()}
    assert got["c0"]["created_utc"] == 1262304000 and got["c0"]["score"] == 5
    assert got["c1"]["created_utc"] == 1262304001 and got["c1"]["edited"] == 1262309999
    assert got["c2"]["score"] is None and got["c2"]["edited"] == 1262309999
    assert got["c3"]["score"] == 7 and got["c3"]["controversiality"] == 1 and got["c3"]["stickied"] is False
    assert got["c3"]["edited"] is None and got["c0"]["edited"] is None
    assert got["c4"]["score"] is None and got["c4"]["edited"] is None
    assert got["c5"]["score"] == 15 and got["c5"]["created_utc"] == 1262304005


def test_projection_reads_and_types_only_its_fields(tmp_path):
    """BlockParser(columns=...) reads the listed fields (plus the required ones): a bad value in a field it
    does not read quarantines nothing, in the C parser and line by line alike."""
    rows_in = [comment(i) for i in range(300)]
    rows_in[7] = comment(7, gilded="abc", stickied=3)  # bad types, in fields the projection skips
    rows_in[9] = comment(9, score="abc")  # a bad type in a field it reads
    path = write(tmp_path, "RC_2016-01", ndjson(rows_in))
    cols = ("id", "link_id", "parent_id", "body", "score")
    for native in (None, False):
        full = dumps.BlockParser("RC_2016-01", "comments", "2016-01", native=native)
        proj = dumps.BlockParser("RC_2016-01", "comments", "2016-01", native=native, columns=cols)
        got = {}
        for name, parser in (("full", full), ("proj", proj)):
            tables, bad = [], []
            for block in dumps.DumpReader(path, 4096):
                res = parser.parse(block)
                tables += res.tables
                bad += [(q["line"], q["reason"]) for q in res.quarantine]
            got[name] = (tables, bad)
        assert got["full"][1] == [(8, "bad_type"), (10, "bad_type")]
        assert got["proj"][1] == [(10, "bad_type")]
        table = pa.concat_tables(got["proj"][0])
        assert set(table.schema.names) == {*cols, "month", "source", "line"}
        assert table.num_rows == 299 and 8 in table.column("line").to_pylist()


def test_whole_era_file_takes_the_c_parser(tmp_path, engine):
    # string created_utc in every row (2007-11..2015-11): the C parser takes them as they are
    rows_in = [comment(i, created_utc=str(1262304000 + i)) for i in range(2000)]
    path = write(tmp_path, "RC_2010-01", ndjson(rows_in))
    parser = dumps.BlockParser("RC_2010-01", "comments", "2010-01")
    n = slow = 0
    for block in dumps.DumpReader(path, 8192):
        res = parser.parse(block)
        n, slow = n + res.parsed, slow + res.slow
    assert n == 2000 and slow == (0 if engine == "native" else 2000)
    assert parser.engine == engine


def test_submissions_and_unknown_names(tmp_path):
    subs = [
        {
            "id": "abc",
            "title": "A title",
            "selftext": "",
            "num_comments": "3",
            "score": 2,
            "created_utc": 1451606400,
        },
        {"id": "abd", "title": "Other", "is_self": True, "over_18": "false", "created_utc": "1454284800"},
    ]
    rows, _, _ = dumps.read_dump(write(tmp_path, "RS_v2_2016-01.gz", gzip.compress(ndjson(subs))))
    assert rows.schema.names == dumps.OUTPUT_SCHEMA["submissions"].names
    assert rows.column("link_id").to_pylist() == ["t3_abc", "t3_abd"]
    assert rows.column("num_comments").to_pylist() == [3, None]
    # a name that is not RS_/RC_: kind sniffed (no parent_id, has title), month from created_utc
    rows, _, _ = dumps.read_dump(write(tmp_path, "export.ndjson", ndjson(subs)))
    assert rows.column("month").to_pylist() == ["2016-01", "2016-02"]
    assert rows.column("link_id").to_pylist() == ["t3_abc", "t3_abd"]


def test_real_bigquery_fixture(shared_dir):
    path = shared_dir / "fixtures" / "real" / "polyai-thread-82ymmx.ndjson"
    rows, q, st = dumps.read_dump(str(path))
    assert rows.num_rows == 13 and q.num_rows == 0 and st.lines == 13
    assert rows.schema.equals(dumps.OUTPUT_SCHEMA["comments"])
    assert set(rows.column("link_id").to_pylist()) == {"t3_82ymmx"}
    assert all(isinstance(v, int) for v in rows.column("created_utc").to_pylist())
    assert all(isinstance(v, int) for v in rows.column("score").to_pylist())
    assert set(rows.column("month").to_pylist()) == {"2018-03"}


def test_generator_output_engine_equals_reference(tmp_path):
    from dialogsmith.sample.synth import SynthConfig, generate

    report = generate(tmp_path, SynthConfig(months=["2015-06"], comments_per_month=3000, seed=3))
    for name, expected in report.files.items():
        path = str(tmp_path / name)
        got_rows, fq, st = dumps.read_dump(path, block_size=64 << 10)  # several blocks
        ref, rq, _ = dumps.read_dump(path, native=False)
        assert got_rows.equals(ref) and fq.equals(rq), name
        assert st.lines == expected["lines"] and dict(st.quarantined) == expected["quarantine"]
        assert len(set(got_rows.column("id").to_pylist())) == expected["valid_distinct"]
