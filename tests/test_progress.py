"""dialogsmith.progress: the driver-side progress line, on real Spark jobs in the shared local session."""

from __future__ import annotations

import argparse
import io
import operator
import re
import threading
import time

import pytest

from dialogsmith import progress

SUMMARY = re.compile(
    r"(?P<stage>\S+): (?P<done>\d+)/(?P<total>\d+) tasks in (?P<jobs>\d+) jobs?, (?P<s>\d+\.\d) s"
)


@pytest.fixture(autouse=True)
def progress_on(monkeypatch):
    """These tests want the line even where the environment (a CI job) switches it off."""
    monkeypatch.delenv("DIALOGSMITH_PROGRESS", raising=False)


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def sleepy(seconds: float = 0.4):
    """A task function that sleeps (a closure: Spark's workers cannot import this test module)."""

    def sleep_then(x):
        time.sleep(seconds)
        return x

    return sleep_then


def _progress_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "dialogsmith-progress"]


def _summary(out: str) -> re.Match:
    m = SUMMARY.match(out.splitlines()[-1])
    assert m, out
    return m


def test_one_summary_line_when_not_a_tty(spark):
    sc = spark.sparkContext
    out = io.StringIO()
    with progress.watch(spark, "probe", stream=out, interval=0.05):
        assert sc.parallelize(range(8), 4).map(lambda x: x).collect() == list(range(8))
        assert sc.parallelize(range(4), 4).map(sleepy()).collect() == list(range(4))
    text = out.getvalue()
    assert "\r" not in text and text.count("\n") == 1 and text.endswith("\n"), repr(text)
    m = _summary(text)
    assert m["stage"] == "probe" and m["jobs"] == "2"
    assert m["done"] == m["total"] == "8"  # 4 + 4 partitions
    assert float(m["s"]) >= 0.4
    assert text == f"probe: 8/8 tasks in 2 jobs, {m['s']} s\n"
    assert sc.getLocalProperty("spark.jobGroup.id") is None  # our job group is removed again
    assert not _progress_threads()


def test_a_stage_skipped_by_a_later_job_counts_once(spark):
    pairs = spark.sparkContext.parallelize(range(8), 4).map(lambda x: (x % 2, x)).reduceByKey(operator.add, 2)
    out = io.StringIO()
    with progress.watch(spark, "shuffle", stream=out):
        first = sorted(pairs.collect())
        assert sorted(pairs.collect()) == first  # this job reuses the shuffle: its map stage is skipped
    # job 1: 4 map + 2 reduce tasks; job 2: 2 reduce tasks
    assert out.getvalue().startswith("shuffle: 8/8 tasks in 2 jobs, ")


def test_dataframe_jobs_are_counted(spark):
    out = io.StringIO()
    with progress.watch(spark, "sql", stream=out):
        assert spark.range(1000, numPartitions=4).selectExpr("sum(id) AS s").collect()[0].s == 499500
    m = _summary(out.getvalue())
    assert int(m["jobs"]) >= 1 and int(m["done"]) == int(m["total"]) >= 4


def test_live_line_on_a_tty_then_the_summary(spark):
    out = FakeTTY()
    with progress.watch(spark, "probe", stream=out, interval=0.05):
        spark.sparkContext.parallelize(range(4), 4).map(sleepy()).collect()
    text = out.getvalue()
    frames = text.split("\r")
    assert any(re.match(r"probe: .*\d/4 .*1 job", f) for f in frames), repr(text)  # live updates
    assert frames[-2].strip() == ""  # the live line was cleared...
    assert frames[-1] == text.splitlines()[-1] + "\n"  # ...and the summary written after it
    m = _summary(frames[-1])
    assert m["done"] == m["total"] == "4" and m["jobs"] == "1"


@pytest.mark.parametrize("how", ["quiet", "env"])
def test_quiet_writes_nothing_and_starts_nothing(spark, monkeypatch, how):
    if how == "env":
        monkeypatch.setenv("DIALOGSMITH_PROGRESS", "0")
    for out in (io.StringIO(), FakeTTY()):
        with progress.watch(spark, "probe", quiet=how == "quiet", stream=out, interval=0.01):
            assert not _progress_threads()
            assert spark.sparkContext.getLocalProperty("spark.jobGroup.id") is None
            spark.sparkContext.parallelize(range(4), 2).map(sleepy(0.1)).collect()
        assert out.getvalue() == ""


def test_an_exception_propagates_and_the_thread_stops(spark):
    out = io.StringIO()
    with pytest.raises(ValueError, match="boom"):
        with progress.watch(spark, "probe", stream=out, interval=0.01):
            spark.sparkContext.parallelize(range(4), 2).collect()
            assert len(_progress_threads()) == 1
            raise ValueError("boom")
    assert not _progress_threads()
    assert spark.sparkContext.getLocalProperty("spark.jobGroup.id") is None
    assert re.fullmatch(r"probe: 2/2 tasks in 1 job, \d+\.\d s, stopped by ValueError\n", out.getvalue())


def test_a_failing_job_reports_its_failed_tasks(spark):
    out = io.StringIO()
    with pytest.raises(Exception, match="ZeroDivisionError"):
        with progress.watch(spark, "probe", stream=out):
            spark.sparkContext.parallelize(range(2), 1).map(lambda x: 1 / 0).collect()
    # local mode does not retry a task: 1 attempt, failed
    assert re.fullmatch(
        r"probe: 0/1 tasks in 1 job, \d+\.\d s, 1 failed task attempt, stopped by \w+\n", out.getvalue()
    )


def test_an_existing_job_group_is_used_and_kept(spark):
    sc = spark.sparkContext
    sc.setJobGroup("caller-group", "the caller's")
    try:
        sc.parallelize(range(3), 3).collect()  # before the block: not counted
        out = io.StringIO()
        with progress.watch(spark, "probe", stream=out):
            sc.parallelize(range(2), 2).collect()
        assert out.getvalue().startswith("probe: 2/2 tasks in 1 job, ")
        assert sc.getLocalProperty("spark.jobGroup.id") == "caller-group"
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
        sc.setLocalProperty("spark.job.description", None)


def test_units_from_an_accumulator(spark):
    sc = spark.sparkContext
    rows = sc.accumulator(0)
    out = io.StringIO()
    with progress.watch(spark, "count", stream=out, units=lambda: rows.value):
        sc.parallelize(range(2500), 4).foreach(lambda _: rows.add(1))
    assert re.fullmatch(r"count: 4/4 tasks in 1 job, \d+\.\d s, 2.5k rows\n", out.getvalue())
    assert progress._amount(3 * 2**30 // 2, "B") == "1.5 GiB"


def test_without_a_spark_context_only_the_time():
    out = io.StringIO()
    with progress.watch(object(), "nospark", stream=out):  # e.g. a Spark Connect session
        pass
    assert re.fullmatch(r"nospark: 0/0 tasks in 0 jobs, \d+\.\d s\n", out.getvalue())


def test_quiet_flag():
    parser = progress.add_progress_flag(argparse.ArgumentParser())
    assert parser.parse_args(["--quiet"]).quiet is True
    assert parser.parse_args([]).quiet is False
    assert "no progress line" in parser.format_help()
