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

import math
import os
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass

from dialogsmith import fsutil, outputs, progress
from dialogsmith.formats.stats import StageStats, Timer
from dialogsmith.stage import ConfigParser, Stage, StageConfig, StageError, option, spark_for
from dialogsmith.text.blocklist import released_lists_inactive

NAME = "dialogpt-tsv"
RELEASED_FLAGS = ("min_score", "min_depth", "max_depth", "use_title", "leaves_only", "max_len")


@dataclass
class DialogptTsvConfig(StageConfig):
    """The released extractor's flags, spelled as it spells them (the released Makefile's values as
    defaults); ``--dumps`` is the directory of RS_/RC_ dumps (``--input`` also works)."""

    input: str = option(
        "",
        "directory with RS_<month>.* and RC_<month>.* dumps",
        flag="--dumps",
        aliases=("--input",),
        metavar="DIR",
    )
    min_score: int = option(1, "released flag", flag="--min_score")
    min_depth: int = option(2, "released flag", flag="--min_depth")
    max_depth: int = option(5, "released flag", flag="--max_depth")
    use_title: int = option(0, "released flag", flag="--use_title")
    leaves_only: int = option(1, "released flag", flag="--leaves_only")
    # words, as the released extractor counts them (tokenize's --max-len counts tokens)
    max_len: int = option(30, "released flag: most words per turn", flag="--max_len")
    bl_words: str | None = option(None, "word/phrase blocklist file (flashtext semantics)", flag="--bl_words")
    bl_subreddits: str | None = option(None, "subreddit blocklist file", flag="--bl_subreddits")
    keys: str | None = option(
        None, "dir of DialoGPT key files <month>.gz and <month>-o.gz (exact release reproduction)"
    )
    keep_work: bool = option(False, "keep the staging and pass-1 tables in OUT/_work/ (debugging)")
    buckets: int = option(0, "link_id buckets (0: ~512 MiB of decoded dumps each, a multiple of cores)")
    # before 0.2: fused|staged; one path now, the flags are accepted and ignored
    mode: str = option("auto", hidden=True, choices=("auto", "fused", "staged"))
    fused_max_gb: float = option(2.0, hidden=True)
    quiet: bool = option(False, "no progress line and no funnel table")

    def validate(self) -> DialogptTsvConfig:
        if not self.input:
            raise StageError("--dumps is required")
        if not self.output:
            raise StageError("--output is required")
        if self.buckets < 0:
            raise StageError(f"--buckets must be >= 1, got {self.buckets}")
        return self


def build_parser() -> ConfigParser:
    return STAGE.parser()


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


def build_config(cfg: DialogptTsvConfig):
    """The instances and filter configuration of the released flags (dialogpt profile)."""
    from dialogsmith.filter import FilterConfig
    from dialogsmith.instances import job as instances

    argv = ["--input", "-", "--output", "-", "--profile", "dialogpt"]
    for name in RELEASED_FLAGS:
        argv += [f"--{name}", str(getattr(cfg, name))]
    for name in ("bl_words", "bl_subreddits", "keys"):
        if getattr(cfg, name):
            argv += [f"--{name}", getattr(cfg, name)]
    build = instances.build_parser().parse_args(argv).build()
    profile = FilterConfig(profile="dialogpt", bl_words=cfg.bl_words or None).profile_of()
    return build, profile


def n_buckets_for(total_decoded: int, parallelism: int, requested: int | None) -> int:
    """~512 MiB of decoded dumps per bucket, at least 4 per core and a multiple of the cores: the
    passes over buckets end together when every core has several tasks of similar size."""
    from dialogsmith.extract import job as ingest

    if requested:
        return requested
    n = max(ingest.default_buckets(total_decoded), 4 * parallelism)
    return int(math.ceil(n / parallelism) * parallelism)


