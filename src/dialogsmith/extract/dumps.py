"""Streaming reader of Pushshift dump files (RC_/RS_, .zst/.bz2/.xz/.gz/plain) into typed Arrow tables.

Reading is split in two layers:

- ``DumpReader`` decodes a file as a stream and yields *blocks*: runs of complete lines, cut at a
  newline, about ``block_size`` decoded bytes each. A line or a multi-byte UTF-8 character split
  across decoder reads is carried over (we only ever cut at ``\\n``, which never occurs inside a UTF-8
  sequence). A final line without newline is kept. Memory is bounded by the block size (plus one
  line). A truncated or corrupt file ends the stream with ``reader.error = (reason, message)``; every
  complete line the decoder can produce before the break has been yielded (a broken stream is decoded
  again up to the break, byte by byte at the end), and the message gives the break's decoded and
  compressed byte offsets.
- ``BlockParser`` turns a block into rows of the normalized ``schemas.COMMENTS`` / ``SUBMISSIONS``
  schema plus quarantine records. Its fast path hands the whole block to the C line parser
  (``fastjson``; without it, to Arrow's C++ JSON reader with an explicit schema): no per-line Python
  work. Lines the fast path declines (malformed, unusual types, missing fields) go one by one through
  ``parse_line``, the reference semantics.

Quarantine reasons, checked per line in this order (stable identifiers asserted by tests):
``empty_line`` (blank line), ``bad_utf8`` (not valid UTF-8), ``bad_json`` (not parseable),
``not_object`` (valid JSON that is not an object), ``missing_field`` (a required field absent or
null: comments need id, link_id, parent_id, body; submissions need id, title), ``bad_type``
(a required field that is not a string, or a typed field whose value cannot be coerced, e.g.
``"score": "abc"`` or ``"stickied": 3``). File-level, once per file: ``truncated_file`` (the
compressed stream ends early) and ``decode_error`` (the decoder reports corrupt data); that record
stands for the line at which reading broke and counts as one line read.

Type coercion (one schema for all eras): integer fields take ints, floats (truncated toward zero),
numeric strings (``"1"``, ``"1.5e9"``), and null / ``"null"`` / ``""`` (-> null); booleans take
true/false, 0/1 and the strings ``"true"``/``"false"``/``"0"``/``"1"``; ``edited`` is false/true/null
-> null (no edit time known) or an epoch number (int, float or string) -> int. String fields take
strings or null. Unknown fields (``_meta``, ``ups``, …) are ignored. ``body``/``title`` are kept raw.
"""

from __future__ import annotations

import bz2
import lzma
import math
import os
import re
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson
import zstandard

from dialogsmith import fastjson, fsutil
from dialogsmith.formats import schemas

COMMENTS = "comments"
SUBMISSIONS = "submissions"
KINDS = (COMMENTS, SUBMISSIONS)

# Stable quarantine reasons.
EMPTY_LINE = "empty_line"
BAD_UTF8 = "bad_utf8"
BAD_JSON = "bad_json"
NOT_OBJECT = "not_object"
MISSING_FIELD = "missing_field"
BAD_TYPE = "bad_type"
TRUNCATED_FILE = "truncated_file"
DECODE_ERROR = "decode_error"
LINE_REASONS = (EMPTY_LINE, BAD_UTF8, BAD_JSON, NOT_OBJECT, MISSING_FIELD, BAD_TYPE)
FILE_REASONS = (TRUNCATED_FILE, DECODE_ERROR)

HEAD_BYTES = 200
DEFAULT_BLOCK_SIZE = 4 << 20  # decoded bytes per block; Arrow's JSON reader is fastest at a few MiB
ZSTD_MAX_WINDOW = 2**31  # the dumps are written with --long=31
_ZSTD_READ = 1 << 20  # decoded bytes asked of the stream reader per call
_ZSTD_FEED = 64 << 10  # compressed bytes fed per decoder call (~0.5-1 MiB decoded at the dumps' ratio)

# (field, kind): kind is str | int | bool | edited. Order = order in the output schema.
COMMENT_FIELDS = [
    ("id", "str"),
    ("link_id", "str"),
    ("parent_id", "str"),
    ("author", "str"),
    ("subreddit", "str"),
    ("subreddit_id", "str"),
    ("body", "str"),
    ("score", "int"),
    ("created_utc", "int"),
    ("edited", "edited"),
    ("gilded", "int"),
    ("controversiality", "int"),
    ("distinguished", "str"),
    ("stickied", "bool"),
]
SUBMISSION_FIELDS = [
    ("id", "str"),
    ("author", "str"),
    ("subreddit", "str"),
    ("subreddit_id", "str"),
    ("title", "str"),
    ("selftext", "str"),
    ("num_comments", "int"),
    ("score", "int"),
    ("created_utc", "int"),
    ("domain", "str"),
    ("permalink", "str"),
    ("url", "str"),
    ("is_self", "bool"),
    ("over_18", "bool"),
    ("stickied", "bool"),
]
FIELDS = {COMMENTS: COMMENT_FIELDS, SUBMISSIONS: SUBMISSION_FIELDS}
REQUIRED = {COMMENTS: ("id", "link_id", "parent_id", "body"), SUBMISSIONS: ("id", "title")}
OUTPUT_SCHEMA = {COMMENTS: schemas.COMMENTS, SUBMISSIONS: schemas.SUBMISSIONS}

COMPRESSIONS = {".zst": "zst", ".zstd": "zst", ".bz2": "bz2", ".xz": "xz", ".gz": "gz"}
# RC_/RS_ names: an optional JSON suffix, then an optional compression suffix (RC_2016-01.zst,
# RS_v2_2008-03.xz, RC_2005-12, RC_2019-01.ndjson.gz). Anything after that (``.zst.md5``) is not a dump.
_NAME_RE = re.compile(
    r"^R([CS])_(?:v2_)?(\d{4}-\d{2})(?i:\.(?:json|ndjson|jsonl))?(?i:\.(?:zst|zstd|bz2|xz|gz))?$"
)
FIRST_MONTH = "2005-06"  # the first Pushshift dump (RS_2005-06); comments start 2005-12


# --- file names ---------------------------------------------------------------------------------


def parse_dump_name(name: str) -> tuple[str | None, str | None]:
    """(kind, month) from ``RC_2016-01.zst`` / ``RS_v2_2008-03.xz``; (None, None) for other names."""
    m = _NAME_RE.match(os.path.basename(name))
    if not m:
        return None, None
    return (COMMENTS if m.group(1) == "C" else SUBMISSIONS), m.group(2)


def valid_month(month: str, today: str | None = None) -> bool:
    """``YYYY-MM`` with a real month between the first dump (2005-06) and the current UTC month."""
    import time

    if not re.fullmatch(r"\d{4}-\d{2}", month or "") or not 1 <= int(month[5:]) <= 12:
        return False
    return FIRST_MONTH <= month <= (today or time.strftime("%Y-%m", time.gmtime()))


def compression_of(name: str) -> str:
    """'zst' | 'bz2' | 'xz' | 'gz' | 'plain', from the file extension."""
    return COMPRESSIONS.get(os.path.splitext(name)[1].lower(), "plain")


