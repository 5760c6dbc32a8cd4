"""Tokenize stage: filter output (FILTERED Parquet per split) -> GPT-2 BPE token shards + manifest.

Pipeline (driver / executors):
1. ``plan``      (driver) list ``IN/<split>/*.parquet`` sorted, read only their footers, cut them into work
                 units of whole row groups (<= ``--shard-size`` rows each). The plan depends on the input
                 files alone, never on the cluster size: same input + config -> byte-identical output.
2. ``tokenize``  (executor task per unit) read the unit's rows with pyarrow, encode every turn separately
                 with the fast Rust tokenizer (``encode_batch``), apply the DialoGPT example rules
                 (``shards.fit_window``) vectorized with numpy, write ``<split>/part-<unit>-<k>.bin`` shards
                 directly to the output and return per-unit stats.
3. ``commit``    (driver) rename parts to ``<split>/shard-XXXXX.bin`` in unit order, copy the tokenizer to
                 ``OUT/tokenizer/``, write ``manifest.json`` (deterministic, no timings) and ``stats.json``.

Quarantined rows (counted, never silently lost): ``null_turns`` (null list or null turn text),
``bad_turn_weights`` (null weights or a length that differs from the turns').
Dropped: ``no_trainable_turn``, ``target_too_long`` (see ``dialogsmith.formats.shards.fit_window``).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import os
import sys
import uuid
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dialogsmith import fsutil, outputs
from dialogsmith.formats import schemas, shards
from dialogsmith.formats.stats import StageStats, Timer, counter_to_dict, finish

EOS_TOKEN = "<|endoftext|>"
DEFAULT_TOKENIZER = "gpt2"
STAGE = "tokenize"
SPLIT_ORDER = ("train", "valid", "test")
TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.json",
    "merges.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
)


# --- tokenizer -------------------------------------------------------------------------------------


def load_tokenizer(spec: str):
    """A ``tokenizers.Tokenizer`` (byte-level BPE) from a local directory or a hub name such as ``gpt2``.

    Directory: ``tokenizer.json``, or ``vocab.json`` + ``merges.txt`` (GPT-2's files).
    Special tokens in turn text are encoded as plain text: a comment containing ``<|endoftext|>`` cannot
    inject a turn separator.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    spec = str(spec)
    if os.path.isdir(spec):
        tj, vocab, merges = (os.path.join(spec, f) for f in ("tokenizer.json", "vocab.json", "merges.txt"))
        if os.path.exists(tj):
            tok = Tokenizer.from_file(tj)
        elif os.path.exists(vocab) and os.path.exists(merges):
            tok = Tokenizer(models.BPE.from_file(vocab, merges))
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            tok.decoder = decoders.ByteLevel()
        else:
            raise FileNotFoundError(
                f"tokenizer directory {spec} has neither tokenizer.json nor vocab.json + merges.txt"
            )
    else:
        try:
            tok = Tokenizer.from_pretrained(spec)
        except Exception as e:  # no network, unknown name, ...
            raise RuntimeError(
                f"could not load tokenizer '{spec}' from the Hugging Face hub ({e}). Offline? Pass a local "
                "directory holding vocab.json + merges.txt or tokenizer.json, e.g. --tokenizer ../shared/gpt2"
            ) from e
    tok.encode_special_tokens = True
    return tok


def eos_id_of(tok, eos_token: str = EOS_TOKEN) -> int:
    eos = tok.token_to_id(eos_token)
    if eos is None:
        raise ValueError(f"the tokenizer has no '{eos_token}' token (needed as turn separator / EOS)")
    return int(eos)


def save_tokenizer_files(spec: str, tok, out_dir: str) -> None:
    """Copy the tokenizer's files into ``out_dir`` so the trainer can save them with the model.

    Always leaves ``vocab.json`` + ``merges.txt`` (for ``GPT2Tokenizer``) and ``tokenizer.json`` (fast).
    """
    fsutil.makedirs(out_dir)
    copied = set()
    if os.path.isdir(str(spec)):
        for name in TOKENIZER_FILES:
            src = os.path.join(str(spec), name)
            if os.path.exists(src):
                fsutil.write_bytes(fsutil.join(out_dir, name), fsutil.read_bytes(src))
                copied.add(name)
    if "tokenizer.json" not in copied:
        fsutil.write_bytes(fsutil.join(out_dir, "tokenizer.json"), tok.to_str().encode("utf-8"))
    if not {"vocab.json", "merges.txt"} <= copied and "://" not in out_dir:
        tok.model.save(out_dir)  # BPE: writes vocab.json + merges.txt
    if "tokenizer_config.json" not in copied:
        config = {
            "tokenizer_class": "GPT2Tokenizer",
            "model_max_length": 1024,
            "add_prefix_space": False,
            "bos_token": EOS_TOKEN,
            "eos_token": EOS_TOKEN,
            "unk_token": EOS_TOKEN,
        }
        fsutil.write_json(fsutil.join(out_dir, "tokenizer_config.json"), config)


def train_small_bpe(texts, out_dir, vocab_size: int = 1000) -> str:
    """Train a small GPT-2-style byte-level BPE (with ``<|endoftext|>``) on ``texts``; save it to ``out_dir``.

    For offline tests and demos when ../shared/gpt2 is absent. Writes vocab.json, merges.txt and
    tokenizer.json; returns ``out_dir``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    out_dir = str(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    tok.model.save(out_dir)
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    return out_dir


_TOKENIZER_CACHE: dict[str, object] = {}


def _executor_tokenizer(tokenizer_json: str, threads: int):
    """One tokenizer per Python worker, rebuilt from its JSON (shipped with the task closure)."""
    key = hashlib.sha256(tokenizer_json.encode()).hexdigest()
    tok = _TOKENIZER_CACHE.get(key)
    if tok is None:
        # rayon reads this when its pool starts: one task = its spark.task.cpus cores, no oversubscription
        os.environ.setdefault("RAYON_NUM_THREADS", str(threads))
        from tokenizers import Tokenizer

        tok = Tokenizer.from_str(tokenizer_json)
        tok.encode_special_tokens = True
        _TOKENIZER_CACHE[key] = tok
    return tok


# --- per-batch tokenization (pure: arrow columns in, shard arrays out) -------------------------------


@dataclass
class Packed:
    """Shard arrays of kept instances (see shards.py layout); concatenable."""

    inst_tokens: np.ndarray  # int64 [N] tokens per instance
    inst_turns: np.ndarray  # int64 [N] turns per instance
    turn_lengths: np.ndarray  # uint32 [T]
    turn_trainable: np.ndarray  # uint8 [T]
    tokens: np.ndarray  # uint32 [K]

    @classmethod
    def concat(cls, parts: list[Packed]) -> Packed:
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in cls.__dataclass_fields__))

    def __len__(self) -> int:
        return len(self.inst_tokens)

    def slice(self, a: int, b: int) -> Packed:
        t_off = np.concatenate([[0], np.cumsum(self.inst_turns)])
        k_off = np.concatenate([[0], np.cumsum(self.inst_tokens)])
        return Packed(
            self.inst_tokens[a:b],
            self.inst_turns[a:b],
            self.turn_lengths[t_off[a] : t_off[b]],
            self.turn_trainable[t_off[a] : t_off[b]],
            self.tokens[k_off[a] : k_off[b]],
        )


def _segment_sums(values: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    cs = np.concatenate([[0], np.cumsum(values, dtype=np.int64)])
    return cs[ends] - cs[starts]


def _gather_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Indices of the concatenated ranges [starts[i], starts[i]+lengths[i])."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    out_starts = np.cumsum(lengths) - lengths
    return np.arange(total, dtype=np.int64) + np.repeat(starts - out_starts, lengths)


def quarantine_mask(turns: pa.Array, weights: pa.Array) -> tuple[np.ndarray, Counter]:
    """bool [rows] True = row is usable; and the quarantine counts by reason."""
    n = len(turns)
    reasons = Counter()
    bad_turns = turns.is_null().to_numpy(zero_copy_only=False)
    n_turns = pc.fill_null(pc.list_value_length(turns), 0).to_numpy(zero_copy_only=False)
    flat = pc.list_flatten(turns)
    if flat.null_count:
        row_of = np.repeat(np.arange(n), n_turns)
        bad_turns = bad_turns.copy()
        bad_turns[row_of[flat.is_null().to_numpy(zero_copy_only=False)]] = True
    n_w = pc.list_value_length(weights).to_numpy(zero_copy_only=False)
    bad_weights = ~bad_turns & (weights.is_null().to_numpy(zero_copy_only=False) | (n_w != n_turns))
    flat_w = pc.list_flatten(weights)
    if flat_w.null_count:
        n_w_filled = pc.fill_null(pc.list_value_length(weights), 0).to_numpy(zero_copy_only=False)
        row_of_w = np.repeat(np.arange(n), n_w_filled)
        bad_weights[row_of_w[flat_w.is_null().to_numpy(zero_copy_only=False)]] = True
        bad_weights &= ~bad_turns
    reasons["null_turns"] = int(bad_turns.sum())
    reasons["bad_turn_weights"] = int(bad_weights.sum())
    return ~(bad_turns | bad_weights), reasons


def tokenize_batch(tok, turns: pa.Array, weights: pa.Array, max_len: int, reverse: bool = False):
    """Encode one batch of instances and apply the example rules.

    ``turns`` list<string>, ``weights`` list<float> (already quarantine-checked, same lengths).
    Returns (Packed, dropped Counter, extra Counter).
    """
    n_rows = len(turns)
    n_turns = pc.list_value_length(turns).to_numpy(zero_copy_only=False).astype(np.int64)
    row_end = np.cumsum(n_turns)
    row_start = row_end - n_turns
    texts = pc.list_flatten(turns).to_pylist()
    w = pc.list_flatten(weights).to_numpy(zero_copy_only=False).astype(np.float32)

    # [T] per turn: encode each turn separately, as DialoGPT does -- but each distinct text once: the
    # instances of a thread share their context turns (a root comment is in every path through it).
    # encode_batch, not encode_batch_fast: as fast or faster on one core with tokenizers 0.23.
    unique: dict[str, int] = {}
    inverse = np.fromiter(
        (unique.setdefault(t, len(unique)) for t in texts), dtype=np.int64, count=len(texts)
    )
    encs = tok.encode_batch(list(unique), add_special_tokens=False)
    u_lens = np.fromiter((len(e) for e in encs), dtype=np.int64, count=len(encs))
    ids = np.fromiter(
        itertools.chain.from_iterable(e.ids for e in encs), dtype=np.uint32, count=int(u_lens.sum())
    )
    lens = u_lens[inverse]
    tok_start = (np.cumsum(u_lens) - u_lens)[inverse]  # into ids (shared by duplicate texts)

    row_of_turn = np.repeat(np.arange(n_rows), n_turns)
    pos = np.arange(len(lens)) - row_start[row_of_turn]
    if reverse:  # turn j of row r <- turn (n_r - 1 - j): newest first
        order = row_start[row_of_turn] + (n_turns[row_of_turn] - 1 - pos)
        lens, w, tok_start = lens[order], w[order], tok_start[order]
    trainable = (w > 0) & (pos > 0)

    row_len = _segment_sums(lens + 1, row_start, row_end) - 1  # input length: tokens + (turns - 1) EOS
    row_trainable = _segment_sums(trainable, row_start, row_end) > 0
    keep = np.zeros(len(lens), dtype=bool)
    dropped, extra = Counter(), Counter()
    dropped[shards.NO_TRAINABLE_TURN] = int((~row_trainable).sum())
    fits = row_trainable & (row_len <= max_len)
    keep[fits[row_of_turn]] = True
    kept_rows = fits.copy()
    for r in np.nonzero(row_trainable & ~fits)[0]:  # too long: cut turns (rare, Python per row)
        a, b = int(row_start[r]), int(row_end[r])
        window = shards.fit_window(lens[a:b].tolist(), trainable[a:b].tolist(), max_len, reverse)
        if isinstance(window, str):
            dropped[window] += 1
            continue
        s, e = window
        keep[a + s : a + e] = True
        trainable[a + s] = False  # first turn of the example is never a target
        kept_rows[r] = True
        extra["truncated_instances"] += 1
        extra["turns_cut"] += (b - a) - (e - s)
    sel = np.nonzero(keep)[0]
    packed = Packed(
        inst_tokens=_segment_sums(lens * keep, row_start, row_end)[kept_rows],
        inst_turns=_segment_sums(keep, row_start, row_end)[kept_rows],
        turn_lengths=lens[sel].astype(np.uint32),
        turn_trainable=trainable[sel].astype(np.uint8),
        tokens=ids[_gather_ranges(tok_start[sel], lens[sel])],
    )
    extra["tokens_in"] += int(lens.sum())  # tokens of all turns read
    extra["tokens_encoded"] += int(u_lens.sum())  # tokens actually run through the encoder (distinct texts)
    return packed, dropped, extra


# --- plan / task / commit ----------------------------------------------------------------------------


def discover_inputs(input_dir: str, splits: list[str] | None = None) -> dict[str, list[str]]:
    """{split: sorted parquet files} from ``IN/<split>/`` (also ``IN/split=<split>/``)."""
    files = fsutil.list_files(input_dir, ".parquet")
    by_split: dict[str, list[str]] = {}
    base = input_dir.rstrip("/")
    for f in files:
        rel = f[len(fsutil.resolve(base)[1]) :].lstrip("/") if "://" not in f else f[len(base) :].lstrip("/")
        parts = rel.split("/")
        if len(parts) < 2:
            continue  # a parquet file at the top level is not a split's file
        split = parts[0].removeprefix("split=")
        by_split.setdefault(split, []).append(f)
    found = sorted(by_split)
    if splits:
        missing = [s for s in splits if s not in by_split]
        if missing:
            raise FileNotFoundError(
                f"{input_dir}: no Parquet files for split(s) {missing} (found: {found or 'none'})"
            )
        by_split = {s: by_split[s] for s in splits}
    else:  # the filter output also holds dropped/ (DROPPED rows): only the known splits by default
        by_split = {s: f for s, f in by_split.items() if s in SPLIT_ORDER}
    if not by_split:
        raise FileNotFoundError(
            f"{input_dir}: no Parquet files under train/, valid/ or test/ (expected a filter stage output: "
            f"IN/train/*.parquet, ...; directories with Parquet files found: {found or 'none'}; see --splits)"
        )
    rank = {s: i for i, s in enumerate(SPLIT_ORDER)}
    return dict(sorted(by_split.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))


def _check_input_schema(path: str, schema: pa.Schema) -> None:
    meta = schema.metadata or {}
    name = meta.get(b"dialogsmith.schema", b"").decode()
    if name:  # written by this project: must be the filter stage's kept instances
        schemas.check_schema_metadata(schema, "filtered", schemas.FILTERED_VERSION, path)
    for col, typ in (("turns", pa.list_(pa.string())), ("turn_weights", pa.list_(pa.float32()))):
        if col not in schema.names:
            raise ValueError(f"{path}: missing column '{col}' (expected the FILTERED schema, schemas.py)")
        got = schema.field(col).type
        if not (pa.types.is_list(got) or pa.types.is_large_list(got)):
            raise ValueError(f"{path}: column '{col}' is {got}, expected {typ}")


def plan_units(by_split: dict[str, list[str]], rows_per_unit: int):
    """Work units (split, file, [row groups], rows) in deterministic order, and the source fingerprint."""
    units, digest, total_bytes = [], hashlib.sha256(), 0
    for split, files in by_split.items():
        for path in files:
            fs, local = fsutil.resolve(path)
            size = fs.get_file_info(local).size
            with fs.open_input_file(local) as f:
                meta = pq.ParquetFile(f).metadata
                _check_input_schema(path, meta.schema.to_arrow_schema())
            digest.update(f"{split}\0{os.path.basename(path)}\0{size}\0{meta.num_rows}\n".encode())
            total_bytes += size
            group, rows = [], 0
            for g in range(meta.num_row_groups):
                n = meta.row_group(g).num_rows
                if group and rows + n > rows_per_unit:
                    units.append((split, path, group, rows))
                    group, rows = [], 0
                group.append(g)
                rows += n
            if group:
                units.append((split, path, group, rows))
    n_files = sum(len(f) for f in by_split.values())
    return units, {"fingerprint": digest.hexdigest(), "files": n_files, "bytes": total_bytes}


@dataclass
class TaskConfig:
    out_dir: str
    tokenizer_json: str
    vocab_size: int
    eos_id: int
    max_len: int
    reverse: bool
    shard_size: int
    batch_rows: int
    threads: int


def tokenize_unit(index: int, unit, cfg: TaskConfig) -> dict:
    """One executor task: read the unit's row groups, tokenize, write its part shard(s)."""
    split, path, groups, _ = unit
    tok = _executor_tokenizer(cfg.tokenizer_json, cfg.threads)
    fs, local = fsutil.resolve(path)
    stats = StageStats(stage="tokenize")
    extra: Counter = Counter()
    parts: list[Packed] = []
    with fs.open_input_file(local) as f:
        pf = pq.ParquetFile(f)
        for batch in pf.iter_batches(
            batch_size=cfg.batch_rows, row_groups=groups, columns=["turns", "turn_weights"]
        ):
            turns, weights = batch.column("turns"), batch.column("turn_weights")
            ok, quarantined = quarantine_mask(turns, weights)
            stats.rows_in += len(batch)
            stats.quarantined = dict(Counter(stats.quarantined) + quarantined)
            if not ok.all():
                turns, weights = turns.filter(pa.array(ok)), weights.filter(pa.array(ok))
            packed, dropped, ex = tokenize_batch(tok, turns, weights, cfg.max_len, cfg.reverse)
            stats.dropped = dict(Counter(stats.dropped) + dropped)
            extra += ex
            parts.append(packed)
    packed = Packed.concat(parts) if parts else None
    entries = []
    n = len(packed) if packed is not None else 0
    stats.rows_out = n
    for k, a in enumerate(range(0, n, cfg.shard_size)):
        chunk = packed.slice(a, min(n, a + cfg.shard_size))
        rel = f"{split}/part-{index:05d}-{k:03d}.bin"
        tok_off = np.concatenate([[0], np.cumsum(chunk.inst_tokens)]).astype(np.uint64)
        turn_off = np.concatenate([[0], np.cumsum(chunk.inst_turns)]).astype(np.uint64)
        pieces = shards.encode_shard(
            tok_off,
            turn_off,
            chunk.turn_lengths,
            chunk.turn_trainable,
            chunk.tokens,
            cfg.vocab_size,
            cfg.eos_id,
        )
        entry = shards.write_pieces(fsutil.join(cfg.out_dir, rel), pieces)
        entries.append(
            {
                "part": rel,
                "instances": len(chunk),
                "turns": len(chunk.turn_lengths),
                "tokens": len(chunk.tokens),
                **entry,
            }
        )
    if n:
        lengths = packed.inst_tokens + packed.inst_turns - 1
        extra["max_example_len"] = int(lengths.max())
        extra["example_tokens"] = int(lengths.sum())
    extra["turns_written"] = int(len(packed.turn_lengths)) if n else 0
    extra["tokens_written"] = int(len(packed.tokens)) if n else 0
    return {
        "index": index,
        "split": split,
        "entries": entries,
        "stats": stats.to_dict(),
        "extra": dict(extra),
    }


def _run_units(spark, units, cfg: TaskConfig) -> list[dict]:
    if not units:
        return []
    sc = spark.sparkContext
    indexed = list(enumerate(units))
    # the tokenizer (a few MB of JSON for GPT-2) travels once per executor, not once per task
    tokenizer_bc = sc.broadcast(cfg.tokenizer_json)
    light = dataclasses.replace(cfg, tokenizer_json="")

    def task(iu):
        return tokenize_unit(iu[0], iu[1], dataclasses.replace(light, tokenizer_json=tokenizer_bc.value))

    rdd = sc.parallelize(indexed, numSlices=len(indexed))
    try:
        results = rdd.map(task).collect()
    finally:
        tokenizer_bc.unpersist()
    return sorted(results, key=lambda r: r["index"])


def commit(out_dir: str, results: list[dict], splits: list[str]) -> dict[str, list[dict]]:
    """Rename part files to ``<split>/shard-XXXXX.bin`` in unit order; the manifest's shard entries."""
    entries: dict[str, list[dict]] = {s: [] for s in splits}
    for r in results:
        for e in r["entries"]:
            split = r["split"]
            rel = f"{split}/shard-{len(entries[split]):05d}.bin"
            fs, src = fsutil.resolve(fsutil.join(out_dir, e["part"]))
            _, dst = fsutil.resolve(fsutil.join(out_dir, rel))
            fs.move(src, dst)
            entries[split].append({**{k: v for k, v in e.items() if k != "part"}, "file": rel})
    return entries


def _fold_stats(results: list[dict], splits: list[str]) -> StageStats:
    total = StageStats(stage="tokenize")
    per_split = {s: StageStats(stage="tokenize") for s in splits}
    extra: Counter = Counter()
    max_len_seen = 0
    for r in results:
        part = StageStats.from_dict(r["stats"])
        total.add(part)
        per_split[r["split"]].add(part)
        ex = dict(r["extra"])
        max_len_seen = max(max_len_seen, ex.pop("max_example_len", 0))
        extra.update(ex)
    total.extra = {
        **counter_to_dict(extra),
        "max_example_len": max_len_seen,
        "splits": {
            s: {
                k: v
                for k, v in st.check().to_dict().items()
                if k in ("rows_in", "rows_out", "dropped", "quarantined")
            }
            for s, st in per_split.items()
        },
    }
    return total.check()


# --- entry --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tokenize_shards",
        description="Tokenize the filter stage's kept instances (IN/<split>/*.parquet) with GPT-2 byte-level BPE "
        "into memory-mappable token shards: OUT/<split>/shard-XXXXX.bin, OUT/manifest.json, OUT/stats.json, "
        "OUT/tokenizer/.",
    )
    p.add_argument("--input", required=True, help="filter stage output directory (holds <split>/*.parquet)")
    p.add_argument("--output", required=True, help="output directory (replaced atomically)")
    outputs.add_safety_flags(p)
    p.add_argument(
        "--tokenizer",
        default=DEFAULT_TOKENIZER,
        help="hub name (default: gpt2; needs network) or a local directory with vocab.json + merges.txt "
        "or tokenizer.json",
    )
    p.add_argument(
        "--max-len", type=int, default=128, help="max example length in tokens incl. EOS separators (128)"
    )
    p.add_argument(
        "--reverse",
        action="store_true",
        help="write turn-reversed instances (newest turn first) for the MMI backward model",
    )
    p.add_argument("--splits", default=None, help="comma-separated splits to tokenize (default: all found)")
    p.add_argument(
        "--shard-size", type=int, default=100_000, help="max instances per shard (default: 100000)"
    )
    p.add_argument(
        "--batch-rows", type=int, default=4096, help="instances per encode batch inside a task (4096)"
    )
    p.add_argument("--eos-token", default=EOS_TOKEN, help=f"separator / end token (default: {EOS_TOKEN})")
    p.add_argument("--master", default=None, help="Spark master (default: local[*], or spark-submit's)")
    return p


