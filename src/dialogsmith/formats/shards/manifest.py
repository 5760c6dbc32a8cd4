"""``manifest.json``: the splits, their shards (counts, sha256, bytes), the tokenizer's identity; and
``write_dataset``, which writes a whole output directory from instances in memory (tests, small data)."""

from __future__ import annotations

import hashlib
import os

from dialogsmith import fsutil
from dialogsmith.formats.shards.examples import ShardInstance
from dialogsmith.formats.shards.header import MANIFEST, SHARD_FORMAT_VERSION, TOKENIZER_DIR, token_dtype
from dialogsmith.formats.shards.writer import ShardArrays, write_shards


def tokenizer_identity(tokenizer_dir: str, name: str | None = None) -> dict:
    """The sha256 of every file of a tokenizer directory, and of them all together."""
    files = {}
    for path in fsutil.list_files(tokenizer_dir):
        rel = os.path.relpath(path, tokenizer_dir) if "://" not in path else path.rsplit("/", 1)[-1]
        files[rel] = hashlib.sha256(fsutil.read_bytes(path)).hexdigest()
    combined = hashlib.sha256("".join(f"{k}\0{v}\n" for k, v in sorted(files.items())).encode()).hexdigest()
    return {
        "name": name or os.path.basename(str(tokenizer_dir).rstrip("/")),
        "files": files,
        "sha256": combined,
    }


def copy_tokenizer(src_dir: str, root: str) -> str:
    dst = fsutil.join(root, TOKENIZER_DIR)
    for path in fsutil.list_files(src_dir):
        rel = os.path.relpath(path, src_dir) if "://" not in path else path.rsplit("/", 1)[-1]
        fsutil.write_bytes(fsutil.join(dst, rel), fsutil.read_bytes(path))
    return dst


def build_manifest(
    split_entries: dict[str, list[dict]],
    eos_id: int,
    vocab_size: int,
    max_len: int,
    reverse: bool = False,
    tokenizer: dict | None = None,
    source: dict | None = None,
    stats: dict | None = None,
) -> dict:
    splits = {}
    for split in sorted(split_entries):
        entries = split_entries[split]
        splits[split] = {
            "instances": sum(e["instances"] for e in entries),
            "turns": sum(e["turns"] for e in entries),
            "tokens": sum(e["tokens"] for e in entries),
            "shards": [
                {k: e[k] for k in ("file", "instances", "turns", "tokens", "sha256", "bytes")}
                for e in entries
            ],
        }
    return {
        "format": "dialogsmith-shards",
        "format_version": SHARD_FORMAT_VERSION,
        "token_dtype": str(token_dtype(vocab_size).name),
        "eos_id": eos_id,
        "vocab_size": vocab_size,
        "max_len": max_len,
        "reverse": reverse,
        "tokenizer": {"dir": TOKENIZER_DIR, "vocab_size": vocab_size, "eos_id": eos_id, **(tokenizer or {})},
        "source": source or {},
        "splits": splits,
        "stats": stats or {},
    }


def write_dataset(
    root,
    splits: dict[str, list[ShardInstance]],
    eos_id: int,
    vocab_size: int,
    max_len: int,
    tokenizer_dir: str | None = None,
    shard_size: int = 100_000,
    reverse: bool = False,
) -> dict:
    """Write already-fitted instances as shards + manifest.json under ``root``; returns the manifest."""
    root = str(root)
    entries: dict[str, list[dict]] = {}
    for split, instances in splits.items():
        for inst in instances:
            if inst.example_length > max_len:
                raise ValueError(f"instance of length {inst.example_length} > max_len {max_len}")
        arrays = ShardArrays.from_instances(instances)
        entries[split] = write_shards(
            root, lambda k, split=split: f"{split}/shard-{k:05d}.bin", arrays, shard_size, vocab_size, eos_id
        )
    tokenizer = None
    if tokenizer_dir is not None:
        copy_tokenizer(str(tokenizer_dir), root)
        tokenizer = tokenizer_identity(fsutil.join(root, TOKENIZER_DIR), name=str(tokenizer_dir))
    manifest = build_manifest(entries, eos_id, vocab_size, max_len, reverse, tokenizer)
    fsutil.write_json(fsutil.join(root, MANIFEST), manifest)
    return manifest
