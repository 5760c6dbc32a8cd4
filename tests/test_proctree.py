"""benchmarks/proctree.py: the peak RSS of every process of a tree, seen from /proc."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # benchmarks/ is not a package

import proctree  # noqa: E402

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")

# The child touches 120 MB (b"x" * n writes every page) and holds it a while; the parent stays small.
CHILD = "import time; b = b'x' * (120 << 20); time.sleep(0.5)"
PARENT = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {CHILD!r}], check=True)"


def test_a_child_and_its_peak_are_seen():
    result = proctree.run_command([sys.executable, "-c", PARENT])
    assert result["returncode"] == 0 and not result["timed_out"]
    assert result["wall_s"] > 0.5 and result["samples"] >= 5
    procs = result["processes"]
    assert len(procs) == 2, procs
    child = next(p for p in procs if p["ppid"] in {q["pid"] for q in procs})
    parent = next(p for p in procs if p is not child)
    assert parent["cmd"].startswith(sys.executable) and "subprocess.run" in parent["cmd"]
    assert child["cmd"].endswith(CHILD)
    assert child["ppid"] == parent["pid"]
    assert 120 <= child["peak_rss_mb"] < 250, child
    assert parent["peak_rss_mb"] < 80, parent
    assert parent["name"] == "python (driver)" and child["name"] == "python"
    # both were sampled together while the child held its memory
    assert 0.95 * child["peak_rss_mb"] + 1 < result["tree_peak_rss_mb"]
    assert result["tree_peak_rss_mb"] <= child["peak_rss_mb"] + parent["peak_rss_mb"]
    table = proctree.format_result(result)
    assert "python (driver)" in table and "exit 0" in table


FORKER = (
    "import os, time\n"
    "b = b'x' * (150 << 20)\n"
    "pid = os.fork()\n"
    "if pid == 0:\n"
    "    time.sleep(0.3); os._exit(0)\n"
    "os.waitpid(pid, 0); time.sleep(0.2)\n"
)


def test_a_short_fork_is_named_and_not_counted_twice():
    """A fork shares its parent's pages: counting its RSS too would double the tree's peak."""
    result = proctree.run_command([sys.executable, "-c", FORKER])
    assert result["returncode"] == 0
    parent = next(p for p in result["processes"] if p["name"] == "python (driver)")
    fork = next(p for p in result["processes"] if p["name"] == f"python (fork of {parent['pid']})")
    assert fork["peak_rss_mb"] > 100, "its RSS is its parent's pages"
    assert parent["peak_rss_mb"] * 0.9 < result["tree_peak_rss_mb"] < parent["peak_rss_mb"] * 1.2


def test_exit_status_env_and_shell_command():
    cmd = "sleep 0.3; exit $CODE"
    result = proctree.run_command(cmd, env={"CODE": "3"})
    assert result["returncode"] == 3 and result["cmd"] == cmd
    names = {p["name"] for p in result["processes"]}
    assert "sleep" in names and names & {"sh", "bash", "dash"}, names


def test_timeout_ends_the_tree():
    result = proctree.run_command([sys.executable, "-c", "import time; time.sleep(30)"], timeout_s=0.5)
    assert result["timed_out"] and result["returncode"] is None and result["wall_s"] < 10


@pytest.mark.parametrize(
    ("args", "parent_args", "name"),
    [
        (
            ["/usr/bin/java", "-cp", "x", "org.apache.spark.deploy.SparkSubmit", "app.py"],
            ["python"],
            "java (Spark driver JVM)",
        ),
        (
            ["python3", "-m", "pyspark.daemon"],
            ["/usr/bin/java", "org.apache.spark.deploy.SparkSubmit"],
            "python (pyspark daemon)",
        ),
        (["python3", "-m", "pyspark.daemon"], ["python3", "-m", "pyspark.daemon"], "python (pyspark worker)"),
        (["python3", "-m", "pyspark.worker"], ["/usr/bin/java", "spark"], "python (pyspark worker)"),
        (["make", "dialogpt-tsv"], ["bash"], "make"),
    ],
)
def test_names_say_what_a_process_is(args, parent_args, name):
    parent = proctree.ProcessPeak(1, 0, Path(parent_args[0]).name[:15], parent_args, 0, 0.0, 0.0)
    proc = proctree.ProcessPeak(2, 1, Path(args[0]).name[:15], args, 0, 0.0, 0.0)
    assert proctree.classify(proc, {1: parent, 2: proc}) == name
