"""A real Spark standalone cluster on localhost, and `spark-submit` of the stages to any master.

Used by the test suite (tests/test_cluster.py), by `python -m dialogsmith.cluster serve` (a local
master + worker to try `make submit-*` against), and by anyone who wants to check that a job runs
unchanged outside `local[*]`.

- The Spark distribution is the one inside the pyspark wheel (`pyspark.find_spark_home`), unless
  $SPARK_HOME points to another one: `bin/spark-class` starts the master and the worker,
  `bin/spark-submit` submits.
- Every process we start gets its own session (``setsid``); executors (JVMs started by the worker)
  and the PySpark daemons they fork stay in that session, so shutting down kills *sessions*: every
  process whose session id is one of ours, SIGTERM first, SIGKILL after a grace period. Nothing is
  left behind, also when start-up or a job fails.
- Executors import `dialogsmith` from the shipped package (``--py-files``), not from the driver's
  installation: the wheel built by `make dist` is shipped under a ``.zip`` name, because PySpark only
  puts ``.zip``/``.egg``/``.jar`` py-files on the executors' ``sys.path`` (a wheel is a zip archive).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


# JVM flags for short-lived JVMs on small data (tests, the local cluster's daemons): C1 JIT only and the
# serial GC start a JVM markedly faster; not for long production jobs.
QUICK_JVM = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
QUICK_JVM_CONF = {"spark.driver.extraJavaOptions": QUICK_JVM, "spark.executor.extraJavaOptions": QUICK_JVM}


class ClusterError(RuntimeError):
    pass


class SubmitError(RuntimeError):
    def __init__(self, message: str, returncode: int, output: str) -> None:
        super().__init__(message)
        self.returncode = returncode
        self.output = output


# --- where Spark lives ------------------------------------------------------------------------


def spark_home() -> Path:
    """$SPARK_HOME when it holds a Spark distribution, else the one bundled in the pyspark wheel."""
    env = os.environ.get("SPARK_HOME")
    if env and (Path(env) / "bin" / "spark-class").exists():
        return Path(env)
    from pyspark import find_spark_home

    home = Path(find_spark_home._find_spark_home())
    if not (home / "bin" / "spark-class").exists():
        raise ClusterError(f"no Spark distribution found (looked at $SPARK_HOME={env!r} and {home})")
    return home


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spark_env(work_dir: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["SPARK_HOME"] = str(spark_home())
    env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # The driver and the executors run this interpreter (the project's virtualenv).
    env["PYSPARK_PYTHON"] = sys.executable
    env["PYSPARK_DRIVER_PYTHON"] = sys.executable
    # The launcher must not see a gateway of a session running in this process.
    for key in ("PYSPARK_GATEWAY_PORT", "PYSPARK_GATEWAY_SECRET", "SPARK_ENV_LOADED"):
        env.pop(key, None)
    if work_dir is not None:
        env["SPARK_LOG_DIR"] = str(work_dir / "logs")
        env["SPARK_WORKER_DIR"] = str(work_dir / "worker")
    return env


# --- processes by session ---------------------------------------------------------------------


def _session_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # Fields after the command name (which may hold spaces and parentheses): state ppid pgrp session …
    rest = stat[stat.rfind(b")") + 2 :].split()
    if rest[0] == b"Z":  # a zombie holds no resources; its parent reaps it
        return None
    return int(rest[3])


def processes_in_sessions(sessions: Iterable[int]) -> list[int]:
    """Live processes whose session id is one of ``sessions`` (Linux /proc; elsewhere: the leaders)."""
    sessions = set(sessions)
    if not sessions:
        return []
    if not os.path.isdir("/proc"):
        alive = []
        for sid in sessions:
            with contextlib.suppress(OSError):
                os.kill(sid, 0)
                alive.append(sid)
        return alive
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit() and _session_of(int(name)) in sessions:
            out.append(int(name))
    return sorted(out)


def kill_sessions(sessions: Iterable[int], grace: float = 10.0) -> list[int]:
    """SIGTERM every process of the sessions, SIGKILL what is still there after ``grace`` seconds.

    Returns the processes that survived both (should be empty).
    """
    sessions = set(sessions)
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        pids = processes_in_sessions(sessions)
        if not pids:
            return []
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not processes_in_sessions(sessions):
                return []
            time.sleep(0.1)
    return processes_in_sessions(sessions)


# --- the standalone cluster ---------------------------------------------------------------------


@dataclass
class StandaloneCluster:
    """A master and one worker on localhost. Use `standalone_cluster()` (a context manager)."""

    work_dir: Path
    host: str = "127.0.0.1"
    master_port: int = 0
    ui_port: int = 0
    worker_cores: int = 2
    worker_memory: str = "2g"
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    sessions: set[int] = field(default_factory=set)
    _logs: list = field(default_factory=list)

    @property
    def master_url(self) -> str:
        return f"spark://{self.host}:{self.master_port}"

    @property
    def ui_url(self) -> str:
        return f"http://{self.host}:{self.ui_port}"

    def _spawn(self, name: str, args: Sequence[str]) -> None:
        log_dir = self.work_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        log = open(log_dir / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop()
        self._logs.append(log)
        env = _spark_env(self.work_dir)
        env["SPARK_DAEMON_MEMORY"] = os.environ.get("SPARK_DAEMON_MEMORY", "512m")
        # The master and worker only coordinate: the quick-start JIT and a small GC start them faster.
        env.setdefault("SPARK_DAEMON_JAVA_OPTS", QUICK_JVM)
        cmd = [str(spark_home() / "bin" / "spark-class"), *args]
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        self.procs[name] = proc
        self.sessions.add(proc.pid)  # a session leader's session id is its pid

    def start(self, timeout: float = 120.0) -> StandaloneCluster:
        self.master_port = self.master_port or free_port()
        self.ui_port = self.ui_port or free_port()
        try:
            self._spawn(
                "master",
                [
                    "org.apache.spark.deploy.master.Master",
                    "--host", self.host,
                    "--port", str(self.master_port),
                    "--webui-port", str(self.ui_port),
                ],
            )  # fmt: skip
            self._spawn(
                "worker",
                [
                    "org.apache.spark.deploy.worker.Worker",
                    "--host", self.host,
                    "--port", str(free_port()),
                    "--webui-port", str(free_port()),
                    "--cores", str(self.worker_cores),
                    "--memory", self.worker_memory,
                    "--work-dir", str(self.work_dir / "worker"),
                    self.master_url,
                ],
            )  # fmt: skip
            self.wait_for_worker(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def state(self) -> dict | None:
        """The master's JSON status (workers, applications), or None while it is not up."""
        try:
            with urllib.request.urlopen(f"{self.ui_url}/json/", timeout=2) as resp:
                return json.loads(resp.read())
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def wait_for_worker(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise ClusterError(
                        f"spark {name} exited with code {proc.returncode}:\n{self.log_tail(name)}"
                    )
            state = self.state()
            if state and any(w.get("state") == "ALIVE" for w in state.get("workers", [])):
                return
            time.sleep(0.25)
        raise ClusterError(
            f"no worker registered with {self.master_url} within {timeout:.0f} s\n"
            f"--- master log:\n{self.log_tail('master')}\n--- worker log:\n{self.log_tail('worker')}"
        )

    def log_tail(self, name: str, n: int = 40) -> str:
        path = self.work_dir / "logs" / f"{name}.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])

    def leftovers(self) -> list[int]:
        return processes_in_sessions(self.sessions)

    def stop(self) -> list[int]:
        """Kill the master, the worker and everything they started. Returns survivors (should be [])."""
        survivors = kill_sessions(self.sessions)
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        for log in self._logs:
            log.close()
        self._logs.clear()
        return survivors


@contextlib.contextmanager
def standalone_cluster(
    work_dir: str | Path | None = None, cores: int = 2, memory: str = "2g", timeout: float = 120.0
) -> Iterator[StandaloneCluster]:
    """Start a master + one worker on localhost; always shut everything down on exit."""
    own_dir = work_dir is None
    path = Path(tempfile.mkdtemp(prefix="dialogsmith-cluster-")) if own_dir else Path(work_dir)
    path.mkdir(parents=True, exist_ok=True)
    cluster = StandaloneCluster(work_dir=path, worker_cores=cores, worker_memory=memory)
    cluster.start(timeout=timeout)
    try:
        yield cluster
    finally:
        survivors = cluster.stop()
        if own_dir:
            shutil.rmtree(path, ignore_errors=True)
        if survivors:
            raise ClusterError(f"processes survived the cluster shutdown: {survivors}")


# --- shipping the package and submitting ------------------------------------------------------


def dist_package(dist_dir: str | Path = REPO / "dist", build: bool = False) -> Path:
    """The package to ship with ``--py-files``: the wheel of `make dist`, under a ``.zip`` name.

    PySpark adds only ``.zip``/``.egg``/``.jar`` py-files to the executors' ``sys.path``; a
    wheel is a zip archive, so ``dist/dialogsmith-<version>-<tags>.whl`` is copied next to itself as
    ``dist/dialogsmith-<version>.zip`` (its C module cannot load from a zip: executors then use the
    Arrow parser). With ``build=True`` a missing wheel is built (`pip wheel`)."""
    dist_dir = Path(dist_dir)
    wheels = sorted(glob.glob(str(dist_dir / "dialogsmith-*.whl")))
    if not wheels and build:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "-q",
                "--no-deps",
                "--no-build-isolation",
                "-w",
                str(dist_dir),
                str(REPO),
            ],
            check=True,
        )
        wheels = sorted(glob.glob(str(dist_dir / "dialogsmith-*.whl")))
    if not wheels:
        raise ClusterError(f"no wheel in {dist_dir}: run `make dist` first")
    wheel = Path(wheels[-1])
    version = wheel.name.split("-")[1]
    zipped = dist_dir / f"dialogsmith-{version}.zip"
    if not zipped.exists() or zipped.stat().st_mtime < wheel.stat().st_mtime:
        shutil.copyfile(wheel, zipped)
    return zipped


