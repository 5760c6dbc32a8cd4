"""Reading shards: one file (``ShardReader``) or a split of an output directory (``ShardDataset``, also a
map-style PyTorch dataset)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from dialogsmith import fsutil
from dialogsmith.formats.shards.examples import ShardInstance, layout
from dialogsmith.formats.shards.header import (
    HEADER,
    IGNORE,
    MANIFEST,
    SHARD_FORMAT_VERSION,
    TOKENIZER_DIR,
    ShardError,
    file_sha256,
    index_padding,
    read_header,
)


class ShardReader:
    """One shard file; O(1) random access to instance i through numpy.memmap (local paths)."""

    def __init__(self, path, verify: bool = False, expected: dict | None = None):
        """``expected``: the shard's manifest entry (bytes, sha256). With ``verify=True`` and no entry
        given, the entry is looked up in ``<root>/manifest.json`` (the shard lives in ``<root>/<split>/``)."""
        self.path = str(path)
        self._expected = expected
        if verify and expected is None:
            expected = _manifest_entry_for(self.path)
        fs, local = fsutil.resolve(self.path)
        size = fs.get_file_info(local).size
        if size is None:
            raise ShardError(f"{self.path}: shard file not found")
        if "://" in self.path:
            buf = np.frombuffer(fsutil.read_bytes(self.path), dtype=np.uint8)
        else:
            buf = np.memmap(local, dtype=np.uint8, mode="r") if size else np.zeros(0, dtype=np.uint8)
        header = read_header(bytes(buf[: HEADER.size]), self.path)
        n, t, k = header.instances, header.turns, header.tokens
        if size != header.file_size:
            raise ShardError(
                f"{self.path}: corrupted or truncated shard: {size} bytes, header says {header.file_size} "
                f"({n} instances, {t} turns, {k} tokens)"
            )
        if expected is not None:
            _check_expected(self.path, size, expected, verify)
        self.vocab_size, self.eos_id = header.vocab_size, header.eos_id
        self.n_instances, self.n_turns, self.n_tokens = n, t, k
        off = HEADER.size
        self.token_offsets = buf[off : off + 8 * (n + 1)].view("<u8")
        off += 8 * (n + 1)
        self.turn_offsets = buf[off : off + 8 * (n + 1)].view("<u8")
        off += 8 * (n + 1)
        self.turn_lengths = buf[off : off + 4 * t].view("<u4")
        off += 4 * t
        self.turn_trainable = buf[off : off + t].view("u1")
        off += t + index_padding(n, t)
        self.tokens = buf[off : off + header.itemsize * k].view("<u2" if header.itemsize == 2 else "<u4")
        if n and (int(self.token_offsets[-1]) != k or int(self.turn_offsets[-1]) != t):
            raise ShardError(f"{self.path}: corrupted index (offsets do not end at the token/turn counts)")

    def __len__(self) -> int:
        return self.n_instances

    def __getstate__(self) -> dict:
        # sent to DataLoader workers (spawn) as a path: the worker maps the file again, no data is copied
        return {"path": self.path, "expected": self._expected}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], verify=False, expected=state["expected"])

    def instance(self, i: int) -> ShardInstance:
        if not 0 <= i < self.n_instances:
            raise IndexError(f"instance {i} out of range for {self.path} ({self.n_instances} instances)")
        a, b = int(self.token_offsets[i]), int(self.token_offsets[i + 1])
        ta, tb = int(self.turn_offsets[i]), int(self.turn_offsets[i + 1])
        lengths = self.turn_lengths[ta:tb]
        if b - a != int(lengths.sum()) or b > self.n_tokens:
            raise ShardError(f"{self.path}: corrupted index at instance {i}")
        cuts = np.cumsum(lengths)[:-1]
        toks = np.array(self.tokens[a:b], dtype=np.int64)
        return ShardInstance(
            turns=np.split(toks, cuts), trainable=np.array(self.turn_trainable[ta:tb], dtype=bool)
        )

    @property
    def lengths(self) -> np.ndarray:
        """int32 example length (input tokens incl. EOS separators) per instance."""
        toks = np.diff(self.token_offsets.astype(np.int64))
        turns = np.diff(self.turn_offsets.astype(np.int64))
        return (toks + turns - 1).astype(np.int32)


def _check_expected(path: str, size: int, expected: dict, verify: bool) -> None:
    if "bytes" in expected and int(expected["bytes"]) != size:
        raise ShardError(f"{path}: size {size} bytes differs from the manifest's {expected['bytes']}")
    if verify:
        got = file_sha256(path)
        if got != expected["sha256"]:
            raise ShardError(
                f"{path}: sha256 mismatch (file {got}, manifest {expected['sha256']}): corrupted"
            )


def _manifest_entry_for(shard_path: str) -> dict:
    split_dir = os.path.dirname(shard_path.rstrip("/"))
    root = os.path.dirname(split_dir)
    manifest_uri = fsutil.join(root, MANIFEST)
    if not fsutil.exists(manifest_uri):
        raise ShardError(f"{shard_path}: cannot verify, no {manifest_uri}")
    manifest = fsutil.read_json(manifest_uri)
    rel = f"{os.path.basename(split_dir)}/{os.path.basename(shard_path)}"
    for split in manifest.get("splits", {}).values():
        for entry in split["shards"]:
            if entry["file"] == rel:
                return entry
    raise ShardError(f"{shard_path}: not listed in {manifest_uri}")


class ShardDataset:
    """All shards of one split of a tokenize output directory, through its manifest; also a map-style
    PyTorch dataset::

        ds = ShardDataset(root, split="train")
        loader = torch.utils.data.DataLoader(ds, batch_size=8, shuffle=True, collate_fn=ds.collate)

    ``ds[i]`` is instance ``i`` as a training example (numpy arrays, see ``__getitem__``) and
    ``ds.collate`` pads a list of them into a batch of tensors. The labels are ALREADY SHIFTED:
    ``labels[:, j]`` is the token that position ``j`` must predict (-100: nothing). Compute the loss on the
    logits as they are::

        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss = F.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=-100)

    Do not pass them as ``GPT2LMHeadModel(labels=...)``: transformers shifts labels by one position
    itself, so every target would be scored one position late (docs/shard-format.md).
    """

    def __init__(self, root: str, split: str = "train", verify: bool = False):
        self.root = str(root)
        manifest_uri = fsutil.join(self.root, MANIFEST)
        if not fsutil.exists(manifest_uri):
            raise FileNotFoundError(f"{manifest_uri} not found: is {self.root} a tokenize output directory?")
        self.manifest = fsutil.read_json(manifest_uri)
        if self.manifest.get("format_version") != SHARD_FORMAT_VERSION:
            raise ShardError(
                f"{manifest_uri}: shard format version {self.manifest.get('format_version')}, "
                f"this reader reads {SHARD_FORMAT_VERSION}"
            )
        splits = self.manifest["splits"]
        if split not in splits:
            raise KeyError(
                f"split '{split}' not in {manifest_uri} (has: {', '.join(sorted(splits)) or 'none'})"
            )
        self.split = split
        self.eos_id = int(self.manifest["eos_id"])
        self.max_len = int(self.manifest["max_len"])
        self.vocab_size = int(self.manifest["vocab_size"])
        self.reverse = bool(self.manifest.get("reverse", False))
        self.tokenizer_dir = fsutil.join(
            self.root, self.manifest.get("tokenizer", {}).get("dir", TOKENIZER_DIR)
        )
        self.shards = [
            ShardReader(fsutil.join(self.root, e["file"]), verify=verify, expected=e)
            for e in splits[split]["shards"]
        ]
        for reader, entry in zip(self.shards, splits[split]["shards"], strict=True):
            if len(reader) != entry["instances"]:
                raise ShardError(
                    f"{reader.path}: {len(reader)} instances, manifest says {entry['instances']}"
                )
        counts = np.array([len(s) for s in self.shards], dtype=np.int64)
        self._starts = np.concatenate([[0], np.cumsum(counts)])
        self.lengths = (
            np.concatenate([s.lengths for s in self.shards]) if self.shards else np.zeros(0, dtype=np.int32)
        ).astype(np.int32)

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getstate__(self) -> dict:
        return {"root": self.root, "split": self.split}  # a worker reopens the manifest and maps the shards

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["root"], state["split"])

    def locate(self, i: int) -> tuple[int, int]:
        if not 0 <= i < len(self):
            raise IndexError(f"instance {i} out of range ({len(self)} in split '{self.split}')")
        s = int(np.searchsorted(self._starts, i, side="right")) - 1
        return s, i - int(self._starts[s])

    def instance(self, i: int) -> ShardInstance:
        s, j = self.locate(i)
        return self.shards[s].instance(j)

    def example(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        inst = self.instance(i)
        return layout(inst.turns, inst.trainable, self.eos_id)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        """Instance ``i`` (negative counts from the end) as ``input_ids`` and ``labels`` (int64, labels
        already shifted, -100 = no target) and ``weights`` (float32, the stored turns' trainable flags
        per position: 1.0 where the position predicts a token of a trainable turn or its closing EOS)."""
        i = int(i)
        input_ids, labels = self.example(i + len(self) if i < 0 else i)
        return {"input_ids": input_ids, "labels": labels, "weights": (labels != IGNORE).astype(np.float32)}

    def collate(self, items: Sequence[dict], pad_to_multiple_of: int | None = None) -> dict:
        """A batch of torch tensors from ``ds[i]`` items, right-padded to the longest (rounded up to a
        multiple of ``pad_to_multiple_of``, e.g. 8 for tensor cores: ``functools.partial(ds.collate,
        pad_to_multiple_of=8)``): ``input_ids`` [B, T] int64 (padding: the EOS id), ``labels`` [B, T]
        int64 (padding: -100), ``attention_mask`` [B, T] int64 (1 = token, 0 = padding), ``weights``
        [B, T] float32 (padding: 0)."""
        import torch

        width = max(len(item["input_ids"]) for item in items)
        if pad_to_multiple_of:
            width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
        rows = len(items)
        batch = {
            "input_ids": np.full((rows, width), self.eos_id, dtype=np.int64),
            "labels": np.full((rows, width), IGNORE, dtype=np.int64),
            "attention_mask": np.zeros((rows, width), dtype=np.int64),
            "weights": np.zeros((rows, width), dtype=np.float32),
        }
        for r, item in enumerate(items):
            n = len(item["input_ids"])
            batch["input_ids"][r, :n] = item["input_ids"]
            batch["labels"][r, :n] = item["labels"]
            batch["attention_mask"][r, :n] = 1
            batch["weights"][r, :n] = item["weights"]
        return {name: torch.from_numpy(array) for name, array in batch.items()}