def run(cfg: DialogptTsvConfig, spark=None) -> StageStats:
    """Dumps -> ``OUT/<month>.tsv``; the filter part's stats (the lines written)."""
    from dialogsmith.extract import job as extract

    timer = Timer()
    cfg.validate()
    months = dump_months(cfg.input)
    for path in (cfg.bl_words, cfg.bl_subreddits, cfg.keys):
        if path and not fsutil.exists(path):
            raise FileNotFoundError(f"not found: {path}")
    inputs = [cfg.input, cfg.bl_words, cfg.bl_subreddits, cfg.keys]
    outputs.check_target(cfg.output, NAME, inputs, cfg.force)  # before Spark starts: fail fast
    build, profile = build_config(cfg)
    build.validate()
    inactive = released_lists_inactive(cfg.bl_words, cfg.bl_subreddits, cfg.keys)
    for line in inactive:
        print(f"warning: dialogpt-tsv: {line}", file=sys.stderr)
    scan = extract.scan_inputs(cfg.input)
    spark = spark_for(cfg, NAME, spark)
    seconds = {"spark_start": timer.seconds}
    with (
        outputs.stage_output(cfg.output, NAME, inputs, cfg.force) as out,
        progress.watch(spark, NAME, quiet=cfg.quiet),
    ):
        work = fsutil.join(out, "_work")
        t = time.perf_counter()
        staged = stage_dumps(spark.sparkContext, scan, out, work, cfg.buckets)
        seconds["extract"] = round(time.perf_counter() - t, 3)
        t = time.perf_counter()
        res, extra_lines, lines_per_month = run_buckets(
            spark.sparkContext, staged, build, profile, work, months
        )
        seconds["buckets"] = round(time.perf_counter() - t, 3)
        t = time.perf_counter()
        for m in months:  # one file per month: the released extractor writes one for every month, even empty
            parts = fsutil.list_files(fsutil.join(work, "tsv", m), ".tsv")
            concat_files(parts, fsutil.join(out, f"{m}.tsv"), extra_lines.get(m, b""))
        seconds["concat"] = round(time.perf_counter() - t, 3)
        flt = write_stats(out, cfg, scan, staged, res, build, profile, seconds, lines_per_month, inactive)
        fsutil.remove(fsutil.join(work, "tsv") if cfg.keep_work else work)
        seconds["total"] = timer.seconds
        flt.extra["dialogpt_tsv"] = {
            "months": months,
            "mode": "buckets",
            "seconds": seconds,
            "flags": {k: getattr(cfg, k) for k in RELEASED_FLAGS},
        }
        flt.write(fsutil.join(out, "stats", "filter.json"))
    flt.seconds = timer.seconds
    return flt


@dataclass
class Staged:
    """What extract's phase 1 left: per-slice results, and the staged rows by (kind, bucket)."""

    results: list[dict]
    sources: dict
    n_buckets: int
    work_items: int
    submitted: float


def stage_dumps(sc, scan, out: str, work: str, buckets: int) -> Staged:
    """Extract's phase 1 on slices of every dump: rows staged by link-id bucket, only the fields the
    released extractor reads; per comment, its id and parent keys by key partition (cross-bucket parents)."""
    from dialogsmith.extract import dumps
    from dialogsmith.extract import job as extract
    from dialogsmith.instances import dialogpt

    parallelism = max(1, sc.defaultParallelism)
    total_est = sum(extract.estimated_bytes(f) for f in scan.files)
    n_buckets = n_buckets_for(total_est, parallelism, buckets)
    items = extract.plan(scan.files, None, None, parallelism, scan.sources)
    conf = {
        "out": out,
        "staging": fsutil.join(work, "staging"),
        "n_buckets": n_buckets,
        "max_decoders": os.cpu_count() or 1,
        "block_size": dumps.DEFAULT_BLOCK_SIZE,
        "staging_compression": extract.staging_compression(total_est, projected=True),
        "columns": {dumps.COMMENTS: dialogpt.COMMENT_COLUMNS, dumps.SUBMISSIONS: dialogpt.SUBMISSION_COLUMNS},
        "references": {"root": fsutil.join(work, "references"), "parts": n_buckets},
    }
    work_items = [{**it, "conf": conf} for it in items]
    submitted = time.time()
    results = (
        sc.parallelize(work_items, max(1, len(work_items))).mapPartitions(extract.phase1_partition).collect()
    )
    return Staged(results, extract.staged_sources(results), n_buckets, len(items), submitted)


def run_buckets(sc, staged: Staged, build, profile, work: str, months: list[str]):
    """Pass 1, cross-bucket parents, pass 2 + the dialogpt filter rules per bucket (TSV parts under
    ``work/tsv/<month>/``); the walks that crossed buckets are finished by the driver. Returns the
    bucket results, the driver's TSV lines per month and the line count per month."""
    import pyarrow.compute as pc

    from dialogsmith.extract import dumps
    from dialogsmith.instances import dialogpt

    tasks = [
        {
            "bucket": f"bucket={b}",
            "comments": [("ipc", path, ids) for path, ids in staged.sources.get((dumps.COMMENTS, b), [])],
            "submissions": [
                ("ipc", path, ids) for path, ids in staged.sources.get((dumps.SUBMISSIONS, b), [])
            ],
            "tsv": fsutil.join(work, "tsv"),
        }
        for b in range(staged.n_buckets)
    ]
    # the biggest buckets first: the last round of tasks ends together (LPT scheduling)
    tasks.sort(key=lambda t: -sum(len(ids) for _, _, ids in t["comments"]))
    references: dict[int, list[str]] = {}
    for r in staged.results:
        for part, f in r["references"].items():
            references.setdefault(int(part), []).append(f)
    res = dialogpt.run_buckets(sc, tasks, build, work, profile, references=references)
    extra_lines, lines_per_month = {}, {m: res.months.get(m, 0) for m in months}
    pending = res.settled_instances
    for month in sorted(set(pending["month"].to_pylist())):  # walks that crossed buckets (the driver's)
        part = pending.filter(pc.fill_null(pc.equal(pending["month"], month), False))
        extra_lines[month] = dialogpt.filter_lines(part, profile, res.filter)
        lines_per_month[month] = lines_per_month.get(month, 0) + extra_lines[month].count(b"\n")
    return res, extra_lines, lines_per_month


