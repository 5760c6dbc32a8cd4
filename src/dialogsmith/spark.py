"""One way to get a SparkSession, for `python extract/…` (embedded local mode) and `spark-submit`.

- Under `spark-submit` the master and resources come from the submit command: we never override them.
- Run directly, the default master is `local[*]` (or $SPARK_MASTER / the `master` argument).
- Executors need this package: when the master is not local and the package is not already shipped
  (`--py-files dist/dialogsmith-*.whl`), we zip the installed package and `addPyFile` it.
"""

from __future__ import annotations

import os
import sys
import tempfile
import zipfile
from pathlib import Path

from pyspark.sql import SparkSession

import dialogsmith

_DEFAULT_CONF = {
    # Python tasks do the heavy lifting and exchange Arrow batches with the JVM.
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.shuffle.partitions": "8",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
}


def under_spark_submit() -> bool:
    return "PYSPARK_GATEWAY_PORT" in os.environ


def get_spark(
    app_name: str = "dialogsmith", master: str | None = None, conf: dict | None = None
) -> SparkSession:
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    builder = SparkSession.builder.appName(app_name)
    if not under_spark_submit():
        builder = builder.master(master or os.environ.get("SPARK_MASTER") or "local[*]")
        builder = builder.config("spark.driver.memory", os.environ.get("SPARK_DRIVER_MEMORY", "2g"))
        builder = builder.config("spark.ui.enabled", os.environ.get("SPARK_UI", "false"))
        # The embedded JVM only schedules and pipes: the work runs in Python tasks. Its C2 JIT compiler
        # alone took 0.7-2.3 CPU s per ingest run of 1.1M lines on 2 cores, competing with the tasks;
        # C1 only: 0.3-0.5 s, and 15-25% less wall time (benchmarks/bench_ingest.py). $SPARK_JAVA_OPTS
        # replaces these options (empty: the JVM's defaults).
        java_opts = os.environ.get("SPARK_JAVA_OPTS", "-XX:TieredStopAtLevel=1")
        if java_opts:
            builder = builder.config("spark.driver.extraJavaOptions", java_opts)
        # Executors run the same interpreter as the driver (the project's virtualenv).
        builder = builder.config("spark.pyspark.python", sys.executable)
        builder = builder.config("spark.pyspark.driver.python", sys.executable)
        # pyspark's RDD API (SparkContext.pythonExec) reads only this variable, not spark.pyspark.python.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    for key, value in {**_DEFAULT_CONF, **(conf or {})}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("SPARK_LOG_LEVEL", "WARN"))
    ship_package(spark)
    return spark


def is_local(spark: SparkSession) -> bool:
    return spark.sparkContext.master.startswith("local")


def ship_package(spark: SparkSession) -> None:
    """Make `dialogsmith` importable on executors of a non-local master."""
    if is_local(spark):
        return
    py_files = spark.sparkContext.getConf().get("spark.submit.pyFiles", "") or ""
    if "dialogsmith" in py_files:
        return
    spark.sparkContext.addPyFile(package_zip())


def package_zip() -> str:
    """Zip the installed package (pure Python) into a temporary file and return its path."""
    pkg_dir = Path(dialogsmith.__file__).parent
    out = Path(tempfile.mkdtemp(prefix="dialogsmith-pkg-")) / "dialogsmith.zip"
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(pkg_dir.rglob("*.py")):
            zf.write(path, Path("dialogsmith") / path.relative_to(pkg_dir))
    return str(out)
