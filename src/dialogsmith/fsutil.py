"""Filesystem helpers shared by every stage.

Every path may be a local path or a URI that pyarrow understands (file://, hdfs://, s3://), so the
same code runs in Spark local mode and on a cluster where Python tasks write to shared storage.
Outputs are committed atomically: a stage writes into ``<out>.tmp-<token>`` and renames it into
place at the end, so a crashed or re-run stage never leaves a half-written output behind.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import orjson
import pyarrow.fs as pafs


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) for a local path or a URI."""
    if "://" in uri:
        fs, path = pafs.FileSystem.from_uri(uri)
        return fs, path
    return pafs.LocalFileSystem(), os.path.abspath(uri)


def join(base: str, *parts: str) -> str:
    if "://" in base:
        return "/".join([base.rstrip("/"), *[p.strip("/") for p in parts]])
    return os.path.join(base, *parts)


def exists(uri: str) -> bool:
    fs, path = resolve(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def makedirs(uri: str) -> None:
    fs, path = resolve(uri)
    fs.create_dir(path, recursive=True)


def remove(uri: str) -> None:
    """Remove a file or a directory tree; no error when it does not exist."""
    fs, path = resolve(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.Directory:
        fs.delete_dir(path)
    elif info.type != pafs.FileType.NotFound:
        fs.delete_file(path)


def list_files(uri: str, suffix: str = "") -> list[str]:
    """Files under a directory (recursive), sorted, skipping hidden and underscore names."""
    fs, path = resolve(uri)
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    out = []
    for info in infos:
        if info.type != pafs.FileType.File or not info.path.endswith(suffix):
            continue
        rel = info.path[len(path) :].lstrip("/")
        if any(part.startswith((".", "_")) for part in rel.split("/")):
            continue
        out.append(info.path if "://" not in uri else join(uri, rel))
    return sorted(out)


def write_bytes(uri: str, data: bytes) -> None:
    """Write a whole file atomically (temporary name, then rename)."""
    fs, path = resolve(uri)
    parent = path.rsplit("/", 1)[0]
    fs.create_dir(parent, recursive=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with fs.open_output_stream(tmp) as f:
        f.write(data)
    fs.move(tmp, path)


def read_bytes(uri: str) -> bytes:
    fs, path = resolve(uri)
    with fs.open_input_stream(path) as f:
        return f.read()


def write_json(uri: str, obj) -> None:
    write_bytes(uri, orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")


def read_json(uri: str):
    return orjson.loads(read_bytes(uri))


@contextlib.contextmanager
def atomic_output_dir(uri: str, overwrite: bool = True) -> Iterator[str]:
    """Yield a temporary directory next to ``uri``; on success it replaces ``uri``.

    On an exception the temporary directory is removed and ``uri`` is left as it was.
    """
    tmp = f"{uri.rstrip('/')}.tmp-{uuid.uuid4().hex[:8]}"
    makedirs(tmp)
    try:
        yield tmp
    except BaseException:
        remove(tmp)
        raise
    if exists(uri):
        if not overwrite:
            remove(tmp)
            raise FileExistsError(f"output already exists: {uri}")
        remove(uri)
    fs, src = resolve(tmp)
    _, dst = resolve(uri)
    fs.move(src, dst)
