"""A cut or corrupt dump keeps every complete line its decoder can produce before the break.

Real files: generator output (``dialogsmith.sample.synth``) really compressed with each codec, then cut short
or with bytes flipped. What is decodable before the break is measured with the codec's own
decompressor fed one byte at a time, and with the command-line tool where it is installed.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
import shutil
import subprocess
import zlib

import orjson
import pyarrow.dataset as ds
import pytest
import zstandard

from dialogsmith.extract import decode, dumps
from dialogsmith.extract import job as ingest
from dialogsmith.formats.stats import StageStats
from dialogsmith.sample.synth import SynthConfig, generate

NAME = "RC_2016-01"
EXT = {"zst": ".zst", "bz2": ".bz2", "xz": ".xz", "gz": ".gz"}
CLI = {"bz2": "bzip2", "xz": "xz", "gz": "gzip", "zst": "zstd"}
ZSTD_LONG = zstandard.ZstdCompressionParameters.from_level(3, window_log=31, write_checksum=True)
PACK = {
    "bz2": bz2.compress,
    "xz": lzma.compress,
    "gz": lambda data: gzip.compress(data, mtime=0),
    "zst": lambda data: zstandard.ZstdCompressor(compression_params=ZSTD_LONG).compress(data),
}
DECODER_ERRORS = (EOFError, OSError, ValueError, lzma.LZMAError, zlib.error, zstandard.ZstdError)


def new_decoder(comp: str):
    if comp == "zst":
        return zstandard.ZstdDecompressor(max_window_size=decode.ZSTD_MAX_WINDOW).decompressobj()
    return {"bz2": bz2.BZ2Decompressor, "xz": lzma.LZMADecompressor}.get(
        comp, lambda: zlib.decompressobj(wbits=31)
    )()


def bytewise(comp: str, blob: bytes) -> bytes:
    """The decoded bytes the codec's decompressor yields from ``blob`` fed one byte at a time, until the
    input ends or the decoder raises (several streams / members / frames in a row are followed)."""
    out, dec, i = [], None, 0
    pending = b""
    while i < len(blob) or pending:
        if pending:
            data, pending = pending, b""
        else:
            data, i = blob[i : i + 1], i + 1
        if dec is None:
            dec = new_decoder(comp)
        try:
            out.append(dec.decompress(data))
        except DECODER_ERRORS:
            break
        if dec.eof:
            pending, dec = dec.unused_data, None
    return b"".join(out)


def cli_decoded(comp: str, blob: bytes) -> bytes | None:
    """What ``bzip2 -dc`` (xz, gzip, zstd) writes out for ``blob``; None when the tool is not installed."""
    tool = shutil.which(CLI[comp])
    if tool is None:
        return None
    args = [tool, "-dc"] + (["--long=31"] if comp == "zst" else [])
    return subprocess.run(args, input=blob, capture_output=True, check=False).stdout


def complete_lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")[:-1]


@pytest.fixture(scope="module")
def dump_of(tmp_path_factory):
    """comp -> (compressed bytes, decoded bytes) of one generated comment month (~3 MB decoded, no
    malformed lines: every complete line is a row)."""
    made: dict[str, tuple[bytes, bytes]] = {}

    def make(comp: str) -> tuple[bytes, bytes]:
        if comp not in made:
            d = tmp_path_factory.mktemp(f"synth-{comp}")
            cfg = SynthConfig(
                months=["2016-01"],
                comments_per_month=8000,
                seed=11,
                compression=comp,
                malformed=False,
                late_reply_fraction=0.0,
            )
            generate(d, cfg)
            blob = (d / (NAME + EXT[comp])).read_bytes()
            made[comp] = (blob, bytewise(comp, blob) if comp == "zst" else _decode_whole(comp, blob))
        return made[comp]

    return make


def _decode_whole(comp: str, blob: bytes) -> bytes:
    return {"bz2": bz2.decompress, "xz": lzma.decompress, "gz": gzip.decompress}[comp](blob)


def flipped(blob: bytes, at: int, n: int = 64) -> bytes:
    broken = bytearray(blob)
    for k in range(at, at + n):
        broken[k] ^= 0xA5
    return bytes(broken)


def read(tmp_path, comp: str, blob: bytes, **kw):
    path = tmp_path / (NAME + EXT[comp])
    path.write_bytes(blob)
    rows, q, st = dumps.read_dump(str(path), **kw)
    return str(path), rows, q.to_pylist(), st


def break_records(q: list[dict]) -> list[dict]:
    return [r for r in q if r["reason"] in decode.FILE_REASONS]


def ids_of(lines: list[bytes]) -> list[str]:
    return [orjson.loads(line)["id"] for line in lines]


def kept_bytes(path: str, block_size: int = dumps.DEFAULT_BLOCK_SIZE):
    reader = dumps.DumpReader(path, block_size)
    data = b"".join(block.data for block in reader)
    return reader, data


@pytest.mark.parametrize("comp", ["bz2", "xz", "gz"])
def test_cut_file_keeps_every_line_the_decoder_recovers(tmp_path, dump_of, comp):
    blob, decoded = dump_of(comp)
    cut = blob[: len(blob) * 6 // 10]
    recoverable = bytewise(comp, cut)
    lines = complete_lines(recoverable)
    assert decoded.startswith(recoverable) and len(lines) > 2000
    path, rows, q, st = read(tmp_path, comp, cut)
    # every complete line the decoder can produce is a row, in file order (at most the partial line is lost)
    assert rows.num_rows >= len(lines) - 1
    assert rows.column("id").to_pylist() == ids_of(lines)[: rows.num_rows]
    cli = cli_decoded(comp, cut)
    if cli is not None:
        print(f"{comp} cut at 60%: {CLI[comp]} -dc {len(complete_lines(cli))} lines, kept {rows.num_rows}")
        assert rows.num_rows >= len(complete_lines(cli)) - 1
    # the break: one record, one line read, its decoded offset (and the compressed one) in the detail
    (brk,) = break_records(q)
    assert brk["reason"] == "truncated_file" and st.quarantined == {"truncated_file": 1}
    assert brk["line"] == rows.num_rows + 1 and st.lines == st.parsed + 1 == rows.num_rows + 1
    assert f"decoded byte {len(recoverable)}" in brk["detail"]
    assert f"compressed byte {len(cut)}" in brk["detail"]
    assert brk["head"] == recoverable[recoverable.rfind(b"\n") + 1 :][:200].decode("utf-8", "replace")


def test_cut_bz2_matches_bzip2_and_bytewise_decoding(tmp_path, dump_of):
    """The issue's case: a .bz2 cut at 60% kept 0 of the ~2,300 lines ``bzip2 -dc`` recovers."""
    blob, _ = dump_of("bz2")
    cut = blob[: len(blob) * 6 // 10]
    reader, data = kept_bytes(write_file(tmp_path, "bz2", cut), block_size=64 << 10)
    recoverable = bytewise("bz2", cut)
    assert data == recoverable[: recoverable.rfind(b"\n") + 1]
    assert reader.error[0] == "truncated_file" and reader.tail == recoverable[len(data) :]
    assert reader.error_offset == len(data) and reader.lines == len(complete_lines(recoverable)) + 1


def write_file(tmp_path, comp: str, blob: bytes, name: str = NAME) -> str:
    path = tmp_path / (name + EXT[comp])
    path.write_bytes(blob)
    return str(path)


def test_corrupt_zst_keeps_every_line_decodable_before_the_corruption(tmp_path, dump_of):
    blob, decoded = dump_of("zst")
    assert len(blob) > 4 * (64 << 10)  # several of the decoder's 64 KiB feeds
    broken = flipped(blob, len(blob) // 2 + 1000)
    recoverable = bytewise("zst", broken)  # zstd fed byte by byte: every block before the bad one
    lines = complete_lines(recoverable)
    assert decoded.startswith(recoverable) and len(lines) > 3000
    path = write_file(tmp_path, "zst", broken)
    reader, data = kept_bytes(path, block_size=64 << 10)
    assert data == recoverable[: recoverable.rfind(b"\n") + 1]
    assert reader.error[0] == "decode_error"
    rows, q, st = dumps.read_dump(path)
    assert rows.column("id").to_pylist() == ids_of(lines)
    (brk,) = break_records(q.to_pylist())
    assert brk["reason"] == "decode_error" and brk["line"] == len(lines) + 1
    assert f"decoded byte {len(recoverable)}" in brk["detail"] and "compressed byte" in brk["detail"]
    assert st.quarantined == {"decode_error": 1} and st.lines == st.parsed + 1 == len(lines) + 1
    cli = cli_decoded("zst", broken)
    if cli is not None:
        print(f"zst flipped: zstd -dc {len(complete_lines(cli))} lines, kept {rows.num_rows}")
        assert rows.num_rows >= len(complete_lines(cli)) - 1


@pytest.mark.parametrize("comp", ["bz2", "xz", "gz"])
def test_corrupt_stdlib_formats_keep_every_line_before_the_corruption(tmp_path, dump_of, comp):
    blob, decoded = dump_of(comp)
    broken = flipped(blob, len(blob) * 6 // 10)
    reference = bytewise(comp, broken)
    cli = cli_decoded(comp, broken)
    path = write_file(tmp_path, comp, broken)
    reader, data = kept_bytes(path, block_size=64 << 10)
    assert reader.error is not None
    # the bytes kept are what the decoder produced (a corrupt block may decode to garbage before its
    # checksum fails, like ``bzip2 -dc`` writes it): a prefix of the byte-fed decoder's output ...
    common = min(len(data), len(reference))
    assert data[:common] == reference[:common]
    # ... and at most one line shorter than it, or than the command-line tool's
    assert data.count(b"\n") >= reference.count(b"\n") - 1
    if cli is not None:
        cli_lines, kept_lines = len(complete_lines(cli)), len(complete_lines(data))
        print(f"{comp} flipped: {CLI[comp]} -dc {cli_lines} lines, kept {kept_lines}")
        assert kept_lines >= cli_lines - 1
    # the rows are the file's lines up to the first garbage line
    good = 0
    for ours, orig in zip(complete_lines(data), complete_lines(decoded), strict=False):
        if ours != orig:
            break
        good += 1
    assert good > 3000
    rows, q, st = dumps.read_dump(path)
    assert rows.column("id").to_pylist()[:good] == ids_of(complete_lines(decoded)[:good])
    (brk,) = break_records(q.to_pylist())
    assert brk["line"] == st.lines and st.lines == st.parsed + sum(st.quarantined.values())
    assert f"decoded byte {len(data) + len(reader.tail)}" in brk["detail"]


def test_slices_of_a_broken_file_agree_on_lines_and_own_the_break_once(tmp_path, dump_of):
    blob, _ = dump_of("zst")
    broken = flipped(blob, len(blob) // 2 + 1000)
    path = write_file(tmp_path, "zst", broken)
    whole, data = kept_bytes(path, block_size=64 << 10)
    recoverable = bytewise("zst", broken)
    assert data == recoverable[: recoverable.rfind(b"\n") + 1]
    cuts = [0, len(data) // 3, len(data) * 2 // 3, None]
    parts, owners = [], 0
    for start, stop in zip(cuts, cuts[1:], strict=False):
        reader = dumps.DumpReader(path, 64 << 10, (start, stop))
        parts.append(b"".join(block.data for block in reader))
        owners += bool(reader.error and reader.owns(reader.error_offset))
    assert b"".join(parts) == data and owners == 1


@pytest.mark.parametrize("comp", ["bz2", "gz", "xz", "zst"])
def test_multi_stream_file_broken_in_its_last_stream(tmp_path, dump_of, comp):
    """pbzip2 writes one bzip2 stream per block, ``cat a.gz b.gz`` makes a multi-member gzip, zstd files
    may hold several frames: the last of three streams is cut (zst: has bytes flipped)."""
    _, decoded = dump_of(comp)
    fifth = len(decoded) // 5  # the last stream: ~1.9 MB, a few 900 KB bzip2 blocks
    parts = [decoded[:fifth], decoded[fifth : 2 * fifth], decoded[2 * fifth :]]
    streams = [PACK[comp](p) for p in parts]
    head = len(streams[0]) + len(streams[1])
    blob = b"".join(streams)
    if comp == "zst":
        broken = flipped(blob, head + len(streams[2]) * 7 // 10)
    else:
        broken = blob[: head + len(streams[2]) * 7 // 10]
    recoverable = bytewise(comp, broken)
    assert recoverable.startswith(parts[0] + parts[1]) and len(recoverable) > len(parts[0] + parts[1])
    reader, data = kept_bytes(write_file(tmp_path, comp, broken))
    assert data == recoverable[: recoverable.rfind(b"\n") + 1]
    assert reader.error[0] == ("decode_error" if comp == "zst" else "truncated_file")
    assert f"decoded byte {len(recoverable)}" in reader.error[1]


@pytest.mark.parametrize("comp", ["bz2", "xz", "gz"])
def test_trailing_garbage_is_a_counted_break_and_padding_is_not(tmp_path, dump_of, comp):
    _, decoded = dump_of(comp)
    decoded += b"\n"  # the generator writes no newline after the last line: here the stream ends a line
    blob = PACK[comp](decoded)
    n = len(complete_lines(decoded))
    _, rows, q, st = read(tmp_path, comp, blob + b"\0" * 8)  # xz stream padding; gzip tolerates zeros
    assert rows.num_rows == n and st.error is None and st.quarantined == {}
    _, rows, q, st = read(tmp_path, comp, blob + b"not a compressed stream\n" * 40)
    assert rows.num_rows == n  # the last line ends at the end of the stream: nothing partial
    (brk,) = break_records(q)
    assert brk["reason"] == "decode_error" and f"decoded byte {len(decoded)}" in brk["detail"]
    assert st.lines == n + 1 and st.quarantined == {"decode_error": 1}


def test_ingest_main_on_a_cut_bz2(spark, tmp_path, dump_of, capsys):
    blob, _ = dump_of("bz2")
    cut = blob[: len(blob) * 6 // 10]
    lines = complete_lines(bytewise("bz2", cut))
    src = tmp_path / "dumps"
    src.mkdir()
    write_file(src, "bz2", cut)
    out = tmp_path / "extract"
    argv = ["--input", str(src), "--output", str(out), "--buckets", "2", "--slices", "3"]
    assert ingest.main([*argv, "--block-size", str(64 << 10)]) == 0
    captured = capsys.readouterr()
    warning = [
        line
        for line in (captured.out + captured.err).splitlines()
        if "RC_2016-01.bz2" in line and "truncated_file" in line
    ]
    assert len(warning) == 1 and "kept" in warning[0]  # and now it is true
    with open(os.path.join(out, "stats.json")) as fh:
        stats = json.load(fh)
    f = stats["extra"]["files"]["RC_2016-01.bz2"]
    assert f["lines"] == f["parsed"] + sum(f["quarantined"].values())
    assert f["quarantined"] == {"truncated_file": 1} and f["parsed"] >= len(lines) - 1
    StageStats.read(os.path.join(out, "stats.json")).check()  # rows_in = rows_out + quarantined
    comments = ds.dataset(os.path.join(out, "comments"), format="parquet", partitioning="hive").to_table()
    kept = sorted(zip(comments["line"].to_pylist(), comments["id"].to_pylist(), strict=True))
    assert [i for _, i in kept] == ids_of(lines)[: len(kept)] and len(kept) == f["parsed"]
    q = ds.dataset(os.path.join(out, "quarantine"), format="parquet").to_table().to_pylist()
    assert [r["reason"] for r in q] == ["truncated_file"] and q[0]["line"] == f["parsed"] + 1


def test_zstd_frame_walk_tells_complete_files_from_cut_ones(tmp_path):
    import pyarrow as pa
    import zstandard

    from dialogsmith.extract.decode import zstd_frames_complete

    data = b"".join(b'{"id": "%d"}\n' % i for i in range(50_000))
    one = zstandard.ZstdCompressor(level=3, write_checksum=True).compress(data)
    two = one + zstandard.ZstdCompressor(level=1, write_content_size=False).compress(data)
    skippable = (0x184D2A51).to_bytes(4, "little") + (5).to_bytes(4, "little") + b"hello" + one
    for blob, want in ((one, True), (two, True), (skippable, True), (one[:-1], False), (two[: len(two) // 2], False),
                       (b"", True), (b"not zstd at all", False)):  # fmt: skip
        assert zstd_frames_complete(pa.BufferReader(blob)) is want