def write_stats(out, cfg, scan, staged: Staged, res, build, profile, seconds, lines_per_month, inactive):
    """``OUT/stats/{extract,instances,filter}.json`` as the three stages would write them (each adding
    up) and ``funnel.json``; the filter's stats."""
    from dialogsmith.extract import job as extract
    from dialogsmith.filter import format_funnel, funnel_report
    from dialogsmith.instances import job as instances

    per_file, quarantined = extract.fold_files(staged.results)
    ex = StageStats(stage="extract")
    ex.rows_in = sum(f["lines"] for f in per_file.values())
    ex.rows_out = res.comments + res.submissions
    ex.merged = {extract.DUPLICATE_ID: sum(res.merged.values())}
    ex.quarantined = dict(sorted(quarantined.items()))
    ex.seconds = seconds["extract"]
    ex.extra = {
        "comments": res.comments,
        "submissions": res.submissions,
        "duplicates": res.merged,
        "n_buckets": staged.n_buckets,
        "work_items": staged.work_items,
        "files": per_file,
        "skipped_inputs": {scan.sources.get(f) or f: r for f, r in sorted(scan.skipped.items())},
        "parser": dict(sorted(Counter(r["parser"] for r in staged.results).items())),
        "task_seconds": {f"{r['source']}#{r['slice']}": round(r["seconds"], 3) for r in staged.results},
        "first_task_start_seconds": round(
            min((r["started"] for r in staged.results), default=staged.submitted) - staged.submitted, 3
        ),
    }
    ins = res.instances
    ins.seconds = seconds["buckets"]
    ins.extra = {
        **res.extra,
        "config": asdict(build),
        "extract_reasons": list(instances.EXTRACT_REASONS),
        "target_reasons": list(instances.TARGET_REASONS),
    }
    flt = res.filter
    flt.dropped = {k: v for k, v in flt.dropped.items() if v}
    flt.extra = {"profile": profile.name, "rules": profile.enabled(), "months": lines_per_month}
    flt.extra["inactive_blocklists"] = inactive
    for st in (ex, ins, flt):
        st.check()
        st.write(fsutil.join(out, "stats", f"{st.stage}.json"))
    funnel = funnel_report(profile, flt)
    fsutil.write_json(fsutil.join(out, "stats", "funnel.json"), funnel)
    if not cfg.quiet:
        print(format_funnel(funnel), file=sys.stderr)
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


def summary(stats: StageStats, cfg: DialogptTsvConfig) -> str:
    months = stats.extra["dialogpt_tsv"]["months"]
    lines = [
        f"dialogpt-tsv: {stats.rows_out:,} lines in {len(months)} month file(s) under {cfg.output} ({stats.seconds:.1f} s)"
    ]
    for name, reason in (extract_stats(cfg).extra.get("skipped_inputs") or {}).items():
        lines.append(f"  skipped {name}: {reason}")
    return "\n".join(lines)


def extract_stats(cfg: DialogptTsvConfig) -> StageStats:
    """The extract part's stats (per dump file: broken files, quarantined lines): what --strict judges."""
    return StageStats.read(fsutil.join(cfg.output, "stats", "extract.json"))


STAGE = Stage(
    NAME,
    DialogptTsvConfig,
    run,
    summary,
    problems_of=lambda stats, cfg: extract_stats(cfg),
    description="Drop-in for DialoGPT's reddit extractor: read Pushshift dumps (RS_/RC_<month>), build and clean instances "
    "exactly as the released code does, and write OUT/<month>.tsv (link_id,parent_id,comment_id<TAB>src<TAB>tgt). "
    "Flag names are the released script's.",
    prog="dialogsmith dialogpt-tsv",
)


def main(argv: list[str] | None = None) -> int:
    return STAGE.main(argv)
