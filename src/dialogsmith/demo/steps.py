"""The demo's steps: each runs one stage through its own command line (``main(argv)``), in this process.

    sample     synthetic Pushshift RC_/RS_ files            dialogsmith.sample.job
    extract    comments/, submissions/, quarantine/         dialogsmith.extract.job
    instances  instances/                                   dialogsmith.instances.job
    filter     train/, valid/, test/, dropped/, funnel.json dialogsmith.filter.job
    tokenizer  a small byte-level BPE trained on the train split (offline: no hub)
    tokenize   <split>/shard-*.bin, manifest.json           dialogsmith.tokenize.job
    train      a tiny GPT-2 (save_pretrained), log.jsonl    dialogsmith.train.loop
    eval       metrics.json, hyp.txt, ref*.txt              dialogsmith.eval

Each step writes DATA/<step> (plus stats.json for the stages).
"""

from __future__ import annotations

import importlib
import json
import shutil
from pathlib import Path

from dialogsmith.demo.cache import clear_own
from dialogsmith.demo.config import DemoConfig, DemoError, Step

SPARK_STEPS = ("extract", "instances", "filter", "tokenize")  # they share one Spark session


def _path(cfg: DemoConfig, step: str) -> str:
    return str(Path(cfg.data) / step)


def _call_main(module_name: str, argv: list[str]) -> None:
    """Run a stage's ``main(argv)`` in this process; a non-zero exit becomes a DemoError."""
    module = importlib.import_module(module_name)
    try:
        rc = module.main(argv)
    except SystemExit as e:  # argparse's errors
        rc = e.code
    if rc not in (0, None):
        raise DemoError(f"{module_name}.main({' '.join(argv)}) failed (exit status {rc})")


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _quiet(cfg: DemoConfig) -> list[str]:
    return [] if cfg.progress else ["--quiet"]


def run_sample(cfg: DemoConfig, out: Path) -> dict:
    argv = ["--output", str(out), "--seed", str(cfg.seed), "--comments", str(cfg.comments)]
    _call_main("dialogsmith.sample.job", [*argv, "--months", ",".join(cfg.months)])
    stats = _read_json(out / "stats.json")
    extra = stats.get("extra", {})
    return {
        "comments": extra.get("comments"),
        "submissions": extra.get("submissions"),
        "lines": stats.get("rows_out"),
        "files": len(extra.get("written", {})),
    }


def run_extract(cfg: DemoConfig, out: Path) -> dict:
    _call_main(
        "dialogsmith.extract.job", ["--input", _path(cfg, "sample"), "--output", str(out), *_quiet(cfg)]
    )
    return _read_json(out / "stats.json")


def run_instances(cfg: DemoConfig, out: Path) -> dict:
    argv = ["--input", _path(cfg, "extract"), "--output", str(out), "--profile", cfg.instances_profile]
    _call_main("dialogsmith.instances.job", [*argv, *_quiet(cfg)])
    return _read_json(out / "stats.json")


def run_filter(cfg: DemoConfig, out: Path) -> dict:
    argv = ["--input", _path(cfg, "instances"), "--output", str(out), "--profile", cfg.filter_profile]
    _call_main("dialogsmith.filter.job", [*argv, "--split", cfg.split, *_quiet(cfg)])
    return _read_json(out / "stats.json")


def _split_texts(filter_dir: Path, split: str = "train") -> list[str]:
    from dialogsmith.formats import parquet
    from dialogsmith.formats.schemas import FILTERED_TABLE

    texts: list[str] = []
    for f in parquet.files_of(str(filter_dir / split)):
        for turns in parquet.read(f, FILTERED_TABLE, columns=["turns"]).column("turns").to_pylist():
            texts.extend(t for t in turns if t)
    return texts


