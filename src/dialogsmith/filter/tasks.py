"""The filter's Spark tasks: plan them over the input's row groups, read one, judge it.

Spark schedules Python tasks; each task reads a slice of the instance Parquet files with pyarrow,
judges it with the profile's rules (vectorized and exact on every row), writes its own output files
(write.py) and returns a small stats dict to the driver. Nothing per instance goes through Spark.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dialogsmith import fsutil, outputs
from dialogsmith.filter import engine
from dialogsmith.filter.profiles import Profile, load_lists
from dialogsmith.filter.rules import DUPLICATE_PAIR
from dialogsmith.formats.parquet import VERSION_KEY
from dialogsmith.formats.schemas import INSTANCES, INSTANCES_TABLE
from dialogsmith.stage import StageError


@dataclass
class Task:
    index: int
    parts: list[tuple[str, int]]  # (instance file, row group)
    rows: int
    losers: np.ndarray | None = None  # corpus pass: rows of the task that lose their duplicate group


@dataclass(frozen=True)
class TaskOptions:
    """What every task writes, and where."""

    out: str  # the stage's OUT.tmp-* directory
    fractions: tuple[float, float, float]
    salt: str
    parquet: bool  # the split Parquet
    tsv: bool  # TSV per month
    split_tsv: bool  # 2-column TSV per split
    jsonl: bool
    refs: bool
    partitions: int  # hash partitions of the corpus pass: one reduce task each


# --- input --------------------------------------------------------------------------------------------


def require_instances(input_dir: str) -> None:
    """An instances stage output must be complete; a plain directory of instance Parquet files (a user's
    own data, no stage files in it) is read as it is."""
    if fsutil.exists(input_dir) and not outputs.looks_like_stage_output(input_dir, ["instances"]):
        return
    outputs.require_input(input_dir, "instances")


def instance_files(input_dir: str) -> list[str]:
    sub = fsutil.join(input_dir, "instances")
    base = sub if fsutil.exists(sub) else input_dir
    if not fsutil.exists(base):
        raise StageError(f"--input {input_dir}: no such directory")
    files = fsutil.list_files(base, ".parquet")
    if not files:
        raise StageError(
            f"--input {input_dir}: no instance Parquet files under {base} (run `make instances` first)"
        )
    return files


def _check_instances(path: str, schema: pa.Schema) -> None:
    """A stage's instances table (stamped with its name and version) must be this version; a user's own
    file (no stamp) must have the columns."""
    if VERSION_KEY in (schema.metadata or {}):
        INSTANCES_TABLE.check(schema, path)
    missing = [n for n in INSTANCES.names if n not in schema.names]
    if missing:
        raise StageError(f"{path}: not an instances table (missing columns {missing})")


def plan_tasks(files: list[str], rows_per_task: int, parallelism: int = 1) -> list[Task]:
    """Group row groups of the input files into tasks of at most about rows_per_task instances.

    The number of tasks is rounded up to a multiple of ``parallelism`` (the cores) and the rows spread
    evenly over them, so that no core waits for another's last task (4 tasks of 206K, 206K, 206K and
    19K rows on 2 cores took 2 rounds of 206K; 4 of 160K take 2 rounds of 160K)."""
    groups = []
    for path in files:
        fs, p = fsutil.resolve(path)
        meta = pq.ParquetFile(p, filesystem=fs).metadata
        _check_instances(path, meta.schema.to_arrow_schema())
        groups += [(path, rg, meta.row_group(rg).num_rows) for rg in range(meta.num_row_groups)]
    total = sum(g[2] for g in groups)
    n_tasks = max(1, -(-total // max(1, rows_per_task)))
    if n_tasks > 1 and parallelism > 1:
        n_tasks = -(-n_tasks // parallelism) * parallelism
    target = total / n_tasks
    tasks, parts, rows, done = [], [], 0, 0
    for path, rg, num in groups:
        parts.append((path, rg))
        rows += num
        done += num
        if len(tasks) < n_tasks - 1 and done >= target * (len(tasks) + 1) - num / 2:  # nearest the share
            tasks.append(Task(len(tasks), parts, rows))
            parts, rows = [], 0
    if parts:
        tasks.append(Task(len(tasks), parts, rows))
    return tasks


def read_task(task: Task, columns: list[str] | None = None) -> pa.Table:
    """The task's row groups (each file opened once), cast to the INSTANCES schema (or ``columns`` of it)."""
    columns = columns or INSTANCES.names
    by_file: dict[str, list[int]] = {}
    for path, rg in task.parts:
        by_file.setdefault(path, []).append(rg)
    tables = []
    for path, groups in by_file.items():
        fs, p = fsutil.resolve(path)
        # One thread: tasks already run one per core, and Arrow's decoding threads doubled the CPU time
        # of a read for ~15% less wall (measured on 160K instances: 1.61 vs 0.79 CPU us/row).
        pf = pq.ParquetFile(p, filesystem=fs)
        tables.append(pf.read_row_groups(groups, columns=columns, use_threads=False))
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    schema = pa.schema([INSTANCES.field(c) for c in columns])
    return table.cast(schema) if not table.schema.equals(schema) else table


