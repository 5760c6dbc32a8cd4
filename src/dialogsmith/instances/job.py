"""Stage ``instances``: comment trees -> multi-turn dialogue instances (``dialogsmith instances``).

Input: the extract output, ``IN/comments/bucket=<k>/*.parquet`` and ``IN/submissions/bucket=<k>/*.parquet``
(every thread and its submission in one bucket). Output: ``OUT/instances/part-*.parquet`` (table
``instances``), ``OUT/stats.json``, ``OUT/_SUCCESS``.

Every kept comment is a candidate target; its instance is the path walked up from it through its
parents (at most ``max_depth`` comments, oldest turn first), optionally topped by the submission title.
Two profiles: ``default`` (``default.py``: whole-corpus threads, light normalization, cycles dropped) and
``dialogpt`` (``dialogpt.py``: the released DialoGPT extractor rule for rule, month by month, its
extract-time drops, key files, walk, normalizations and turn weights; its clean checks belong to the
filter stage). Both walk with ``walk.py`` and assemble the instances with ``columns.py``.

Accounting (``stats.json``): ``rows_in`` = comments read; every comment is either dropped at extract
time (``deleted``, ``quote``, ``too_few_tokens`` ...), or is a candidate target (``extra.candidates``)
that becomes an instance (``rows_out``) or is dropped with a target reason (``not_leaf``, ``low_score``,
``too_shallow`` ...). ``extra.extract_reasons`` / ``extra.target_reasons`` say which reason is which.

Parallelism and memory: one Spark task per (bucket, shard). A bucket whose comment count exceeds
``rows_per_task`` is split into several shards: each shard task loads the whole bucket (memory is
bounded by the bucket, not by the shard or the job) and builds the instances of one contiguous slice
of the candidate targets in the released order, so a giant thread is spread over several tasks
instead of serializing the job. Every shard repeats the bucket's read and extract-time pass (measured:
8 shards of 4 buckets cost 1.5x the CPU of 4 single-shard tasks, at the same peak memory), hence the
large default. Tasks read and write Parquet with pyarrow and return only small stats dicts to the
driver (no JVM row conversion).
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import asdict, dataclass

from dialogsmith import fsutil, outputs, stage
from dialogsmith.formats import parquet
from dialogsmith.formats.schemas import INSTANCES_TABLE
from dialogsmith.formats.stats import StageStats, Timer
from dialogsmith.instances.columns import ROW_GROUP
from dialogsmith.instances.config import (
    EXTRACT_REASONS,
    PROFILE_DEFAULTS,
    PROFILES,
    TARGET_REASONS,
    BuildConfig,
)
from dialogsmith.instances.default import BucketShard, build_task
from dialogsmith.stage import Stage, StageConfig, StageError, option
from dialogsmith.text.blocklist import released_lists_inactive

NAME = "instances"


def int01(value: str) -> bool:
    """A 0/1 flag value (the released extractor's spelling); true/false also accepted."""
    v = value.strip().lower()
    if v not in ("0", "1", "true", "false"):
        raise argparse.ArgumentTypeError(f"expected 0 or 1, got {value!r}")
    return v in ("1", "true")


@dataclass
class InstancesConfig(StageConfig):
    """The flags; the ones left unset take the profile's default (``PROFILE_DEFAULTS``). The released
    extractor's spellings (``--min_score``, ``--max_len`` ...) are accepted too."""

    input: str = option("", "the extract output directory (comments/, submissions/)")
    profile: str = option(
        "default",
        "default: whole-corpus threads, light normalization; dialogpt: the released extractor exactly",
        choices=PROFILES,
    )
    min_score: int | None = option(
        None,
        "skip targets with score < N (a null score counts as 0) [none; dialogpt: 1]",
        aliases=("--min_score",),
    )
    min_depth: int | None = option(None, "skip instances with fewer turns [2]", aliases=("--min_depth",))
    max_depth: int | None = option(
        None, "at most N comments per instance, the last ones [5]", aliases=("--max_depth",)
    )
    use_title: int | None = option(
        None,
        "0/1: the submission title as the first turn [0]",
        type=int01,
        metavar="0|1",
        aliases=("--use_title",),
    )
    leaves_only: int | None = option(
        None,
        "0/1: only comments nobody replied to are targets [0; dialogpt: 1]",
        type=int01,
        metavar="0|1",
        aliases=("--leaves_only",),
    )
    # words, as the released extractor counts them (tokenize's --max-len counts tokens)
    max_words: int | None = option(
        None, "a turn with more words cuts the context there (0: no limit) [30]", aliases=("--max_len",)
    )
    clean: int = option(
        1,
        "0/1 (dialogpt): the filter's clean checks will run, so weights are written into the text when "
        "leaves_only is on",
        type=int01,
        metavar="0|1",
    )
    bl_words: str | None = option(
        None,
        "word/phrase blocklist file (dialogpt: turns containing one get weight 0.0)",
        aliases=("--bl_words",),
    )
    bl_subreddits: str | None = option(
        None,
        "subreddit blocklist file (targets in those subreddits are skipped)",
        aliases=("--bl_subreddits",),
    )
    keys: str | None = option(None, "dialogpt: directory with DialoGPT key files <month>.gz and <month>-o.gz")
    months: str | list[str] | None = option(None, "comma-separated YYYY-MM months to use (default: all)")
    rows_per_task: int = option(
        4_000_000, "split a bucket with more comments into several tasks", aliases=("--rows_per_task",)
    )

    def validate(self) -> InstancesConfig:
        super().validate()
        self.build()
        return self

    def build(self) -> BuildConfig:
        """The settings of the build: the profile's defaults for what is unset, checked."""
        if self.profile not in PROFILES:
            raise StageError(f"unknown profile {self.profile!r}; choose one of {', '.join(PROFILES)}")
        values = dict(PROFILE_DEFAULTS[self.profile])
        given = {
            "min_score": self.min_score,
            "min_depth": self.min_depth,
            "max_depth": self.max_depth,
            "use_title": self.use_title,
            "leaves_only": self.leaves_only,
            "max_len": self.max_words,
        }
        values.update({k: v for k, v in given.items() if v is not None})
        values["use_title"], values["leaves_only"] = bool(values["use_title"]), bool(values["leaves_only"])
        if values["max_len"] == 0:
            values["max_len"] = None
        months = self.months
        if isinstance(months, str):
            months = [m.strip() for m in months.split(",") if m.strip()]
        return BuildConfig(
            profile=self.profile,
            clean=bool(self.clean),
            bl_words=self.bl_words,
            bl_subreddits=self.bl_subreddits,
            keys=self.keys,
            months=list(months) if months else None,
            rows_per_task=self.rows_per_task,
            **values,
        ).validate()


# --- planning ----------------------------------------------------------------------------------------


def bucket_files(input_dir: str, table: str) -> dict[str, list[str]]:
    """``{"bucket=<k>": [Parquet files]}`` of ``IN/<table>/``, sorted."""
    by: dict[str, list[str]] = {}
    for uri in fsutil.list_files(fsutil.join(input_dir, table), ".parquet"):
        parts = uri.replace("\\", "/").split("/")
        bucket = next((p for p in reversed(parts[:-1]) if p.startswith("bucket=")), None)
        if bucket is None:
            raise StageError(f"{uri}: not under a bucket=<k> directory")
        by.setdefault(bucket, []).append(uri)
    return {b: sorted(files) for b, files in sorted(by.items())}


def plan_tasks(input_dir: str, out_dir: str, build: BuildConfig) -> list[BucketShard]:
    """One task per bucket shard; a bucket is split into ceil(comment rows / rows_per_task) shards (rows
    from the Parquet footers)."""
    if not fsutil.exists(fsutil.join(input_dir, "comments")):
        raise FileNotFoundError(
            f"{input_dir}: no comments/ directory (expected the extract output: comments/bucket=<k>/)"
        )
    submissions = bucket_files(input_dir, "submissions")
    config = asdict(build)
    tasks = []
    for bucket, files in bucket_files(input_dir, "comments").items():
        rows = sum(parquet.num_rows(f) for f in files)
        n_shards = max(1, math.ceil(rows / build.rows_per_task))
        subs = submissions.get(bucket, [])
        tasks += [BucketShard(bucket, s, n_shards, files, subs, out_dir, config) for s in range(n_shards)]
    return tasks


# --- running -------------------------------------------------------------------------------------------


def run(cfg: InstancesConfig, spark=None, input: str | None = None) -> StageStats:
    """Build instances from ``input`` (default ``cfg.input``) into ``cfg.output``; returns the stats."""
    build = cfg.build()
    input_dir = input or cfg.input
    outputs.require_input(input_dir, "extract")
    outputs.check_target(cfg.output, NAME, [input_dir], cfg.force)
    inactive = []
    if build.profile == "dialogpt":
        inactive = released_lists_inactive(build.bl_words, build.bl_subreddits, build.keys)
        for line in inactive:
            print(f"warning: instances: {line}", file=sys.stderr)
    timer = Timer()
    spark = stage.spark_for(cfg, NAME, spark)
    spark_start = timer.seconds
    with stage.committed(cfg, NAME, [input_dir]) as (tmp, stats):
        out_dir = fsutil.join(tmp, "instances")
        fsutil.makedirs(out_dir)
        tasks = plan_tasks(input_dir, out_dir, build)
        extra = {"candidates": 0, "submissions_read": 0, "submissions_kept": 0}
        if build.profile == "dialogpt":  # month by month, parents looked up in the whole month
            files = _run_dialogpt(spark.sparkContext, tmp, out_dir, build, tasks, stats, extra)
        else:
            files = _run_default(spark.sparkContext, tasks, stats, extra)
        if files == 0:  # keep the schema discoverable for readers of an empty output
            parquet.write_empty(fsutil.join(out_dir, "part-empty.parquet"), INSTANCES_TABLE)
        stats.extra = {
            **extra,
            "config": asdict(build),
            "tasks": len(tasks),
            "buckets": len({t.bucket for t in tasks}),
            "extract_reasons": list(EXTRACT_REASONS),
            "target_reasons": list(TARGET_REASONS),
            "spark_start_seconds": spark_start,
            "inactive_blocklists": inactive,
        }
    return stats


def _run_default(sc, tasks: list[BucketShard], stats: StageStats, extra: dict) -> int:
    """The default profile's tasks; returns the files written."""
    if not tasks:
        return 0
    files = 0
    for r in sc.parallelize(tasks, len(tasks)).map(build_task).collect():
        stats.add(StageStats.from_dict(r["stats"]))
        for k, v in r["extra"].items():
            extra[k] += v
        files += r["file"] is not None
    return files


def _run_dialogpt(sc, tmp, out_dir, build: BuildConfig, tasks: list[BucketShard], stats, extra) -> int:
    """The dialogpt profile over the extract output's buckets (``dialogpt.run_buckets``); returns the
    files written."""
    from dialogsmith.instances import dialogpt

    jobs, n_shards = {}, {}
    for t in tasks:
        n_shards[t.bucket] = t.n_shards
        jobs[t.bucket] = {
            "bucket": t.bucket,
            "comments": [("parquet", f, "comments") for f in t.comments],
            "submissions": [("parquet", f, "submissions") for f in t.submissions],
            "out": out_dir,
        }
    work = fsutil.join(tmp, "_work")
    res = dialogpt.run_buckets(sc, [jobs[b] for b in sorted(jobs)], build, work, None, n_shards)
    files = len(res.files)
    if res.settled_instances.num_rows:  # targets the driver settled (walks across buckets, leaves)
        uri = fsutil.join(out_dir, "part-crossing.parquet")
        parquet.write(uri, res.settled_instances, INSTANCES_TABLE, row_group_size=ROW_GROUP)
        files += 1
    fsutil.remove(work)
    stats.add(res.instances)
    stats.rows_in = res.comments
    for k, v in res.extra.items():
        extra[k] = v if isinstance(v, dict) else extra.get(k, 0) + v
    return files


def summary(stats: StageStats, cfg: InstancesConfig | None = None) -> str:
    drops = ", ".join(f"{reason} {n}" for reason, n in sorted(stats.dropped.items(), key=lambda kv: -kv[1]))
    return (
        f"instances: {stats.rows_in} comments read, {stats.extra.get('candidates', 0)} candidate targets, "
        f"{stats.rows_out} instances built ({stats.seconds:.1f} s)" + (f"; dropped: {drops}" if drops else "")
    )


STAGE = Stage(
    NAME,
    InstancesConfig,
    run,
    summary,
    "Build multi-turn dialogue instances from the extract output (every path up a thread, ending in a "
    "target comment).",
    prog="dialogsmith instances",
)


def build_parser() -> stage.ConfigParser:
    return STAGE.parser()


def main(argv: list[str] | None = None) -> int:
    return STAGE.main(argv)
