"""`make demo`: every stage on a synthetic sample, then a summary report.

    python -m dialogsmith.demo --data data/demo --seed 1234 --comments 20000

Steps (each writes one directory under DATA):

    sample     dumps/         synthetic Pushshift RC_/RS_ files (dialogsmith.sample.synth)
    extract    extract/       comments/, submissions/, quarantine/, stats.json (dialogsmith.extract.job)
    instances  conversations/ instances/, stats.json (dialogsmith.instances.job)
    filter     filter/        train/, valid/, test/, dropped/, stats.json, funnel.json (dialogsmith.filter)
    tokenizer  tokenizer/     a small byte-level BPE trained on the train split (offline: no hub)
    tokenize   shards/        <split>/shard-*.bin, manifest.json, stats.json (dialogsmith.tokenize.job)
    train      model/         a tiny GPT-2 (save_pretrained), log.jsonl, checkpoints/ (dialogsmith.train)
    eval       eval/          metrics.json, hyp.txt, ref*.txt (dialogsmith.eval)
    report     report.md, report.json

A step whose inputs are unchanged is skipped: its fingerprint (its parameters, the source code of its
module, and the fingerprints of the steps it reads) is stored in ``DATA/.demo/<step>.json`` with the
list of files it wrote; the step runs again when the fingerprint differs, a file it wrote is missing or
changed size, or ``--force`` is given. The Spark stages run in this process on one local Spark session
(`local[*]`); the trainer too (torch, CPU).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import importlib.util
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

STATE_DIR = ".demo"


class DemoError(RuntimeError):
    pass


@dataclass
class DemoConfig:
    data: str = "data/demo"
    seed: int = 1234
    comments: int = 20_000  # comment lines per month of the sample
    months: list[str] = field(default_factory=lambda: ["2016-01", "2016-02"])
    conv_profile: str = "default"
    filter_profile: str = "default"
    split: str = "0.9,0.05,0.05"  # more valid/test than the 98/1/1 default: the sample is small
    tokenizer: str = ""  # a tokenizer dir (vocab.json + merges.txt or tokenizer.json); "" = train a small BPE
    vocab_size: int = 2000
    max_len: int = 128
    model_config: str = "tiny"
    train_steps: int = 500  # ~65 s for the tiny model on 2 idle cores; replies become on-topic
    batch_size: int = 16
    lr: float = 3e-3
    warmup_steps: int = 20
    eval_items: int = 100
    replies: int = 5  # generated replies shown in the report
    force: bool = False
    until: str = ""  # stop after this step
    progress: bool = True

    @classmethod
    def tiny(cls, data: str | Path, **overrides) -> DemoConfig:
        """A sample small enough for the test suite (seconds per step): notebooks run against it."""
        base = dict(
            data=str(data), comments=1500, vocab_size=600, max_len=64, train_steps=30, batch_size=8,
            warmup_steps=5, eval_items=16, progress=False,
        )  # fmt: skip
        return cls(**{**base, **overrides})


# --- steps --------------------------------------------------------------------------------------


@dataclass
class Step:
    name: str
    out: str  # directory (or file) under DATA that the step writes
    module: str  # the module whose code the step runs (its source is part of the fingerprint)
    reads: tuple[str, ...]  # steps whose outputs this one reads
    params: Callable[[DemoConfig], dict]
    run: Callable[[DemoConfig, Path], dict]
    issue: str = ""  # where the module comes from, for the "not available" message


def _path(cfg: DemoConfig, name: str) -> Path:
    return Path(cfg.data) / name


def _call_main(module_name: str, argv: list[str]) -> None:
    """Run a stage's ``main(argv)`` in this process; a non-zero exit becomes a DemoError."""
    mod = importlib.import_module(module_name)
    try:
        rc = mod.main(argv)
    except SystemExit as e:  # argparse errors and stages that sys.exit()
        rc = e.code
    if isinstance(rc, int) and rc != 0 or isinstance(rc, str):
        raise DemoError(f"{module_name}.main({' '.join(argv)}) failed (exit status {rc})")


