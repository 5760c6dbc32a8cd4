"""DialoGPT key files, as the released Makefile lays them out in ``--keys DIR``.

- ``DIR/<month>.gz``: lines ``link_id<TAB>t1_<id><TAB>keep|dep``. The extract pass keeps a comment
  only with a ``dep`` line (it may be needed as a turn); the conv pass keeps a target only with a
  ``keep`` line.
- ``DIR/<month>-o.gz``: sha224 hex digests of GPT-normalized turns whose weight is set to 0.0.

Lines are compared after stripping trailing whitespace, exactly as the released ``load_keys``.
"""

from __future__ import annotations

import gzip
import io
from dataclasses import dataclass, field

from dialogsmith import fsutil


@dataclass
class MonthKeys:
    month: str
    dep: set[str] = field(default_factory=set)  # "link_id<TAB>t1_<id>"
    keep: set[str] = field(default_factory=set)
    discard_hashes: set[str] = field(default_factory=set)


def keys_path(keys_dir: str, month: str) -> str:
    return fsutil.join(keys_dir, f"{month}.gz")


def discard_path(keys_dir: str, month: str) -> str:
    return fsutil.join(keys_dir, f"{month}-o.gz")


def _lines(uri: str):
    fs, path = fsutil.resolve(uri)
    with fs.open_input_stream(path, compression=None) as raw:  # pyarrow would otherwise gunzip it already
        data = raw.read()
    with gzip.open(io.BytesIO(data), "rt", encoding="utf-8") as f:
        for line in f:
            yield line.rstrip()


def load_month_keys(keys_dir: str, month: str, link_ids: set[str] | None = None) -> MonthKeys:
    """Keys of one month; with ``link_ids``, only the lines of those threads (one bucket's)."""
    path = keys_path(keys_dir, month)
    if not fsutil.exists(path):
        raise FileNotFoundError(f"--keys {keys_dir}: no key file for month {month} (expected {path})")
    keys = MonthKeys(month)
    for line in _lines(path):
        parts = line.split("\t")
        if len(parts) != 3 or (link_ids is not None and parts[0] not in link_ids):
            continue
        if parts[2] == "dep":
            keys.dep.add(parts[0] + "\t" + parts[1])
        elif parts[2] == "keep":
            keys.keep.add(parts[0] + "\t" + parts[1])
    opath = discard_path(keys_dir, month)
    if not fsutil.exists(opath):
        raise FileNotFoundError(
            f"--keys {keys_dir}: no discard-hash file for month {month} (expected {opath})"
        )
    # The released loader skips lines ending in "\tdep" in its conv pass; digests never do.
    keys.discard_hashes = {line for line in _lines(opath) if line and not line.endswith("\tdep")}
    return keys
