"""Stage outputs: what a stage may replace, how it commits, and how the next stage checks its input.

Every stage writes its whole output into ``OUT.tmp-<token>`` and commits it at the end. The rules:

- **Ownership.** A committed output holds ``_dialogsmith.json`` (the *marker*: the stage's name and the
  size of every file it wrote) and ``_SUCCESS``. A stage replaces ``OUT`` only when ``OUT`` does not
  exist, is an empty directory, or is an earlier output of the *same* stage with nothing foreign in it.
  Anything else (a user's directory, another stage's output, a file) is refused with
  :class:`OutputRefused`; ``--force`` lets a stage replace an output of the same stage that holds foreign
  files (or was written before markers existed), never anything else. ``OUT`` equal to, inside, or
  holding an input is always refused: replacing it would delete the input.
- **Atomic commit.** The old output and the new one are swapped in one ``renameat2(RENAME_EXCHANGE)``
  where the filesystem has it (Linux), else by renaming the old one aside to ``OUT.old-<token>`` and the
  new one into place; the old one is deleted last. A kill at any point leaves a complete output at
  ``OUT`` (or, in the fallback's one-rename window, the old output at ``OUT.old-*``, which the next run
  puts back).
- **Leftovers.** On start, a stage removes its own stale ``OUT.tmp-*`` (a run that died: the tmp
  marker names the stage and a process that no longer runs) and ``OUT.old-*`` directories, and says so.
  Directories of those names that it cannot prove are its own are left alone.
- **Complete inputs.** :func:`require_input` checks that a stage's input is a committed output of the
  stage it expects: ``_SUCCESS``, the marker, and every file the marker lists, at its recorded size.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import signal
import socket
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator

import pyarrow.fs as pafs

from dialogsmith import fsutil

MARKER = "_dialogsmith.json"
TMP_MARKER = "_dialogsmith_tmp.json"
SUCCESS = "_SUCCESS"
MARKER_FORMAT = "dialogsmith-output"
MARKER_VERSION = 1
TMP_INFIX = ".tmp-"
OLD_INFIX = ".old-"


class OutputRefused(Exception):
    """OUT cannot be written: it is not this stage's output, or it would destroy an input."""


class IncompleteInput(Exception):
    """A stage's input is not a complete output of the stage it expects."""


# --- paths ---------------------------------------------------------------------------------------


def _is_uri(path: str) -> bool:
    return "://" in path


def _norm(path: str) -> str:
    if _is_uri(path):
        return path.rstrip("/")
    return os.path.realpath(os.path.abspath(path))


def inside(child: str, parent: str) -> bool:
    """True when ``child`` is ``parent`` or lies under it (after resolving symlinks)."""
    c, p = _norm(child), _norm(parent)
    if _is_uri(c) != _is_uri(p):
        return False
    return c == p or c.startswith(p.rstrip("/") + "/")


def _info(uri: str) -> pafs.FileInfo:
    fs, path = fsutil.resolve(uri)
    return fs.get_file_info(path)


def entries(uri: str) -> list[str]:
    fs, path = fsutil.resolve(uri)
    return [i.base_name for i in fs.get_file_info(pafs.FileSelector(path, recursive=False))]


def _files(uri: str) -> dict[str, int]:
    """Every file under ``uri`` (relative path -> size), markers excluded."""
    fs, path = fsutil.resolve(uri)
    out = {}
    for info in fs.get_file_info(pafs.FileSelector(path, recursive=True)):
        if info.type != pafs.FileType.File:
            continue
        rel = info.path[len(path) :].lstrip("/")
        if rel in (MARKER, SUCCESS, TMP_MARKER):
            continue
        out[rel] = int(info.size or 0)
    return out


def _read_marker(uri: str) -> dict | None:
    try:
        m = fsutil.read_json(fsutil.join(uri, MARKER))
    except (OSError, FileNotFoundError, ValueError):
        return None
    return m if isinstance(m, dict) and m.get("format") == MARKER_FORMAT else None


def _legacy_stage(uri: str) -> str | None:
    """The stage of an output written before markers existed (its stats.json names it), if complete."""
    if _info(fsutil.join(uri, SUCCESS)).type != pafs.FileType.File:
        return None
    try:
        stats = fsutil.read_json(fsutil.join(uri, "stats.json"))
    except (OSError, FileNotFoundError, ValueError):
        return None
    return stats.get("stage") if isinstance(stats, dict) else None