# --- decoding -----------------------------------------------------------------------------------


class DecodeFailure(Exception):
    """The decoder stopped: ``reason`` is TRUNCATED_FILE or DECODE_ERROR; ``decoded`` is the number of
    decoded bytes produced before the break (all of them were yielded), ``compressed`` how far into the
    file the decoder had read when it stopped."""

    def __init__(self, reason: str, message: str, decoded: int = 0, compressed: int = 0):
        super().__init__(message)
        self.reason = reason
        self.decoded = decoded
        self.compressed = compressed


# bz2 / xz / gz: compressed bytes fed per decoder call, and decoded bytes per call at most (max_length:
# bounds memory whatever the ratio; a bz2 block alone decodes to ~900 KB). Measured on a 148 MB generated
# dump, one core: bz2 50, xz 279, gz 621 MB/s, against 51, 268, 545 MB/s through the stdlib file objects
# read 1 MiB at a time (which lost up to that 1 MiB at a break).
_STREAM_FEED = 64 << 10
_STREAM_OUT = 256 << 10
_STREAM_ERRORS = (OSError, EOFError, ValueError, lzma.LZMAError, zlib.error)  # bz2 raises OSError
# Small feeds when replaying a stream after a break: the decoder then holds at most this much input it
# has not used when the replay reaches the break, which bounds the error on the reported compressed offset
# (and makes it unlikely that a check comes in the same call as the block's last byte).
_REPLAY_FEED = 4 << 10
_BREAK_AT = "at decoded byte {decoded}, compressed byte {compressed}"


class _Compressed:
    """A file's compressed bytes, read forward; ``pos`` is the offset of the next byte. A decoder that
    breaks replays its stream from another instance opened at the stream's first byte."""

    def __init__(self, open_raw, at: int = 0, complete_frames: bool = False):
        self.open_raw = open_raw
        self.raw = open_raw()
        self.pos = 0
        self.complete_frames = complete_frames  # zstd: checked by zstd_frames_complete
        while self.pos < at and self.read(min(at - self.pos, 1 << 20)):
            pass

    def read(self, n: int) -> bytes:
        data = self.raw.read(n)
        self.pos += len(data)
        return data

    def reopen(self, at: int) -> _Compressed:
        return _Compressed(self.open_raw, at)

    def close(self) -> None:
        self.raw.close()


# Recovery. A decoder call that raises loses everything it decoded in that call (up to one 64 KiB feed
# of zstd, ~0.5 MiB; up to _STREAM_OUT for the others). After a break the stream is decoded again from
# its first byte: at full speed up to what was already yielded, then one byte per call (zstd: one
# compressed byte; the others: one decoded byte), so the call that raises holds at most one byte. zstd
# decodes a block only once all of its input is there and emits it in that call, so nothing is lost;
# bz2 and xz may check a block right after emitting its last byte, in the same call: that byte is lost.
# The replay costs one more decode of the broken stream up to the break, once, on the error path.


def _zstd_chunks(src: _Compressed) -> Iterator[bytes]:
    """Decoded chunks of a (possibly multi-frame) zstd stream; raises DecodeFailure on a cut or bad
    stream after yielding everything decodable before the break.

    A local file whose frames are complete (``zstd_frames_complete``: its block headers walked, ~20 ms
    for 200 MB) is decoded by zstandard's stream reader, which releases the GIL while it decodes (the
    decompressobj below holds it: measured on a 5.1M-line month, one task parsing and staging in the
    next thread, 6.6 -> 5.3 s). A cut file, and one the stream reader finds corrupt, take the careful
    path, which keeps every byte decodable before the break (the bytes already handed on are skipped)."""
    if src.complete_frames:
        reader = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW).stream_reader(
            src.raw, read_size=_ZSTD_FEED, read_across_frames=True
        )
        done = 0
        try:
            while True:
                out = reader.read(_ZSTD_READ)
                if not out:
                    return
                done += len(out)
                yield out
        except zstandard.ZstdError:
            pass
        careful = _zstd_careful(src.reopen(0))
        for out in careful:
            if done >= len(out):
                done -= len(out)
                continue
            yield out[done:]
            done = 0
        return
    yield from _zstd_careful(src)


def zstd_frames_complete(f) -> bool:
    """True when the zstd frames of seekable file ``f`` end exactly at its end (every block header and
    block there); False for a cut file or anything unexpected (the careful decoder then decides)."""
    try:
        size = f.size()
        pos = 0
        while pos < size:
            f.seek(pos)
            head = f.read(18)
            if len(head) < 4:
                return False
            magic = int.from_bytes(head[:4], "little")
            if 0x184D2A50 <= magic <= 0x184D2A5F:  # skippable frame
                if len(head) < 8:
                    return False
                pos += 8 + int.from_bytes(head[4:8], "little")
                continue
            if magic != 0xFD2FB528 or len(head) < 5:
                return False
            fhd = head[4]
            single, checksum, dict_flag, fcs_flag = fhd >> 5 & 1, fhd >> 2 & 1, fhd & 3, fhd >> 6
            header = (
                1 + (0 if single else 1) + (0, 1, 2, 4)[dict_flag] + (1 if single else 0, 2, 4, 8)[fcs_flag]
            )
            pos += 4 + header
            while True:
                f.seek(pos)
                bh = f.read(3)
                if len(bh) < 3:
                    return False
                v = int.from_bytes(bh, "little")
                last, btype, bsize = v & 1, v >> 1 & 3, v >> 3
                if btype == 3:
                    return False
                pos += 3 + (1 if btype == 1 else bsize)
                if last:
                    break
            pos += 4 if checksum else 0
        return pos == size
    except (OSError, ValueError):
        return False


def _zstd_careful(src: _Compressed) -> Iterator[bytes]:
    """The zstd decoder call by call (decompressobj): the frame structure, the break and its offset."""
    dctx = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)
    dobj = None
    total = frame_out = frame_at = 0  # decoded bytes yielded; of them in this frame; its compressed offset
    while True:
        at = src.pos
        data = src.read(_ZSTD_FEED)
        if not data:
            break
        while data:
            if dobj is None:
                dobj, frame_at, frame_out = dctx.decompressobj(), at, 0
            try:
                out = dobj.decompress(data)
            except zstandard.ZstdError as e:
                # the replay reuses dctx (and its window): this frame's decompressobj is spent
                replay = _zstd_replay(dctx, src.reopen(frame_at), frame_out, at, len(data))
                recovered, compressed = yield from replay
                total += recovered
                where = _BREAK_AT.format(decoded=total, compressed=compressed)
                raise DecodeFailure(DECODE_ERROR, f"zstd: {e} {where}", total, compressed) from None
            if out:
                total += len(out)
                frame_out += len(out)
                yield out
            if dobj.eof:  # end of one frame: the rest (if any) starts the next one
                at += len(data) - len(dobj.unused_data)
                data = dobj.unused_data
                dobj = None
            else:
                data = b""
    if dobj is not None:
        where = _BREAK_AT.format(decoded=total, compressed=src.pos)
        raise DecodeFailure(
            TRUNCATED_FILE, f"zstd: input ended inside a frame (truncated file?) {where}", total, src.pos
        )


