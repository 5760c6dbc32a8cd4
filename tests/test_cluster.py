"""A real Spark standalone cluster (master + one worker on localhost, from the pyspark installation).

The stages are submitted with `spark-submit --master spark://…` and the package shipped as the wheel,
and their outputs must equal the embedded `local[*]` run's. The cluster is always shut down, also on
failure, and no process may be left behind.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import textwrap
from pathlib import Path

import pytest

from dialogsmith import cluster as cl
from dialogsmith import fastjson

REPO = Path(__file__).resolve().parents[1]


def processes_mentioning(text: str) -> list[int]:
    """Processes whose command line or working directory mentions ``text`` (a cluster's work dir)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(f"/proc/{name}/cwd")
        except OSError:
            continue
        if text in cmdline or text in cwd:
            found.append(int(name))
    return found


@pytest.fixture(scope="module")
def wheel_zip(tmp_path_factory) -> Path:
    """The wheel `make dist` builds (built here into a temp dir), as the .zip that --py-files ships."""
    if importlib.util.find_spec("setuptools") is None:  # a venv without setuptools cannot build offline
        from dialogsmith.spark import package_zip

        return Path(package_zip())
    return cl.dist_package(tmp_path_factory.mktemp("dist"), build=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    work_dir = tmp_path_factory.mktemp("cluster")
    with cl.standalone_cluster(work_dir, cores=2, memory="2g") as running:
        yield running
    assert running.leftovers() == []
    assert processes_mentioning(str(work_dir)) == []


def test_worker_registered(cluster):
    state = cluster.state()
    assert state["status"] == "ALIVE"
    alive = [w for w in state["workers"] if w["state"] == "ALIVE"]
    assert len(alive) == 1 and alive[0]["cores"] == 2


def test_job_runs_on_executors_from_the_shipped_wheel(cluster, wheel_zip, tmp_path):
    job = tmp_path / "job.py"
    job.write_text(
        textwrap.dedent(
            """
            import json, sys
            from dialogsmith.spark import get_spark

            spark = get_spark("cluster-probe")
            sc = spark.sparkContext

            def where(rows):
                import os, dialogsmith
                yield (dialogsmith.__file__, os.getpid(), sum(rows))

            got = sc.parallelize(range(1000), 4).mapPartitions(where).collect()
            json.dump({"master": sc.master, "parts": got}, open(sys.argv[1], "w"))
            spark.stop()
            """
        )
    )
    out = tmp_path / "out.json"
    cl.spark_submit(
        job, [out], master=cluster.master_url, py_files=[wheel_zip], conf=cl.QUICK_JVM_CONF, timeout=240
    )
    result = json.loads(out.read_text())
    assert result["master"] == cluster.master_url
    assert sum(total for _, _, total in result["parts"]) == sum(range(1000))
    # Executors import the package from the shipped archive, not from the driver's source tree.
    assert {Path(f).parts[-3] for f, _, _ in result["parts"]} == {wheel_zip.name}
    # The application ran on the cluster (the master lists it as finished).
    assert any(app["name"] == "cluster-probe" for app in cluster.state()["completedapps"])


def test_failing_job_raises_with_its_traceback(cluster, wheel_zip, tmp_path):
    job = tmp_path / "fail.py"
    job.write_text("raise SystemExit('no input: /nonexistent/dumps')\n")
    with pytest.raises(cl.SubmitError) as err:
        cl.spark_submit(
            job, [], master=cluster.master_url, py_files=[wheel_zip], conf=cl.QUICK_JVM_CONF, timeout=120
        )
    assert err.value.returncode != 0
    assert "no input: /nonexistent/dumps" in err.value.output


def test_submit_command_ships_package_and_interpreter(wheel_zip):
    cmd = cl.submit_command("extract/ingest.py", ["--input", "a"], "spark://h:7077", [wheel_zip])
    assert cmd[0].endswith("bin/spark-submit")
    assert cmd[cmd.index("--master") + 1] == "spark://h:7077"
    assert cmd[cmd.index("--py-files") + 1] == str(wheel_zip)
    assert f"spark.pyspark.python={sys.executable}" in cmd
    assert cmd[-3:] == ["extract/ingest.py", "--input", "a"]


# --- the stages: spark-submit to the standalone cluster == the embedded local[*] run ---------------------


def _rows(path: Path, sort_key: str, drop: tuple[str, ...] = ()) -> list[dict]:
    """Every row of a Parquet dataset directory (hive partitions included), sorted; files may differ."""
    import pyarrow.dataset as ds

    table = ds.dataset(str(path), format="parquet", partitioning="hive").to_table()
    table = table.drop_columns([c for c in drop if c in table.column_names])
    return sorted(table.to_pylist(), key=lambda r: (str(r[sort_key]), repr(r)))


def _counts(stats_path: Path) -> dict:
    stats = json.loads(stats_path.read_text())
    return {k: stats[k] for k in ("rows_in", "rows_out", "dropped", "quarantined", "merged")}


def _shard_contents(root: Path) -> dict[str, list]:
    """Per split: every instance as (turn token tuples, trainable flags), sorted (shard layout may differ)."""
    from dialogsmith.formats.shards import ShardDataset

    manifest = json.loads((root / "manifest.json").read_text())
    out = {}
    for split in manifest["splits"]:
        data = ShardDataset(str(root), split, verify=True)
        items = []
        for i in range(len(data)):
            inst = data.instance(i)
            items.append((tuple(tuple(t.tolist()) for t in inst.turns), tuple(inst.trainable.tolist())))
        out[split] = sorted(items)
    return out


def test_stages_on_the_cluster_equal_local_run(cluster, wheel_zip, spark, tmp_path):
    from dialogsmith import filter as filter_stage
    from dialogsmith.extract import job as ingest
    from dialogsmith.instances import job as conversations
    from dialogsmith.sample.synth import SynthConfig, generate
    from dialogsmith.tokenize import job as tokenize_stage
    from dialogsmith.tokenize.bpe import train_small_bpe

    dumps = tmp_path / "dumps"
    generate(dumps, SynthConfig(months=["2016-01", "2016-02"], comments_per_month=800, seed=11))
    local, remote = tmp_path / "local", tmp_path / "cluster"
    # The local[*] run, in this process (the shared test session).
    assert ingest.main(["--input", str(dumps), "--output", str(local / "extract")]) in (0, None)
    assert conversations.main(["--input", str(local / "extract"), "--output", str(local / "conv")]) in (
        0,
        None,
    )
    filter_stage.main(
        [
            "--input",
            str(local / "conv"),
            "--output",
            str(local / "filter"),
            "--split",
            "0.8,0.1,0.1",
            "--quiet",
        ]
    )
    texts = [t for r in _rows(local / "filter" / "train", "instance_id") for t in r["turns"]]
    tok_dir = train_small_bpe(texts, tmp_path / "tokenizer", vocab_size=400)
    tok_args = ["--tokenizer", tok_dir, "--max-len", "64", "--splits", "train,valid,test"]
    assert (
        tokenize_stage.main(["--input", str(local / "filter"), "--output", str(local / "shards"), *tok_args])
        == 0
    )

    # The same stages through spark-submit on the standalone cluster, each reading the previous one's output.
    def submit(script: str, *args: str) -> None:
        cl.spark_submit(
            REPO / script,
            list(args),
            master=cluster.master_url,
            py_files=[wheel_zip],
            conf=cl.QUICK_JVM_CONF,
            timeout=300,
            cwd=REPO,
        )

    submit("extract/ingest.py", "--input", str(dumps), "--output", str(remote / "extract"))
    submit("extract/conversations.py", "--input", str(remote / "extract"), "--output", str(remote / "conv"))
    submit(
        "filter/filter.py", "--input", str(remote / "conv"), "--output", str(remote / "filter"),
        "--split", "0.8,0.1,0.1", "--quiet",
    )  # fmt: skip
    submit(
        "tokenize/tokenize_shards.py",
        "--input",
        str(remote / "filter"),
        "--output",
        str(remote / "shards"),
        *tok_args,
    )
    apps = [a["name"] for a in cluster.state()["completedapps"]]
    assert len(apps) >= 4

    # extract: the same comments, submissions and quarantined lines, the same counts
    for table, key in (("comments", "id"), ("submissions", "id"), ("quarantine", "source")):
        assert _rows(remote / "extract" / table, key) == _rows(local / "extract" / table, key), table
    assert _counts(remote / "extract" / "stats.json") == _counts(local / "extract" / "stats.json")
    # ... though the shipped zip cannot load the C parser: the executors ran Arrow's reader
    parsers = {
        where: set(json.loads((root / "extract" / "stats.json").read_text())["extra"]["parser"])
        for where, root in (("local", local), ("remote", remote))
    }
    assert parsers == {"local": {"native" if fastjson.AVAILABLE else "python"}, "remote": {"python"}}
    # conversations: the same instances
    got = _rows(remote / "conv" / "instances", "instance_id")
    assert got and got == _rows(local / "conv" / "instances", "instance_id")
    assert _counts(remote / "conv" / "stats.json") == _counts(local / "conv" / "stats.json")
    # filter: the same kept instances per split and the same dropped ones with their reasons
    for part in ("train", "valid", "test", "dropped"):
        assert _rows(remote / "filter" / part, "instance_id") == _rows(
            local / "filter" / part, "instance_id"
        ), part
    assert json.loads((remote / "filter" / "funnel.json").read_text()) == json.loads(
        (local / "filter" / "funnel.json").read_text()
    )
    # tokenize: the same instances in the shards (decoded token ids and trainable flags), the same counts
    assert _shard_contents(remote / "shards") == _shard_contents(local / "shards")
    assert _counts(remote / "shards" / "stats.json") == _counts(local / "shards" / "stats.json")