def run(args: argparse.Namespace, input=None) -> StageStats:
    """Run the stage. ``input``: a filter output directory overriding ``args.input``, or a Spark DataFrame
    with the FILTERED columns (``split``, ``turns``, ``turn_weights``)."""
    from dialogsmith.spark import get_spark

    timer = Timer()
    if args.max_len < 3:
        raise ValueError(f"--max-len must be >= 3, got {args.max_len}")
    if args.shard_size < 1:
        raise ValueError(f"--shard-size must be >= 1, got {args.shard_size}")
    splits_arg = [s.strip() for s in args.splits.split(",") if s.strip()] if args.splits else None
    is_frame = input is not None and not isinstance(input, str | os.PathLike)
    force = bool(getattr(args, "force", False))
    input_paths = [] if is_frame else [str(input if input is not None else args.input)]
    if not is_frame:  # fail fast, before Spark
        path = input_paths[0]
        if outputs.looks_like_stage_output(path, ["funnel.json"]):
            outputs.require_input(path, "filter")
        discover_inputs(path, splits_arg)
    outputs.check_target(args.output, STAGE, input_paths, force)
    tok = load_tokenizer(args.tokenizer)
    eos_id = eos_id_of(tok, args.eos_token)
    vocab_size = int(tok.get_vocab_size(with_added_tokens=True))
    spark = get_spark("dialogsmith-tokenize", master=args.master)

    staged = None
    input_dir = args.input
    if is_frame:  # a DataFrame: stage it as Parquet (its own temporary directory, removed below)
        staged = f"{args.output.rstrip('/')}.input-{uuid.uuid4().hex[:8]}"
        input.select("split", "turns", "turn_weights").write.partitionBy("split").parquet(staged)
        input_dir = staged
    elif input is not None:
        input_dir = str(input)
    try:
        by_split = discover_inputs(str(input_dir), splits_arg)
        units, source = plan_units(by_split, args.shard_size)
        stats_uri = fsutil.join(str(input_dir), "stats.json")
        if fsutil.exists(stats_uri):
            source["input_stats_sha256"] = hashlib.sha256(fsutil.read_bytes(stats_uri)).hexdigest()
        threads = int(spark.sparkContext.getConf().get("spark.task.cpus", "1"))
        with outputs.stage_output(args.output, STAGE, input_paths, force) as tmp:
            cfg = TaskConfig(
                out_dir=tmp,
                tokenizer_json=tok.to_str(),
                vocab_size=vocab_size,
                eos_id=eos_id,
                max_len=args.max_len,
                reverse=args.reverse,
                shard_size=args.shard_size,
                batch_rows=args.batch_rows,
                threads=threads,
            )
            results = _run_units(spark, units, cfg)
            entries = commit(tmp, results, list(by_split))
            stats = _fold_stats(results, list(by_split))
            tok_dir = fsutil.join(tmp, shards.TOKENIZER_DIR)
            save_tokenizer_files(args.tokenizer, tok, tok_dir)
            identity = shards.tokenizer_identity(tok_dir, name=str(args.tokenizer))
            identity["eos_token"] = args.eos_token
            deterministic = {k: v for k, v in stats.to_dict().items() if k != "seconds"}
            manifest = shards.build_manifest(
                entries, eos_id, vocab_size, args.max_len, args.reverse, identity, source, deterministic
            )
            fsutil.write_json(fsutil.join(tmp, shards.MANIFEST), manifest)
            stats.seconds = timer.seconds
            stats.extra["tokens_per_second"] = round(
                stats.extra.get("tokens_in", 0) / max(stats.seconds, 1e-9)
            )
            stats.write(fsutil.join(tmp, "stats.json"))
    finally:
        if staged is not None:
            fsutil.remove(staged)
    return stats


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        stats = run(args)
    except (FileNotFoundError, ValueError, RuntimeError, outputs.OutputRefused, outputs.IncompleteInput) as e:
        print(f"tokenize: error: {e}", file=sys.stderr)
        return 2 if isinstance(e, outputs.OutputRefused | outputs.IncompleteInput) else 1
    print(
        f"tokenize: {stats.rows_in} instances in, {stats.rows_out} written, dropped {stats.dropped}, "
        f"quarantined {stats.quarantined}; {stats.extra.get('tokens_written', 0)} tokens in {stats.seconds}s "
        f"-> {args.output}"
    )
    return finish(stats, args.strict)


if __name__ == "__main__":
    sys.exit(main())