# --- what may be replaced ------------------------------------------------------------------------


def describe(uri: str) -> str:
    """A short description of what lies at ``uri``, for messages."""
    m = _read_marker(uri)
    if m:
        return f"a dialogsmith {m.get('stage')} output"
    legacy = _legacy_stage(uri)
    if legacy:
        return f"a dialogsmith {legacy} output (written before output markers)"
    return "not a dialogsmith output"


def check_target(out: str, stage: str, inputs: Iterable[str] = (), force: bool = False) -> str:
    """Raise OutputRefused unless ``stage`` may write ``out``; returns 'new', 'empty' or 'replace'."""
    for inp in inputs:
        if not inp:
            continue
        if inside(out, inp):
            raise OutputRefused(
                f"OUT {out} is {'the input' if _norm(out) == _norm(inp) else 'inside the input'} {inp}: "
                "a stage never writes into its input; choose another OUT"
            )
        if inside(inp, out):
            raise OutputRefused(
                f"OUT {out} holds the input {inp}: replacing it would delete the input; choose another OUT"
            )
    info = _info(out)
    if info.type == pafs.FileType.NotFound:
        return "new"
    refuse = f"OUT {out} exists and is not a dialogsmith {stage} output; choose another or remove it"
    if info.type != pafs.FileType.Directory:
        raise OutputRefused(f"{refuse} (it is a file)")
    if not entries(out):
        return "empty"
    marker = _read_marker(out)
    if marker is None:
        legacy = _legacy_stage(out)
        if legacy == stage and force:
            return "replace"
        if legacy == stage:
            raise OutputRefused(
                f"OUT {out} is a {stage} output written before output markers existed; "
                "pass --force to replace it"
            )
        raise OutputRefused(f"{refuse} (it is {describe(out)})")
    if marker.get("stage") != stage:
        raise OutputRefused(
            f"{refuse} (it is a dialogsmith {marker.get('stage')} output; "
            "--force only replaces an output of the same stage)"
        )
    foreign = sorted(set(_files(out)) - set(marker.get("files", {})))
    foreign += sorted(e for e in entries(out) if e not in _top_level(marker) and e not in (MARKER, SUCCESS))
    foreign = sorted(set(foreign))
    if foreign and not force:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise OutputRefused(
            f"OUT {out} is a {stage} output but holds files the stage did not write ({shown}); "
            "move them away, or pass --force to replace the directory with them"
        )
    return "replace"


def _top_level(marker: dict) -> set[str]:
    return {f.split("/", 1)[0] for f in marker.get("files", {})} | set(marker.get("dirs", []))


# --- leftovers of earlier runs ---------------------------------------------------------------------


def _siblings(out: str, infix: str) -> list[str]:
    base = out.rstrip("/")
    parent, name = (base.rsplit("/", 1) + [""])[:2] if _is_uri(base) else os.path.split(_norm(base))
    fs, ppath = fsutil.resolve(parent or ".")
    try:
        infos = fs.get_file_info(pafs.FileSelector(ppath, recursive=False, allow_not_found=True))
    except OSError:
        return []
    prefix = name + infix
    found = []
    for i in infos:
        if i.type == pafs.FileType.Directory and i.base_name.startswith(prefix):
            found.append(fsutil.join(parent, i.base_name) if _is_uri(base) else i.path)
    return sorted(found)


def _alive(tmp_info: dict) -> bool:
    if tmp_info.get("host") != socket.gethostname():
        return True  # cannot tell: another machine's run may still be writing it
    pid = tmp_info.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _proc_start(pid) == tmp_info.get("pid_start", _proc_start(pid))


