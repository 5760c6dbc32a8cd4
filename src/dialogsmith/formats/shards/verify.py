"""Checking a tokenize output directory's shards against its manifest.json."""

from __future__ import annotations

from collections.abc import Sequence

from dialogsmith import fsutil
from dialogsmith.formats.shards.header import (
    HEADER,
    MANIFEST,
    ShardError,
    file_sha256,
    read_header,
    token_dtype,
)


def _check_shard_file(path: str, entry: dict, manifest: dict) -> str | None:
    """The cheap check of one shard (a stat and a 64-byte read): a problem line, or None."""
    fs, local = fsutil.resolve(path)
    size = fs.get_file_info(local).size
    want = int(entry["bytes"])
    if size is None:
        return f"{path}: missing (manifest.json lists it with {want} bytes)"
    if size != want:
        return f"{path}: {size} bytes, manifest.json says {want} (truncated or corrupted shard)"
    with fs.open_input_file(local) as f:
        head = f.read(HEADER.size)
    try:
        header = read_header(head, path)
    except ShardError as e:
        return str(e)
    found = {"instances": header.instances, "turns": header.turns, "tokens": header.tokens}
    found |= {"vocab_size": header.vocab_size, "eos_id": header.eos_id, "token bytes": header.itemsize}
    expected = {key: int(entry[key]) for key in ("instances", "turns", "tokens")}
    expected |= {"vocab_size": int(manifest["vocab_size"]), "eos_id": int(manifest["eos_id"])}
    expected["token bytes"] = token_dtype(expected["vocab_size"]).itemsize
    diffs = [
        f"{key} {found[key]} (manifest.json: {expected[key]})"
        for key in expected
        if found[key] != expected[key]
    ]
    if diffs:
        return f"{path}: header says {', '.join(diffs)}"
    if header.file_size != size:
        return f"{path}: header describes {header.file_size} bytes, the file has {size}"
    return None


def _check_shard_sha256(path: str, entry: dict) -> str | None:
    got = file_sha256(path)
    if got != entry["sha256"]:
        return f"{path}: sha256 mismatch: manifest.json says {entry['sha256']}, the file has {got} (corrupted shard)"
    return None


def verify_shards(
    root: str,
    splits: Sequence[str] | None = None,
    *,
    full: bool = True,
    workers: int = 0,
    part: tuple[int, int] = (0, 1),
) -> list[str]:
    """Check the shards of ``splits`` (default: all) of a tokenize output dir against its manifest.json.

    Always (a stat and a 64-byte read per shard): the file exists, has the manifest's size, and its header
    agrees with that size and with the manifest's counts, vocab_size and eos_id. With ``full``, also the
    sha256 of every file that passed, on ``workers`` threads (0: up to 4; hashlib and pyarrow release
    the GIL, so threads hash in parallel); ``part=(k, n)`` hashes only shards k, k+n, ... (manifest
    order) so that n processes share that work. Returns one line per problem, naming the shard with what
    the manifest says and what the file has; [] when all is well.
    """
    manifest_uri = fsutil.join(str(root), MANIFEST)
    if not fsutil.exists(manifest_uri):
        raise FileNotFoundError(f"{manifest_uri} not found: is {root} a tokenize output directory?")
    manifest = fsutil.read_json(manifest_uri)
    all_splits = manifest.get("splits", {})
    for split in splits or ():
        if split not in all_splits:
            raise KeyError(f"split '{split}' not in {manifest_uri} (has: {', '.join(sorted(all_splits))})")
    entries = [e for split in (splits or sorted(all_splits)) for e in all_splits[split]["shards"]]
    problems, to_hash = [], []
    k, n = part
    for index, entry in enumerate(entries):
        path = fsutil.join(str(root), entry["file"])
        problem = _check_shard_file(path, entry, manifest)
        if problem:
            problems.append(problem)
        elif index % n == k:
            to_hash.append((path, entry))
    if full:
        workers = min(len(to_hash), workers or 4)
        if workers > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(workers, thread_name_prefix="shard-sha256") as pool:
                found = list(pool.map(lambda pe: _check_shard_sha256(*pe), to_hash))
        else:
            found = [_check_shard_sha256(path, entry) for path, entry in to_hash]
        problems += [p for p in found if p]
    return problems
