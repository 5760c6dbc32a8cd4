"""Decoding a dump file into its bytes: zstd (the dumps' 2 GiB window, several frames), bz2 / xz / gz
(several streams back to back), or plain; and a thread that decodes ahead of the consumer.

A truncated or corrupt file ends the stream with :class:`DecodeFailure` after every byte the decoder
could produce before the break (a broken stream is decoded again up to the break, byte by byte at the
end); its message gives the break's decoded and compressed byte offsets.
"""

from __future__ import annotations

import bz2
import lzma
import os
import queue
import threading
import zlib
from collections.abc import Iterator

import zstandard

from dialogsmith import fsutil

# File-level quarantine reasons (once per file; the record stands for the line at which reading broke).
TRUNCATED_FILE = "truncated_file"  # the compressed stream ends early
DECODE_ERROR = "decode_error"  # the decoder reports corrupt data
FILE_REASONS = (TRUNCATED_FILE, DECODE_ERROR)

COMPRESSIONS = {".zst": "zst", ".zstd": "zst", ".bz2": "bz2", ".xz": "xz", ".gz": "gz"}
ZSTD_MAX_WINDOW = 2**31  # the dumps are written with --long=31
_ZSTD_READ = 1 << 20  # decoded bytes asked of the stream reader per call
_ZSTD_FEED = 64 << 10  # compressed bytes fed per decoder call (~0.5-1 MiB decoded at the dumps' ratio)


def compression_of(name: str) -> str:
    """'zst' | 'bz2' | 'xz' | 'gz' | 'plain', from the file extension."""
    return COMPRESSIONS.get(os.path.splitext(name)[1].lower(), "plain")


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
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._chunks = chunks
        self._thread = threading.Thread(target=self._run, name="dump-decoder", daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
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
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get(timeout=0.05)
            except queue.Empty:
                pass
        self._thread.join()
