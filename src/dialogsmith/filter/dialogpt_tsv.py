"""Drop-in for the released DialoGPT extractor: dumps → ``OUT/<month>.tsv`` in its output format.

Runs ingest + conversations (dialogpt profile) + filter (dialogpt profile) in one Spark session and
accepts the released script's flag names, with the released Makefile's values as defaults:
``--min_score 1 --min_depth 2 --max_depth 5 --use_title 0 --leaves_only 1 --max_len 30``, plus
``--bl_words FILE --bl_subreddits FILE --keys DIR`` (``DIR/<month>.gz`` and ``DIR/<month>-o.gz``).

Each ``<month>.tsv`` holds the lines ``link_id,parent_id,comment_id<TAB>src<TAB>tgt`` the released
extractor writes for that month (line order differs: compare sorted, as the spec says). Stage stats
and the funnel go to ``OUT/stats/``.

Two ways to run, same output (tests compare them):
- ``fused`` (default when every month fits, see ``--fused-max-gb``): one Spark task per month does
  extract, pass 1, pass 2 and the filter in memory (``dialogsmith.filter.dialogpt_month``); quarantined
  lines go to ``OUT/quarantine/``.
- ``staged``: the three stages with Parquet in between (ingest -> instances -> filter), memory bounded by
  buckets whatever the month size; ``--keep-work`` keeps those tables in ``OUT/work/``.
"""

from __future__ import annotations

import argparse
import re
import sys

from dialogsmith import fsutil, outputs
from dialogsmith.stats import StageStats, Timer, finish

STAGE = "dialogpt-tsv"
RELEASED_FLAGS = {  # name: (type, released Makefile value)
    "min_score": (int, 1),
    "min_depth": (int, 2),
    "max_depth": (int, 5),
    "use_title": (int, 0),
    "leaves_only": (int, 1),
    "max_len": (int, 30),
}
_MONTH = re.compile(r"^R[CS]_(\d{4}-\d{2})")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="filter/dialogpt_tsv.py",
        description="Drop-in for DialoGPT's reddit extractor: read Pushshift dumps (RS_/RC_<month>), build and "
        "clean instances exactly as the released code does, and write OUT/<month>.tsv "
        "(link_id,parent_id,comment_id<TAB>src<TAB>tgt). Flag names are the released script's.",
    )
    p.add_argument("--dumps", required=True, help="directory with RS_<month>.* and RC_<month>.* dumps")
    p.add_argument("--output", required=True, help="output directory (replaced atomically)")
    outputs.add_safety_flags(p)
    for name, (typ, default) in RELEASED_FLAGS.items():
        p.add_argument(f"--{name}", type=typ, default=default, help="released flag (default: %(default)s)")
    p.add_argument("--bl_words", help="word/phrase blocklist file (flashtext semantics)")
    p.add_argument("--bl_subreddits", help="subreddit blocklist file")
    p.add_argument(
        "--keys", help="dir of DialoGPT key files <month>.gz and <month>-o.gz (exact release reproduction)"
    )
    p.add_argument(
        "--keep-work", action="store_true", help="keep the intermediate Parquet tables in OUT/work/"
    )
    p.add_argument(
        "--mode",
        choices=("auto", "fused", "staged"),
        default="auto",
        help="fused: one task per month, in memory; staged: ingest -> instances -> filter with Parquet "
        "in between; auto (default): fused unless a month's comments exceed --fused-max-gb or --keep-work",
    )
    p.add_argument(
        "--fused-max-gb",
        type=float,
        default=2.0,
        help="auto mode: largest month (decoded comment JSON, estimated) run fused (default %(default)s)",
    )
    p.add_argument("--quiet", action="store_true", help="do not print the funnel table")
    return p


def dump_months(dumps_dir: str) -> list[str]:
    """The months of the RC_/RS_ dumps under ``dumps_dir`` (validated names, as the extract stage reads)."""
    from dialogsmith import dumps, ingest

    if not fsutil.exists(dumps_dir):
        raise FileNotFoundError(f"--dumps {dumps_dir}: no such directory")
    scan = ingest.scan_inputs(dumps_dir)
    months = {dumps.parse_dump_name(f)[1] for f in scan.files} - {None}
    if not months:
        raise FileNotFoundError(f"--dumps {dumps_dir}: no RS_<YYYY-MM>/RC_<YYYY-MM> dump files found")
    return sorted(months)