def _stats(path: Path) -> dict:
    p = path / "stats.json"
    return json.loads(p.read_text()) if p.exists() else {}


def _clear_own(cfg: DemoConfig, step: str, out: Path) -> None:
    """Remove a step's earlier output before it runs again: only what the demo itself wrote there
    (recorded in DATA/.demo/<step>.json); a directory the demo did not write is refused."""
    if not out.exists():
        return
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
        return
    state = read_state(Path(cfg.data), step)
    if not state or listing(out).keys() - set(state.get("outputs") or {}):
        raise DemoError(
            f"{out} exists and was not written by the demo's {step} step (or holds other files); "
            "choose another --data or remove it"
        )
    shutil.rmtree(out)


def run_sample(cfg: DemoConfig, out: Path) -> dict:
    from dialogsmith import outputs
    from dialogsmith.sample.synth import STAGE, SynthConfig, generate

    with outputs.stage_output(str(out), STAGE) as tmp:
        report = generate(
            tmp, SynthConfig(months=list(cfg.months), comments_per_month=cfg.comments, seed=cfg.seed)
        )
    return {
        "comments": report.comments,
        "submissions": report.submissions,
        "lines": report.lines,
        "files": len(report.files),
    }


def run_extract(cfg: DemoConfig, out: Path) -> dict:
    _call_main("dialogsmith.extract.job", ["--input", str(_path(cfg, "dumps")), "--output", str(out)])
    return _stats(out)


def run_instances(cfg: DemoConfig, out: Path) -> dict:
    argv = ["--input", str(_path(cfg, "extract")), "--output", str(out), "--profile", cfg.conv_profile]
    _call_main("dialogsmith.instances.job", argv)
    return _stats(out)


def run_filter(cfg: DemoConfig, out: Path) -> dict:
    argv = [
        "--input",
        str(_path(cfg, "conversations")),
        "--output",
        str(out),
        "--profile",
        cfg.filter_profile,
    ]
    _call_main("dialogsmith.filter", [*argv, "--split", cfg.split, "--quiet"])
    return _stats(out)


def _split_texts(filter_dir: Path, split: str = "train") -> list[str]:
    import pyarrow.parquet as pq

    files = sorted((filter_dir / split).rglob("*.parquet"))
    texts: list[str] = []
    for f in files:
        for turns in pq.read_table(f, columns=["turns"]).column("turns").to_pylist():
            texts.extend(t for t in turns if t)
    return texts


def run_tokenizer(cfg: DemoConfig, out: Path) -> dict:
    from dialogsmith.tokenize.job import train_small_bpe

    if cfg.tokenizer:
        src = Path(cfg.tokenizer)
        if not src.is_dir():
            raise DemoError(
                f"--tokenizer {cfg.tokenizer}: not a directory (vocab.json + merges.txt or tokenizer.json)"
            )
        _clear_own(cfg, "tokenizer", out)
        shutil.copytree(src, out)
        return {"source": str(src)}
    texts = _split_texts(_path(cfg, "filter"), "train")
    if not texts:
        raise DemoError("the filter stage kept no training instances: nothing to train a tokenizer on")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    train_small_bpe(texts, tmp, vocab_size=cfg.vocab_size)
    _clear_own(cfg, "tokenizer", out)
    tmp.rename(out)
    return {"trained_on_turns": len(texts), "vocab_size": cfg.vocab_size}


def run_tokenize(cfg: DemoConfig, out: Path) -> dict:
    argv = [
        "--input", str(_path(cfg, "filter")),
        "--output", str(out),
        "--tokenizer", str(_path(cfg, "tokenizer")),
        "--max-len", str(cfg.max_len),
        "--splits", "train,valid,test",
    ]  # fmt: skip
    _call_main("dialogsmith.tokenize.job", argv)
    manifest = json.loads((out / "manifest.json").read_text())
    return {
        split: {"instances": s["instances"], "tokens": s["tokens"], "shards": len(s["shards"])}
        for split, s in manifest["splits"].items()
    }