def submit_command(
    script: str | Path,
    args: Sequence[str] = (),
    master: str = "local[*]",
    py_files: Sequence[str | Path] = (),
    conf: dict[str, str] | None = None,
) -> list[str]:
    """The `spark-submit` command line for a stage's entry script."""
    cmd = [str(spark_home() / "bin" / "spark-submit"), "--master", master]
    if py_files:
        cmd += ["--py-files", ",".join(str(p) for p in py_files)]
    settings = {
        "spark.pyspark.python": sys.executable,
        "spark.pyspark.driver.python": sys.executable,
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.log.level": "WARN",
        **(conf or {}),
    }
    for key, value in settings.items():
        cmd += ["--conf", f"{key}={value}"]
    return [*cmd, str(script), *map(str, args)]


def spark_submit(
    script: str | Path,
    args: Sequence[str] = (),
    master: str = "local[*]",
    py_files: Sequence[str | Path] = (),
    conf: dict[str, str] | None = None,
    timeout: float | None = None,
    check: bool = True,
    cwd: str | Path | None = None,
) -> subprocess.CompletedProcess:
    """Run `spark-submit` (client deploy mode) and wait; the driver and anything it left are killed after.

    Output (stdout + stderr) is captured in ``.stdout``. With ``check`` a non-zero exit raises
    SubmitError carrying the output's tail.
    """
    cmd = submit_command(script, args, master, py_files, conf)
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=_spark_env(),
        cwd=cwd,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_sessions([proc.pid], grace=5)
        out, _ = proc.communicate()
        raise SubmitError(
            f"spark-submit {script} timed out after {timeout} s", -1, out.decode(errors="replace")
        ) from None
    finally:
        kill_sessions([proc.pid], grace=5)
    text = out.decode(errors="replace")
    result = subprocess.CompletedProcess(cmd, proc.returncode, text, None)
    if check and proc.returncode != 0:
        tail = "\n".join(text.splitlines()[-60:])
        raise SubmitError(
            f"spark-submit {script} failed with exit code {proc.returncode}:\n{tail}", proc.returncode, text
        )
    return result