def _zstd_replay(dctx, src: _Compressed, skip: int, fail_at: int, fail_len: int):
    """Decode the frame starting at ``src`` again: its input before ``fail_at`` (``skip`` decoded bytes,
    yielded already) at full speed, then the failed piece of ``fail_len`` bytes one byte per call.
    Yields the new bytes; returns (their number, the offset just past the compressed byte at which the
    decoder raised)."""
    try:
        dobj = dctx.decompressobj()
        got = 0
        while src.pos < fail_at:
            data = src.read(min(_ZSTD_FEED, fail_at - src.pos))
            try:
                got += len(dobj.decompress(data))
            except zstandard.ZstdError:
                break
        if got != skip or src.pos != fail_at:
            return 0, fail_at + fail_len  # not reproduced: keep what was yielded
        data = src.read(fail_len)
        recovered, end = [], fail_at + len(data)
        for i in range(len(data)):
            try:
                recovered.append(dobj.decompress(data[i : i + 1]))
            except zstandard.ZstdError:
                end = fail_at + i + 1
                break
            if dobj.eof:
                break
        out = b"".join(recovered)
        if out:
            yield out
        return len(out), end
    finally:
        src.close()


def _new_stream_decoder(comp: str):
    if comp == "bz2":
        return bz2.BZ2Decompressor()
    if comp == "xz":
        return lzma.LZMADecompressor()  # FORMAT_AUTO: .xz and legacy .lzma
    return zlib.decompressobj(wbits=31)  # gzip: header, CRC-32 and length checked


def _stream_chunks(comp: str, src: _Compressed) -> Iterator[bytes]:
    """Decoded chunks of a bz2 / xz / gz file: streams (gzip members) back to back, as pbzip2 and
    ``cat a.gz b.gz`` write them, NUL padding after a stream skipped (xz stream padding; gzip allows it).
    Anything else after a stream is a decode error. Raises DecodeFailure on a cut or bad stream after
    yielding everything decodable before the break."""
    gz = comp == "gz"
    dec = None
    data = b""
    more = False  # the last call filled max_length: call again before feeding more input
    streams = total = stream_out = stream_at = 0
    while True:
        if not data and not more:
            data = src.read(_STREAM_FEED)
            if not data:
                break
        if dec is None:
            if streams:
                data = data.lstrip(b"\0")
                if not data:
                    continue
            dec, stream_at, stream_out = _new_stream_decoder(comp), src.pos - len(data), 0
        try:
            out = dec.decompress(data, _STREAM_OUT)
        except _STREAM_ERRORS as e:
            recovered, compressed = yield from _stream_replay(comp, src.reopen(stream_at), stream_out)
            total += recovered
            compressed = compressed or src.pos
            where = _BREAK_AT.format(decoded=total, compressed=compressed)
            raise DecodeFailure(DECODE_ERROR, f"{comp}: {e} {where}", total, compressed) from None
        data = dec.unconsumed_tail if gz else b""  # bz2 and lzma keep unconsumed input themselves
        more = len(out) == _STREAM_OUT
        if out:
            total += len(out)
            stream_out += len(out)
            yield out
        if dec.eof:
            data, dec, more = dec.unused_data, None, False
            streams += 1
    if dec is not None:
        where = _BREAK_AT.format(decoded=total, compressed=src.pos)
        raise DecodeFailure(
            TRUNCATED_FILE, f"{comp}: input ended inside a stream (truncated file?) {where}", total, src.pos
        )


def _stream_replay(comp: str, src: _Compressed, skip: int):
    """Decode the stream starting at ``src`` again: its first ``skip`` decoded bytes (yielded already)
    at full speed, then one decoded byte per call (input fed one byte at a time), up to the error.
    Yields the new bytes (at most what the failed call could have produced); returns (their number,
    the compressed offset the decoder had read to; 0 when the error was not reproduced)."""
    try:
        gz = comp == "gz"
        dec = _new_stream_decoder(comp)
        data, more, got = b"", False, 0
        while got < skip:
            if not data and not more:
                data = src.read(_REPLAY_FEED)
                if not data:
                    return 0, 0
            step = min(_STREAM_OUT, skip - got)
            try:
                out = dec.decompress(data, step)
            except _STREAM_ERRORS:
                return 0, 0  # not reproduced: keep what was yielded
            data = dec.unconsumed_tail if gz else b""
            more = len(out) == step
            got += len(out)
            if dec.eof:
                return 0, 0
        recovered = bytearray()
        # zlib hands back its unconsumed input: fed a byte at a time too, or a member's last byte and its
        # failing trailer check would come in one call. bz2 and lzma keep theirs (a byte may be lost).
        feed, src_left = b"", data if gz else b""
        while len(recovered) <= _STREAM_OUT:
            if not feed and not more:
                if not src_left:
                    src_left = src.read(_STREAM_FEED)
                    if not src_left:
                        break
                feed, src_left = src_left[:1], src_left[1:]
            try:
                out = dec.decompress(feed, 1)
            except _STREAM_ERRORS:
                break
            feed = dec.unconsumed_tail if gz else b""
            more = len(out) == 1
            recovered += out
            if dec.eof:
                break
        if recovered:
            yield bytes(recovered)
        return len(recovered), src.pos - len(src_left)  # less what was read but not given to it
    finally:
        src.close()


def _plain_chunks(raw, read_size: int) -> Iterator[bytes]:
    try:
        while True:
            out = raw.read(read_size)
            if not out:
                return
            yield out
    except OSError as e:
        raise DecodeFailure(DECODE_ERROR, f"{type(e).__name__}: {e}") from None


def decoded_chunks(uri: str, read_size: int = 1 << 20) -> Iterator[bytes]:
    """Decoded bytes of a dump file, chunk by chunk (sizes vary). Raises DecodeFailure on a bad stream,
    after yielding every byte the decoder produced before the break."""
    fs, path = fsutil.resolve(uri)
    comp = compression_of(path)

    def open_raw():
        return fs.open_input_stream(path, compression=None)  # no auto-decompression: we decode

    if comp == "plain":
        with open_raw() as raw:
            yield from _plain_chunks(raw, read_size)
        return
    complete = False
    if comp == "zst" and "://" not in uri:  # a remote file: no seeks, the careful decoder
        with fs.open_input_file(path) as f:
            complete = zstd_frames_complete(f)
    src = _Compressed(open_raw, complete_frames=complete)
    try:
        yield from _zstd_chunks(src) if comp == "zst" else _stream_chunks(comp, src)
    finally:
        src.close()


