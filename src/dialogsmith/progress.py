"""A progress line for a Spark stage, drawn on the driver from Spark's status tracker.

    with progress.watch(spark, "extract", quiet=args.quiet):
        ...  # every Spark job this thread starts inside the block is counted

On a terminal (``stream.isatty()``, default stream: stderr) a live line (tqdm) shows tasks done/total,
percentage, elapsed, ETA, rate, jobs and running tasks; when the block ends it is cleared and replaced
by the summary line. Elsewhere (logs, CI) nothing is written while the block runs and exactly one
summary line when it ends:

    <stage>: <done>/<total> tasks in <jobs> job[s], <seconds, 1 decimal> s
        [, <amount> <unit>][, <n> failed task attempt[s]][, stopped by <ExceptionName>]

(one line; the optional parts in this order), e.g. ``extract: 12/12 tasks in 3 jobs, 41.2 s``.
With ``quiet=True`` (``--quiet``) or ``DIALOGSMITH_PROGRESS=0`` (also ``false``/``no``/``off``) nothing
is written, no thread starts and Spark is not touched.

Counting: the block's jobs are found by their job group (the thread's own group if one is already set,
else a new one, removed again at the end). A job group belongs to a thread: jobs that other threads start
are not counted (a ``pyspark.InheritableThread`` started inside the block inherits the group). Each
Spark stage counts once, however many jobs list it; stages that a finished job skipped (shuffle output
reused) are left out, so while a job runs its total can still shrink, and it grows as jobs are
submitted: the ETA covers the jobs known so far. Spark's status tracker
reports tasks, not rows or bytes: pass ``units`` (e.g. ``lambda: acc.value`` of an accumulator that the
tasks add to) and ``unit`` to show an amount too (it advances as tasks finish).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator

_JOB_GROUP = "spark.jobGroup.id"
_OFF = {"0", "false", "no", "off"}
_TERMINAL = {"SUCCEEDED", "FAILED", "UNKNOWN"}
# Spark's listener bus can report a job's last tasks a few ms after the action returned: wait for that,
# up to this long (shorter after an error: a job may still be running, being cancelled).
_SETTLE_S, _SETTLE_AFTER_ERROR_S = 2.0, 0.5
_group_ids = itertools.count()


def add_progress_flag(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    return parser


def progress_disabled(quiet: bool = False) -> bool:
    return quiet or os.environ.get("DIALOGSMITH_PROGRESS", "").strip().lower() in _OFF


@contextlib.contextmanager
def watch(
    spark,
    stage: str,
    *,
    quiet: bool = False,
    stream=None,
    interval: float = 0.5,
    units: Callable[[], float] | None = None,
    unit: str = "rows",
) -> Iterator[None]:
    """Show the progress of the Spark jobs run inside the block (see the module docstring)."""
    if progress_disabled(quiet):
        yield
        return
    watcher = _Watcher(spark, stage, stream or sys.stderr, interval, units, unit)
    error: BaseException | None = None
    try:
        yield
    except BaseException as e:
        error = e
        raise
    finally:
        watcher.finish(error)


class _Watcher:
    def __init__(self, spark, stage, stream, interval, units, unit):
        self.stage, self.stream, self.interval, self.units, self.unit = stage, stream, interval, units, unit
        self.live = _isatty(stream)
        self.started = time.perf_counter()
        self.job_status: dict[int, str] = {}
        self.job_stages: dict[int, list[int]] = {}
        self.stages: dict[int, tuple[int, int, int, int]] = {}  # id -> tasks, completed, active, failed
        self.stop = threading.Event()
        self.bar = None
        self.owned_group_on = None  # the SparkContext whose job group we set (and clear at the end)
        self.tracker = None
        try:
            sc = spark.sparkContext
            self.tracker = sc.statusTracker()
            self.group = sc.getLocalProperty(_JOB_GROUP)
            self.earlier_jobs = set(self.tracker.getJobIdsForGroup(self.group)) if self.group else set()
            if not self.group:
                self.group = f"dialogsmith-{stage}-{os.getpid()}-{next(_group_ids)}"
                sc.setLocalProperty(_JOB_GROUP, self.group)
                self.owned_group_on = sc
        except Exception:  # no usable SparkContext (stopped, Spark Connect): only the elapsed time
            self.tracker = None
        self.thread = threading.Thread(target=self._run, name="dialogsmith-progress", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(self.interval):
            try:
                self.poll()
                if self.live:
                    self.render()
            except Exception:  # never into the job: a closed stream, a tracker gone after spark.stop()
                pass

    def poll(self) -> None:
        if self.tracker is None:
            return
        try:
            for job_id in self.tracker.getJobIdsForGroup(self.group):
                if job_id in self.earlier_jobs or self.job_status.get(job_id) in _TERMINAL:
                    continue  # a finished job's counts are final: not asked again
                info = self.tracker.getJobInfo(job_id)
                if info is None:
                    continue
                # status first: when it is final, the stage counts read after it are final too
                self.job_status[job_id], self.job_stages[job_id] = info.status, list(info.stageIds)
                for stage_id in info.stageIds:
                    s = self.tracker.getStageInfo(stage_id)
                    if s is not None:
                        self.stages[stage_id] = (
                            s.numTasks,
                            s.numCompletedTasks,
                            s.numActiveTasks,
                            s.numFailedTasks,
                        )
        except Exception:  # keep the last counts
            pass

    def tally(self) -> tuple[int, int, int, int, int]:
        """jobs, tasks done, tasks total, tasks running, failed task attempts."""
        counted = {}
        for job_id, status in self.job_status.items():
            for stage_id in self.job_stages[job_id]:
                s = self.stages.get(stage_id)
                if s is None or (status == "SUCCEEDED" and s[1] == 0 and s[2] == 0):
                    continue  # unknown, or skipped by a finished job
                counted[stage_id] = s
        sums = [sum(s[i] for s in counted.values()) for i in range(4)]
        return len(self.job_status), sums[1], sums[0], sums[2], sums[3]

    def amount(self) -> str | None:
        if self.units is None:
            return None
        try:
            return _amount(self.units(), self.unit)
        except Exception:
            return None

    def render(self) -> None:
        jobs, done, total, running, _ = self.tally()
        if self.bar is None:
            if total == 0:
                return  # nothing submitted yet: a block without Spark work draws nothing
            from tqdm import tqdm

            self.bar = tqdm(
                desc=self.stage,
                total=total,
                unit="task",
                file=self.stream,
                leave=False,
                dynamic_ncols=True,
                smoothing=0,
            )
            self.bar.start_t -= time.perf_counter() - self.started  # elapsed and rate: since the block began
        self.bar.total = total
        self.bar.n = done  # a retried stage attempt can lower it
        extra = [_count(jobs, "job"), f"{running} running"]
        self.bar.set_postfix_str(", ".join(extra + [a for a in [self.amount()] if a]), refresh=False)
        self.bar.refresh()

    def finish(self, error: BaseException | None) -> None:
        elapsed = time.perf_counter() - self.started
        self.stop.set()
        self.thread.join(timeout=max(5.0, 4 * self.interval))
        if not self.thread.is_alive():  # else it hangs in a tracker call: so would we; use the last counts
            self.poll()
            deadline = time.perf_counter() + (_SETTLE_S if error is None else _SETTLE_AFTER_ERROR_S)
            while (
                any(s not in _TERMINAL for s in self.job_status.values()) and time.perf_counter() < deadline
            ):
                time.sleep(0.02)
                self.poll()
        if self.owned_group_on is not None:
            with contextlib.suppress(Exception):
                self.owned_group_on.setLocalProperty(_JOB_GROUP, None)  # None removes it
        with contextlib.suppress(Exception):
            line = self.summary(elapsed, error)
            if self.bar is not None:
                self.bar.close()  # leave=False: clears the live line
            if self.live:
                from tqdm import tqdm

                tqdm.write(line, file=self.stream)  # above other bars on the stream (the demo's)
            else:
                self.stream.write(line + "\n")
            self.stream.flush()

    def summary(self, elapsed: float, error: BaseException | None) -> str:
        jobs, done, total, _, failed = self.tally()
        parts = [f"{self.stage}: {done}/{total} tasks in {_count(jobs, 'job')}, {elapsed:.1f} s"]
        if (amount := self.amount()) is not None:
            parts.append(amount)
        if failed:
            parts.append(_count(failed, "failed task attempt"))
        if error is not None:
            parts.append(f"stopped by {type(error).__name__}")
        return ", ".join(parts)


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}{'' if n == 1 else 's'}"


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except Exception:
        return False


def _amount(n: float, unit: str) -> str:
    """1234567 rows -> '1.2M rows'; bytes (unit 'B') in binary multiples: '1.5 GiB'."""
    binary = unit == "B"
    step, prefixes = (1024, ["", "Ki", "Mi", "Gi", "Ti"]) if binary else (1000, ["", "k", "M", "G", "T"])
    i = 0
    while abs(n) >= step and i < len(prefixes) - 1:
        n, i = n / step, i + 1
    number = f"{n:.0f}" if i == 0 else f"{n:.1f}"
    return f"{number} {prefixes[i]}{unit}" if binary else f"{number}{prefixes[i]} {unit}"
