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
    "spark.ui.showConsoleProgress": "false",  # the stages draw their own line: dialogsmith.progress
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
        java_opts = os.environ.get("SPARK_JAVA_OPTS", default_java_opts())
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


# A class-data-sharing archive of the classes a Spark session loads (``make setup`` writes it into the
# virtualenv, see ``write_class_archive``): the JVM maps them instead of loading and verifying ~6K classes
# from Spark's jars. Measured: session start-up 5.3-5.4 s -> 2.7-3.5 s on 2 cores. A JVM or jar set that
# does not match the archive ignores it (silently: -Xlog:cds=off), so a stale archive only loses the gain.
CLASS_ARCHIVE = os.path.join(sys.prefix, "spark-cds.jsa")
_QUIET_CDS = "-Xshare:auto -Xlog:cds=off -Xlog:cds+dynamic=off"


def default_java_opts() -> str:
    opts = "-XX:TieredStopAtLevel=1"
    if os.path.isfile(CLASS_ARCHIVE):
        opts += f" -XX:SharedArchiveFile={CLASS_ARCHIVE} {_QUIET_CDS}"
    return opts


def write_class_archive(path: str = CLASS_ARCHIVE) -> None:
    """Start a session, run one Python task, stop: the JVM dumps the classes it loaded into ``path``."""
    os.environ["SPARK_JAVA_OPTS"] = f"-XX:TieredStopAtLevel=1 -XX:ArchiveClassesAtExit={path} {_QUIET_CDS}"
    spark = get_spark("dialogsmith-class-archive")
    spark.sparkContext.parallelize(range(2), 2).map(lambda x: x).collect()
    spark.createDataFrame([(1, "a")], "x int, y string").collect()
    spark.stop()


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


if __name__ == "__main__":  # python -m dialogsmith.spark class-archive
    if sys.argv[1:] == ["class-archive"]:
        write_class_archive()  # the JVM writes the file when it exits, after this process
    else:
        raise SystemExit("usage: python -m dialogsmith.spark class-archive")