def run_train(cfg: DemoConfig, out: Path) -> dict:
    from dialogsmith.train.config import parse_config
    from dialogsmith.train.loop import run

    _clear_own(cfg, "train", out)  # inputs changed or --force: a fresh run, not a resume of the old one
    argv = [
        "--data", str(_path(cfg, "shards")),
        "--out", str(out),
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
    if not cfg.progress:
        argv.append("--no-progress")
    summary = run(parse_config(argv))
    return {k: v for k, v in summary.items() if isinstance(v, int | float | str) or v is None}


def run_eval(cfg: DemoConfig, out: Path) -> dict:
    argv = [
        "--model", str(_path(cfg, "model")),
        "--test-dir", str(_path(cfg, "filter")),
        "--shards", str(_path(cfg, "shards")),
        "--out", str(out),
        "--max-items", str(cfg.eval_items),
        "--name", "demo-tiny",
        "--repetition-penalty", "1.3",
        "--max-new-tokens", "30",
        "--no-repeat-ngram-size", "3",
    ]  # fmt: skip
    _call_main("dialogsmith.eval", argv)
    result = json.loads((out / "metrics.json").read_text())
    return {"metrics": result.get("metrics"), "perplexity": result.get("perplexity")}


def write_report(data: Path, replies: int = 5) -> dict:
    """Build the report from what the steps wrote; save DATA/report.json and DATA/report.md."""
    report = build_report(data, replies)
    (data / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    (data / "report.md").write_text(format_report(report))
    return report


def _p_sample(c: DemoConfig) -> dict:
    return {"seed": c.seed, "comments": c.comments, "months": list(c.months)}


STEPS: list[Step] = [
    Step("sample", "dumps", "dialogsmith.sample.synth", (), _p_sample, run_sample, "issue 2"),
    Step("extract", "extract", "dialogsmith.extract.job", ("sample",), lambda c: {}, run_extract, "issue 2"),
    Step(
        "instances",
        "conversations",
        "dialogsmith.instances.job",
        ("extract",),
        lambda c: {"profile": c.conv_profile},
        run_instances,
        "issue 3",
    ),
    Step(
        "filter",
        "filter",
        "dialogsmith.filter",
        ("instances",),
        lambda c: {"profile": c.filter_profile, "split": c.split},
        run_filter,
        "issue 4",
    ),
    Step(
        "tokenizer",
        "tokenizer",
        "dialogsmith.tokenize.job",
        ("filter",),
        lambda c: {"tokenizer": c.tokenizer, "vocab_size": c.vocab_size},
        run_tokenizer,
        "issue 5",
    ),
    Step(
        "tokenize",
        "shards",
        "dialogsmith.tokenize.job",
        ("filter", "tokenizer"),
        lambda c: {"max_len": c.max_len},
        run_tokenize,
        "issue 5",
    ),
    Step(
        "train",
        "model",
        "dialogsmith.train",
        ("tokenize",),
        lambda c: {
            "model_config": c.model_config,
            "steps": c.train_steps,
            "batch_size": c.batch_size,
            "lr": c.lr,
            "warmup": c.warmup_steps,
            "seed": c.seed,
        },
        run_train,
        "issue 6",
    ),
    Step(
        "eval",
        "eval",
        "dialogsmith.eval",
        ("train", "filter", "tokenize"),
        lambda c: {"items": c.eval_items},
        run_eval,
        "issue 7",
    ),
]
STEP_NAMES = [s.name for s in STEPS]
SPARK_STEPS = {"extract", "instances", "filter", "tokenize"}


# --- fingerprints -------------------------------------------------------------------------------


def code_hash(module: str) -> str:
    """sha256 of the module's source (every .py of a package), found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(module)
    origin = Path(spec.origin)
    files = sorted(origin.parent.rglob("*.py")) if origin.name == "__init__.py" else [origin]
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def listing(path: Path) -> dict[str, int]:
    """{relative file path: size} of what a step wrote (a directory or one file)."""
    if path.is_file():
        return {path.name: path.stat().st_size}
    if not path.is_dir():
        return {}
    return {
        str(p.relative_to(path)): p.stat().st_size
        for p in sorted(path.rglob("*"))
        if p.is_file() and "checkpoints" not in p.relative_to(path).parts
    }


def _state_path(data: Path, step: str) -> Path:
    return data / STATE_DIR / f"{step}.json"


def read_state(data: Path, step: str) -> dict | None:
    p = _state_path(data, step)
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def fingerprint(step: Step, cfg: DemoConfig, upstream: dict[str, str]) -> str:
    """What a step's output depends on. ``upstream``: for every step already run or skipped, its own
    fingerprint plus the listing (names and sizes) of the files it wrote, so a re-built upstream output
    that differs in any file re-runs this step too."""
    payload = {
        "step": step.name,
        "params": step.params(cfg),
        "code": code_hash(step.module),
        "reads": {name: upstream[name] for name in step.reads},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _upstream_key(fp: str, out: Path) -> str:
    files = json.dumps(listing(out), sort_keys=True)
    return hashlib.sha256(f"{fp}\n{files}".encode()).hexdigest()


def is_fresh(step: Step, data: Path, fp: str) -> bool:
    state = read_state(data, step.name)
    if not state or state.get("fingerprint") != fp:
        return False
    files = listing(data / step.out)
    return bool(files) and files == state.get("outputs")


# --- the pipeline ---------------------------------------------------------------------------------


def check_available(steps: Sequence[Step]) -> None:
    missing = [s for s in steps if importlib.util.find_spec(s.module) is None]
    if missing:
        lines = [
            f"  step '{s.name}' needs {s.module} ({s.issue}), which is not in this checkout" for s in missing
        ]
        raise DemoError("the demo cannot run every stage yet:\n" + "\n".join(lines))


def _log(msg: str) -> None:
    print(f"[demo] {msg}", file=sys.stderr, flush=True)


def run_demo(cfg: DemoConfig) -> dict:
    """Run (or skip) every step; returns the report (also written to DATA/report.json and report.md)."""
    data = Path(cfg.data)
    data.mkdir(parents=True, exist_ok=True)
    if cfg.until and cfg.until not in STEP_NAMES:
        raise DemoError(f"--until {cfg.until}: not a step (steps: {', '.join(STEP_NAMES)})")
    steps = STEPS[: STEP_NAMES.index(cfg.until) + 1] if cfg.until else STEPS
    check_available(steps)
    fps: dict[str, str] = {}
    timings: dict[str, dict] = {}
    spark_owner = None
    t_demo = time.perf_counter()
    with _progress(len(steps), cfg.progress) as bar:
        for step in steps:
            step_fp = fingerprint(step, cfg, fps)
            bar.set_description(f"demo: {step.name}")
            out = data / step.out
            if not cfg.force and is_fresh(step, data, step_fp):
                state = read_state(data, step.name) or {}
                timings[step.name] = {
                    "seconds": 0.0,
                    "skipped": True,
                    "last_run_seconds": state.get("seconds"),
                }
                _log(f"{step.name:<9} unchanged inputs: skipped ({out})")
                fps[step.name] = _upstream_key(step_fp, out)
                bar.update(1)
                continue
            if step.name in SPARK_STEPS and spark_owner is None:
                spark_owner = _start_spark()
            if step.name == "train" and spark_owner:
                _stop_spark(spark_owner)  # give the trainer the memory and the cores
                spark_owner = None
            _log(f"{step.name:<9} running -> {out}")
            t0 = time.perf_counter()
            try:
                summary = step.run(cfg, out)
            except DemoError:
                raise
            except Exception as e:
                raise DemoError(f"step '{step.name}' failed: {type(e).__name__}: {e}") from e
            seconds = round(time.perf_counter() - t0, 2)
            state = {"fingerprint": step_fp, "outputs": listing(out), "seconds": seconds, "summary": summary}
            state_path = _state_path(data, step.name)
            state_path.parent.mkdir(parents=True, exist_ok=True)
            state_path.write_text(json.dumps(state, indent=2, sort_keys=True, default=str) + "\n")
            timings[step.name] = {"seconds": seconds, "skipped": False}
            fps[step.name] = _upstream_key(step_fp, out)
            _log(f"{step.name:<9} done in {seconds:.1f} s")
            bar.update(1)
    if spark_owner:
        _stop_spark(spark_owner)
    total = round(time.perf_counter() - t_demo, 1)
    timing_path = data / STATE_DIR / "timings.json"
    timing_path.write_text(json.dumps({"steps": timings, "seconds": total}, indent=2) + "\n")
    if len(steps) < len(STEPS):
        return {"steps": timings}
    return write_report(data, cfg.replies)


@contextlib.contextmanager
def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    bar = tqdm(total=total, disable=not enabled, file=sys.stderr, unit="step", dynamic_ncols=True)
    try:
        yield bar
    finally:
        bar.close()


def _start_spark():
    """One local Spark session for every Spark stage; None when a session is already active (tests)."""
    from pyspark.sql import SparkSession

    if SparkSession.getActiveSession() is not None:
        return None
    from dialogsmith.spark import get_spark

    os.environ.setdefault("SPARK_LOG_LEVEL", "ERROR")
    return get_spark("dialogsmith-demo", conf={"spark.sql.shuffle.partitions": "4"})


def _stop_spark(session) -> None:
    if session is not None:
        session.stop()


# --- the report -----------------------------------------------------------------------------------


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _stage_line(stats: dict) -> dict:
    keys = ("rows_in", "rows_out", "dropped", "quarantined", "merged", "seconds")
    return {k: stats[k] for k in keys if k in stats}


def training_curve(log_path: Path) -> dict:
    """Loss numbers from the trainer's log.jsonl: train loss per logged step and validation losses."""
    train, valid = [], []
    if log_path.exists():
        for line in log_path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if "event" in rec:
                continue
            if "loss" in rec:
                train.append(
                    {
                        "step": rec["step"],
                        "loss": round(rec["loss"], 4),
                        "tokens_per_s": round(rec.get("tokens_per_s", 0)),
                    }
                )
            vals = {k: v for k, v in rec.items() if k.startswith("valid") and isinstance(v, int | float)}
            if vals:
                valid.append({"step": rec["step"], **{k: round(v, 4) for k, v in vals.items()}})
    # A handful of points of the train curve: every ~10% of the run.
    stride = max(1, len(train) // 10)
    points = train[::stride]
    if train and points[-1] is not train[-1]:
        points.append(train[-1])
    return {"train": points, "valid": valid}


def sample_replies(eval_dir: Path, n: int) -> list[dict]:
    def lines(name: str) -> list[str]:
        p = eval_dir / name
        return p.read_text().splitlines() if p.exists() else []

    contexts, hyps, refs = lines("contexts.txt"), lines("hyp.txt"), lines("ref0.txt")
    out = []
    for i in range(min(n, len(contexts), len(hyps))):
        out.append(
            {
                "context": contexts[i].split(" EOS "),
                "reply": hyps[i],
                "reference": refs[i] if i < len(refs) else "",
            }
        )
    return out


def build_report(data: Path, replies: int = 5) -> dict:
    sample = _read_json(data / "dumps" / "synth_report.json")
    report: dict = {
        "data": str(data),
        "sample": {
            k: sample.get(k) for k in ("comments", "submissions", "lines", "duplicates", "quarantine")
        },
        "stages": {
            name: _stage_line(_read_json(data / d / "stats.json"))
            for name, d in (
                ("extract", "extract"),
                ("instances", "conversations"),
                ("filter", "filter"),
                ("tokenize", "shards"),
            )
        },
        "funnel": _read_json(data / "filter" / "funnel.json"),
    }
    manifest = _read_json(data / "shards" / "manifest.json")
    report["shards"] = {
        split: {
            "shards": len(s["shards"]),
            "instances": s["instances"],
            "turns": s["turns"],
            "tokens": s["tokens"],
        }
        for split, s in manifest.get("splits", {}).items()
    }
    report["shards_vocab_size"] = manifest.get("vocab_size")
    report["training"] = {
        "summary": _read_json(data / "model" / "summary.json"),
        "curve": training_curve(data / "model" / "log.jsonl"),
    }
    metrics = _read_json(data / "eval" / "metrics.json")
    report["eval"] = {k: metrics.get(k) for k in ("items", "metrics", "perplexity", "table")}
    report["replies"] = sample_replies(data / "eval", replies)
    report["timings"] = _read_json(data / STATE_DIR / "timings.json").get("steps", {})
    return report


def _funnel_rows(funnel: dict) -> list[tuple[str, str]]:
    """(rule, "removed (→ remaining)") rows of the filter's funnel.json, in rule order."""
    out = []
    for r in funnel.get("steps", []):
        removed = r.get("removed") if r.get("enabled", True) else "off"
        out.append((str(r.get("rule")), f"{removed} (→ {r.get('remaining')})"))
    return out


def format_report(r: dict) -> str:
    md = ["# dialogsmith demo report", "", f"Data: `{r['data']}`", ""]
    s = r.get("sample", {})
    md += [
        "## Sample",
        f"{s.get('lines')} dump lines: {s.get('comments')} comments, {s.get('submissions')} submissions, "
        f"{s.get('duplicates')} duplicated lines, malformed {s.get('quarantine')}",
        "",
    ]
    md += [
        "## Stages",
        "",
        "| stage | rows in | rows out | dropped | quarantined | merged | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, st in r.get("stages", {}).items():
        if not st:
            continue
        md.append(
            f"| {name} | {st.get('rows_in')} | {st.get('rows_out')} | {sum(st.get('dropped', {}).values())} | "
            f"{sum(st.get('quarantined', {}).values())} | {sum(st.get('merged', {}).values())} | {st.get('seconds')} |"
        )
    funnel = r.get("funnel", {})
    md += [
        "",
        f"## Filter funnel (profile {funnel.get('profile')})",
        "",
        "| rule | removed (→ remaining) |",
        "|---|---|",
    ]
    md += [f"| {name} | {count} |" for name, count in _funnel_rows(funnel)]
    if "kept" in funnel:
        md.append(f"| **kept** | {funnel['kept']} |")
    md += [
        "",
        "## Token shards",
        "",
        "| split | shards | instances | turns | tokens |",
        "|---|---|---|---|---|",
    ]
    for split, sh in r.get("shards", {}).items():
        md.append(f"| {split} | {sh['shards']} | {sh['instances']} | {sh['turns']} | {sh['tokens']} |")
    tr = r.get("training", {})
    summ = tr.get("summary", {})
    md += ["", "## Training", ""]
    if summ:
        md.append(
            f"{summ.get('step')} steps in {summ.get('seconds', 0):.0f} s, {summ.get('tokens_per_s', 0):,.0f} tokens/s, "
            f"padding {summ.get('padding', 0):.1%}; final train loss {summ.get('train_loss', float('nan')):.3f}"
        )
    curve = tr.get("curve", {})
    if curve.get("train"):
        md.append("")
        md.append("train loss: " + ", ".join(f"{p['step']}: {p['loss']:.3f}" for p in curve["train"]))
    for p in curve.get("valid", []):
        vals = ", ".join(f"{k} {v:.3f}" for k, v in p.items() if k in ("valid_loss", "valid_ppl"))
        md.append(f"- step {p['step']}: {vals}")
    ev = r.get("eval", {})
    if ev.get("table"):
        md += ["", f"## Evaluation ({ev.get('items')} test items)", "", "```", ev["table"].rstrip(), "```"]
    if r.get("replies"):
        md += ["", "## Generated replies", ""]
        for rep in r["replies"]:
            md.append("- context: " + " ⏎ ".join(f"“{t}”" for t in rep["context"]))
            md.append(f"  - model: “{rep['reply']}”")
            if rep.get("reference"):
                md.append(f"  - human: “{rep['reference']}”")
    t = r.get("timings", {})
    if t:
        md += ["", "## Timings", ""]
        md.append(
            ", ".join(
                f"{k} " + ("skipped" if v.get("skipped") else f"{v.get('seconds', 0):.1f} s")
                for k, v in t.items()
            )
        )
    return "\n".join(md) + "\n"


# --- CLI --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    d = DemoConfig()
    p = argparse.ArgumentParser(
        prog="python -m dialogsmith.demo",
        description="Every stage on a synthetic sample (sample, extract, instances, filter, tokenizer, tokenize, "
        "train, eval) and a summary report in DATA/report.md + report.json. Steps whose inputs are unchanged "
        "are skipped.",
    )
    p.add_argument("--data", default=d.data, help="working directory for every step's output (%(default)s)")
    p.add_argument("--seed", type=int, default=d.seed, help="sample and training seed (%(default)s)")
    p.add_argument("--comments", type=int, default=d.comments, help="comment lines per month (%(default)s)")
    p.add_argument("--months", default=",".join(d.months), help="sample months (%(default)s)")
    p.add_argument("--conv-profile", default=d.conv_profile, help="conversation profile (%(default)s)")
    p.add_argument("--filter-profile", default=d.filter_profile, help="filter profile (%(default)s)")
    p.add_argument("--split", default=d.split, help="train,valid,test fractions (%(default)s)")
    p.add_argument(
        "--tokenizer", default=d.tokenizer, help="tokenizer dir (default: train a small BPE on the sample)"
    )
    p.add_argument("--vocab-size", type=int, default=d.vocab_size, help="small BPE vocabulary (%(default)s)")
    p.add_argument("--max-len", type=int, default=d.max_len, help="max example tokens (%(default)s)")
    p.add_argument("--model-config", default=d.model_config, help="trainer model preset (%(default)s)")
    p.add_argument("--train-steps", type=int, default=d.train_steps, help="optimizer steps (%(default)s)")
    p.add_argument(
        "--batch-size", type=int, default=d.batch_size, help="trainer rows per batch (%(default)s)"
    )
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate (%(default)s)")
    p.add_argument(
        "--eval-items", type=int, default=d.eval_items, help="test items generated and scored (%(default)s)"
    )
    p.add_argument("--force", action="store_true", help="run every step even when its inputs are unchanged")
    p.add_argument("--until", default="", choices=["", *STEP_NAMES], help="stop after this step")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = DemoConfig(
        data=args.data,
        seed=args.seed,
        comments=args.comments,
        months=[m.strip() for m in args.months.split(",") if m.strip()],
        conv_profile=args.conv_profile,
        filter_profile=args.filter_profile,
        split=args.split,
        tokenizer=args.tokenizer,
        vocab_size=args.vocab_size,
        max_len=args.max_len,
        model_config=args.model_config,
        train_steps=args.train_steps,
        batch_size=args.batch_size,
        lr=args.lr,
        eval_items=args.eval_items,
        force=args.force,
        until=args.until,
        progress=not args.no_progress,
    )
    t0 = time.perf_counter()
    try:
        run_demo(cfg)
    except DemoError as e:
        print(f"demo: error: {e}", file=sys.stderr)
        return 1
    report_md = Path(cfg.data) / "report.md"
    if report_md.exists() and not cfg.until:
        print(report_md.read_text())
    print(f"demo finished in {time.perf_counter() - t0:.0f} s; report: {report_md} (+ report.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