# --- CLI --------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="dialogsmith cluster",
        description="A Spark standalone master + one worker on localhost, from the pyspark installation.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="start a master and a worker; run until Ctrl-C, then shut both down")
    serve.add_argument(
        "--port", type=int, default=7077, help="master port (default 7077: make's SPARK_MASTER)"
    )
    serve.add_argument("--ui-port", type=int, default=8080, help="master web UI port (default 8080)")
    serve.add_argument("--cores", type=int, default=os.cpu_count() or 2, help="worker cores")
    serve.add_argument("--memory", default="4g", help="worker memory for executors (default 4g)")
    serve.add_argument("--work-dir", default=None, help="logs and executor work dirs (default: a temp dir)")
    sub.add_parser("spark-home", help="print the Spark distribution directory used")
    zipped = sub.add_parser("package", help="print the .zip to pass to --py-files (from the wheel in dist/)")
    zipped.add_argument("--dist", default=str(REPO / "dist"))
    args = parser.parse_args(argv)

    if args.command == "spark-home":
        print(spark_home())
        return 0
    if args.command == "package":
        print(dist_package(args.dist))
        return 0

    work_dir = Path(args.work_dir or tempfile.mkdtemp(prefix="dialogsmith-cluster-"))
    cluster = StandaloneCluster(
        work_dir=work_dir,
        master_port=args.port,
        ui_port=args.ui_port,
        worker_cores=args.cores,
        worker_memory=args.memory,
    )
    stop = {"now": False}

    def on_signal(signum, frame):
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    cluster.start()
    print(
        f"Spark standalone master {cluster.master_url} (UI {cluster.ui_url}), 1 worker: {args.cores} cores, {args.memory}"
    )
    print(f"logs: {work_dir / 'logs'}; Ctrl-C stops the cluster", flush=True)
    try:
        while not stop["now"]:
            time.sleep(0.5)
    finally:
        survivors = cluster.stop()
        print("cluster stopped" + (f"; survivors: {survivors}" if survivors else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
