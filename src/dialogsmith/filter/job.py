"""The filter stage: instances/ -> kept (train/valid/test) + dropped + stats + funnel + dataset card.

    dialogsmith filter --input <instances output> --output OUT [--profile default|paper|dialogpt]

Plans Spark tasks over the instance files (tasks.py), runs one pass or the three passes of a corpus job
(corpus.py), each task writing its share of the outputs (write.py, exports.py); the driver then adds the
empty split files, assembles the exports, and writes stats.json, funnel.json and README.md (report.py).
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter

import pyarrow as pa

from dialogsmith import fsutil, outputs, stage
from dialogsmith.filter import exports, report
from dialogsmith.filter.config import SPLITS, FilterConfig
from dialogsmith.filter.corpus import Passes, run_passes
from dialogsmith.filter.exports import concat_lines, tsv_lines  # noqa: F401  (see below)
from dialogsmith.filter.profiles import FilterParams, Profile, load_lists
from dialogsmith.filter.report import format_funnel, funnel_report
from dialogsmith.filter.tasks import (  # noqa: F401  (see below)
    TaskOptions,
    drop_counts,
    instance_files,
    plan_tasks,
    prepare_table,
    require_instances,
)
from dialogsmith.formats import parquet
from dialogsmith.formats.schemas import DROPPED_TABLE, FILTERED_TABLE, INSTANCES_TABLE
from dialogsmith.formats.stats import StageStats

# concat_lines, tsv_lines, drop_counts and prepare_table stay importable from here for the callers written
# before this module was split (recipes/dialogpt_tsv.py, instances/dialogpt.py); dialogsmith.filter has
# the public names (judge_instances, tsv_lines, concat_lines).

NAME = "filter"


def params_from_args(cfg: FilterConfig) -> FilterParams:
    """The rules' parameters of a config (``build_parser().parse_args(argv)``)."""
    return FilterParams.of(cfg)


def _input_config(input_dir: str) -> dict:
    path = fsutil.join(input_dir, "stats.json")
    if not fsutil.exists(path):
        return {}
    try:
        return (fsutil.read_json(path).get("extra") or {}).get("config") or {}
    except Exception:  # a foreign or damaged stats.json only loses the defaults it would give
        return {}


def _warm_worker() -> int:
    import dialogsmith.filter.rules  # noqa: F401  (imports numpy, pyarrow, the C module)

    return os.getpid()


def _start(cfg: FilterConfig, spark) -> tuple[object, float]:
    """The session, and one Python worker per core started (interpreter, numpy, pyarrow, the rules: ~1 s
    each) before the passes, so that their times are the filter's own; reported with the Spark start-up."""
    t0 = time.perf_counter()
    spark = stage.spark_for(cfg, NAME, spark)
    sc = spark.sparkContext
    par = sc.defaultParallelism
    sc.parallelize(range(par), par).map(lambda _: _warm_worker()).collect()
    return spark, time.perf_counter() - t0


def _sum_phases(reports: list[dict], key: str = "phases") -> dict[str, float]:
    total: dict[str, float] = {}
    for r in reports:
        for k, v in r[key].items():
            total[k] = total.get(k, 0.0) + v
    return {k: round(v, 3) for k, v in total.items()}


def _fold(stats: StageStats, results: list[dict]) -> tuple[Counter, Counter]:
    """The tasks' counts into ``stats``; (kept per split, kept per month)."""
    splits, months = Counter(), Counter()
    for r in results:
        stats.add(StageStats(stage=NAME, rows_in=r["rows_in"], rows_out=r["rows_out"], dropped=r["dropped"]))
        splits.update(r["splits"])
        months.update(r["months"])
    stats.dropped = {k: v for k, v in stats.dropped.items() if v}
    return splits, months


def _empty_tables(out: str, cfg: FilterConfig) -> None:
    """Consumers read OUT/<split>/*.parquet and OUT/dropped/: an empty one still gets one (empty) file."""
    if cfg.parquet:
        for s in SPLITS:
            if not fsutil.list_files(fsutil.join(out, s), ".parquet"):
                parquet.write_empty(fsutil.join(out, s, "part-empty.parquet"), FILTERED_TABLE)
    if not fsutil.list_files(fsutil.join(out, "dropped"), ".parquet"):
        parquet.write_empty(fsutil.join(out, "dropped", "part-empty.parquet"), DROPPED_TABLE)


def _extra(cfg, profile: Profile, passes: Passes, splits, months, in_cfg, n_tasks, spark_start) -> dict:
    extra = {
        "profile": profile.name,
        "rules": profile.enabled(),
        "splits": {s: splits.get(s, 0) for s in SPLITS},
        "months": dict(sorted(months.items())),
        "config": {**profile.params.options(), "split": list(cfg.fractions), "split_salt": cfg.split_salt},
        "input_config": in_cfg,
        "tasks": n_tasks,
        # where the time went: Spark start-up and each pass on the driver's clock; per task phase,
        # seconds summed over the tasks (wall inside the task) and the tasks' CPU seconds
        "timing": {
            "spark_start_seconds": round(spark_start, 3),
            "pass_seconds": {k: round(v, 3) for k, v in passes.seconds.items()},
            "task_phase_seconds": _sum_phases(passes.reports),
            "task_phase_cpu_seconds": _sum_phases(passes.reports, "phases_cpu"),
            "task_cpu_seconds": round(sum(r["cpu"] for r in passes.reports), 3),
        },
    }
    if passes.threshold is not None:
        extra["bland_threshold"] = passes.threshold
        extra["frequent_trigrams"] = passes.n_frequent
    return extra


