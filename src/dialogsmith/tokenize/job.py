"""Tokenize stage: the filter output (or DialoGPT TSV) -> GPT-2 BPE token shards + manifest.

Pipeline (driver / executors):
1. ``plan``      (driver) list the input files sorted and cut them into work units from metadata alone:
                 whole Parquet row groups (<= ``--shard-size`` rows each) or TSV byte ranges cut at line
                 ends (inputs.py, tsv.py). The plan depends on the input files alone, never on the
                 cluster size: same input + config -> byte-identical output.
2. ``tokenize``  (executor task per unit) read the unit's rows, encode every turn separately with the
                 fast Rust tokenizer (``encode_batch``), apply the DialoGPT example rules vectorized
                 (encode.py), write ``<split>/part-<unit>-<k>.bin`` shards directly to the output and
                 return per-unit stats.
3. ``commit``    (driver) rename parts to ``<split>/shard-XXXXX.bin`` in unit order, copy the tokenizer to
                 ``OUT/tokenizer/``, write ``manifest.json`` (deterministic, no timings) and ``stats.json``.

Quarantined rows (counted, never silently lost): ``null_turns``, ``bad_turn_weights`` (Parquet),
``tsv_columns``, ``tsv_empty_turn``, ``tsv_not_utf8`` (TSV lines).
Dropped: ``no_trainable_turn``, ``target_too_long`` (see ``dialogsmith.formats.shards.fit_window``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import uuid
from collections import Counter
from dataclasses import dataclass

from dialogsmith import fsutil, outputs, progress, stage
from dialogsmith.formats import shards
from dialogsmith.formats.shards import ShardArrays
from dialogsmith.formats.stats import StageStats, Timer, counter_to_dict
from dialogsmith.stage import Stage, StageConfig, StageError, option
from dialogsmith.tokenize.bpe import (
    DEFAULT_TOKENIZER,
    EOS_TOKEN,
    eos_id_of,
    executor_bpe,
    load_bpe,
    save_tokenizer_files,
)
from dialogsmith.tokenize.encode import tokenize_batch
from dialogsmith.tokenize.inputs import PARQUET, TSV, discover_parquet, has_split_files, plan_parquet
from dialogsmith.tokenize.tsv import discover_tsv, plan_tsv

NAME = "tokenize"
INPUT_FORMATS = ("auto", PARQUET, TSV)


@dataclass
class TokenizeConfig(StageConfig):
    input: str = option(
        "",
        "the filter stage's output (IN/<split>/*.parquet), or DialoGPT TSV: a .tsv file or a directory "
        "of them (IN/*.tsv -> train, IN/<split>/*.tsv), such as the dialogpt-tsv stage's output",
    )
    tokenizer: str = option(
        DEFAULT_TOKENIZER,
        "hub name (needs network) or a local directory with vocab.json + merges.txt or tokenizer.json",
    )
    max_len: int = option(128, "max example length in tokens, EOS separators included")
    reverse: bool = option(
        False, "write turn-reversed instances (newest turn first) for the MMI backward model"
    )
    splits: str | None = option(
        None, "comma-separated splits to tokenize (default: train, valid, test, those found)"
    )
    shard_size: int = option(100_000, "max instances per shard")
    batch_rows: int = option(4096, "instances per encode batch inside a task")
    eos_token: str = option(EOS_TOKEN, "separator / end token")
    input_format: str = option(
        "auto",
        "auto: Parquet when IN holds <split>/*.parquet, else DialoGPT TSV (a file, or .tsv files)",
        choices=INPUT_FORMATS,
    )
    tsv_task_mb: int = option(32, "MiB of TSV per Spark task (cut at line ends)")

    def validate(self) -> TokenizeConfig:
        super().validate()
        for flag, value, least in (
            ("--max-len", self.max_len, 3),
            ("--shard-size", self.shard_size, 1),
            ("--batch-rows", self.batch_rows, 1),
            ("--tsv-task-mb", self.tsv_task_mb, 1),
        ):
            if value < least:
                raise StageError(f"{flag} must be >= {least}, got {value}")
        return self

    @property
    def split_list(self) -> list[str] | None:
        return [s.strip() for s in self.splits.split(",") if s.strip()] if self.splits else None


def build_parser() -> stage.ConfigParser:
    return STAGE.parser()


# --- executor task --------------------------------------------------------------------------------


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
    """One executor task: read the unit's rows, tokenize, write its part shard(s)."""
    tok = executor_bpe(cfg.tokenizer_json, cfg.threads)
    stats = StageStats(stage=NAME)
    quarantined, dropped, extra = Counter(), Counter(), Counter()
    parts: list[ShardArrays] = []
    for batch in unit.batches(cfg.batch_rows):
        stats.rows_in += batch.rows_in
        quarantined += batch.quarantined
        arrays, batch_dropped, batch_extra = tokenize_batch(
            tok, batch.turns, batch.weights, cfg.max_len, cfg.reverse
        )
        dropped += batch_dropped
        extra += batch_extra
        parts.append(arrays)
    arrays = ShardArrays.concat(parts)
    stats.rows_out = len(arrays)
    stats.quarantined, stats.dropped = dict(quarantined), dict(dropped)
    entries = shards.write_shards(
        cfg.out_dir,
        lambda k: f"{unit.split}/part-{index:05d}-{k:03d}.bin",
        arrays,
        cfg.shard_size,
        cfg.vocab_size,
        cfg.eos_id,
    )
    if len(arrays):
        lengths = arrays.inst_tokens + arrays.inst_turns - 1
        extra["max_example_len"] = int(lengths.max())
        extra["example_tokens"] = int(lengths.sum())
    extra["turns_written"] = len(arrays.turn_lengths)
    extra["tokens_written"] = len(arrays.tokens)
    return {
        "index": index,
        "split": unit.split,
        "entries": entries,
        "stats": stats.to_dict(),
        "extra": dict(extra),
    }


