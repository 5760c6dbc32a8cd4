"""Drop-in for the released DialoGPT extractor: dumps → ``OUT/<month>.tsv`` in its output format.

Accepts the released script's flag names, with the released Makefile's values as defaults:
``--min_score 1 --min_depth 2 --max_depth 5 --use_title 0 --leaves_only 1 --max_len 30``, plus
``--bl_words FILE --bl_subreddits FILE --keys DIR`` (``DIR/<month>.gz`` and ``DIR/<month>-o.gz``).

Each ``<month>.tsv`` holds the lines ``link_id,parent_id,comment_id<TAB>src<TAB>tgt`` the released
extractor writes for that month (line order differs: compare sorted, as the spec says). Stage stats
and the funnel go to ``OUT/stats/``, quarantined dump lines to ``OUT/quarantine/``.

One path, in one Spark session, memory bounded by a bucket whatever the month size: the extract stage's
first phase (byte-range slices of every dump, parsed by the C line parser, only the 7 comment and 4
submission fields the profile reads) stages the rows by link_id bucket; then ``dialogpt_buckets`` runs
pass 1, the cross-bucket parent lookup and pass 2 + the filter's dialogpt rules per bucket, writing TSV
parts that are concatenated per month. No intermediate table is written (``--keep-work`` keeps the
staging and pass-1 tables in ``OUT/_work/``).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections import Counter
from dataclasses import asdict

from dialogsmith import fsutil, outputs
from dialogsmith.formats.stats import StageStats, Timer, finish

STAGE = "dialogpt-tsv"
RELEASED_FLAGS = {  # name: (type, released Makefile value)
    "min_score": (int, 1),
    "min_depth": (int, 2),
    "max_depth": (int, 5),
    "use_title": (int, 0),
    "leaves_only": (int, 1),
    "max_len": (int, 30),
}


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
        "--keep-work",
        action="store_true",
        help="keep the staging and pass-1 tables in OUT/_work/ (debugging)",
    )
    p.add_argument(
        "--buckets",
        type=int,
        help="link_id buckets (default: ~512 MiB of decoded dumps each, a multiple of cores)",
    )
    p.add_argument("--mode", default="auto", help=argparse.SUPPRESS)  # before 0.2: fused|staged; one path now
    p.add_argument("--fused-max-gb", type=float, default=2.0, help=argparse.SUPPRESS)  # idem
    p.add_argument("--quiet", action="store_true", help="do not print the funnel table")
    return p


def dump_months(dumps_dir: str) -> list[str]:
    """The months of the RC_/RS_ dumps under ``dumps_dir`` (validated names, as the extract stage reads)."""
    from dialogsmith.extract import dumps
    from dialogsmith.extract import job as ingest

    if not fsutil.exists(dumps_dir):
        raise FileNotFoundError(f"--dumps {dumps_dir}: no such directory")
    scan = ingest.scan_inputs(dumps_dir)
    months = {dumps.parse_dump_name(f)[1] for f in scan.files} - {None}
    if not months:
        raise FileNotFoundError(f"--dumps {dumps_dir}: no RS_<YYYY-MM>/RC_<YYYY-MM> dump files found")
    return sorted(months)


def build_config(args):
    """The instances and filter configuration of the released flags (dialogpt profile)."""
    from dialogsmith.filter import job
    from dialogsmith.filter.profiles import make_profile
    from dialogsmith.instances import job as conversations

    argv = ["--input", "-", "--output", "-", "--profile", "dialogpt"]
    for name in RELEASED_FLAGS:
        argv += [f"--{name}", str(getattr(args, name))]
    for name in ("bl_words", "bl_subreddits", "keys"):
        if getattr(args, name):
            argv += [f"--{name}", getattr(args, name)]
    cfg = conversations.config_from_args(conversations.build_parser().parse_args(argv))
    fargv = ["--input", "-", "--output", "-", "--profile", "dialogpt"]
    if args.bl_words:
        fargv += ["--bl_words", args.bl_words]
    profile = make_profile("dialogpt", job.params_from_args(job.build_parser().parse_args(fargv)))
    return cfg, profile


def n_buckets_for(total_decoded: int, parallelism: int, requested: int | None) -> int:
    """~512 MiB of decoded dumps per bucket, at least 4 per core and a multiple of the cores: the
    passes over buckets end together when every core has several tasks of similar size."""
    from dialogsmith.extract import job as ingest

    if requested:
        return requested
    n = max(ingest.default_buckets(total_decoded), 4 * parallelism)
    return int(math.ceil(n / parallelism) * parallelism)


def run(args, input=None) -> StageStats:
    import pyarrow.compute as pc

    from dialogsmith.extract import dumps
    from dialogsmith.extract import job as ingest
    from dialogsmith.filter import job
    from dialogsmith.instances import dialogpt as dialogpt_buckets
    from dialogsmith.instances import job as conversations
    from dialogsmith.spark import get_spark

    timer = Timer()
    months = dump_months(args.dumps)
    for path in (args.bl_words, args.bl_subreddits, args.keys):
        if path and not fsutil.exists(path):
            raise FileNotFoundError(f"not found: {path}")
    if args.mode not in ("auto", "fused", "staged"):
        raise ValueError(f"--mode {args.mode}: not a mode (auto|fused|staged; all run the one path now)")
    if args.buckets is not None and args.buckets < 1:
        raise ValueError(f"--buckets must be >= 1, got {args.buckets}")
    inputs = [args.dumps, args.bl_words, args.bl_subreddits, args.keys]
    force = bool(getattr(args, "force", False))
    outputs.check_target(args.output, STAGE, inputs, force)
    cfg, profile = build_config(args)
    cfg.validate()
    scan = ingest.scan_inputs(args.dumps)
    spark = get_spark("dialogsmith-dialogpt-tsv")
    sc = spark.sparkContext
    parallelism = max(1, sc.defaultParallelism)
    seconds = {"spark_start": timer.seconds}
    with outputs.stage_output(args.output, STAGE, inputs, force) as out:
        work = fsutil.join(out, "_work")
        # -- phase 1: slices of every dump -> rows staged by link_id bucket (projected fields)
        t = time.perf_counter()
        total_est = sum(ingest.estimated_bytes(f) for f in scan.files)
        n_buckets = n_buckets_for(total_est, parallelism, args.buckets)
        items = ingest.plan(scan.files, None, None, parallelism, scan.sources)
        conf = {
            "out": out,
            "staging": fsutil.join(work, "staging"),
            "n_buckets": n_buckets,
            "max_decoders": os.cpu_count() or 1,
            "block_size": dumps.DEFAULT_BLOCK_SIZE,
            "staging_compression": ingest.staging_compression(total_est, projected=True),
            "columns": {
                dumps.COMMENTS: dialogpt_buckets.COMMENT_COLUMNS,
                dumps.SUBMISSIONS: dialogpt_buckets.SUBMISSION_COLUMNS,
            },
            # per comment, the keys of its id and its parent's, by bucket: parents across buckets
            "references": {"root": fsutil.join(work, "references"), "parts": n_buckets},
        }
        work_items = [{**it, "conf": conf} for it in items]
        submitted = time.time()
        p1 = (
            sc.parallelize(work_items, max(1, len(work_items)))
            .mapPartitions(ingest._phase1_partition)
            .collect()
        )
        seconds["extract"] = round(time.perf_counter() - t, 3)
        sources = ingest.staged_sources(p1)
        # -- passes over the buckets: pass 1, cross-bucket parents, pass 2 + the dialogpt filter rules
        t = time.perf_counter()
        tsv_parts = fsutil.join(work, "tsv")
        tasks = [
            {
                "bucket": f"bucket={b}",
                "comments": [("ipc", path, ids) for path, ids in sources.get((dumps.COMMENTS, b), [])],
                "submissions": [("ipc", path, ids) for path, ids in sources.get((dumps.SUBMISSIONS, b), [])],
                "tsv": tsv_parts,
            }
            for b in range(n_buckets)
        ]
        # the biggest buckets first: the last round of tasks ends together (LPT scheduling)
        tasks.sort(key=lambda t: -sum(len(ids) for _, _, ids in t["comments"]))
        references: dict[int, list[str]] = {}
        for r in p1:
            for part, f in r["references"].items():
                references.setdefault(int(part), []).append(f)
        res = dialogpt_buckets.run_buckets(sc, tasks, cfg, work, profile, references=references)
        extra_lines, lines_per_month = {}, {m: res.months.get(m, 0) for m in months}
        pending = res.settled_instances
        for month in sorted(set(pending["month"].to_pylist())):  # walks that crossed buckets (the driver's)
            part = pending.filter(pc.fill_null(pc.equal(pending["month"], month), False))
            extra_lines[month] = dialogpt_buckets.filter_lines(part, profile, res.filter)
            lines_per_month[month] = lines_per_month.get(month, 0) + extra_lines[month].count(b"\n")
        seconds["buckets"] = round(time.perf_counter() - t, 3)
        # -- one file per month (the released extractor writes one for every month, even an empty one)
        t = time.perf_counter()
        for m in months:
            parts = fsutil.list_files(fsutil.join(tsv_parts, m), ".tsv")
            concat_files(parts, fsutil.join(out, f"{m}.tsv"), extra_lines.get(m, b""))
        seconds["concat"] = round(time.perf_counter() - t, 3)

        # -- stats: the three stages' own, as the separate stages would write them
        per_file, quarantined = ingest.fold_files(p1)
        ex = StageStats(stage="extract")
        ex.rows_in = sum(f["lines"] for f in per_file.values())
        ex.rows_out = res.comments + res.submissions
        ex.merged = {ingest.DUPLICATE_ID: sum(res.merged.values())}
        ex.quarantined = dict(sorted(quarantined.items()))
        ex.seconds = seconds["extract"]
        ex.extra = {
            "comments": res.comments,
            "submissions": res.submissions,
            "duplicates": res.merged,
            "n_buckets": n_buckets,
            "work_items": len(items),
            "files": per_file,
            "skipped_inputs": {scan.sources.get(f) or f: r for f, r in sorted(scan.skipped.items())},
            "parser": dict(sorted(Counter(r["parser"] for r in p1).items())),
            "task_seconds": {f"{r['source']}#{r['slice']}": round(r["seconds"], 3) for r in p1},
            "first_task_start_seconds": round(
                min((r["started"] for r in p1), default=submitted) - submitted, 3
            ),
        }
        ins = res.instances
        ins.seconds = seconds["buckets"]
        ins.extra = {
            **res.extra,
            "config": asdict(cfg),
            "extract_reasons": list(conversations.EXTRACT_REASONS),
            "target_reasons": list(conversations.TARGET_REASONS),
        }
        flt = res.filter
        flt.dropped = {k: v for k, v in flt.dropped.items() if v}
        flt.extra = {"profile": profile.name, "rules": profile.enabled(), "months": lines_per_month}
        for st in (ex, ins, flt):
            st.check()
            st.write(fsutil.join(out, "stats", f"{st.stage}.json"))
        funnel = job.funnel_report(profile, flt)
        fsutil.write_json(fsutil.join(out, "stats", "funnel.json"), funnel)
        if not args.quiet:
            print(job.format_funnel(funnel), file=sys.stderr)
        if args.keep_work:
            fsutil.remove(fsutil.join(work, "tsv"))
        else:
            fsutil.remove(work)
        seconds["total"] = timer.seconds
        flt.extra["dialogpt_tsv"] = {
            "months": months,
            "mode": "buckets",
            "seconds": seconds,
            "flags": {k: getattr(args, k) for k in RELEASED_FLAGS},
        }
        flt.write(fsutil.join(out, "stats", "filter.json"))
    print(
        f"dialogpt-tsv: {flt.rows_out:,} lines in {len(months)} month file(s) under {args.output} "
        f"({timer.seconds:.1f} s)",
        file=sys.stderr,
    )
    return flt


def concat_files(parts: list[str], dest: str, tail: bytes = b"") -> None:
    """Concatenate files into ``dest``, then ``tail``. Local files are copied by the kernel
    (copy_file_range), without passing through Python."""
    fs, path = fsutil.resolve(dest)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    if "://" in dest:
        with fs.open_output_stream(path) as out:
            for part in parts:
                out.write(fsutil.read_bytes(part))
            out.write(tail)
        return
    with open(path, "wb", buffering=0) as out:
        for part in parts:
            with open(fsutil.resolve(part)[1], "rb", buffering=0) as src:
                while os.copy_file_range(src.fileno(), out.fileno(), 1 << 30):
                    pass
        out.write(tail)


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
