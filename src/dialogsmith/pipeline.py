"""``dialogsmith pipeline`` / ``make pipeline``: extract -> instances -> filter -> tokenize in one Spark
session (one start-up instead of four), resumable.

    dialogsmith pipeline --input DUMPS --output OUT [--profile default|dialogpt] [--tokenizer DIR|gpt2]

``OUT/extract``, ``OUT/instances``, ``OUT/filter``, ``OUT/tokenize`` are the stages' own outputs (the same
as ``make extract`` ... would write, each committed atomically with its stats). ``OUT/_pipeline.json``
records, per step, a fingerprint of what it was built from: its options and its input (the dumps' names,
sizes and times; for a later step, the previous step's fingerprint and output marker). A re-run skips
every step whose output is complete (``outputs.require_input``) and whose fingerprint is unchanged, and
runs the first stale or missing one and everything after it. Without ``--tokenizer`` it stops after filter.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import shlex
import sys
import time
from dataclasses import dataclass

from dialogsmith import fsutil, outputs
from dialogsmith.formats.stats import EXIT_STRICT, StageStats, problems
from dialogsmith.stage import ERRORS, ConfigParser, StageConfig, config_parser, option, spark_for

STAGE = "pipeline"
RECORD = "_pipeline.json"
# step: (module with build_parser/run, its stats stage, the stage whose output it reads)
STEPS = {
    "extract": ("dialogsmith.extract.job", "extract", None),
    "instances": ("dialogsmith.instances.job", "instances", "extract"),
    "filter": ("dialogsmith.filter.job", "filter", "instances"),
    "tokenize": ("dialogsmith.tokenize.job", "tokenize", "filter"),
}


@dataclass
class PipelineConfig(StageConfig):
    input: str = option("", "the dumps (directory, glob or comma-separated list)")
    output: str = option("", "pipeline directory: OUT/extract, OUT/instances, OUT/filter, OUT/tokenize")
    profile: str = option("default", "instances profile (default|dialogpt)", choices=("default", "dialogpt"))
    filter_profile: str | None = option(None, "filter profile (default: the instances profile)")
    tokenizer: str | None = option(
        None, "tokenizer for the tokenize step (a directory, or gpt2); none: stop after filter"
    )
    until: str | None = option(None, "stop after this step", choices=tuple(STEPS))
    rerun: bool = option(False, "run every step again, fresh or not")
    quiet: bool = option(False, "no progress lines and no per-step summaries")
    extract_args: str = option("", "more options for extract (one string, shell-quoted)")
    instances_args: str = option("", "more options for instances (one string, shell-quoted)")
    filter_args: str = option("", "more options for filter (one string, shell-quoted)")
    tokenize_args: str = option("", "more options for tokenize (one string, shell-quoted)")


def build_parser() -> ConfigParser:
    return config_parser(
        PipelineConfig,
        "dialogsmith pipeline",
        "Run extract -> instances -> filter -> tokenize in one Spark session into OUT/<step>/; "
        "a re-run resumes at the first step whose output is missing or stale.",
    )


def _dumps_fingerprint(spec: str) -> dict:
    from dialogsmith.extract.job import scan_inputs

    scan = scan_inputs(spec)
    files = []
    for f in scan.files:
        fs, path = fsutil.resolve(f)
        info = fs.get_file_info(path)
        files.append([scan.sources[f], info.size, info.mtime_ns])
    return {"files": files}


def _marker_digest(path: str) -> str:
    try:
        return hashlib.sha256(fsutil.read_bytes(fsutil.join(path, outputs.MARKER))).hexdigest()
    except (OSError, FileNotFoundError):
        return ""


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def step_argv(step: str, args: PipelineConfig, out: str) -> list[str]:
    """The step's own command line (without its output, the same in every run)."""
    into = fsutil.join(out, step)
    prev = STEPS[step][2]
    src = args.input if prev is None else fsutil.join(out, prev)
    argv = ["--input", src, "--output", into]
    if step == "instances":
        argv += ["--profile", args.profile]
    elif step == "filter":
        argv += ["--profile", args.filter_profile or args.profile]
    elif step == "tokenize":
        argv += ["--tokenizer", args.tokenizer]
    argv += ["--quiet"] if args.quiet else []
    return argv + shlex.split(getattr(args, f"{step}_args"))


def run(args: PipelineConfig, spark=None) -> dict[str, StageStats]:
    """Run (or skip) every step; the stats of each step run."""
    out = args.output
    record_uri = fsutil.join(out, RECORD)
    if fsutil.exists(out) and not fsutil.exists(record_uri) and outputs.entries(out):
        raise outputs.OutputRefused(
            f"OUT {out} exists and is not a dialogsmith pipeline output; choose another or remove it"
        )
    if outputs.inside(out, args.input) or outputs.inside(args.input, out):
        raise outputs.OutputRefused(f"OUT {out} and the input {args.input} must not contain each other")
    record = fsutil.read_json(record_uri) if fsutil.exists(record_uri) else {"steps": {}}
    steps = [s for s in STEPS if s != "tokenize" or args.tokenizer]
    if args.until:
        steps = steps[: steps.index(args.until) + 1] if args.until in steps else steps
    from pyspark.sql import SparkSession

    t0 = time.perf_counter()
    owned = spark is None and SparkSession.getActiveSession() is None
    spark = spark_for(args, "pipeline", spark)  # the one session: every step's get_spark() returns it
    record["spark_start_seconds"] = round(time.perf_counter() - t0, 3)  # of the latest run
    print(f"pipeline: Spark started in {record['spark_start_seconds']:.1f} s", file=sys.stderr)
    upstream = _digest(_dumps_fingerprint(args.input))
    stale = bool(args.rerun)
    ran: dict[str, StageStats] = {}
    for step in steps:
        module_name, stage, _ = STEPS[step]
        into = fsutil.join(out, step)
        argv = step_argv(step, args, out)
        fp = _digest({"step": step, "argv": argv, "upstream": upstream})
        done = record["steps"].get(step, {}).get("fingerprint") == fp
        if done and not stale:
            try:
                outputs.require_input(into, stage, flag=f"{step} output")
            except outputs.IncompleteInput as e:
                print(f"pipeline: {step}: output incomplete, running it again ({e})", file=sys.stderr)
                done = False
        if done and not stale:
            print(f"pipeline: {step}: up to date, skipped ({into})", file=sys.stderr)
        else:
            stale = True  # every later step runs too
            module = importlib.import_module(module_name)
            t = time.perf_counter()
            print(f"pipeline: {step}: running", file=sys.stderr)
            ran[step] = module.run(module.build_parser().parse_args(argv), spark=spark)
            record["steps"][step] = {"fingerprint": fp, "seconds": round(time.perf_counter() - t, 3)}
            fsutil.write_json(record_uri, record)
        upstream = _digest({"fingerprint": fp, "marker": _marker_digest(into)})
    if owned:
        spark.stop()
    return ran


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        ran = run(args.validate())
    except ERRORS as e:
        print(f"pipeline: error: {e}", file=sys.stderr)
        return 2
    broken = [(step, line) for step, st in ran.items() for line in problems(st)]
    if broken:
        print(
            "warning: pipeline: some input could not be read; counted in the steps' stats.json:",
            file=sys.stderr,
        )
        for step, line in broken:
            print(f"  {step}: {line}", file=sys.stderr)
        if args.strict:
            return EXIT_STRICT
    print(f"pipeline: {', '.join(ran) or 'nothing'} run; outputs under {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
