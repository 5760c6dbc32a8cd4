"""When a step may be skipped: its fingerprint, and the files it wrote.

A step's output depends on its parameters, on the outputs of the steps it reads, and on the code that
wrote it: the step's stage and everything that stage imports (dialogsmith's own modules, the C kernels,
the libraries). Which modules a run really used is not knowable without running it (imports happen
inside functions, and some by name), so the code part is the whole package: its version, the bytes of
every source file under ``dialogsmith/`` (``.py``, ``.c``, data files; not build products), and the
versions of Python and of the installed dependencies. Any edit anywhere in the package re-runs every
step: sound (hashing only a step's own module let an edit of a module it imports reuse stale outputs),
if not minimal.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import re
import shutil
from pathlib import Path

from dialogsmith import __version__
from dialogsmith.demo.config import STATE_DIR, DemoConfig, DemoError, Step

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # src/dialogsmith (or site-packages/dialogsmith)
_BUILD_PRODUCTS = {".pyc", ".pyo", ".so", ".pyd", ".o"}


def source_hash(package_dir: Path | None = None) -> str:
    """sha256 over every source file under the package: relative path and bytes, in path order."""
    root = package_dir or PACKAGE_DIR
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root)
        if "__pycache__" in rel.parts or path.suffix in _BUILD_PRODUCTS:
            continue
        data = path.read_bytes()
        h.update(f"{rel.as_posix()}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def environment() -> dict[str, str]:
    """Python's and dialogsmith's versions and those of its installed runtime dependencies."""
    versions = {"python": platform.python_version(), "dialogsmith": __version__}
    try:
        requires = importlib.metadata.requires("dialogsmith") or []
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that is not installed
        requires = []
    for req in requires:
        if "extra ==" in req:
            continue
        name = re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0]
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def code_fingerprint(package_dir: Path | None = None) -> str:
    """What the code part of every step's fingerprint is (computed once per demo run)."""
    payload = {"sources": source_hash(package_dir), "environment": environment()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def fingerprint(step: Step, cfg: DemoConfig, upstream: dict[str, str], code: str) -> str:
    """What a step's output depends on. ``upstream``: for every step already run or skipped, its own
    fingerprint plus the listing (names and sizes) of the files it wrote, so a re-built upstream output
    that differs in any file re-runs this step too. ``code``: ``code_fingerprint()``."""
    payload = {
        "step": step.name,
        "params": step.params(cfg),
        "code": code,
        "reads": {name: upstream[name] for name in step.reads},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def upstream_key(fp: str, out: Path) -> str:
    files = json.dumps(listing(out), sort_keys=True)
    return hashlib.sha256(f"{fp}\n{files}".encode()).hexdigest()


def listing(path: Path) -> dict[str, int]:
    """{relative file path: size} of what a step wrote (a directory or one file)."""
    if path.is_file():
        return {path.name: path.stat().st_size}
    if not path.is_dir():
        return {}
    return {
        str(p.relative_to(path)): p.stat().st_size
        for p in sorted(path.rglob("*"))
        if p.is_file() and "checkpoints" not in p.relative_to(path).parts
    }


def state_path(data: Path, step: str) -> Path:
    return data / STATE_DIR / f"{step}.json"


def read_state(data: Path, step: str) -> dict | None:
    try:
        return json.loads(state_path(data, step).read_text())
    except (OSError, ValueError):
        return None


def write_state(data: Path, step: str, state: dict) -> None:
    path = state_path(data, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state, indent=2, sort_keys=True, default=str) + "\n")


def is_fresh(step: Step, cfg: DemoConfig, fp: str) -> bool:
    """The step's recorded fingerprint is ``fp`` and the files it wrote are all there, same sizes."""
    state = read_state(Path(cfg.data), step.name)
    if not state or state.get("fingerprint") != fp:
        return False
    files = listing(step.out(cfg))
    return bool(files) and files == state.get("outputs")


def clear_own(cfg: DemoConfig, step: str, out: Path) -> None:
    """Remove a step's earlier output before it runs again: only what the demo itself wrote there
    (recorded in DATA/.demo/<step>.json); a directory the demo did not write is refused."""
    if not out.exists():
        return
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
        return
    state = read_state(Path(cfg.data), step)
    if not state or listing(out).keys() - set(state.get("outputs") or {}):
        raise DemoError(
            f"{out} exists and was not written by the demo's {step} step (or holds other files); "
            "choose another --data or remove it"
        )
    shutil.rmtree(out)
