"""The files: ``RC_``/``RS_`` names, real compression with deterministic bytes, and the malformed and
duplicated lines every file gets (counted exactly for ``synth_report.json``)."""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import random
from collections import Counter
from pathlib import Path

import orjson
import zstandard

COMPRESSIONS = {"zst": ".zst", "bz2": ".bz2", "xz": ".xz", "gz": ".gz", "none": ""}
QUARANTINE_REASONS = ("bad_utf8", "bad_json", "not_object", "missing_field", "bad_type")
COMMENT_REQUIRED = ("id", "link_id", "parent_id", "body")
SUBMISSION_REQUIRED = ("id", "title")
ZSTD_WINDOW_LOG = 31  # the real .zst dumps declare a 2 GiB window (zstd --long=31)
MALFORMED_SHARE = 0.005  # of the lines of a file (at least one of every kind when malformed=True)
DUPLICATE_SHARE = 0.002


def file_name(kind: str, month: str, compression: str) -> str:
    """``RC_2016-01.zst`` / ``RS_2016-01.zst``, the real dumps' names."""
    return f"{'RC' if kind == 'comments' else 'RS'}_{month}{COMPRESSIONS[compression]}"


# --- malformed lines --------------------------------------------------------------------------------

_BAD_UTF8 = (b"\xff", b"\xc3(", b"\xc0\xaf", b"\xe2\x82 ")  # invalid for every strict UTF-8 decoder
_BAD_JSON = (b"<html><body>502 Bad Gateway</body></html>", b"{'id': 'x', 'body': 'single quotes'}", b"}")
_NOT_OBJECT = (b"[1, 2, 3]", b'"just a string"', b"42", b"null", b"true", b'[{"id": "abc123"}]')
_BAD_VALUES = (["x"], {"a": 1}, [], {"t3": 1})


