"""Running the demo: every step in order (or skipped when unchanged), then the report; the command line."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path

from dialogsmith.demo.cache import (
    code_fingerprint,
    fingerprint,
    is_fresh,
    listing,
    read_state,
    upstream_key,
    write_state,
)
from dialogsmith.demo.config import STATE_DIR, DemoConfig, DemoError
from dialogsmith.demo.report import write_report
from dialogsmith.demo.steps import SPARK_STEPS, STEP_NAMES, STEPS
from dialogsmith.stage import EXIT_ERROR, config_parser


def run_demo(cfg: DemoConfig) -> dict:
    """Run (or skip) every step; returns the report (also written to DATA/report.json and report.md)."""
    data = Path(cfg.data)
    if cfg.until and cfg.until not in STEP_NAMES:
        raise DemoError(f"--until {cfg.until}: not a step (steps: {', '.join(STEP_NAMES)})")
    data.mkdir(parents=True, exist_ok=True)
    steps = STEPS[: STEP_NAMES.index(cfg.until) + 1] if cfg.until else STEPS
    code = code_fingerprint()
    fps: dict[str, str] = {}  # step -> what the steps reading its output see of it
    timings: dict[str, dict] = {}
    spark_owner = None
    t_demo = time.perf_counter()
    with _progress(len(steps), cfg.progress) as bar:
        for step in steps:
            step_fp = fingerprint(step, cfg, fps, code)
            bar.set_description(f"demo: {step.name}")
            out = step.out(cfg)
            if not cfg.force and is_fresh(step, cfg, step_fp):
                state = read_state(data, step.name) or {}
                timings[step.name] = {
                    "seconds": 0.0,
                    "skipped": True,
                    "last_run_seconds": state.get("seconds"),
                }
                _log(f"{step.name:<9} unchanged inputs: skipped ({out})")
            else:
                if step.name in SPARK_STEPS and spark_owner is None:
                    spark_owner = _start_spark()
                if step.name == "train" and spark_owner:
                    spark_owner.stop()  # give the trainer the memory and the cores
                    spark_owner = None
                seconds = _run_step(step, cfg, out, step_fp)
                timings[step.name] = {"seconds": seconds, "skipped": False}
            fps[step.name] = upstream_key(step_fp, out)
            bar.update(1)
    if spark_owner:
        spark_owner.stop()
    total = round(time.perf_counter() - t_demo, 1)
    (data / STATE_DIR / "timings.json").write_text(
        json.dumps({"steps": timings, "seconds": total}, indent=2) + "\n"
    )
    if len(steps) < len(STEPS):
        return {"steps": timings}
    return write_report(data, cfg.replies)


def _run_step(step, cfg: DemoConfig, out: Path, step_fp: str) -> float:
    """Run one step and record its fingerprint and the files it wrote; returns its seconds."""
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
    write_state(Path(cfg.data), step.name, state)
    _log(f"{step.name:<9} done in {seconds:.1f} s")
    return seconds


def _log(msg: str) -> None:
    print(f"[demo] {msg}", file=sys.stderr, flush=True)


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


# --- command line -------------------------------------------------------------------------------------


def build_parser():
    """``parse_args`` returns a DemoConfig."""
    return config_parser(
        DemoConfig,
        "dialogsmith demo",
        f"Every stage on a synthetic sample ({', '.join(STEP_NAMES)}) and a summary report in "
        "DATA/report.md + report.json. Steps whose inputs and code are unchanged are skipped.",
    )


def main(argv: list[str] | None = None) -> int:
    cfg = build_parser().parse_args(argv)
    t0 = time.perf_counter()
    try:
        run_demo(cfg)
    except DemoError as e:
        print(f"demo: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    report_md = Path(cfg.data) / "report.md"
    if report_md.exists() and not cfg.until:
        print(report_md.read_text())
    print(f"demo finished in {time.perf_counter() - t0:.0f} s; report: {report_md} (+ report.json)")
    return 0