# --- judging ------------------------------------------------------------------------------------------


class Clock:
    """Seconds per phase of one task (wall and CPU), returned to the driver for stats.json."""

    def __init__(self):
        self.phases: dict[str, float] = {}
        self.phases_cpu: dict[str, float] = {}
        self._t = time.perf_counter()
        self._c = self._cpu0 = time.process_time()

    def lap(self, name: str) -> None:
        now, cpu = time.perf_counter(), time.process_time()
        self.phases[name] = self.phases.get(name, 0.0) + now - self._t
        self.phases_cpu[name] = self.phases_cpu.get(name, 0.0) + cpu - self._c
        self._t, self._c = now, cpu

    def report(self) -> dict:
        return {"phases": self.phases, "phases_cpu": self.phases_cpu, "cpu": time.process_time() - self._cpu0}


# What the rules and the corpus pass read (pass 1 of a corpus job reads only these: ~25% less to decode).
JUDGED_COLUMNS = [
    "instance_id",
    "subreddit",
    "target_created_utc",
    "turn_authors",
    "turns_raw",
    "turns",
    "turn_weights",
    "weights_in_text",
]


def prepare_table(table: pa.Table, profile: Profile):
    """(table, malformed mask, well-formed rows, their rule batch, the turns the rules judged)."""
    table = table.combine_chunks()  # once: the rules read whole columns
    bad = engine.malformed_mask(table)
    good = table.filter(pa.array(~bad)) if bad.any() else table
    batch, turns_out = engine.make_batch(good, profile.params.unescape_html)
    return table, bad, good, batch, turns_out


def drop_counts(codes: np.ndarray, names: list[str], bad: np.ndarray) -> Counter:
    """Dropped instances per reason: ``codes`` index ``names`` (-1 = kept), ``bad`` = malformed rows."""
    dropped = Counter({engine.MALFORMED: int(bad.sum())}) if bad.any() else Counter()
    for k, n in zip(*np.unique(codes[codes >= 0], return_counts=True), strict=True):
        dropped[names[k]] += int(n)
    return dropped


@dataclass
class Judged:
    """A table of instances judged in memory: what ``judge_instances`` returns."""

    rows_in: int
    kept: pa.Table  # the kept rows, as read
    src: pa.Array  # their DialoGPT TSV src and tgt (weight prefixes included)
    tgt: pa.Array
    dropped: dict[str, int]  # removed instances per reason


def judge_instances(instances: pa.Table, profile: Profile) -> Judged:
    """The profile's per-instance rules on a table of instances, without Spark (corpus rules are the
    job's: a profile with bland_response or duplicate_pair needs the whole input, run the stage)."""
    if profile.bland or profile.dedup:
        raise ValueError(
            f"profile {profile.name!r} has corpus rules: run the filter stage on the whole input"
        )
    params = load_lists(profile.params)
    rules = profile.rules()
    table, bad, good, batch, _ = prepare_table(instances, profile)
    codes = engine.judge(batch, rules, params)
    dropped = drop_counts(codes, [r.name for r in rules] + [DUPLICATE_PAIR], bad)
    keep = pa.array(np.flatnonzero(codes == -1))
    return Judged(table.num_rows, good.take(keep), batch.src.take(keep), batch.tgt.take(keep), dict(dropped))


def judge_task(task: Task, profile: Profile, clock: Clock, skip: tuple[str, ...] = (), columns=None):
    """Read and judge a task: (table, bad, good, batch, turns_out, codes indexing profile.rules())."""
    params = load_lists(profile.params)
    table = read_task(task, columns)
    clock.lap("read")
    table, bad, good, batch, turns_out = prepare_table(table, profile)
    clock.lap("prepare")
    rules = profile.rules()
    used = [k for k, r in enumerate(rules) if r.name not in skip]
    codes = engine.judge(batch, [rules[k] for k in used], params)
    codes = np.where(codes >= 0, np.array(used, dtype=np.int16)[np.maximum(codes, 0)], -1).astype(np.int16)
    clock.lap("rules")
    return table, bad, good, batch, turns_out, codes