def run_tokenizer(cfg: DemoConfig, out: Path) -> dict:
    from dialogsmith.tokenize.bpe import train_small_bpe

    if cfg.tokenizer:
        src = Path(cfg.tokenizer)
        if not src.is_dir():
            raise DemoError(
                f"--tokenizer {cfg.tokenizer}: not a directory (vocab.json + merges.txt or tokenizer.json)"
            )
        clear_own(cfg, "tokenizer", out)
        shutil.copytree(src, out)
        return {"source": str(src)}
    texts = _split_texts(Path(cfg.data) / "filter", "train")
    if not texts:
        raise DemoError("the filter stage kept no training instances: nothing to train a tokenizer on")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    train_small_bpe(texts, str(tmp), vocab_size=cfg.vocab_size)
    clear_own(cfg, "tokenizer", out)
    tmp.rename(out)
    return {"trained_on_turns": len(texts), "vocab_size": cfg.vocab_size}


def run_tokenize(cfg: DemoConfig, out: Path) -> dict:
    argv = [
        "--input", _path(cfg, "filter"),
        "--output", str(out),
        "--tokenizer", _path(cfg, "tokenizer"),
        "--max-len", str(cfg.max_len),
        "--splits", "train,valid,test",
        *_quiet(cfg),
    ]  # fmt: skip
    _call_main("dialogsmith.tokenize.job", argv)
    manifest = _read_json(out / "manifest.json")
    return {
        split: {"instances": s["instances"], "tokens": s["tokens"], "shards": len(s["shards"])}
        for split, s in manifest["splits"].items()
    }


def run_train(cfg: DemoConfig, out: Path) -> dict:
    clear_own(cfg, "train", out)  # inputs changed or --force: a fresh run, not a resume of the old one
    argv = [
        "--input", _path(cfg, "tokenize"),
        "--output", str(out),
        "--model-config", cfg.model_config,
        "--max-steps", str(cfg.train_steps),
        "--batch-size", str(cfg.batch_size),
        "--lr", str(cfg.lr),
        "--warmup-steps", str(cfg.warmup_steps),
        "--eval-every", str(max(1, cfg.train_steps // 5)),
        "--eval-max-batches", "20",
        "--log-every", "5",
        "--keep-last", "1",
        "--seed", str(cfg.seed),
        "--resume", "never",
    ]  # fmt: skip
    _call_main("dialogsmith.train.loop", argv if cfg.progress else [*argv, "--no-progress"])
    summary = _read_json(out / "summary.json")
    return {k: v for k, v in summary.items() if isinstance(v, int | float | str) or v is None}


def run_eval(cfg: DemoConfig, out: Path) -> dict:
    argv = [
        "--model", _path(cfg, "train"),
        "--test-dir", _path(cfg, "filter"),
        "--shards", _path(cfg, "tokenize"),
        "--output", str(out),
        "--max-items", str(cfg.eval_items),
        "--name", "demo-tiny",
        "--repetition-penalty", "1.3",
        "--max-new-tokens", "30",
        "--no-repeat-ngram-size", "3",
    ]  # fmt: skip
    _call_main("dialogsmith.eval", argv)
    result = _read_json(out / "metrics.json")
    return {"metrics": result.get("metrics"), "perplexity": result.get("perplexity")}


def _train_params(c: DemoConfig) -> dict:
    return {
        "model_config": c.model_config,
        "steps": c.train_steps,
        "batch_size": c.batch_size,
        "lr": c.lr,
        "warmup": c.warmup_steps,
        "seed": c.seed,
    }


STEPS: list[Step] = [
    Step(
        "sample", (), lambda c: {"seed": c.seed, "comments": c.comments, "months": list(c.months)}, run_sample
    ),
    Step("extract", ("sample",), lambda c: {}, run_extract),
    Step("instances", ("extract",), lambda c: {"profile": c.instances_profile}, run_instances),
    Step("filter", ("instances",), lambda c: {"profile": c.filter_profile, "split": c.split}, run_filter),
    Step(
        "tokenizer",
        ("filter",),
        lambda c: {"tokenizer": c.tokenizer, "vocab_size": c.vocab_size},
        run_tokenizer,
    ),
    Step("tokenize", ("filter", "tokenizer"), lambda c: {"max_len": c.max_len}, run_tokenize),
    Step("train", ("tokenize",), _train_params, run_train),
    Step("eval", ("train", "filter", "tokenize"), lambda c: {"items": c.eval_items}, run_eval),
]
STEP_NAMES = [s.name for s in STEPS]
