"""Drop-in for the released DialoGPT extractor: dumps → ``OUT/<month>.tsv`` in its output format.

Runs ingest + conversations (dialogpt profile) + filter (dialogpt profile) in one Spark session and
accepts the released script's flag names, with the released Makefile's values as defaults:
``--min_score 1 --min_depth 2 --max_depth 5 --use_title 0 --leaves_only 1 --max_len 30``, plus
``--bl_words FILE --bl_subreddits FILE --keys DIR`` (``DIR/<month>.gz`` and ``DIR/<month>-o.gz``).

Each ``<month>.tsv`` holds the lines ``link_id,parent_id,comment_id<TAB>src<TAB>tgt`` the released
extractor writes for that month (line order differs: compare sorted, as the spec says). Stage stats
and the funnel go to ``OUT/stats/``; ``--keep-work`` keeps the intermediate Parquet in ``OUT/work/``.
"""

from __future__ import annotations

import argparse
import re
import sys

from dialogsmith import fsutil
from dialogsmith.stats import StageStats, Timer

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
    p.add_argument("--quiet", action="store_true", help="do not print the funnel table")
    return p


def dump_months(dumps: str) -> list[str]:
    if not fsutil.exists(dumps):
        raise SystemExit(f"--dumps {dumps}: no such directory")
    months = set()
    for path in fsutil.list_files(dumps):
        m = _MONTH.match(path.rsplit("/", 1)[-1])
        if m:
            months.add(m.group(1))
    if not months:
        raise SystemExit(f"--dumps {dumps}: no RS_<YYYY-MM>/RC_<YYYY-MM> dump files found")
    return sorted(months)


def _stage(name: str, rc) -> None:
    if isinstance(rc, int) and rc != 0:
        raise SystemExit(f"dialogpt-tsv: the {name} stage failed (exit status {rc}); see the error above")


def run(args, input=None) -> StageStats:
    from dialogsmith import conversations, ingest
    from dialogsmith.filter import job
    from dialogsmith.spark import get_spark

    timer = Timer()
    months = dump_months(args.dumps)
    for path in (args.bl_words, args.bl_subreddits, args.keys):
        if path and not fsutil.exists(path):
            raise SystemExit(f"not found: {path}")
    get_spark("dialogsmith-dialogpt-tsv")  # one session; the stages below reuse it
    with fsutil.atomic_output_dir(args.output) as out:
        work = fsutil.join(out, "work")
        extract_dir, conv_dir, filter_dir = (fsutil.join(work, d) for d in ("extract", "instances", "filter"))
        _stage("ingest", ingest.main(["--input", args.dumps, "--output", extract_dir]))
        conv_argv = ["--input", extract_dir, "--output", conv_dir, "--profile", "dialogpt"]
        for name in RELEASED_FLAGS:
            conv_argv += [f"--{name}", str(getattr(args, name))]
        for name in ("bl_words", "bl_subreddits", "keys"):
            if getattr(args, name):
                conv_argv += [f"--{name}", getattr(args, name)]
        _stage("conversations", conversations.main(conv_argv))
        filter_argv = [
            "--input",
            conv_dir,
            "--output",
            filter_dir,
            "--profile",
            "dialogpt",
            "--export-tsv",
            "--no-parquet",
        ]
        if args.bl_words:
            filter_argv += ["--bl_words", args.bl_words]
        if args.quiet:
            filter_argv.append("--quiet")
        stats = job.run(job.build_parser().parse_args(filter_argv))

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
        stats.extra["dialogpt_tsv"] = {
            "months": months,
            "seconds": timer.seconds,
            "flags": {k: getattr(args, k) for k in RELEASED_FLAGS},
        }
        fsutil.write_bytes(fsutil.join(out, "_SUCCESS"), b"")
    print(
        f"dialogpt-tsv: {stats.rows_out:,} lines in {len(months)} month file(s) under {args.output} "
        f"({timer.seconds:.1f} s)",
        file=sys.stderr,
    )
    return stats


def main(argv: list[str] | None = None) -> StageStats:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
