"""Peak memory of a whole process tree: a `make` target, a Spark driver with its JVM and Python workers.

A background thread samples, every ~50 ms, every process of the tree rooted at a pid: the root, its
descendants (found through /proc/<pid>/task/*/children, or a scan of /proc/*/stat where the kernel lacks
those files) and any process once seen in the tree while it lives (a worker reparented to init stays
measured). Per process it keeps the peak of VmRSS and of VmHWM (the kernel's own high-water mark, so a
peak between two samples is not missed while the process lives); for the tree, the peak of the sum of
VmRSS over one sample.

Caveats: RSS counts shared pages in every process that maps them, so forked pyspark workers (which share
their daemon's pages copy-on-write) and the tree total overstate unique memory (a fork with its
parent's command line that lives under a second, typically the JVM or bash about to exec a program, is
reported but left out of the total); a process that starts and exits between two samples is not seen.

From Python (benchmarks/ is not a package)::

    sys.path.insert(0, "benchmarks"); import proctree
    result = proctree.run_command(["make", "dialogpt-tsv", "DUMPS=..."])
    print(proctree.format_result(result))

From a shell::

    python benchmarks/proctree.py -- make dialogpt-tsv DUMPS=...      # a table on stderr, the JSON on stdout
    python benchmarks/proctree.py --json-out peaks.json -- python filter/dialogpt_tsv.py ...
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")
INTERVAL_S = 0.05
TRANSIENT_S = 1.0


@dataclass
class ProcessPeak:
    pid: int
    ppid: int
    comm: str
    args: list[str]
    start_ticks: int  # /proc/<pid>/stat field 22: tells a reused pid from the process seen before
    first_seen_s: float
    last_seen_s: float
    peak_rss_kb: int = 0
    name: str = ""  # filled by classify()
    # Same command line as its parent: a fork that runs on (a DataLoader worker) or one about to exec
    # (the JVM or bash spawning a program). Its RSS is mostly its parent's pages; a fork seen for less
    # than TRANSIENT_S stays out of the tree's total.
    fork: bool = False
    index: int = -1  # rank of this record in the sampler (a pid that execs gets a new record)
    execed: bool = False  # replaced by the program it exec'ed: not reported
    alive: bool = field(default=True, repr=False)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:  # gone, or going (ESRCH), or not ours to read
        return None


def _stat(pid: int) -> tuple[int, int] | None:
    """(ppid, start ticks) of a live process, None when it is gone."""
    text = _read(PROC / str(pid) / "stat")
    if text is None:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the name may hold spaces and parentheses
    if fields[0] in ("Z", "X"):  # exited, not yet reaped
        return None
    return int(fields[1]), int(fields[19])


def _status_kb(pid: int) -> tuple[int, int] | None:
    """(VmRSS, VmHWM) in kB; None for a gone process or one without memory (zombie, kernel thread)."""
    text = _read(PROC / str(pid) / "status")
    if text is None:
        return None
    rss = hwm = -1
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1])
    return (rss, max(hwm, rss)) if rss >= 0 else None


def _has_children_files() -> bool:
    return (PROC / "self" / "task" / str(threading.get_native_id()) / "children").exists()


def _children(pid: int) -> list[int]:
    """Children of every thread of ``pid`` (a JVM forks from whichever thread runs the launcher)."""
    out: list[int] = []
    try:
        tasks = os.listdir(PROC / str(pid) / "task")
    except OSError:
        return out
    for tid in tasks:
        text = _read(PROC / str(pid) / "task" / tid / "children")
        if text:
            out.extend(int(c) for c in text.split())
    return out


def _ppid_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir(PROC):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None:
                kids.setdefault(st[0], []).append(int(entry))
    return kids


def classify(proc: ProcessPeak, by_pid: dict[int, ProcessPeak]) -> str:
    """A short name that says what the process is: "java (Spark driver JVM)", "python (pyspark worker)"..."""
    exe = os.path.basename(proc.args[0]) if proc.args else proc.comm
    argv = " ".join(proc.args)
    parent = by_pid.get(proc.ppid)
    if proc.fork:
        return f"{exe} (fork of {proc.ppid})"
    if proc.comm == "java" or exe == "java":
        if "org.apache.spark.launcher.Main" in argv:
            return "java (Spark launcher)"  # spark-class runs it to build the driver's command line
        if "org.apache.spark.deploy.SparkSubmit" in argv:
            return "java (Spark driver JVM)"
        return "java (Spark JVM)" if "spark" in argv.lower() else "java"
    if exe.startswith("python") or proc.comm.startswith("python"):
        if "pyspark.daemon" in argv:
            # the daemon is started by the JVM; the workers are forks of it (same command line)
            if parent is not None and "pyspark.daemon" in " ".join(parent.args):
                return "python (pyspark worker)"
            return "python (pyspark daemon)"
        if "pyspark.worker" in argv:
            return "python (pyspark worker)"
        ancestor = parent
        while ancestor is not None:
            if ancestor.comm.startswith("python") or os.path.basename(
                ancestor.args[0] if ancestor.args else ""
            ).startswith("python"):
                return "python"
            ancestor = by_pid.get(ancestor.ppid)
        return "python (driver)"  # the top-most Python of the tree
    return exe or proc.comm


class TreeSampler:
    """Samples the memory of the process tree rooted at ``root_pid`` in a background thread."""

    def __init__(self, root_pid: int, interval_s: float = INTERVAL_S):
        self.root = root_pid
        self.interval = interval_s
        self.procs: dict[int, ProcessPeak] = {}  # by pid: the latest record
        self.records: list[ProcessPeak] = []
        self.tree_peak_kb = 0  # over the samples without a fork alive
        self.tree_peak_at_s = 0.0
        # samples with a fork alive: (time, total without forks, [(record index, rss)]); whether a
        # fork counts is known once it is gone (transient or not)
        self._fork_samples: list[tuple[float, int, list[tuple[int, int]]]] = []
        self.samples = 0
        self._t0 = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="proctree", daemon=True)
        self._children_files = _has_children_files()
        self._own_args = [a for a in (_read(PROC / "self" / "cmdline") or "").split("\0") if a]

    def start(self) -> TreeSampler:
        self._t0 = time.perf_counter()
        self.sample()
        self._thread.start()
        return self

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        self.sample()  # a last look (the root may still be a zombie: then it is simply gone)
        return self.result()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def _tree_pids(self) -> list[int]:
        known_alive = [p.pid for p in self.procs.values() if p.alive]
        roots = [self.root, *known_alive]
        seen: set[int] = set()
        todo = list(roots)
        kids = None if self._children_files else _ppid_map()
        while todo:
            pid = todo.pop()
            if pid in seen:
                continue
            seen.add(pid)
            todo.extend(_children(pid) if kids is None else kids.get(pid, ()))
        return sorted(seen)

    def sample(self) -> None:
        now = time.perf_counter() - self._t0
        total = 0
        forks: list[tuple[int, int]] = []
        for pid in self._tree_pids():
            st = _stat(pid)
            known = self.procs.get(pid)
            if st is None:
                if known is not None:
                    known.alive = False
                continue
            ppid, start = st
            if known is not None and known.start_ticks != start:  # the pid was reused: not ours
                known.alive = False
                continue
            mem = _status_kb(pid)
            if mem is None:
                continue
            rss, hwm = mem
            args = [a for a in (_read(PROC / str(pid) / "cmdline") or "").split("\0") if a]
            if known is None or (args and args != known.args):
                # New, or it has exec'ed since last seen: until then it was a fork of its parent,
                # whose pages (and high-water mark) are not this program's.
                if known is not None:
                    known.execed = True
                comm = (_read(PROC / str(pid) / "comm") or "?").strip()
                known = ProcessPeak(pid, ppid, comm, args, start, now, now, index=len(self.records))
                self.procs[pid] = known
                self.records.append(known)
            known.ppid = ppid
            known.last_seen_s = now
            known.peak_rss_kb = max(known.peak_rss_kb, rss, hwm)
            parent = self.procs.get(ppid)
            parent_args = (
                parent.args if parent is not None else self._own_args if ppid == os.getpid() else None
            )
            if args == parent_args and "pyspark.daemon" not in " ".join(args):
                known.fork = True  # stays one even if its parent execs meanwhile
            if known.fork:
                forks.append((known.index, rss))
            else:
                total += rss
        self.samples += 1
        if forks:
            self._fork_samples.append((now, total, forks))
        elif total > self.tree_peak_kb:
            self.tree_peak_kb, self.tree_peak_at_s = total, now

    def result(self) -> dict:
        for p in self.records:
            p.name = classify(p, self.procs)
        lasting = {p.index for p in self.records if p.fork and p.last_seen_s - p.first_seen_s >= TRANSIENT_S}
        peak_kb, peak_at = self.tree_peak_kb, self.tree_peak_at_s
        for t, total, forks in self._fork_samples:
            total += sum(rss for index, rss in forks if index in lasting)
            if total > peak_kb:
                peak_kb, peak_at = total, t
        procs = sorted((p for p in self.records if not p.execed), key=lambda p: -p.peak_rss_kb)
        return {
            "processes": [
                {
                    "pid": p.pid,
                    "ppid": p.ppid,
                    "name": p.name,
                    "cmd": " ".join(p.args)[:160],
                    "peak_rss_mb": round(p.peak_rss_kb / 1024, 1),
                    "seen_s": [round(p.first_seen_s, 3), round(p.last_seen_s, 3)],
                }
                for p in procs
            ],
            "tree_peak_rss_mb": round(peak_kb / 1024, 1),
            "tree_peak_at_s": round(peak_at, 3),
            "samples": self.samples,
            "interval_s": self.interval,
        }


def run_command(
    cmd: list[str] | str,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    interval_s: float = INTERVAL_S,
    timeout_s: float | None = None,
) -> dict:
    """Run ``cmd`` (a list, or a string for the shell) under a TreeSampler.

    ``env``: variables added to (or overriding) this process's environment. Returns the sampler's
    result plus ``cmd``, ``returncode`` (None when killed on ``timeout_s``), ``timed_out`` and
    ``wall_s``. The command runs in its own session so that a timeout or an interrupt ends the
    whole tree it started (and nothing else).
    """
    full_env = None if env is None else {**os.environ, **env}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=full_env, cwd=cwd, shell=isinstance(cmd, str), start_new_session=True)
    sampler = TreeSampler(proc.pid, interval_s).start()
    timed_out = False
    try:
        returncode: int | None = proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        timed_out, returncode = True, None
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    wall = time.perf_counter() - t0
    result = sampler.stop()
    return {
        "cmd": cmd if isinstance(cmd, str) else list(cmd),
        "returncode": returncode,
        "timed_out": timed_out,
        "wall_s": round(wall, 3),
        **result,
    }


def format_result(result: dict) -> str:
    lines = [
        f"{result['cmd'] if isinstance(result['cmd'], str) else ' '.join(result['cmd'])}",
        f"  exit {result['returncode']}, {result['wall_s']:.1f} s wall, tree peak "
        f"{result['tree_peak_rss_mb']:.0f} MB RSS at {result['tree_peak_at_s']:.1f} s "
        f"({result['samples']} samples)",
    ]
    for p in result["processes"]:
        lines.append(f"  {p['peak_rss_mb']:>9.1f} MB  {p['pid']:>7}  {p['name']:<28} {p['cmd'][:70]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python benchmarks/proctree.py",
        description="Run a command and report the peak RSS of every process of its tree and of the tree.",
    )
    p.add_argument("--interval", type=float, default=INTERVAL_S, help="seconds between samples")
    p.add_argument("--json", action="store_true", help="print only the JSON result")
    p.add_argument("--json-out", metavar="PATH", help="write the JSON result to PATH instead of stdout")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="the command, after --")
    args = p.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        p.error("no command given (put it after --)")
    result = run_command(cmd, interval_s=args.interval)
    if not args.json:
        print(format_result(result), file=sys.stderr)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=1) + "\n")
    else:
        print(json.dumps(result, indent=1))  # after whatever the command printed
    return 0 if result["returncode"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