def _run_units(spark, units: list, cfg: TaskConfig) -> list[dict]:
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


# --- driver ---------------------------------------------------------------------------------------


def commit(out_dir: str, results: list[dict], splits: list[str]) -> dict[str, list[dict]]:
    """Rename part files to ``<split>/shard-XXXXX.bin`` in unit order; the manifest's shard entries."""
    entries: dict[str, list[dict]] = {s: [] for s in splits}
    for r in results:
        split = r["split"]
        for e in r["entries"]:
            rel = f"{split}/shard-{len(entries[split]):05d}.bin"
            fs, src = fsutil.resolve(fsutil.join(out_dir, e["file"]))
            _, dst = fsutil.resolve(fsutil.join(out_dir, rel))
            fs.move(src, dst)
            entries[split].append({**e, "file": rel})
    return entries


def fold_stats(total: StageStats, results: list[dict], splits: list[str]) -> None:
    """The tasks' stats into ``total``, with per-split counts and token figures in ``extra``."""
    per_split = {s: StageStats(stage=NAME) for s in splits}
    extra: Counter = Counter()
    max_len_seen = 0
    for r in results:
        part = StageStats.from_dict(r["stats"])
        total.add(part)
        per_split[r["split"]].add(part)
        ex = dict(r["extra"])
        max_len_seen = max(max_len_seen, ex.pop("max_example_len", 0))
        extra.update(ex)
    keys = ("rows_in", "rows_out", "dropped", "quarantined")
    total.extra = {
        **counter_to_dict(extra),
        "max_example_len": max_len_seen,
        "splits": {
            s: {k: v for k, v in st.check().to_dict().items() if k in keys} for s, st in per_split.items()
        },
    }
    total.check()


def find_input(path: str, cfg: TokenizeConfig) -> tuple[str, dict[str, list[str]]]:
    """(format, {split: files}) of ``--input``; fails before Spark starts when there is nothing to read."""
    fs, local = fsutil.resolve(path)
    is_file = fs.get_file_info(local).is_file
    fmt = cfg.input_format
    if fmt == "auto":
        if is_file:
            fmt = TSV
        elif has_split_files(path, ".parquet", cfg.split_list):
            fmt = PARQUET
        else:
            fmt = TSV if has_split_files(path, ".tsv", cfg.split_list, top_level="train") else PARQUET
    if fmt == PARQUET and is_file:
        raise StageError(f"--input {path} is a file: Parquet input is a filter output directory")
    if outputs.looks_like_stage_output(path, ["funnel.json"]):
        outputs.require_input(path, "filter" if fmt == PARQUET else "dialogpt-tsv")
    if fmt == PARQUET:
        return fmt, discover_parquet(path, cfg.split_list)
    return fmt, discover_tsv(path, cfg.split_list)


def _input_stats_sha256(input_dir: str) -> str | None:
    """The sha256 of the input's stats: the filter's stats.json or dialogpt-tsv's stats/filter.json."""
    for name in ("stats.json", "stats/filter.json"):
        uri = fsutil.join(input_dir, name)
        if fsutil.exists(uri):
            return hashlib.sha256(fsutil.read_bytes(uri)).hexdigest()
    return None