def _proc_start(pid: int) -> int | None:
    """Start time of a process (clock ticks since boot), to tell a reused pid from the original."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def clean_leftovers(out: str, stage: str, log: Callable[[str], None]) -> list[str]:
    """Remove this stage's stale ``OUT.tmp-*`` / ``OUT.old-*``; put an old output back if OUT is gone."""
    removed = []
    olds = []
    for old in _siblings(out, OLD_INFIX):
        m = _read_marker(old)
        if m is not None and m.get("stage") == stage:
            olds.append(old)
    if olds and _info(out).type == pafs.FileType.NotFound:
        # a run died between its two renames (filesystems without an atomic exchange): restore
        newest = olds.pop()
        _move(newest, out)
        log(f"restored {out} from {newest}: the last run died while committing")
    for old in olds:
        fsutil.remove(old)
        removed.append(old)
    for tmp in _siblings(out, TMP_INFIX):
        try:
            info = fsutil.read_json(fsutil.join(tmp, TMP_MARKER))
        except (OSError, FileNotFoundError, ValueError):
            info = None
        committed = _read_marker(tmp)
        if info is not None and info.get("stage") == stage and not _alive(info):
            fsutil.remove(tmp)
            removed.append(tmp)
        elif info is None and committed is not None and committed.get("stage") == stage:
            fsutil.remove(tmp)  # an old output swapped out by an exchange, not yet deleted
            removed.append(tmp)
    for path in removed:
        log(f"removed {path}: left over by an interrupted {stage} run")
    return removed


# --- commit ----------------------------------------------------------------------------------------

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _renameat2():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_RENAMEAT2 = _renameat2()


def exchange(a: str, b: str) -> bool:
    """Swap two local paths atomically; False when the platform or filesystem cannot."""
    if _RENAMEAT2 is None or _is_uri(a) or _is_uri(b):
        return False
    rc = _RENAMEAT2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV, errno.EPERM):
        return False
    raise OSError(err, f"renameat2({a}, {b}, RENAME_EXCHANGE): {os.strerror(err)}")


def _move(src: str, dst: str) -> None:
    fs, s = fsutil.resolve(src)
    _, d = fsutil.resolve(dst)
    fs.move(s, d)


def fault(point: str) -> None:
    """Fault injection for the kill tests: SIGKILL this process at ``point`` when
    ``$DIALOGSMITH_FAULT`` names it (a test-only hook; unset, it costs one dict lookup)."""
    if os.environ.get("DIALOGSMITH_FAULT") == point:
        os.kill(os.getpid(), signal.SIGKILL)


def write_marker(tmp: str, stage: str, extra: dict | None = None) -> dict:
    files = _files(tmp)
    fs, path = fsutil.resolve(tmp)
    dirs = [
        i.base_name
        for i in fs.get_file_info(pafs.FileSelector(path, recursive=False))
        if i.type == pafs.FileType.Directory
    ]
    from dialogsmith import __version__

    marker = {
        "format": MARKER_FORMAT,
        "version": MARKER_VERSION,
        "stage": stage,
        "dialogsmith_version": __version__,
        "files": dict(sorted(files.items())),
        "dirs": sorted(dirs),
        **(extra or {}),
    }
    fsutil.write_json(fsutil.join(tmp, MARKER), marker)
    fsutil.write_bytes(fsutil.join(tmp, SUCCESS), b"")
    return marker


def commit(tmp: str, out: str, stage: str, force: bool = False) -> None:
    """Put the complete output ``tmp`` at ``out``; the old output (checked again: still ours) goes."""
    if _info(out).type == pafs.FileType.NotFound:
        fault("commit:before_rename")
        _move(tmp, out)
        return
    check_target(out, stage, force=force)  # still ours (the run may be long): never replace a foreign dir
    token = uuid.uuid4().hex[:8]
    old = f"{out.rstrip('/')}{OLD_INFIX}{token}"
    fault("commit:before_swap")
    if exchange(tmp, out):
        fault("commit:after_swap")
        _move(tmp, old)  # tmp now holds the old output
    else:
        _move(out, old)
        fault("commit:after_aside")
        _move(tmp, out)
    fault("commit:before_delete_old")
    fsutil.remove(old)


