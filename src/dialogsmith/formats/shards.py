"""Token shards: the tokenize stage's output format, its reader, and the DialoGPT example layout.

Layout of one shard file (all integers little-endian; see docs/shard-format.md, readable with numpy alone)::

    offset 0   header, 64 bytes:
               magic      8s   b"DLGSHARD"
               version    u32  SHARD_FORMAT_VERSION
               dtype      u32  bytes per token: 2 (uint16, vocab_size <= 65536) or 4 (uint32)
               instances  u64  N
               turns      u64  T
               tokens     u64  K
               vocab_size u32
               eos_id     u32
               reserved   16 zero bytes
    offset 64  instance_token_offset  u64[N + 1]  tokens of instance i = tokens[a[i]:a[i+1]]
               instance_turn_offset   u64[N + 1]  turns of instance i = turn rows b[i]..b[i+1]-1
               turn_length            u32[T]      tokens per turn (turns of an instance are contiguous)
               turn_trainable         u8[T]       1 = the turn is a training target
               zero padding to a multiple of 8 bytes
               tokens                 u16|u32[K]  turn token ids, turns concatenated, no EOS stored

Example layout (../shared/specs/dialogpt-training.md): ``input_ids = t0 E t1 E ... tK`` (no EOS after the
last turn) and ``labels[j]`` = the token that position ``j`` must predict (already shifted, -100 = ignored):
for a trainable turn ``t_i`` the EOS before it predicts its first token, each of its tokens predicts the
next one, and its last token predicts the closing EOS. So ``loss = CE(logits[:, j], labels[:, j])`` with
NO further shift -- do not pass these labels to ``GPT2LMHeadModel(labels=...)``, which shifts again.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import struct
import sys
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from dialogsmith import fsutil

SHARD_FORMAT_VERSION = 1
MAGIC = b"DLGSHARD"
HEADER = struct.Struct("<8sIIQQQII16x")  # 64 bytes
assert HEADER.size == 64
IGNORE = -100
MANIFEST = "manifest.json"
TOKENIZER_DIR = "tokenizer"

# Stable drop reasons (asserted by tests, counted in stats.json).
TARGET_TOO_LONG = "target_too_long"
NO_TRAINABLE_TURN = "no_trainable_turn"


class ShardError(ValueError):
    """A shard file is corrupted, truncated or not a shard."""


@dataclass
class ShardInstance:
    turns: list[np.ndarray]  # token ids per turn, no EOS inside
    trainable: np.ndarray  # bool per turn; turn 0 is never trainable

    @property
    def example_length(self) -> int:
        return sum(len(t) for t in self.turns) + len(self.turns) - 1


# --- example semantics ----------------------------------------------------------------------------


def fit_window(lengths: Sequence[int], trainable: Sequence[bool], max_len: int, reverse: bool = False):
    """Which turns make the example: ``(start, stop)`` (a slice) or a drop reason.

    ``trainable`` is per turn before position rules (a turn at position 0 of the window is never trained).
    Forward (``reverse=False``): the target is the last trainable turn at position >= 1; when the whole
    instance is longer than ``max_len`` the turns after the target (never trained) and then the oldest
    context turns are dropped, keeping at least the turn right before the target (its context).
    Reverse instances (turns newest first) lose their oldest turns, which are at the end.
    The input length of turns ``s..e`` is ``sum(lengths[s:e]) + (e - s - 1)`` (one EOS between turns).
    """
    n = len(lengths)
    trainable_at = [i for i in range(1, n) if trainable[i]]
    if not trainable_at:
        return NO_TRAINABLE_TURN

    def length(s: int, e: int) -> int:
        return sum(lengths[s:e]) + (e - s - 1)

    if length(0, n) <= max_len:
        return 0, n
    if reverse:
        # keep the newest turns (at the front); need at least turns 0..first trainable
        e = n
        while e > trainable_at[0] + 1 and length(0, e) > max_len:
            e -= 1
        return (0, e) if length(0, e) <= max_len else TARGET_TOO_LONG
    target = trainable_at[-1]
    e = target + 1
    s = 0
    while s < target - 1 and length(s, e) > max_len:
        s += 1
    if length(s, e) > max_len:
        return TARGET_TOO_LONG
    if s > 0 and not any(trainable[i] for i in range(s + 1, e)):  # pragma: no cover - target is always kept
        return NO_TRAINABLE_TURN
    return s, e


def layout(
    turns: Sequence[Sequence[int]], trainable: Sequence[bool], eos_id: int
) -> tuple[np.ndarray, np.ndarray]:
    """input_ids and next-token labels of turns that already fit (no cutting); turn 0 never trained."""
    n_in = sum(len(t) for t in turns) + len(turns) - 1
    input_ids = np.empty(n_in, dtype=np.int64)
    labels = np.full(n_in, IGNORE, dtype=np.int64)
    pos = 0
    for i, turn in enumerate(turns):
        k = len(turn)
        if i > 0:
            input_ids[pos] = eos_id  # separator before turn i
            if trainable[i]:
                # position pos (the EOS) predicts t_i[0], ..., t_i[-1] predicts the closing EOS
                labels[pos : pos + k] = turn
                labels[pos + k] = eos_id if pos + k < n_in else IGNORE
            pos += 1
        input_ids[pos : pos + k] = turn
        pos += k
    if len(turns) > 1 and trainable[len(turns) - 1]:
        labels[n_in - 1] = eos_id  # the last turn's last token (or its EOS if empty) predicts EOS
    return input_ids, labels


def build_example(
    turns: list[Sequence[int]], trainable: Sequence[bool], eos_id: int, max_len: int, reverse: bool = False
) -> tuple[np.ndarray, np.ndarray] | str:
    """(input_ids int64, labels int64 with -100 = ignored) per the spec layout, or a drop reason.

    Keeps the target turn whole and drops the oldest context turns first (see ``fit_window``).
    """
    window = fit_window([len(t) for t in turns], trainable, max_len, reverse)
    if isinstance(window, str):
        return window
    s, e = window
    flags = [False] + [bool(f) for f in trainable[s + 1 : e]]
    return layout(turns[s:e], flags, eos_id)


# --- writing -------------------------------------------------------------------------------------


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype("<u2") if vocab_size <= 65536 else np.dtype("<u4")


def _pad8(n: int) -> int:
    return (-n) % 8


def encode_shard(
    token_offsets: np.ndarray,
    turn_offsets: np.ndarray,
    turn_lengths: np.ndarray,
    turn_trainable: np.ndarray,
    tokens: np.ndarray,
    vocab_size: int,
    eos_id: int,
) -> list[bytes]:
    """The byte pieces of one shard file from its (already consistent) arrays."""
    dtype = token_dtype(vocab_size)
    n, t, k = len(token_offsets) - 1, len(turn_lengths), len(tokens)
    if tokens.size and int(tokens.max()) >= vocab_size:
        raise ValueError(f"token id {int(tokens.max())} >= vocab_size {vocab_size}")
    header = HEADER.pack(MAGIC, SHARD_FORMAT_VERSION, dtype.itemsize, n, t, k, vocab_size, eos_id)
    index_bytes = 16 * (n + 1) + 5 * t
    return [
        header,
        np.ascontiguousarray(token_offsets, dtype="<u8").tobytes(),
        np.ascontiguousarray(turn_offsets, dtype="<u8").tobytes(),
        np.ascontiguousarray(turn_lengths, dtype="<u4").tobytes(),
        np.ascontiguousarray(turn_trainable, dtype="u1").tobytes(),
        b"\0" * _pad8(index_bytes),
        np.ascontiguousarray(tokens, dtype=dtype).tobytes(),
    ]


def expected_size(n: int, t: int, k: int, itemsize: int) -> int:
    index_bytes = 16 * (n + 1) + 5 * t
    return HEADER.size + index_bytes + _pad8(index_bytes) + k * itemsize


def write_pieces(uri: str, pieces: list[bytes]) -> dict:
    """Write a shard atomically (temporary name, then rename); return its manifest entry fields."""
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


def pack_instances(instances: Iterable[ShardInstance]):
    """Arrays of a shard from instances: (token_offsets, turn_offsets, turn_lengths, trainable, tokens)."""
    tok_off, turn_off, lengths, flags, chunks = [0], [0], [], [], []
    for inst in instances:
        if len(inst.turns) != len(inst.trainable):
            raise ValueError(f"{len(inst.turns)} turns but {len(inst.trainable)} trainable flags")
        for turn in inst.turns:
            lengths.append(len(turn))
            chunks.append(np.asarray(turn, dtype=np.int64))
        flags.extend(bool(f) for f in inst.trainable)
        tok_off.append(tok_off[-1] + sum(len(t) for t in inst.turns))
        turn_off.append(turn_off[-1] + len(inst.turns))
    tokens = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64)
    if tokens.size and tokens.min() < 0:
        raise ValueError("negative token id")
    return (
        np.array(tok_off, dtype=np.uint64),
        np.array(turn_off, dtype=np.uint64),
        np.array(lengths, dtype=np.uint32),
        np.array(flags, dtype=np.uint8),
        tokens,
    )


def write_shard(path, instances: Iterable[ShardInstance], vocab_size: int, eos_id: int = 0) -> dict:
    """Write one shard; returns {"path","instances","turns","tokens","sha256","bytes"}."""
    tok_off, turn_off, lengths, flags, tokens = pack_instances(instances)
    pieces = encode_shard(tok_off, turn_off, lengths, flags, tokens, vocab_size, eos_id)
    entry = write_pieces(str(path), pieces)
    return {
        "path": str(path),
        "instances": len(tok_off) - 1,
        "turns": len(lengths),
        "tokens": len(tokens),
        **entry,
    }


def file_sha256(uri: str) -> str:
    fs, path = fsutil.resolve(uri)
    digest = hashlib.sha256()
    with fs.open_input_stream(path) as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


# --- reading -------------------------------------------------------------------------------------


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
        try:
            size = fs.get_file_info(local).size
        except FileNotFoundError:
            size = None
        if size is None:
            raise ShardError(f"{self.path}: shard file not found")
        if size < HEADER.size:
            raise ShardError(f"{self.path}: truncated shard ({size} bytes, smaller than the 64-byte header)")
        if "://" in self.path:
            buf = np.frombuffer(fsutil.read_bytes(self.path), dtype=np.uint8)
        else:
            buf = np.memmap(local, dtype=np.uint8, mode="r")
        magic, version, itemsize, n, t, k, vocab_size, eos_id = HEADER.unpack(bytes(buf[: HEADER.size]))
        if magic != MAGIC:
            raise ShardError(f"{self.path}: not a dialogsmith shard (bad magic {magic!r})")
        if version != SHARD_FORMAT_VERSION:
            raise ShardError(
                f"{self.path}: shard format version {version}, this reader reads {SHARD_FORMAT_VERSION}"
            )
        if itemsize not in (2, 4):
            raise ShardError(f"{self.path}: bad token dtype code {itemsize}")
        want = expected_size(n, t, k, itemsize)
        if size != want:
            raise ShardError(
                f"{self.path}: corrupted or truncated shard: {size} bytes, header says {want} "
                f"({n} instances, {t} turns, {k} tokens)"
            )
        if expected is not None:
            if "bytes" in expected and int(expected["bytes"]) != size:
                raise ShardError(
                    f"{self.path}: size {size} bytes differs from the manifest's {expected['bytes']}"
                )
            if verify:
                got = file_sha256(self.path)
                if got != expected["sha256"]:
                    raise ShardError(
                        f"{self.path}: sha256 mismatch (file {got}, manifest {expected['sha256']}): corrupted"
                    )
        self.vocab_size, self.eos_id = vocab_size, eos_id
        self.n_instances, self.n_turns, self.n_tokens = n, t, k
        off = HEADER.size
        self.token_offsets = buf[off : off + 8 * (n + 1)].view("<u8")
        off += 8 * (n + 1)
        self.turn_offsets = buf[off : off + 8 * (n + 1)].view("<u8")
        off += 8 * (n + 1)
        self.turn_lengths = buf[off : off + 4 * t].view("<u4")
        off += 4 * t
        self.turn_trainable = buf[off : off + t].view("u1")
        off += t + _pad8(16 * (n + 1) + 5 * t)
        self.tokens = buf[off : off + itemsize * k].view("<u2" if itemsize == 2 else "<u4")
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
    """All shards of one split of a tokenize output directory, through its manifest."""

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


# --- verification against the manifest ------------------------------------------------------------


def _check_shard_file(path: str, entry: dict, manifest: dict) -> str | None:
    """The cheap check of one shard (a stat and a 64-byte read): a problem line, or None."""
    fs, local = fsutil.resolve(path)
    size = fs.get_file_info(local).size
    want = int(entry["bytes"])
    if size is None:
        return f"{path}: missing (manifest.json lists it with {want} bytes)"
    if size != want:
        return f"{path}: {size} bytes, manifest.json says {want} (truncated or corrupted shard)"
    with fs.open_input_file(local) as f:
        head = f.read(HEADER.size)
    if len(head) < HEADER.size:
        return f"{path}: {size} bytes, smaller than the {HEADER.size}-byte header"
    magic, version, itemsize, n, t, k, vocab_size, eos_id = HEADER.unpack(head)
    if magic != MAGIC:
        return f"{path}: not a dialogsmith shard (magic {magic!r}, expected {MAGIC!r})"
    if version != SHARD_FORMAT_VERSION:
        return f"{path}: shard format version {version}, expected {SHARD_FORMAT_VERSION}"
    found = {"instances": n, "turns": t, "tokens": k}
    found |= {"vocab_size": vocab_size, "eos_id": eos_id, "token bytes": itemsize}
    expected = {key: int(entry[key]) for key in ("instances", "turns", "tokens")}
    expected |= {"vocab_size": int(manifest["vocab_size"]), "eos_id": int(manifest["eos_id"])}
    expected["token bytes"] = token_dtype(expected["vocab_size"]).itemsize
    diffs = [
        f"{key} {found[key]} (manifest.json: {expected[key]})"
        for key in expected
        if found[key] != expected[key]
    ]
    if diffs:
        return f"{path}: header says {', '.join(diffs)}"
    if expected_size(n, t, k, itemsize) != size:
        return f"{path}: header describes {expected_size(n, t, k, itemsize)} bytes, the file has {size}"
    return None


def _check_shard_sha256(path: str, entry: dict) -> str | None:
    got = file_sha256(path)
    if got != entry["sha256"]:
        return f"{path}: sha256 mismatch: manifest.json says {entry['sha256']}, the file has {got} (corrupted shard)"
    return None


def verify_shards(
    root: str,
    splits: Sequence[str] | None = None,
    *,
    full: bool = True,
    workers: int = 0,
    part: tuple[int, int] = (0, 1),
) -> list[str]:
    """Check the shards of ``splits`` (default: all) of a tokenize output dir against its manifest.json.

    Always (a stat and a 64-byte read per shard): the file exists, has the manifest's size, and its header
    agrees with that size and with the manifest's counts, vocab_size and eos_id. With ``full``, also the
    sha256 of every file that passed, on ``workers`` threads (0: up to 4; hashlib and pyarrow release
    the GIL, so threads hash in parallel); ``part=(k, n)`` hashes only shards k, k+n, ... (manifest
    order) so that n processes share that work. Returns one line per problem, naming the shard with what
    the manifest says and what the file has; [] when all is well.
    """
    manifest_uri = fsutil.join(str(root), MANIFEST)
    if not fsutil.exists(manifest_uri):
        raise FileNotFoundError(f"{manifest_uri} not found: is {root} a tokenize output directory?")
    manifest = fsutil.read_json(manifest_uri)
    all_splits = manifest.get("splits", {})
    for split in splits or ():
        if split not in all_splits:
            raise KeyError(f"split '{split}' not in {manifest_uri} (has: {', '.join(sorted(all_splits))})")
    entries = [e for split in (splits or sorted(all_splits)) for e in all_splits[split]["shards"]]
    problems, to_hash = [], []
    k, n = part
    for index, entry in enumerate(entries):
        path = fsutil.join(str(root), entry["file"])
        problem = _check_shard_file(path, entry, manifest)
        if problem:
            problems.append(problem)
        elif index % n == k:
            to_hash.append((path, entry))
    if full:
        workers = min(len(to_hash), workers or 4)
        if workers > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(workers, thread_name_prefix="shard-sha256") as pool:
                found = list(pool.map(lambda pe: _check_shard_sha256(*pe), to_hash))
        else:
            found = [_check_shard_sha256(path, entry) for path, entry in to_hash]
        problems += [p for p in found if p]
    return problems


# --- convenience writer (tests, small data) ------------------------------------------------------


def tokenizer_identity(tokenizer_dir: str, name: str | None = None) -> dict:
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
        entries[split] = []
        for k, start in enumerate(range(0, max(len(instances), 1), shard_size)):
            chunk = instances[start : start + shard_size]
            if not chunk:
                continue
            for inst in chunk:
                if inst.example_length > max_len:
                    raise ValueError(f"instance of length {inst.example_length} > max_len {max_len}")
            rel = f"{split}/shard-{k:05d}.bin"
            entry = write_shard(fsutil.join(root, rel), chunk, vocab_size, eos_id)
            entries[split].append({**entry, "file": rel})
    tokenizer = None
    if tokenizer_dir is not None:
        copy_tokenizer(str(tokenizer_dir), root)
        tokenizer = tokenizer_identity(fsutil.join(root, TOKENIZER_DIR), name=str(tokenizer_dir))
    manifest = build_manifest(entries, eos_id, vocab_size, max_len, reverse, tokenizer)
    fsutil.write_json(fsutil.join(root, MANIFEST), manifest)
    return manifest


# --- decode command -------------------------------------------------------------------------------


def _load_decoder(tokenizer_dir: str):
    from tokenizers import Tokenizer

    path = fsutil.join(tokenizer_dir, "tokenizer.json")
    if fsutil.exists(path):
        return Tokenizer.from_str(fsutil.read_bytes(path).decode("utf-8"))
    from dialogsmith.tokenize.job import load_tokenizer

    return load_tokenizer(tokenizer_dir)


def decode(
    root: str, split: str = "train", n: int = 5, start: int = 0, verify: bool = False, out=None
) -> int:
    """Print instances back as text with turn boundaries and trainable marks; returns instances shown."""
    out = out or sys.stdout
    ds = ShardDataset(root, split, verify=verify)
    tok = _load_decoder(ds.tokenizer_dir)
    if verify:
        print(
            f"verified {len(ds.shards)} shard(s) of split '{split}' against {MANIFEST} (size + sha256)",
            file=out,
        )
    shown = 0
    for i in range(start, min(len(ds), start + n)):
        s, j = ds.locate(i)
        inst = ds.instance(i)
        name = os.path.basename(ds.shards[s].path)
        print(
            f"=== {split}[{i}] {name}#{j}  turns={len(inst.turns)}  example_len={inst.example_length}",
            file=out,
        )
        for k, (turn, flag) in enumerate(zip(inst.turns, inst.trainable, strict=True)):
            text = tok.decode(turn.tolist(), skip_special_tokens=False)
            print(f"  [{k}] {'TRAIN' if flag else 'ctx  '} | {text}", file=out)
        shown += 1
    return shown


def decode_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="decode_shards",
        description="Print token-shard instances back as text: one line per turn, TRAIN = a training target, "
        "ctx = context only.",
    )
    p.add_argument("root", help="tokenize output directory (holds manifest.json)")
    p.add_argument("--split", default="train", help="split to read (default: train)")
    p.add_argument("--n", type=int, default=5, help="instances to print (default: 5)")
    p.add_argument("--start", type=int, default=0, help="first instance index (default: 0)")
    p.add_argument(
        "--verify", action="store_true", help="check every shard's size and sha256 against the manifest"
    )
    args = p.parse_args(argv)
    try:
        decode(args.root, args.split, args.n, args.start, args.verify)
    except (ShardError, FileNotFoundError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "decode":
        print(
            "usage: python -m dialogsmith.formats.shards decode ROOT [--split train] [--n 5] [--verify]",
            file=sys.stderr,
        )
        return 2
    return decode_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