def choose_mode(args) -> tuple[str, str]:
    """(mode, why)."""
    from dialogsmith import dumps, ingest

    if args.mode == "fused" and args.keep_work:
        raise ValueError("--keep-work keeps the staged path's tables: use it with --mode staged or auto")
    if args.mode != "auto":
        return args.mode, "--mode"
    if args.keep_work:
        return "staged", "--keep-work"
    per_month: dict[str, int] = {}
    for path in fsutil.list_files(args.dumps):
        kind, month = dumps.parse_dump_name(path.rsplit("/", 1)[-1])
        if kind == dumps.COMMENTS and month:
            per_month[month] = per_month.get(month, 0) + ingest.estimated_bytes(path)
    if per_month:
        month, size = max(per_month.items(), key=lambda kv: kv[1])
        if size > args.fused_max_gb * 1e9:
            return (
                "staged",
                f"{month} has ~{size / 1e9:.1f} GB of comments (> --fused-max-gb {args.fused_max_gb:g})",
            )
    return "fused", f"every month <= --fused-max-gb {args.fused_max_gb:g}"


def _conv_argv(args, input_dir: str, output_dir: str) -> list[str]:
    argv = ["--input", input_dir, "--output", output_dir, "--profile", "dialogpt"]
    for name in RELEASED_FLAGS:
        argv += [f"--{name}", str(getattr(args, name))]
    for name in ("bl_words", "bl_subreddits", "keys"):
        if getattr(args, name):
            argv += [f"--{name}", getattr(args, name)]
    return argv


def _filter_argv(args, input_dir: str, output_dir: str) -> list[str]:
    argv = [
        "--input",
        input_dir,
        "--output",
        output_dir,
        "--profile",
        "dialogpt",
        "--export-tsv",
        "--no-parquet",
    ]
    if args.bl_words:
        argv += ["--bl_words", args.bl_words]
    if args.quiet:
        argv.append("--quiet")
    return argv


def run(args, input=None) -> StageStats:
    from dialogsmith.spark import get_spark

    timer = Timer()
    months = dump_months(args.dumps)
    for path in (args.bl_words, args.bl_subreddits, args.keys):
        if path and not fsutil.exists(path):
            raise FileNotFoundError(f"not found: {path}")
    inputs = [args.dumps, args.bl_words, args.bl_subreddits, args.keys]
    force = bool(getattr(args, "force", False))
    outputs.check_target(args.output, STAGE, inputs, force)
    mode, why = choose_mode(args)
    print(f"dialogpt-tsv: {mode} mode ({why})", file=sys.stderr)
    spark = get_spark("dialogsmith-dialogpt-tsv")  # one session; the stages below reuse it
    with outputs.stage_output(args.output, STAGE, inputs, force) as out:
        if mode == "fused":
            stats = _run_fused(args, months, out, spark)
        else:
            stats = _run_staged(args, months, out)
        stats.extra["dialogpt_tsv"] = {
            "months": months,
            "mode": mode,
            "seconds": timer.seconds,
            "flags": {k: getattr(args, k) for k in RELEASED_FLAGS},
        }
    print(
        f"dialogpt-tsv: {stats.rows_out:,} lines in {len(months)} month file(s) under {args.output} "
        f"({timer.seconds:.1f} s)",
        file=sys.stderr,
    )
    return stats