class Prefetched:
    """A chunk generator run in its own thread, up to ``depth`` chunks ahead of the consumer.

    The decoders (zstandard, bz2, lzma, zlib) release the GIL while they decode, so decoding a dump
    overlaps with parsing and staging it in the caller's thread: one task keeps ~1.8 cores busy on one
    file without cutting it into slices that decode its prefix again (measured on a 5.1M-line month: the
    two slices of one file spent 2 s decoding the first slice's half twice). The generator's exception
    (a DecodeFailure after the last good bytes) reaches the consumer in order."""

    _END = object()

    def __init__(self, chunks: Iterator, depth: int = 8):
        import queue
        import threading

        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._chunks = chunks
        self._thread = threading.Thread(target=self._run, name="dump-decoder", daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        import queue

        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for chunk in self._chunks:
                if not self._put(chunk):
                    return
            self._put(self._END)
        except BaseException as e:  # handed to the consumer, raised there
            self._put(e)
        finally:
            self._chunks.close()

    def __iter__(self) -> Iterator[bytes]:
        while True:
            item = self._queue.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        import queue

        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get(timeout=0.05)
            except queue.Empty:
                pass
        self._thread.join()


@dataclass
class Block:
    index: int  # 0-based block number in the file (deterministic for a given block_size)
    first_line: int  # 1-based line number of the block's first line
    data: bytes  # complete lines; only the file's last block may lack the final newline
    n_lines: int
    offset: int = 0  # decoded byte offset of the block's first byte in the file
    newlines: np.ndarray | None = None  # offsets of the "\n" bytes in data (the reader finds them anyway)


class _Pending:
    """Decoded bytes not yet cut into blocks, kept as the decoder's chunks (no copying on append).

    The few operations the reader needs, on the concatenation, without building it: a block is
    joined once (one copy) when it is taken; a skipped block is only counted. A bytearray buffer
    copied every byte two to three times (append, slice, shift) — ~0.3 us per 2016 comment line."""

    def __init__(self):
        self.pieces: list[tuple[bytes, int]] = []  # (chunk, first byte still pending)
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def append(self, chunk: bytes) -> None:
        if chunk:
            self.pieces.append((chunk, 0))
            self.size += len(chunk)

    def rfind_nl(self, end: int | None = None) -> int:
        """Offset of the last newline before ``end`` (default: the end), or -1."""
        end = self.size if end is None else min(end, self.size)
        starts = self._starts()
        for (chunk, lo), start in zip(reversed(self.pieces), reversed(starts), strict=True):
            if start >= end:
                continue
            i = chunk.rfind(b"\n", lo, lo + end - start)
            if i >= 0:
                return start + i - lo
        return -1

    def find_nl(self, begin: int) -> int:
        """Offset of the first newline at or after ``begin``, or -1."""
        for (chunk, lo), start in zip(self.pieces, self._starts(), strict=True):
            stop = start + len(chunk) - lo
            if stop <= begin:
                continue
            i = chunk.find(b"\n", lo + max(0, begin - start))
            if i >= 0:
                return start + i - lo
        return -1

    def last_byte(self, end: int) -> int:
        for (chunk, lo), start in zip(self.pieces, self._starts(), strict=True):
            if end - 1 < start + len(chunk) - lo:
                return chunk[lo + end - 1 - start]
        raise IndexError(end)

    def take(self, end: int, keep: bool) -> tuple[bytes | None, int]:
        """Remove the first ``end`` bytes: (their bytes when ``keep``, else None; their newlines)."""
        views, newlines, left = [], 0, end
        while left:
            chunk, lo = self.pieces[0]
            n = min(left, len(chunk) - lo)
            if keep:
                views.append(memoryview(chunk)[lo : lo + n] if (lo or n < len(chunk)) else chunk)
            else:
                newlines += chunk.count(b"\n", lo, lo + n)
            if lo + n == len(chunk):
                self.pieces.pop(0)
            else:
                self.pieces[0] = (chunk, lo + n)
            left -= n
        self.size -= end
        if not keep:
            return None, newlines
        return (views[0] if len(views) == 1 and isinstance(views[0], bytes) else b"".join(views)), 0

    def rest(self) -> bytes:
        return b"".join(memoryview(chunk)[lo:] for chunk, lo in self.pieces)

    def _starts(self) -> list[int]:
        starts, pos = [], 0
        for chunk, lo in self.pieces:
            starts.append(pos)
            pos += len(chunk) - lo
        return starts


class DumpReader:
    """Iterate a dump file as blocks of whole lines.

    Block boundaries depend only on the decoded bytes and ``block_size`` (never on how the decoder
    happens to chunk its output), so several tasks decoding the same file agree on them. A slice of
    the file is a decoded byte range: ``byte_range=(start, stop)`` yields only the blocks whose first
    byte lies in ``[start, stop)`` (``stop`` None: to the end), skips the others without copying
    them (their newlines are still counted, for line numbers) and stops decoding at ``stop``; ranges
    that partition ``[0, inf)`` partition the file's lines. After iteration: ``lines`` (lines seen, a
    final unterminated line included; up to ``stop`` only), ``error`` ((reason, message) or None),
    ``tail`` (the bytes of the partial line at the break), ``error_line`` (its 1-based number) and
    ``error_offset`` (its decoded byte offset: the range holding it owns the error).
    """

    def __init__(
        self,
        uri: str,
        block_size: int = DEFAULT_BLOCK_SIZE,
        byte_range: tuple[int, int | None] | None = None,
        prefetch: bool = True,
    ):
        self.uri = uri
        self.prefetch = prefetch  # decode in a thread, ahead of the caller (see Prefetched)
        self.block_size = max(1, int(block_size))
        self.start, self.stop = byte_range if byte_range else (0, None)
        self.lines = 0
        self.error: tuple[str, str] | None = None
        self.tail = b""
        self.error_line = 0
        self.error_offset = 0

    def owns(self, offset: int) -> bool:
        return self.start <= offset and (self.stop is None or offset < self.stop)

    def _take(self, buf: _Pending, end: int, index: int, offset: int, final: bool = False):
        """Consume the first ``end`` pending bytes as block ``index``; the Block when this reader's range
        owns it."""
        unterminated = final and buf.last_byte(end) != _NL
        if self.owns(offset):
            data, _ = buf.take(end, keep=True)
            # one pass finds the newlines: they count the lines here and cut them in the parser
            newlines = fastjson.newlines(data)
            n = len(newlines) + (1 if unterminated else 0)
            block = Block(index, self.lines + 1, data, n, offset, newlines)
        else:  # not ours: count its lines, copy nothing
            _, n = buf.take(end, keep=False)
            n += 1 if unterminated else 0
            block = None
        self.lines += n
        return block

    def __iter__(self) -> Iterator[Block]:
        # with prefetch, decoding and cutting blocks (one copy of the bytes, the newline scan) both run in
        # the decoder's thread: the caller's thread only parses
        chunks = Prefetched(decoded_chunks(self.uri)) if self.prefetch else decoded_chunks(self.uri)
        blocks = self._blocks(chunks)
        try:
            yield from blocks
        finally:
            blocks.close()
            chunks.close()

    def _blocks(self, chunks) -> Iterator[Block]:
        buf = _Pending()
        index = offset = 0
        stop = self.stop
        try:
            for chunk in chunks:
                buf.append(chunk)
                while len(buf) >= self.block_size:
                    # cut at the last newline within the first block_size bytes, else at the first newline
                    cut = buf.rfind_nl(self.block_size)
                    if cut < 0:
                        cut = buf.find_nl(self.block_size)
                        if cut < 0:
                            break  # one line longer than a block: keep reading
                    block = self._take(buf, cut + 1, index, offset)
                    offset += cut + 1
                    index += 1
                    if block is not None:
                        yield block
                    if stop is not None and offset >= stop:
                        chunks.close()  # the rest belongs to later ranges: stop decoding
                        return
        except DecodeFailure as e:
            self.error = (e.reason, str(e))
            # complete lines before the break are good data; the partial line is the broken one
            cut = buf.rfind_nl()
            if cut >= 0:
                block = self._take(buf, cut + 1, index, offset)
                offset += cut + 1
                index += 1
                if block is not None:
                    yield block
            self.tail = buf.rest()
            self.error_line = self.lines + 1
            self.error_offset = offset
            self.lines += 1  # the line at the break counts as read (and is quarantined once)
            return
        # end of stream: whole lines, then a final line without newline
        while len(buf):
            if stop is not None and offset >= stop:
                return
            cut = buf.rfind_nl(self.block_size)
            if cut < 0:
                cut = buf.find_nl(self.block_size)
            end = cut + 1 if cut >= 0 else len(buf)
            block = self._take(buf, end, index, offset, final=True)
            offset += end
            index += 1
            if block is not None:
                yield block


# --- per-line reference semantics ---------------------------------------------------------------


class Quarantined(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


_NULL_STRINGS = {"", "null", "none"}
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _head_repr(v, n: int) -> str:
    """repr(v)[:n]; a list or dict nested deeper than repr can go (orjson takes 1024 levels) by its type."""
    try:
        return repr(v)[:n]
    except RecursionError:
        return f"<{type(v).__name__} nested too deep to show>"


def coerce_int(v):
    t = type(v)
    if t is int:
        if _INT64_MIN <= v <= _INT64_MAX:
            return v
        raise ValueError("out of int64 range")
    if v is None:
        return None
    if t is float:
        if not math.isfinite(v) or not (_INT64_MIN <= v <= _INT64_MAX):
            raise ValueError("not a finite int64")
        return int(v)
    if t is str:
        s = v.strip()
        if s.lower() in _NULL_STRINGS:
            return None
        try:
            out = int(s)
        except ValueError:
            return coerce_int(float(s))  # "1.5e9"; float() raises ValueError on "abc"
        return coerce_int(out)
    raise ValueError(f"expected a number, got {t.__name__}")


def coerce_bool(v):
    t = type(v)
    if t is bool or v is None:
        return v
    if t is int and v in (0, 1):
        return bool(v)
    if t is str:
        s = v.strip().lower()
        if s in ("true", "1"):
            return True
        if s in ("false", "0"):
            return False
        if s in _NULL_STRINGS:
            return None
    raise ValueError(f"expected a boolean, got {_head_repr(v, 40)}")


def coerce_edited(v):
    if v is None or type(v) is bool:
        return None
    if type(v) is str and v.strip().lower() in ("false", "true", *_NULL_STRINGS):
        return None
    return coerce_int(v)


def coerce_str(v):
    if v is None or type(v) is str:
        return v
    raise ValueError(f"expected a string, got {type(v).__name__}")


COERCE = {"int": coerce_int, "bool": coerce_bool, "edited": coerce_edited, "str": coerce_str}


def sniff_kind(obj) -> str | None:
    if isinstance(obj, dict):
        if "parent_id" in obj:
            return COMMENTS
        if "title" in obj:
            return SUBMISSIONS
    return None


def parse_line(line: bytes, kind: str, fields: list[tuple[str, str]] | None = None) -> dict:
    """One dump line -> a row dict of the kind's fields (or of ``fields``; no month/source/line).

    Raises Quarantined. Only the fields read are typed: a projection does not quarantine a line for
    a field it does not read."""
    if not line.strip():
        raise Quarantined(EMPTY_LINE, "blank line")
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as u:
            raise Quarantined(BAD_UTF8, str(u)) from None
        raise Quarantined(BAD_JSON, str(e)) from None
    if type(obj) is not dict:
        raise Quarantined(NOT_OBJECT, f"JSON {type(obj).__name__}, not an object")
    required = REQUIRED[kind]
    missing = [f for f in required if obj.get(f) is None]
    if missing:
        raise Quarantined(MISSING_FIELD, "missing " + ", ".join(missing))
    row = {}
    for name, ftype in fields or FIELDS[kind]:
        v = obj.get(name)
        if name in required and type(v) is not str:
            raise Quarantined(BAD_TYPE, f"{name}: expected a string, got {type(v).__name__}")
        try:
            row[name] = COERCE[ftype](v)
        except ValueError as e:
            raise Quarantined(BAD_TYPE, f"{name}: {e} ({_head_repr(v, 60)})") from None
    return row


def head_of(line: bytes) -> str:
    return line[:HEAD_BYTES].decode("utf-8", "replace")


# --- block parsing ------------------------------------------------------------------------------

_NATIVE_MAX_BYTES = 2**31 - 1  # the C parser writes int32 string offsets
_ARROW_TYPE = {"str": pa.string(), "int": pa.int64(), "bool": pa.bool_(), "edited": pa.int64()}
_SURROGATE_RE = re.compile(rb"\\u[dD]")
_CHANGED_RE = re.compile(r"Column\(/([^)/]*)\) changed from (\w+) to (\w+) in row (\d+)")
_ROW_RE = re.compile(r" in row (\d+)\s*$")
_CONVERT_RE = re.compile(r"Failed to convert JSON to (\w+)")
_LBRACE, _RBRACE, _QUOTE, _SPACE, _COLON = ord("{"), ord("}"), ord('"'), ord(" "), ord(":")
_NL = ord("\n")


def _key_values(arr: np.ndarray, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Byte offsets of the value that follows each ``"key":`` (one optional space skipped), per key.

    Vectorized over the block (one pass over the colons, shared by all keys). Inside JSON strings
    quotes are escaped, so the pattern only matches keys (of any nesting level). Measured on a 4 MiB
    block of 2016 comments: ~9 ms, vs ~17 ms for the bytes.find/replace passes it replaces (plus
    ~24 ms for the separate required-field scan).
    """
    n = len(arr)
    colons = np.flatnonzero(arr == _COLON)  # ~ one per field; fewer candidates than quotes
    colons = colons[(colons >= 1) & (colons + 2 < n)]
    key_ends = colons[arr[colons - 1] == _QUOTE]
    before = arr[np.maximum(key_ends - 2, 0)]  # the key's last character, to split keys cheaply
    out = {}
    for name in keys:
        key = b'"' + name.encode() + b'"'
        cand = key_ends[(before == key[-2]) & (key_ends >= len(key))]
        for j in range(3, len(key) + 1):  # compare backwards from the closing quote
            cand = cand[arr[cand - j] == key[-j]]
        after = cand + 1
        out[name] = after + (arr[after] == _SPACE)
    return out


def _suspect_values(arr: np.ndarray, values: dict[str, np.ndarray], required: tuple[str, ...]) -> np.ndarray:
    """Offsets where a required field holds something other than a string or null (a list, a number…)."""
    hits = []
    for name in required:
        pos = values[name]
        v = arr[pos]
        hits.append(pos[(v != _QUOTE) & (v != ord("n"))])
    return np.concatenate(hits) if hits else np.zeros(0, dtype=np.int64)


def _suspect_lines(arr: np.ndarray, starts: np.ndarray, required: tuple[str, ...]) -> np.ndarray:
    """Lines where a required key (``"id":``) is followed by something other than a string or null.

    A nested object's key of the same name gives a false positive, which only sends that line to the
    slow path.
    """
    bad = _suspect_values(arr, _key_values(arr, required), required)
    return np.unique(np.searchsorted(starts, bad, side="right") - 1)


_FALSE = np.frombuffer(b"false", dtype=np.uint8)
_TRUE = np.frombuffer(b"true", dtype=np.uint8)


def _null_booleans(arr: np.ndarray, pos: np.ndarray) -> np.ndarray | None:
    """``"edited":false``/``true`` -> ``"edited":null `` / ``null`` (same length: offsets stay valid).

    ``edited`` is false or an epoch: no Arrow type holds both, so the booleans become null first.
    Returns a patched copy of ``arr``, or None when there is nothing to patch."""
    f = pos[(arr[pos] == ord("f")) & (pos + 5 <= len(arr))]
    f = f[np.all(arr[f[:, None] + np.arange(5)] == _FALSE, axis=1)]
    t = pos[(arr[pos] == ord("t")) & (pos + 4 <= len(arr))]
    t = t[np.all(arr[t[:, None] + np.arange(4)] == _TRUE, axis=1)]
    if not len(f) and not len(t):
        return None
    out = arr.copy()
    out[f[:, None] + np.arange(5)] = np.frombuffer(b"null ", dtype=np.uint8)
    out[t[:, None] + np.arange(4)] = np.frombuffer(b"null", dtype=np.uint8)
    return out


def _line_bounds(data: bytes, newlines: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) byte offsets of each line, ends exclusive of the newline."""
    nl = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == _NL) if newlines is None else newlines
    starts = np.concatenate(([0], nl + 1)).astype(np.int64)
    ends = np.concatenate((nl, [len(data)])).astype(np.int64)
    if data.endswith(b"\n") or not data:
        starts, ends = starts[:-1], ends[:-1]
    return starts, ends


@dataclass
class BlockResult:
    tables: list[pa.Table] = field(default_factory=list)
    quarantine: list[dict] = field(default_factory=list)
    parsed: int = 0
    quarantined: Counter = field(default_factory=Counter)
    slow: int = 0  # lines that went through parse_line (the fast engine declined them)


class BlockParser:
    """Parse blocks of one file. Keeps, per file, the Arrow types that the file's era needs
    (e.g. ``created_utc`` as string in 2007-11..2015-11), learnt from the first conflicts."""

    def __init__(
        self,
        source: str,
        kind: str | None,
        month: str | None,
        fast: bool = True,
        columns: tuple[str, ...] | None = None,
        native: bool | None = None,
    ):
        self.source = source
        self.columns = columns  # None: every field of the kind; else a projection (required fields always)
        self.kind = kind  # None: sniffed from the first object with parent_id/title
        self.month = month  # None: from each row's created_utc (UTC)
        self.fast = fast
        # the C line parser when it is built (fastjson.AVAILABLE), else Arrow's JSON reader; same rows
        self.native = fastjson.AVAILABLE if native is None else native
        self.declared: dict[str, pa.DataType] = {}
        self.segment_lines = 1 << 30  # rows per Arrow call; shrinks when rows of this file fail
        self.prescan = False  # set once rows of this file failed in Arrow (malformed-heavy files)
        self.clean_scans = 0  # blocks in a row whose prescan found nothing

    @property
    def fields(self) -> list[tuple[str, str]]:
        """The (name, type) fields read: the kind's, or the projection's plus the required ones."""
        if self.columns is None:
            return FIELDS[self.kind]
        keep = {*self.columns, *REQUIRED[self.kind]} | ({"created_utc"} if self.month is None else set())
        return [(n, t) for n, t in FIELDS[self.kind] if n in keep]

    @property
    def output_schema(self) -> pa.Schema:
        schema = OUTPUT_SCHEMA[self.kind]
        if self.columns is None:
            return schema
        read = {n for n, _ in self.fields} | {"link_id", "month", "source", "line"}
        return pa.schema([f for f in schema if f.name in read])

    # public ------------------------------------------------------------------------------------
    def parse(self, block: Block) -> BlockResult:
        res = BlockResult()
        data = block.data
        if not data:
            return res
        if self.kind is None:
            self._sniff(data)
        starts, ends = _line_bounds(data, block.newlines)
        if self.fast and self.native and len(data) < _NATIVE_MAX_BYTES:
            slow_lines = self._native_lines(data, starts, ends, block.first_line, res)
        else:
            slow_lines = self._arrow_lines(data, starts, ends, block, res)
        slow_rows = []
        res.slow = len(slow_lines)
        for i in sorted(slow_lines):
            line = data[starts[i] : ends[i]]
            try:
                row = parse_line(line, self.kind, self.fields)
            except Quarantined as q:
                res.quarantine.append(self._qrow(block.first_line + i, q.reason, q.detail, line))
                res.quarantined[q.reason] += 1
                continue
            row["line"] = block.first_line + i
            slow_rows.append(row)
        if slow_rows:
            res.tables.append(self._slow_table(slow_rows))
        tables = [t for t in res.tables if t.num_rows]
        if tables:
            table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
            if len(tables) > 1:  # fast segments and slow lines: back to file order
                table = table.take(pc.sort_indices(table.column("line")))
            table = self._finish(table)
            res.tables = [table]
            res.parsed = table.num_rows
        else:
            res.tables = []
        return res

    def _native_lines(self, data: bytes, starts, ends, first_line: int, res: BlockResult) -> list[int]:
        """The C parser takes the ordinary lines; returns the others (for ``parse_line``)."""
        rows, columns = fastjson.parse_lines(data, starts, ends, self.fields, REQUIRED[self.kind])
        if len(rows):
            columns["line"] = pa.array(rows + first_line, pa.int64())
            res.tables.append(pa.table(columns))
        if len(rows) == len(starts):
            return []
        taken = np.zeros(len(starts), dtype=bool)
        taken[rows] = True
        return np.flatnonzero(~taken).tolist()

    def _arrow_lines(self, data: bytes, starts, ends, block: Block, res: BlockResult) -> list[int]:
        """Arrow's JSON reader takes whole runs of lines; returns the lines it could not take."""
        n = len(starts)
        arr = np.frombuffer(data, dtype=np.uint8)
        # lines the fast path can take: {...} on one line, valid UTF-8
        nonempty = ends > starts
        ok = nonempty.copy()
        idx = np.flatnonzero(nonempty)
        ok[idx] = (arr[starts[idx]] == _LBRACE) & (arr[ends[idx] - 1] == _RBRACE)
        # `{'id': …}` and the like: an object's first key starts with a quote (after optional spaces)
        second = np.minimum(starts + 1, len(data) - 1)
        ok &= (arr[second] == _QUOTE) | (arr[second] == _SPACE) | (arr[second] == _RBRACE)
        patched = None
        edited = self.kind == COMMENTS and any(name == "edited" for name, _ in self.fields)
        if self.fast and (self.prescan or edited):
            # one vectorized pass over the block's keys: required fields holding a non-string (a list,
            # an object, a number) go to the slow path up front, since each Arrow failure costs a call;
            # comments also need their `edited` booleans nulled (see _null_booleans)
            keys = REQUIRED[self.kind] + (("edited",) if edited else ())
            values = _key_values(arr, keys)
            if edited:
                patched = _null_booleans(arr, values["edited"])
            if self.prescan or edited:
                bad = _suspect_values(arr, values, REQUIRED[self.kind])
                if len(bad):
                    ok[np.unique(np.searchsorted(starts, bad, side="right") - 1)] = False
                    self.clean_scans = 0
                else:
                    self.clean_scans += 1
                # the scan costs ~15% of an Arrow call: submissions keep it while rows keep failing
                self.prescan = self.clean_scans < 8
        if not self.fast:
            ok[:] = False
        elif not _valid_utf8(data):
            for i in _invalid_utf8_lines(data, starts):
                ok[i] = False
        slow_lines: list[int] = [int(i) for i in np.flatnonzero(~ok)]
        fast_lines = np.flatnonzero(ok)
        if len(fast_lines):
            # spans include each line's newline; a last line without one gets it added
            spans = np.append(starts[1:], len(data)) - starts
            src = data if patched is None else patched
            if not data.endswith(b"\n"):
                src = (data if patched is None else patched.tobytes()) + b"\n"
                spans[-1] += 1
            if len(fast_lines) == n:
                buf = src
            else:  # drop the slow lines' bytes: join the runs of fast lines between them (memcpy)
                view = memoryview(src)
                slow = np.flatnonzero(~ok)
                lo = np.concatenate(([0], slow + 1))
                hi = np.append(slow, n)
                run = hi > lo
                line_end = np.append(starts[1:], len(src))
                cuts = zip(starts[lo[run]].tolist(), line_end[hi[run] - 1].tolist(), strict=True)
                buf = b"".join(view[a:b] for a, b in cuts)
            offsets = np.concatenate(([0], np.cumsum(spans[fast_lines])))
            # lone surrogate escapes (\\udXXX) make Arrow strings invalid: those segments are checked
            surrogates = _SURROGATE_RE.search(data) is not None
            res.tables.extend(self._fast(buf, offsets, fast_lines, slow_lines, block.first_line, surrogates))
        return slow_lines

    def error_record(self, line: int, reason: str, detail: str, tail: bytes) -> dict:
        return self._qrow(line, reason, detail, tail)

    # internals ---------------------------------------------------------------------------------
    def _sniff(self, data: bytes) -> None:
        for line in data.split(b"\n", 1000)[:1000]:
            try:
                kind = sniff_kind(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue
            if kind:
                self.kind = kind
                return
        self.kind = COMMENTS

    def _qrow(self, line_no: int, reason: str, detail: str, line: bytes) -> dict:
        return {
            "source": self.source,
            "line": line_no,
            "reason": reason,
            "detail": detail,
            "head": head_of(line),
        }

    def _schema(self) -> pa.Schema:
        return pa.schema([(name, self.declared.get(name, _ARROW_TYPE[ft])) for name, ft in self.fields])

    def _fast(
        self,
        buf,
        offsets: np.ndarray,
        lines: np.ndarray,
        slow_lines: list[int],
        first_line: int,
        surrogates: bool = True,
    ) -> list[pa.Table]:
        """Parse ``buf`` with Arrow: row j is block line ``lines[j]``, bytes ``offsets[j]:offsets[j+1]``.

        Failing rows join ``slow_lines``. Returns tables of the kind's fields (coerced) plus ``line``.
        A failing Arrow call wastes the work before the failing row, so the buffer is parsed in
        segments whose size adapts to how often this file's rows fail (whole blocks when none do).
        """
        pbuf = pa.py_buffer(buf)
        n = len(lines)
        seg = max(1, self.segment_lines)
        todo = [(lo, min(n, lo + seg), 0) for lo in range(0, n, seg)][::-1]
        out: list[pa.Table] = []
        parsed: list[tuple[int, pa.Table, np.ndarray]] = []
        failures = 0
        while todo:
            lo, hi, flips = todo.pop()
            if hi <= lo:
                continue
            piece = pbuf.slice(int(offsets[lo]), int(offsets[hi] - offsets[lo]))
            try:
                table = pajson.read_json(
                    pa.BufferReader(piece),
                    read_options=pajson.ReadOptions(use_threads=False, block_size=piece.size + 1),
                    parse_options=pajson.ParseOptions(
                        explicit_schema=self._schema(), unexpected_field_behavior="ignore"
                    ),
                )
            except pa.ArrowInvalid as e:
                bad_row = self._on_arrow_error(str(e), flips)
                if bad_row == -1:  # a declared type was adapted: retry the same rows
                    todo.append((lo, hi, flips + 1))
                    continue
                failures += 1
                if bad_row is None or bad_row >= hi - lo:  # no row given: halve, line by line when small
                    if hi - lo <= 8:
                        slow_lines.extend(int(i) for i in lines[lo:hi])
                        continue
                    mid = (lo + hi) // 2
                    todo.append((mid, hi, flips))
                    todo.append((lo, mid, flips))
                    continue
                slow_lines.append(int(lines[lo + bad_row]))
                todo.append((lo + bad_row + 1, hi, flips))
                todo.append((lo, lo + bad_row, flips))
                continue
            rows = lines[lo:hi]
            if table.num_rows != hi - lo:  # should not happen after the {…} check; be safe
                slow_lines.extend(int(i) for i in rows)
                continue
            if surrogates and not _valid_strings(table):
                slow_lines.extend(int(i) for i in rows)  # lone surrogate escapes: orjson decides
                continue
            parsed.append((lo, table, rows))
        # coerce once per run of segments with the same Arrow schema (segments in line order)
        parsed.sort(key=lambda p: p[0])
        groups: list[tuple[list[pa.Table], list[np.ndarray]]] = []
        for _, table, rows in parsed:
            if groups and groups[-1][0][0].schema.equals(table.schema):
                groups[-1][0].append(table)
                groups[-1][1].append(rows)
            else:
                groups.append(([table], [rows]))
        for tables, row_lists in groups:
            table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
            rows = np.concatenate(row_lists) if len(row_lists) > 1 else row_lists[0]
            table, bad = self._coerce(table)
            if bad is not None:
                slow_lines.extend(int(i) for i in rows[bad])
                table = table.filter(pa.array(~bad))
                rows = rows[~bad]
            out.append(table.append_column("line", pa.array(rows + first_line, pa.int64())))
        # cost model: a failure wastes ~half a segment, an Arrow call costs ~60 lines of parsing
        if failures * 1000 >= n:
            self.prescan = True
            self.clean_scans = 0
        if failures:
            self.segment_lines = int(min(n, max(64, math.sqrt(120 * n / failures))))
        else:
            self.segment_lines = min(self.segment_lines * 2, 1 << 30)
        return out

    def _on_arrow_error(self, msg: str, flips: int) -> int | None:
        """Adapt a declared type (-> -1), or return the failing row (or None when unknown)."""
        m = _CHANGED_RE.search(msg)
        if m:
            name, now, row = m.group(1), m.group(3), int(m.group(4))
            ftype = dict(FIELDS[self.kind]).get(name)
            if row == 0 and flips < 4 and ftype in ("int", "edited", "bool"):
                # this file's era stores the field as `now` (e.g. created_utc as a string)
                if now == "string":
                    self.declared[name] = pa.string()
                    return -1
                if now == "number" and ftype != "bool":
                    self.declared[name] = pa.int64()
                    return -1
                if now == "boolean" and ftype == "bool":
                    self.declared[name] = pa.bool_()
                    return -1
            return row
        m = _CONVERT_RE.search(msg)
        if m and m.group(1) == "int64" and flips < 4 and self._widen_int_columns():
            # a float (2023+ created_utc, float edit times) in an int64 column: read numbers as float64
            return -1
        m = _ROW_RE.search(msg)
        return int(m.group(1)) if m else None

    def _widen_int_columns(self) -> bool:
        changed = False
        for name, ftype in self.fields:
            if ftype in ("int", "edited") and self.declared.get(name, pa.int64()) == pa.int64():
                self.declared[name] = pa.float64()
                changed = True
        return changed

    def _coerce(self, table: pa.Table) -> tuple[pa.Table, np.ndarray | None]:
        """Cast declared columns to the output types; (table, mask of rows needing the slow path)."""
        kind = self.kind
        bad = None
        cols = {}
        for name, ftype in self.fields:
            col = table.column(name)
            target = _ARROW_TYPE[ftype]
            if col.type != target:
                col, col_bad = _cast_column(col, ftype, target)
                if col_bad is not None:
                    bad = col_bad if bad is None else (bad | col_bad)
            cols[name] = col
        for name in REQUIRED[kind]:
            if cols[name].null_count:
                miss = cols[name].is_null().to_numpy(zero_copy_only=False)
                bad = miss if bad is None else (bad | miss)
        table = pa.table(cols)
        return table, bad

    def _slow_table(self, rows: list[dict]) -> pa.Table:
        fields = [(name, _ARROW_TYPE[ft]) for name, ft in self.fields]
        schema = pa.schema([*fields, ("line", pa.int64())])
        return pa.Table.from_pylist(rows, schema=schema)

    def _finish(self, table: pa.Table) -> pa.Table:
        """Kind fields + line -> the output schema (derived link_id, month, source)."""
        n = table.num_rows
        cols = {name: table.column(name) for name, _ in self.fields}
        if self.kind == SUBMISSIONS:
            cols["link_id"] = pc.binary_join_element_wise("t3_", cols["id"], "")
        if self.month is not None:
            cols["month"] = pa.repeat(pa.scalar(self.month), n)
        else:
            ts = pc.cast(cols["created_utc"], pa.timestamp("s", tz="UTC"))
            cols["month"] = pc.strftime(ts, format="%Y-%m")
        cols["source"] = pa.repeat(pa.scalar(self.source), n)
        cols["line"] = table.column("line")
        schema = self.output_schema
        return pa.table([cols[f.name] for f in schema], schema=schema)


def _valid_utf8(data: bytes) -> bool:
    """Arrow's (SIMD) UTF-8 validation on a zero-copy view of the bytes."""
    offsets = pa.py_buffer(np.array([0, len(data)], dtype=np.int64).tobytes())
    view = pa.LargeStringArray.from_buffers(1, offsets, pa.py_buffer(data))
    try:
        view.validate(full=True)
        return True
    except pa.ArrowInvalid:
        return False


def _invalid_utf8_lines(data: bytes, starts: np.ndarray) -> list[int]:
    """Indices of the lines that are not valid UTF-8 (bisection over zero-copy slices)."""
    offsets = np.append(starts, len(data)).astype(np.int64)
    view = pa.LargeStringArray.from_buffers(len(starts), pa.py_buffer(offsets.tobytes()), pa.py_buffer(data))
    bad: list[int] = []
    todo = [(0, len(starts))]
    while todo:
        lo, hi = todo.pop()
        try:
            view.slice(lo, hi - lo).validate(full=True)
            continue
        except pa.ArrowInvalid:
            pass
        if hi - lo == 1:
            bad.append(lo)
        else:
            mid = (lo + hi) // 2
            todo += [(lo, mid), (mid, hi)]
    return sorted(bad)


def _valid_strings(table: pa.Table) -> bool:
    try:
        table.validate(full=True)
        return True
    except pa.ArrowInvalid:
        return False


def _cast_column(col: pa.ChunkedArray, ftype: str, target: pa.DataType):
    """(column as target type, mask of uncoercible rows or None)."""
    if pa.types.is_floating(col.type) and target == pa.int64():
        lo_hi = pc.min_max(col).as_py()  # JSON has no NaN/inf; guard the int64 range
        if lo_hi["min"] is None or (-(2.0**63) <= lo_hi["min"] and lo_hi["max"] < 2.0**63):
            return pc.cast(col, pa.int64(), safe=False), None  # truncates toward zero, like int()
    elif pa.types.is_string(col.type) and ftype == "int":
        try:
            return pc.cast(col, pa.int64()), None
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    # reference semantics, value by value (rare: BigQuery strings, odd values)
    coerce = COERCE[ftype]
    out = []
    bad = np.zeros(len(col), dtype=bool)
    for i, v in enumerate(col.to_pylist()):
        try:
            out.append(coerce(v))
        except ValueError:
            out.append(None)
            bad[i] = True
    return pa.chunked_array([pa.array(out, target)]), (bad if bad.any() else None)


# --- whole-file convenience (tests, notebooks; the Spark job uses the pieces above) -------------


@dataclass
class FileStats:
    lines: int = 0
    parsed: int = 0
    quarantined: Counter = field(default_factory=Counter)
    error: str | None = None

    def to_dict(self) -> dict:
        return {
            "lines": self.lines,
            "parsed": self.parsed,
            "quarantined": {k: int(v) for k, v in sorted(self.quarantined.items())},
            "error": self.error,
        }


def quarantine_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=schemas.QUARANTINE)


def read_dump(
    uri: str, kind: str | None = None, block_size: int = DEFAULT_BLOCK_SIZE, fast: bool = True
) -> tuple[pa.Table, pa.Table, FileStats]:
    """Read one dump file into (rows, quarantine, stats); rows have the kind's output schema."""
    name_kind, month = parse_dump_name(uri)
    parser = BlockParser(os.path.basename(uri), name_kind or kind, month, fast=fast)
    reader = DumpReader(uri, block_size)
    stats = FileStats()
    tables, quarantine = [], []
    for block in reader:
        res = parser.parse(block)
        tables.extend(res.tables)
        quarantine.extend(res.quarantine)
        stats.parsed += res.parsed
        stats.quarantined.update(res.quarantined)
    if reader.error:
        reason, message = reader.error
        quarantine.append(parser.error_record(reader.error_line, reason, message, reader.tail))
        stats.quarantined[reason] += 1
        stats.error = f"{reason}: {message}"
    stats.lines = reader.lines
    schema = OUTPUT_SCHEMA[parser.kind or COMMENTS]
    rows = pa.concat_tables(tables) if tables else schema.empty_table()
    return rows, quarantine_table(quarantine), stats
