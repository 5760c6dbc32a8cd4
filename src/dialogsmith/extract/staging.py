"""Staging between the extract stage's two phases: rows hashed to link_id buckets and appended to one
Arrow IPC file per phase-1 task and kind (one record batch per bucket per flush); phase 2 reads a
bucket's batches back from every staging file."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from dialogsmith import fastjson, fsutil

FLUSH_ROWS = 200_000  # rows buffered per kind in a phase-1 task before they go to staging


def bucket_of(link_ids: pa.Array, n_buckets: int) -> np.ndarray:
    """schemas.link_bucket for every row, vectorized."""
    return (fastjson.crc32(link_ids) % np.uint32(n_buckets)).astype(np.int32)


def staging_path(staging: str, kind: str, item: dict) -> str:
    return fsutil.join(staging, kind, f"{item['file_idx']:06d}-{item['slice']:03d}.arrow")


class Stager:
    """Buffers one kind's rows, then appends them to a staging IPC file as one batch per bucket."""

    def __init__(self, path: str, schema: pa.Schema, compression: str | None = "lz4"):
        self.path, self.schema = path, schema
        self.compression = compression
        self.pending: list[pa.Table] = []
        self.pending_buckets: list[np.ndarray] = []
        self.pending_rows = 0
        self.writer = None
        self.sink = None
        self.batches: dict[int, list[int]] = {}
        self.n_batches = 0
        self.rows = 0

    def add(self, table: pa.Table, buckets: np.ndarray) -> None:
        """Buffer ``table``, whose rows go to ``buckets`` (``bucket_of`` its link_ids)."""
        self.pending.append(table)
        self.pending_buckets.append(buckets)
        self.pending_rows += table.num_rows
        if self.pending_rows >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.pending_rows:
            return
        table = pa.concat_tables(self.pending)  # take() below copies once; combine_chunks would copy twice
        buckets = np.concatenate(self.pending_buckets)
        self.pending, self.pending_buckets, self.pending_rows = [], [], 0
        order = np.argsort(buckets, kind="stable")
        table = table.take(pa.array(order))
        sorted_b = buckets[order]
        cuts = np.flatnonzero(np.diff(sorted_b)) + 1
        bounds = np.concatenate(([0], cuts, [len(sorted_b)]))
        if self.writer is None:
            fs, path = fsutil.resolve(self.path)
            fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
            self.sink = fs.open_output_stream(path)
            self.writer = ipc.new_file(
                self.sink, self.schema, options=ipc.IpcWriteOptions(compression=self.compression)
            )
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            if hi <= lo:
                continue
            for batch in table.slice(lo, hi - lo).to_batches():
                self.writer.write_batch(batch)
                self.batches.setdefault(int(sorted_b[lo]), []).append(self.n_batches)
                self.n_batches += 1
        self.rows += table.num_rows

    def close(self) -> None:
        self.flush()
        if self.writer is not None:
            self.writer.close()
            self.sink.close()


def staged_sources(p1: list[dict]) -> dict[tuple[str, int], list[tuple[str, list[int]]]]:
    """(kind, bucket) -> the staging files and batch numbers holding its rows, in file order (from the
    phase-1 results)."""
    sources: dict[tuple[str, int], list] = {}
    for r in sorted(p1, key=lambda r: (r["file"], r["slice"])):
        for kind, st in r["staged"].items():
            for b, ids in st["batches"].items():
                sources.setdefault((kind, int(b)), []).append((st["path"], ids))
    return sources


def read_bucket(sources: list[tuple[str, list[int]]], schema: pa.Schema) -> pa.Table:
    """One bucket's staged rows: the listed batches of each staging file, in order."""
    tables = []
    for path, batch_ids in sources:
        fs, p = fsutil.resolve(path)
        with fs.open_input_file(p) as f:
            reader = ipc.open_file(f)
            tables.append(pa.Table.from_batches([reader.get_batch(i) for i in batch_ids], schema=schema))
    return pa.concat_tables(tables) if tables else schema.empty_table()