def run(cfg: FilterConfig, input: pa.Table | None = None, spark=None) -> StageStats:
    """Run the filter stage. ``input``: an optional pyarrow Table of instances (tests), else --input."""
    cfg.validate()
    in_cfg = _input_config(cfg.input) if input is None else {}
    profile = cfg.profile_of(in_cfg)
    lists = load_lists(
        FilterParams(**{**profile.params.options(), "disabled": ()})
    )  # fail early on a bad list
    inactive = inactive_blocklist_rules(profile, lists, in_cfg)
    if inactive:
        print(
            f"warning: filter: profile {profile.name!r}: rule(s) {', '.join(inactive)} inactive: no "
            "--bl-words/--bl-subreddits list (or it has no entries); pass one, or --disable them",
            file=sys.stderr,
        )
    inputs = [cfg.input] if input is None else []
    if input is None:
        require_instances(cfg.input)
    outputs.check_target(cfg.output, NAME, inputs, cfg.force)
    spark, spark_start = _start(cfg, spark)
    sc = spark.sparkContext
    with stage.committed(cfg, NAME, inputs) as (out, stats):
        if input is not None:
            parquet.write(fsutil.join(out, "_input", "part-00000.parquet"), input, INSTANCES_TABLE)
            files = parquet.files_of(fsutil.join(out, "_input"))
        else:
            files = instance_files(cfg.input)
        tasks = plan_tasks(files, cfg.rows_per_task, sc.defaultParallelism)
        opts = TaskOptions(
            out=out,
            fractions=cfg.fractions,
            salt=cfg.split_salt,
            parquet=cfg.parquet,
            tsv=cfg.export_tsv,
            split_tsv=cfg.export_tsv and cfg.parquet,
            jsonl=cfg.jsonl,
            refs=cfg.refs,
            partitions=max(1, min(len(tasks), 64)),
        )
        passes = run_passes(sc, tasks, profile, opts)
        splits, months = _fold(stats, passes.results)
        _empty_tables(out, cfg)
        t0 = time.perf_counter()
        n_refs = exports.assemble(out, opts, sorted(months), cfg.refs_min)
        fsutil.remove(fsutil.join(out, "_input"))
        passes.seconds["driver_outputs"] = time.perf_counter() - t0
        stats.extra = _extra(cfg, profile, passes, splits, months, in_cfg, len(tasks), spark_start)
        stats.extra["inactive_rules"] = inactive
        if n_refs is not None:
            stats.extra["refs_contexts"] = n_refs
        stats.check()
        funnel = funnel_report(profile, stats)
        fsutil.write_json(fsutil.join(out, "funnel.json"), funnel)
        fsutil.write_bytes(
            fsutil.join(out, "README.md"), report.dataset_card(cfg, profile, stats, funnel).encode("utf-8")
        )
    if not cfg.quiet:
        print(format_funnel(funnel), file=sys.stderr)
    return stats


def inactive_blocklist_rules(profile: Profile, lists: FilterParams, input_config: dict) -> list[str]:
    """The profile's enabled blocklist rules that can drop nothing: no list, or a list without entries.
    Not the dialogpt profile's word rule when the instances were built with DialoGPT's key files (they
    carry the release's own filtering), nor the subreddit rule when the instances stage already skipped
    the listed subreddits."""
    enabled = set(profile.enabled())
    inactive = []
    word_rules = [r for r in ("blocklisted_word", "blocklisted_context") if r in enabled]
    released_keys = profile.name == "dialogpt" and input_config.get("keys")
    if word_rules and not (lists.words is not None and len(lists.words)) and not released_keys:
        inactive += word_rules
    if "blocklisted_subreddit" in enabled and not lists.subreddits and not input_config.get("bl_subreddits"):
        inactive.append("blocklisted_subreddit")
    return inactive


def summary(stats: StageStats, cfg: FilterConfig) -> str:
    splits = stats.extra.get("splits", {})
    parts = ", ".join(f"{s} {splits.get(s, 0):,}" for s in SPLITS)
    return (
        f"filter: {stats.rows_in:,} instances in, {stats.rows_out:,} kept ({parts}), "
        f"{sum(stats.dropped.values()):,} dropped, profile {stats.extra.get('profile')} ({stats.seconds:.1f} s)"
    )


STAGE = stage.Stage(
    NAME,
    FilterConfig,
    run,
    summary,
    "Filter dialogue instances with a named-rule profile; write kept instances split into train/valid/test "
    "by a stable hash of link_id, dropped instances with their reason, stats.json, a funnel report "
    "(instances removed by each rule, in order) and a dataset card (README.md) that datasets.load_dataset "
    "reads.",
)


def build_parser() -> stage.ConfigParser:
    return STAGE.parser()


def main(argv: list[str] | None = None) -> int:
    return STAGE.main(argv)


if __name__ == "__main__":
    sys.exit(main())
