"""The 64-byte header of a shard file, the file size it implies, and the names of an output directory."""

from __future__ import annotations

import hashlib
import struct
from typing import NamedTuple

import numpy as np

from dialogsmith import fsutil

SHARD_FORMAT_VERSION = 1
MAGIC = b"DLGSHARD"
HEADER = struct.Struct("<8sIIQQQII16x")  # magic, version, bytes per token, N, T, K, vocab_size, eos_id
assert HEADER.size == 64
IGNORE = -100  # the label of a position that predicts nothing (PyTorch's cross-entropy ignore_index)
MANIFEST = "manifest.json"
TOKENIZER_DIR = "tokenizer"


class ShardError(ValueError):
    """A shard file is corrupted, truncated or not a shard."""


class Header(NamedTuple):
    itemsize: int  # bytes per token: 2 or 4
    instances: int
    turns: int
    tokens: int
    vocab_size: int
    eos_id: int

    @property
    def file_size(self) -> int:
        return expected_size(self.instances, self.turns, self.tokens, self.itemsize)


def read_header(head: bytes, path: str) -> Header:
    """The header of the shard at ``path`` from its first 64 bytes; ShardError when it is not one."""
    if len(head) < HEADER.size:
        raise ShardError(f"{path}: truncated shard ({len(head)} bytes, smaller than the 64-byte header)")
    magic, version, itemsize, n, t, k, vocab_size, eos_id = HEADER.unpack(head[: HEADER.size])
    if magic != MAGIC:
        raise ShardError(f"{path}: not a dialogsmith shard (magic {magic!r}, expected {MAGIC!r})")
    if version != SHARD_FORMAT_VERSION:
        raise ShardError(f"{path}: shard format version {version}, this reader reads {SHARD_FORMAT_VERSION}")
    if itemsize not in (2, 4):
        raise ShardError(f"{path}: bad token dtype code {itemsize}")
    return Header(itemsize, n, t, k, vocab_size, eos_id)


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype("<u2") if vocab_size <= 65536 else np.dtype("<u4")


def index_padding(n: int, t: int) -> int:
    """Zero bytes after the index so that the tokens start at a multiple of 8."""
    return (-(16 * (n + 1) + 5 * t)) % 8


def expected_size(n: int, t: int, k: int, itemsize: int) -> int:
    return HEADER.size + 16 * (n + 1) + 5 * t + index_padding(n, t) + k * itemsize


def file_sha256(uri: str) -> str:
    fs, path = fsutil.resolve(uri)
    digest = hashlib.sha256()
    with fs.open_input_stream(path) as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()