def malformed_line(reason: str, variant: int, d: dict, required: tuple[str, ...]) -> bytes:
    """A line that a reader must quarantine with ``reason`` (derived from a record that is then lost)."""
    if reason == "bad_utf8":
        line = orjson.dumps(d)
        cut = line.find(b'"id":')
        cut = cut if cut > 0 else 1
        return line[:cut] + _BAD_UTF8[variant % len(_BAD_UTF8)] + line[cut:]
    if reason == "bad_json":
        if variant % 2 == 0:  # truncated JSON, cut on a character boundary (else it would be bad_utf8)
            text = orjson.dumps(d).decode()
            return text[: max(1, (len(text) * (1 + variant % 7)) // 9)].encode()
        return _BAD_JSON[(variant // 2) % len(_BAD_JSON)]
    if reason == "not_object":
        return _NOT_OBJECT[variant % len(_NOT_OBJECT)]
    d = dict(d)
    name = required[variant % len(required)]
    if reason == "missing_field":
        del d[name]
    else:  # bad_type: present but not a string (never an int: readers may coerce those)
        d[name] = _BAD_VALUES[variant % len(_BAD_VALUES)]
    return orjson.dumps(d)


# --- writing ---------------------------------------------------------------------------------------


class Writer:
    """Compressed output, deterministic bytes; lines joined by newlines, none after the last line."""

    def __init__(self, path: Path, compression: str, zstd_window_log: int = ZSTD_WINDOW_LOG):
        self.tmp = path.with_name(path.name + ".tmp")
        self.path = path
        self.raw = open(self.tmp, "wb")
        self.zstd_window_log = zstd_window_log if compression == "zst" else ZSTD_WINDOW_LOG
        if compression == "zst":
            params = zstandard.ZstdCompressionParameters.from_level(
                3, window_log=zstd_window_log, write_content_size=False, write_checksum=True, threads=0
            )
            self.f = zstandard.ZstdCompressor(compression_params=params).stream_writer(
                self.raw, closefd=False
            )
        elif compression == "bz2":
            self.f = bz2.BZ2File(self.raw, "wb", compresslevel=9)
        elif compression == "xz":
            self.f = lzma.LZMAFile(self.raw, "wb", preset=6)
        elif compression == "gz":
            self.f = gzip.GzipFile(filename="", mode="wb", fileobj=self.raw, compresslevel=6, mtime=0)
        else:
            self.f = None
        # Lines go into one reused bytearray, freed line by line: holding thousands of line objects
        # and joining them made glibc trim and re-fault its heap (measured: 1.7 page faults a line,
        # ~2.5 s of system time per 300K lines; this way ~0.05 s).
        self.buf = bytearray()
        self.sep = b""  # newline *before* every line but the first: no newline after the last line
        self.lines = 0
        self.bytes_out = 0

    def write(self, line: bytes) -> None:
        buf = self.buf
        buf += self.sep
        buf += line
        self.sep = b"\n"
        self.lines += 1
        if len(buf) >= 1 << 22:
            self.flush()

    def flush(self) -> None:
        self.bytes_out += len(self.buf)
        (self.f or self.raw).write(self.buf)
        del self.buf[:]

    def close(self) -> None:
        self.flush()
        if self.f is not None:
            self.f.close()
        self.raw.close()
        if self.zstd_window_log != ZSTD_WINDOW_LOG:
            _declare_zstd_window(self.tmp, self.zstd_window_log, ZSTD_WINDOW_LOG)
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        """Drop the partial file (no half-written file under the final name)."""
        try:
            if self.f is not None:
                self.f.close()
        finally:
            self.raw.close()
            self.tmp.unlink(missing_ok=True)


def _zstd_window_descriptor(window_log: int) -> int:
    return (window_log - 10) << 3  # exponent in the high 5 bits, mantissa 0: exactly 2**window_log


def _declare_zstd_window(path: Path, used_log: int, declared_log: int) -> None:
    """Rewrite the frame header's window descriptor: the frame declares 2**declared_log bytes.

    The header is ``magic, frame header descriptor, window descriptor`` (no content size, no
    dictionary, so no single-segment flag) and no checksum covers it. Declaring a window larger
    than the one the compressor used is valid zstd: the window is an upper bound on match
    distances, and a decoder must still allocate (and accept) the declared 2 GiB as for the real
    dumps. The compressor, though, touches only its real window: streaming a month with
    window_log 31 grew RSS by up to 2 GiB per open file (it keeps that much history).
    """
    with open(path, "r+b") as f:
        head = f.read(6)
        # An empty file's frame declares the smallest window (zstd knew the size: 0 bytes).
        if head[:5] != b"\x28\xb5\x2f\xfd\x04" or head[5] > _zstd_window_descriptor(used_log):
            raise RuntimeError(f"{path}: unexpected zstd frame header {head.hex()}")
        f.seek(5)
        f.write(bytes([_zstd_window_descriptor(declared_log)]))


def write_lines(write, records, first: int, mal, dups, pending, required, quarantine) -> tuple[int, int]:
    """Write records at file positions first, first+1, ..., malformed or duplicated as planned.

    ``mal``: position -> quarantine reason; ``dups``: positions whose line is written twice (the copy
    waits in ``pending`` for its position, possibly past these records). Returns (valid, duplicates).
    """
    valid = duplicates = 0
    dumps = orjson.dumps
    for pos, (_, d) in enumerate(records, first):
        reason = mal.get(pos)
        if reason is not None:
            write(malformed_line(reason, pos, d, required))
            quarantine[reason] += 1
        else:
            line = dumps(d)
            write(line)
            valid += 1
            if pos in dups:  # half right after the original, half up to 50 lines later
                later = pos + (0 if pos % 2 else 1 + pos % 50)
                pending.setdefault(later, []).append(line)
        if pending:
            extra = pending.pop(pos, None)
            if extra:
                for line in extra:
                    write(line)
                duplicates += len(extra)
    return valid, duplicates


def _flush_pending(write, pending: dict[int, list[bytes]]) -> int:
    """Write the duplicates still waiting for a position past the last line; returns how many."""
    n = 0
    for _, extra in sorted(pending.items()):
        for line in extra:
            write(line)
        n += len(extra)
    pending.clear()
    return n


def _entry(kind: str, month: str, writer: Writer, valid: int, duplicates: int, quarantine: Counter) -> dict:
    """A file's entry in synth_report.json."""
    return {
        "kind": kind,
        "month": month,
        "lines": writer.lines,
        "valid_distinct": valid,
        "duplicates": duplicates,
        "quarantine": dict(sorted(quarantine.items())),
        "bytes_uncompressed": writer.bytes_out,
    }


def write_file(
    path: Path,
    records,
    n_records: int,
    kind: str,
    month: str,
    *,
    seed: int,
    compression: str,
    malformed: bool,
) -> dict:
    """Write records (id, dict) plus malformed and duplicated lines; return this file's report entry.

    The positions are planned over the whole file (``n_records`` known in advance: the classic shape)."""
    required = COMMENT_REQUIRED if kind == "comments" else SUBMISSION_REQUIRED
    rng = random.Random(f"{seed}/{kind}/{month}")  # same lines whatever the compression
    mal: dict[int, str] = {}
    dups: set[int] = set()
    if malformed and n_records:
        n_mal = max(len(QUARANTINE_REASONS), int(n_records * MALFORMED_SHARE))
        positions = rng.sample(range(n_records), min(n_mal, n_records))  # random order: reasons cycle
        for i, pos in enumerate(positions):
            mal[pos] = QUARANTINE_REASONS[i % len(QUARANTINE_REASONS)]
        free = [p for p in range(n_records) if p not in mal] if n_records < 100_000 else None
        n_dup = max(1, int(n_records * DUPLICATE_SHARE))
        if free is not None:
            dups = set(rng.sample(free, min(n_dup, len(free))))
        else:
            while len(dups) < n_dup:
                p = rng.randrange(n_records)
                if p not in mal:
                    dups.add(p)
    quarantine: Counter[str] = Counter()
    pending: dict[int, list[bytes]] = {}  # duplicates waiting for their line position
    writer = Writer(path, compression)
    try:
        valid, duplicates = write_lines(writer.write, records, 0, mal, dups, pending, required, quarantine)
        duplicates += _flush_pending(writer.write, pending)
    finally:
        writer.close()
    return _entry(kind, month, writer, valid, duplicates, quarantine)


class ChunkedFile:
    """A file written a chunk of records at a time, malformed and duplicated lines planned per chunk.

    The totals are those of write_file's plan (at least one line of every quarantine reason, then
    ``malformed_share`` of the lines, ``DUPLICATE_SHARE`` duplicated), reached chunk by chunk;
    positions are drawn within each chunk from a stream seeded by (seed, kind, month, chunk).
    """

    def __init__(
        self,
        path: Path,
        kind: str,
        month: str,
        *,
        seed: int,
        compression: str,
        malformed: bool,
        malformed_share: float,
        zstd_window_log: int,
    ):
        self.path, self.kind, self.month, self.seed, self.malformed = path, kind, month, seed, malformed
        self.required = COMMENT_REQUIRED if kind == "comments" else SUBMISSION_REQUIRED
        self.malformed_share = malformed_share
        self.writer = Writer(path, compression, zstd_window_log)
        self.records = self.chunks = self.n_malformed = self.n_duplicated = 0
        self.valid = self.duplicates = 0
        self.pending: dict[int, list[bytes]] = {}
        self.quarantine: Counter[str] = Counter()

    def _plan(self, n: int) -> tuple[dict[int, str], set[int]]:
        """Malformed (position -> reason) and duplicated positions among the next ``n`` records."""
        mal: dict[int, str] = {}
        dups: set[int] = set()
        if not self.malformed or not n:
            return mal, dups
        first = self.records
        rng = random.Random(f"{self.seed}/{self.kind}/{self.month}/{self.chunks}")
        total = first + n
        n_reasons = len(QUARANTINE_REASONS)
        target = min(total, max(n_reasons, int(total * self.malformed_share)))
        k = min(n, max(0, target - self.n_malformed))
        for p in rng.sample(range(n), k):  # random order: reasons cycle over the whole file
            mal[first + p] = QUARANTINE_REASONS[self.n_malformed % n_reasons]
            self.n_malformed += 1
        n_dup = min(n - k, max(0, max(1, int(total * DUPLICATE_SHARE)) - self.n_duplicated))
        while len(dups) < n_dup:
            p = first + rng.randrange(n)
            if p not in mal:
                dups.add(p)
        self.n_duplicated += n_dup
        return mal, dups

    def write_chunk(self, records, n: int) -> None:
        """Write ``n`` records (id, dict) that follow the ones written so far."""
        mal, dups = self._plan(n)
        counted = _Counted(records)
        valid, duplicates = write_lines(
            self.writer.write, counted, self.records, mal, dups, self.pending, self.required, self.quarantine
        )
        if counted.n != n:
            raise AssertionError(f"{self.kind} chunk: {counted.n} records, expected {n}")  # a bug
        self.valid += valid
        self.duplicates += duplicates
        self.records += n
        self.chunks += 1

    def close(self) -> dict:
        self.duplicates += _flush_pending(self.writer.write, self.pending)
        self.writer.close()
        return _entry(self.kind, self.month, self.writer, self.valid, self.duplicates, self.quarantine)

    def abort(self) -> None:
        self.writer.abort()


class _Counted:
    def __init__(self, items):
        self.items, self.n = items, 0

    def __iter__(self):
        for item in self.items:
            self.n += 1
            yield item