def _write_manifest(
    tmp: str, cfg: TokenizeConfig, tok, task: TaskConfig, entries, source: dict, stats: StageStats
) -> None:
    """OUT/tokenizer/ and OUT/manifest.json (the stats without timings: the manifest is deterministic)."""
    tok_dir = fsutil.join(tmp, shards.TOKENIZER_DIR)
    save_tokenizer_files(cfg.tokenizer, tok, tok_dir)
    identity = shards.tokenizer_identity(tok_dir, name=str(cfg.tokenizer))
    identity["eos_token"] = cfg.eos_token
    deterministic = {k: v for k, v in stats.to_dict().items() if k != "seconds"}
    manifest = shards.build_manifest(
        entries, task.eos_id, task.vocab_size, cfg.max_len, cfg.reverse, identity, source, deterministic
    )
    fsutil.write_json(fsutil.join(tmp, shards.MANIFEST), manifest)


def run(cfg: TokenizeConfig, spark=None, input=None) -> StageStats:
    """Run the stage. ``input``: a directory or file overriding ``cfg.input``, or a Spark DataFrame with
    the FILTERED columns ``split``, ``turns``, ``turn_weights`` (tests, notebooks)."""
    cfg.validate()
    is_frame = input is not None and not isinstance(input, str | os.PathLike)
    source_path = None if is_frame else str(input if input is not None else cfg.input)
    inputs = [] if is_frame else [source_path]
    found = None if is_frame else find_input(source_path, cfg)  # fail fast, before Spark
    outputs.check_target(cfg.output, NAME, inputs, cfg.force)
    tok = load_bpe(cfg.tokenizer)
    eos_id = eos_id_of(tok, cfg.eos_token)
    spark = stage.spark_for(cfg, NAME, spark)
    staged = None
    try:
        if is_frame:  # a DataFrame: staged as Parquet (its own temporary directory, removed below)
            staged = f"{cfg.output.rstrip('/')}.input-{uuid.uuid4().hex[:8]}"
            input.select("split", "turns", "turn_weights").write.partitionBy("split").parquet(staged)
            source_path, found = staged, (PARQUET, discover_parquet(staged, cfg.split_list))
        fmt, by_split = found
        if fmt == PARQUET:
            units, source = plan_parquet(by_split, cfg.shard_size)
        else:
            units, source = plan_tsv(by_split, cfg.tsv_task_mb << 20)
        input_stats = _input_stats_sha256(source_path)
        if input_stats:
            source["input_stats_sha256"] = input_stats
        task = TaskConfig(
            out_dir="",
            tokenizer_json=tok.to_str(),
            vocab_size=int(tok.get_vocab_size(with_added_tokens=True)),
            eos_id=eos_id,
            max_len=cfg.max_len,
            reverse=cfg.reverse,
            shard_size=cfg.shard_size,
            batch_rows=cfg.batch_rows,
            threads=int(spark.sparkContext.getConf().get("spark.task.cpus", "1")),
        )
        timer = Timer()
        with stage.committed(cfg, NAME, inputs) as (tmp, stats):
            with progress.watch(spark, NAME, quiet=cfg.quiet):
                results = _run_units(spark, units, dataclasses.replace(task, out_dir=tmp))
            entries = commit(tmp, results, list(by_split))
            fold_stats(stats, results, list(by_split))
            _write_manifest(tmp, cfg, tok, task, entries, source, stats)
            tokens_in = stats.extra.get("tokens_in", 0)
            stats.extra["tokens_per_second"] = round(tokens_in / max(timer.seconds, 1e-9))
    finally:
        if staged is not None:
            fsutil.remove(staged)
    return stats


def summary(stats: StageStats, cfg: TokenizeConfig) -> str:
    return (
        f"tokenize: {stats.rows_in} instances in, {stats.rows_out} written, dropped {stats.dropped}, "
        f"quarantined {stats.quarantined}; {stats.extra.get('tokens_written', 0)} tokens in "
        f"{stats.seconds}s -> {cfg.output}"
    )


STAGE = Stage(
    NAME,
    TokenizeConfig,
    run,
    summary,
    "Tokenize the filter stage's kept instances (IN/<split>/*.parquet), or DialoGPT TSV files, with a "
    "GPT-2 byte-level BPE into memory-mappable token shards: OUT/<split>/shard-XXXXX.bin, "
    "OUT/manifest.json, OUT/stats.json, OUT/tokenizer/.",
    prog="dialogsmith tokenize",
)


def main(argv: list[str] | None = None) -> int:
    return STAGE.main(argv)