def _run_fused(args, months: list[str], out: str, spark) -> StageStats:
    from dialogsmith import conversations
    from dialogsmith.filter import dialogpt_month, job
    from dialogsmith.filter.profiles import make_profile

    cfg = conversations.config_from_args(conversations.build_parser().parse_args(_conv_argv(args, "-", "-")))
    cfg.validate()
    fargs = job.build_parser().parse_args(_filter_argv(args, "-", "-"))
    profile = make_profile("dialogpt", job.params_from_args(fargs))
    tasks = dialogpt_month.month_tasks(args.dumps, out, cfg)
    results = (
        spark.sparkContext.parallelize(tasks, len(tasks))
        .map(lambda t: dialogpt_month.month_task(t, profile))
        .collect()
    )
    ex, ins, flt = (StageStats(stage=s) for s in ("extract", "instances", "filter"))
    extra = {"candidates": 0, "submissions_read": 0, "submissions_kept": 0}
    files, lines_per_month, seconds, rss = {}, {}, {"extract": 0.0, "instances": 0.0, "filter": 0.0}, {}
    for r in results:
        ex.add(StageStats.from_dict(r["extract"]))
        ins.add(StageStats.from_dict(r["instances"]))
        flt.add(StageStats.from_dict(r["filter"]))
        for k, v in r["instance_extra"].items():
            extra[k] += v
        files.update(r["files"])
        lines_per_month[r["month"]] = r["filter"]["rows_out"]
        for k, v in r["seconds"].items():
            seconds[k] += v
        rss[r["month"]] = round(r["worker_peak_rss_mb"])
    ex.extra = {
        "mode": "fused",
        "comments": sum(r["comments"] for r in results),
        "submissions": sum(r["submissions"] for r in results),
        "files": dict(sorted(files.items())),
        "worker_peak_rss_mb": rss,  # peak RSS of the Python worker after each month task
        "skipped_inputs": _skipped(args.dumps),
    }
    ins.extra = {
        **extra,
        "config": conversations.asdict(cfg),
        "extract_reasons": list(conversations.EXTRACT_REASONS),
        "target_reasons": list(conversations.TARGET_REASONS),
    }
    flt.dropped = {k: v for k, v in flt.dropped.items() if v}
    flt.extra = {"profile": profile.name, "rules": profile.enabled(), "months": lines_per_month}
    for st in (ex, ins, flt):
        st.seconds = round(seconds[st.stage], 3)  # summed over the month tasks
        st.check()
        st.write(fsutil.join(out, "stats", f"{st.stage}.json"))
    funnel = job.funnel_report(profile, flt)
    fsutil.write_json(fsutil.join(out, "stats", "funnel.json"), funnel)
    for m in months:  # the released extractor writes a file for every month, even an empty one
        if not fsutil.exists(fsutil.join(out, f"{m}.tsv")):
            fsutil.write_bytes(fsutil.join(out, f"{m}.tsv"), b"")
    if not args.quiet:
        print(job.format_funnel(funnel), file=sys.stderr)
    return flt


def _skipped(dumps_dir: str) -> dict[str, str]:
    from dialogsmith.ingest import scan_inputs

    scan = scan_inputs(dumps_dir)
    return {scan.sources.get(f) or f: r for f, r in sorted(scan.skipped.items())}


def _run_staged(args, months: list[str], out: str) -> StageStats:
    from dialogsmith import conversations, ingest
    from dialogsmith.filter import job

    work = fsutil.join(out, "work")
    extract_dir, conv_dir, filter_dir = (fsutil.join(work, d) for d in ("extract", "instances", "filter"))
    ingest.run(ingest.build_parser().parse_args(["--input", args.dumps, "--output", extract_dir]))
    conversations.run(conversations.build_parser().parse_args(_conv_argv(args, extract_dir, conv_dir)))
    stats = job.run(job.build_parser().parse_args(_filter_argv(args, conv_dir, filter_dir)))
    fs, _ = fsutil.resolve(out)
    for m in months:
        src = fsutil.join(filter_dir, "tsv", f"{m}.tsv")
        dst = fsutil.join(out, f"{m}.tsv")
        if fsutil.exists(src):
            fs.move(fsutil.resolve(src)[1], fsutil.resolve(dst)[1])
        else:  # the released extractor writes a file for every month, even an empty one
            fsutil.write_bytes(dst, b"")
    for stage, path in (("extract", extract_dir), ("instances", conv_dir), ("filter", filter_dir)):
        if fsutil.exists(fsutil.join(path, "stats.json")):
            fsutil.write_bytes(
                fsutil.join(out, "stats", f"{stage}.json"),
                fsutil.read_bytes(fsutil.join(path, "stats.json")),
            )
    fsutil.write_bytes(
        fsutil.join(out, "stats", "funnel.json"),
        fsutil.read_bytes(fsutil.join(filter_dir, "funnel.json")),
    )
    if not args.keep_work:
        fsutil.remove(work)
    return stats


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except (FileNotFoundError, ValueError, outputs.OutputRefused, outputs.IncompleteInput) as e:
        print(f"dialogpt-tsv: error: {e}", file=sys.stderr)
        return 2
    extract = StageStats.read(fsutil.join(args.output, "stats", "extract.json"))
    skipped = extract.extra.get("skipped_inputs") or {}
    for name, reason in skipped.items():
        print(f"dialogpt-tsv: skipped {name}: {reason}", file=sys.stderr)
    return finish(extract, args.strict)


if __name__ == "__main__":
    sys.exit(main())
