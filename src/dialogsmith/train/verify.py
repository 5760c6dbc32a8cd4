"""Shard verification for the train and eval stages, and the per-batch token id check.

The cheap checks (size and header of every shard against manifest.json) run at once. The sha256 of every
shard runs in a background thread (hashlib and pyarrow release the GIL) while the model is built and the
first batch is computed; the caller joins it before the first optimizer step (train) or before the model
is used (eval), so the start-up is not delayed by it unless the hashing takes longer than the start-up.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time

import numpy as np

from dialogsmith import fsutil
from dialogsmith.formats.shards import MANIFEST, ShardError, verify_shards

HINT = "restore the shards from a good copy or re-run the tokenize stage"


def shard_report(root: str, problems: list[str]) -> str:
    return (
        f"{root}: {len(problems)} shard problem(s) against {MANIFEST}:\n  "
        + "\n  ".join(problems)
        + f"\n{HINT}"
    )


class ShardCheck:
    """Size/header checks of ``splits`` now (raises ShardError); with ``sha256`` the hashes of this
    process's ``part`` of the shards in a background thread, collected by ``wait()``."""

    def __init__(
        self,
        root: str,
        splits: list[str],
        *,
        sha256: bool,
        part: tuple[int, int] = (0, 1),
        workers: int = 0,
    ):
        self.root, self.splits, self.part = str(root), list(splits), part
        problems = verify_shards(self.root, self.splits, full=False)  # also: a clear missing-split error
        if problems:
            raise ShardError(shard_report(self.root, problems))
        manifest = fsutil.read_json(fsutil.join(self.root, MANIFEST))
        shards = [e for s in self.splits for e in manifest["splits"][s]["shards"]]
        self.n_shards = len(shards)
        self.n_bytes = sum(int(e["bytes"]) for e in shards)
        self.sha256 = sha256
        self.hash_seconds = 0.0  # time the background thread spent hashing
        self.waited_seconds = 0.0  # time the caller blocked in wait()
        self._problems: list[str] = []
        self._error: BaseException | None = None
        self._thread = None
        if sha256:
            self._thread = threading.Thread(
                target=self._hash, args=(workers,), name="shard-sha256", daemon=True
            )
            self._thread.start()

    def _hash(self, workers: int) -> None:
        t0 = time.perf_counter()
        try:
            self._problems = verify_shards(self.root, self.splits, full=True, workers=workers, part=self.part)
        except BaseException as e:  # re-raised in the caller's thread by wait()
            self._error = e
        self.hash_seconds = time.perf_counter() - t0

    @property
    def pending(self) -> bool:
        return self._thread is not None

    def wait(self) -> list[str]:
        """Join the hashing (once); the problems this process found, [] when all is well or sha256 is off."""
        if self._thread is not None:
            t0 = time.perf_counter()
            self._thread.join()
            self.waited_seconds = time.perf_counter() - t0
            self._thread = None
        if self._error is not None:
            raise self._error
        return self._problems

    def raise_for_problems(self) -> None:
        problems = self.wait()
        if problems:
            raise ShardError(shard_report(self.root, problems))

    def summary(self) -> dict:
        return {
            "shards": self.n_shards,
            "bytes": self.n_bytes,
            "sha256": self.sha256,
            "sha256_part": list(self.part),
            "sha256_seconds": round(self.hash_seconds, 4),
            "waited_seconds": round(self.waited_seconds, 4),
        }


def default_workers(local_world: int = 1) -> int:
    """Hashing threads per process: up to 4, the node's cores shared by its ranks."""
    return max(1, min(4, (os.cpu_count() or 1) // max(1, local_world)))


def check_token_ids(top: int, rows, ds, limit: int) -> None:
    """Refuse ids >= ``limit`` before the forward: the embedding would fail with a bare IndexError on CPU
    and a device-side assert on CUDA. ``top`` is the batch's largest id (one vectorized max); only when it
    is out of range are the instances of ``rows`` (arrays of instance ids of ``ds``) searched for the
    culprit, to name its shard and index."""
    if top < limit:
        return
    for row in rows:
        for i in np.asarray(row, dtype=np.int64).ravel().tolist():
            ids, _ = ds.example(i)
            bad = int(ids.max()) if len(ids) else -1
            if bad >= limit:
                s, j = ds.locate(i)
                raise ShardError(
                    f"{ds.shards[s].path}: instance {j} ({ds.split} instance {i}) holds token id {bad} >= "
                    f"vocab size {limit}: corrupted shard (verify every shard's sha256: run without "
                    f"--no-verify; {HINT})"
                )
    raise ShardError(f"a batch holds token id {top} >= vocab size {limit} (the padding/eos id {ds.eos_id}?)")


def data_identity(root: str) -> dict:
    """What makes two shard directories the same data (saved in every checkpoint, compared on resume)."""
    raw = fsutil.read_bytes(fsutil.join(str(root), MANIFEST))
    manifest = json.loads(raw)
    return {
        "manifest_sha256": hashlib.sha256(raw).hexdigest(),
        "tokenizer_sha256": manifest.get("tokenizer", {}).get("sha256"),
        "vocab_size": manifest.get("vocab_size"),
        "eos_id": manifest.get("eos_id"),
        "max_len": manifest.get("max_len"),
        "reverse": bool(manifest.get("reverse", False)),
    }
