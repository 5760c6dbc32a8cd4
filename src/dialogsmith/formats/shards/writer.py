"""Writing shard files: the one writer behind the tokenize stage and ``write_dataset``."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields

import numpy as np

from dialogsmith import fsutil
from dialogsmith.formats.shards.examples import ShardInstance
from dialogsmith.formats.shards.header import (
    HEADER,
    MAGIC,
    SHARD_FORMAT_VERSION,
    index_padding,
    token_dtype,
)


@dataclass
class ShardArrays:
    """Instances as a shard stores them, with counts per instance instead of offsets (so that parts
    concatenate and slice cheaply); ``encode_shard`` turns them into the file's sections."""

    inst_tokens: np.ndarray  # int64 [N] tokens per instance
    inst_turns: np.ndarray  # int64 [N] turns per instance
    turn_lengths: np.ndarray  # uint32 [T]
    turn_trainable: np.ndarray  # uint8 [T]
    tokens: np.ndarray  # [K] token ids, an instance's turns back to back

    @classmethod
    def empty(cls) -> ShardArrays:
        return cls(*(np.zeros(0, dtype=d) for d in (np.int64, np.int64, np.uint32, np.uint8, np.uint32)))

    @classmethod
    def concat(cls, parts: list[ShardArrays]) -> ShardArrays:
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)))

    @classmethod
    def from_instances(cls, instances: Iterable[ShardInstance]) -> ShardArrays:
        inst_tokens, inst_turns, lengths, flags, chunks = [], [], [], [], []
        for inst in instances:
            if len(inst.turns) != len(inst.trainable):
                raise ValueError(f"{len(inst.turns)} turns but {len(inst.trainable)} trainable flags")
            lengths.extend(len(turn) for turn in inst.turns)
            chunks.extend(np.asarray(turn, dtype=np.int64) for turn in inst.turns)
            flags.extend(bool(f) for f in inst.trainable)
            inst_tokens.append(sum(len(t) for t in inst.turns))
            inst_turns.append(len(inst.turns))
        tokens = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64)
        if tokens.size and tokens.min() < 0:
            raise ValueError("negative token id")
        return cls(
            np.array(inst_tokens, dtype=np.int64),
            np.array(inst_turns, dtype=np.int64),
            np.array(lengths, dtype=np.uint32),
            np.array(flags, dtype=np.uint8),
            tokens,
        )

    def __len__(self) -> int:
        return len(self.inst_tokens)

    def slice(self, a: int, b: int) -> ShardArrays:
        t_off = np.concatenate([[0], np.cumsum(self.inst_turns)])
        k_off = np.concatenate([[0], np.cumsum(self.inst_tokens)])
        return ShardArrays(
            self.inst_tokens[a:b],
            self.inst_turns[a:b],
            self.turn_lengths[t_off[a] : t_off[b]],
            self.turn_trainable[t_off[a] : t_off[b]],
            self.tokens[k_off[a] : k_off[b]],
        )


def encode_shard(arrays: ShardArrays, vocab_size: int, eos_id: int) -> list[bytes]:
    """The byte pieces of one shard file (header, index, padding, tokens)."""
    dtype = token_dtype(vocab_size)
    tokens = arrays.tokens
    n, t, k = len(arrays), len(arrays.turn_lengths), len(tokens)
    if tokens.size and int(tokens.max()) >= vocab_size:
        raise ValueError(f"token id {int(tokens.max())} >= vocab_size {vocab_size}")
    header = HEADER.pack(MAGIC, SHARD_FORMAT_VERSION, dtype.itemsize, n, t, k, vocab_size, eos_id)
    token_offsets = np.concatenate([[0], np.cumsum(arrays.inst_tokens)])
    turn_offsets = np.concatenate([[0], np.cumsum(arrays.inst_turns)])
    return [
        header,
        token_offsets.astype("<u8").tobytes(),
        turn_offsets.astype("<u8").tobytes(),
        np.ascontiguousarray(arrays.turn_lengths, dtype="<u4").tobytes(),
        np.ascontiguousarray(arrays.turn_trainable, dtype="u1").tobytes(),
        b"\0" * index_padding(n, t),
        np.ascontiguousarray(tokens, dtype=dtype).tobytes(),
    ]


def write_pieces(uri: str, pieces: list[bytes]) -> dict:
    """Write a file atomically (temporary name, then rename); its ``sha256`` and ``bytes``."""
    fs, path = fsutil.resolve(uri)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    digest = hashlib.sha256()
    size = 0
    with fs.open_output_stream(tmp) as f:
        for piece in pieces:
            f.write(piece)
            digest.update(piece)
            size += len(piece)
    fs.move(tmp, path)
    return {"sha256": digest.hexdigest(), "bytes": size}


def write_shard_file(uri: str, arrays: ShardArrays, vocab_size: int, eos_id: int) -> dict:
    """One shard file; its manifest entry fields but ``file``: instances, turns, tokens, sha256, bytes."""
    written = write_pieces(uri, encode_shard(arrays, vocab_size, eos_id))
    counts = {"instances": len(arrays), "turns": len(arrays.turn_lengths), "tokens": len(arrays.tokens)}
    return {**counts, **written}


def write_shards(
    root: str,
    name: Callable[[int], str],
    arrays: ShardArrays,
    shard_size: int,
    vocab_size: int,
    eos_id: int,
) -> list[dict]:
    """Cut ``arrays`` into shards of at most ``shard_size`` instances, written to ``root/name(k)``;
    their manifest entries (``file`` = ``name(k)``), in order. No instances: no file."""
    entries = []
    for k, a in enumerate(range(0, len(arrays), shard_size)):
        rel = name(k)
        chunk = arrays.slice(a, min(len(arrays), a + shard_size))
        entries.append({"file": rel, **write_shard_file(fsutil.join(root, rel), chunk, vocab_size, eos_id)})
    return entries


def write_shard(path, instances: Iterable[ShardInstance], vocab_size: int, eos_id: int = 0) -> dict:
    """Write one shard; returns {"path","instances","turns","tokens","sha256","bytes"}."""
    arrays = ShardArrays.from_instances(instances)
    return {"path": str(path), **write_shard_file(str(path), arrays, vocab_size, eos_id)}