@contextlib.contextmanager
def stage_output(
    out: str,
    stage: str,
    inputs: Iterable[str] = (),
    force: bool = False,
    log: Callable[[str], None] | None = None,
    marker_extra: Callable[[], dict] | None = None,
) -> Iterator[str]:
    """Yield a fresh ``OUT.tmp-*`` directory for ``stage``; on success commit it to ``out``.

    Refuses (OutputRefused) before any work when ``out`` is not replaceable. On an exception the
    temporary directory is removed and ``out`` is left as it was."""
    log = log or (lambda msg: print(f"{stage}: {msg}", file=sys.stderr))
    inputs = [i for i in inputs if i]
    check_target(out, stage, inputs, force)
    clean_leftovers(out, stage, log)
    tmp = f"{out.rstrip('/')}{TMP_INFIX}{uuid.uuid4().hex[:8]}"
    fsutil.makedirs(tmp)
    fsutil.write_json(
        fsutil.join(tmp, TMP_MARKER),
        {
            "stage": stage,
            "pid": os.getpid(),
            "pid_start": _proc_start(os.getpid()),
            "host": socket.gethostname(),
        },
    )
    try:
        yield tmp
        fsutil.remove(fsutil.join(tmp, TMP_MARKER))
        write_marker(tmp, stage, marker_extra() if marker_extra else None)
        commit(tmp, out, stage, force)
    except BaseException:
        with contextlib.suppress(Exception):
            fsutil.remove(tmp)
        raise


# --- inputs ----------------------------------------------------------------------------------------


def require_input(path: str, stages: str | tuple[str, ...], flag: str = "--input") -> dict:
    """Check that ``path`` is a complete output of one of ``stages``; returns its marker.

    Names what is missing: ``_SUCCESS``, the marker, or files the marker lists (or files whose size
    changed). An output written before markers existed is accepted when its ``_SUCCESS`` and
    ``stats.json`` are there (its file list cannot be checked: a warning says so)."""
    stages = (stages,) if isinstance(stages, str) else tuple(stages)
    want = " or ".join(stages)
    info = _info(path)
    if info.type == pafs.FileType.NotFound:
        raise IncompleteInput(f"{flag} {path}: not found (expected a {want} output)")
    if info.type != pafs.FileType.Directory:
        raise IncompleteInput(f"{flag} {path}: not a directory (expected a {want} output)")
    has_success = _info(fsutil.join(path, SUCCESS)).type == pafs.FileType.File
    marker = _read_marker(path)
    if marker is None:
        legacy = _legacy_stage(path)
        if legacy in stages:
            print(
                f"warning: {flag} {path} was written before output markers existed: its file list "
                "cannot be checked (re-run its stage to get one)",
                file=sys.stderr,
            )
            return {"stage": legacy, "files": None}
        if not has_success:
            raise IncompleteInput(
                f"{flag} {path}: not a complete {want} output: {SUCCESS} is missing "
                "(the stage did not finish, or this is not its output); re-run the stage"
            )
        raise IncompleteInput(f"{flag} {path}: not a {want} output ({describe(path)})")
    if marker.get("stage") not in stages:
        raise IncompleteInput(
            f"{flag} {path} is a dialogsmith {marker.get('stage')} output; this stage reads a {want} output"
        )
    problems = []
    if not has_success:
        problems.append(f"{SUCCESS} is missing")
    present = _files(path)
    missing = [f for f in marker.get("files", {}) if f not in present]
    changed = [f for f, size in marker.get("files", {}).items() if f in present and present[f] != size]
    if missing:
        problems.append(f"{len(missing)} file(s) missing: {_sample(missing)}")
    if changed:
        problems.append(f"{len(changed)} file(s) changed size: {_sample(changed)}")
    if problems:
        raise IncompleteInput(
            f"{flag} {path}: incomplete {marker.get('stage')} output: "
            + "; ".join(problems)
            + f". Re-run the {marker.get('stage')} stage"
        )
    return marker


def _sample(names: list[str], k: int = 5) -> str:
    return ", ".join(names[:k]) + (f" and {len(names) - k} more" if len(names) > k else "")


def add_safety_flags(parser) -> None:
    """``--force`` and ``--strict``, the same in every stage."""
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace OUT even when it is an output of this stage holding other files (never a directory "
        "that is not this stage's output)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="exit with status 3 when any input file was broken or any line was quarantined",
    )


def looks_like_stage_output(path: str, extra_names: Iterable[str] = ()) -> bool:
    """True when ``path`` holds any file a stage writes (marker, _SUCCESS, stats.json, ...): such an
    input must then be complete. A plain directory of the user's own files is read as it is."""
    names = (MARKER, SUCCESS, "stats.json", *extra_names)
    return any(_info(fsutil.join(path, n)).type != pafs.FileType.NotFound for n in names)
