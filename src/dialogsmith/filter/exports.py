"""Exports of the kept instances beside the Parquet: DialoGPT TSV (per month and per split), JSON Lines
per split, and the multi-reference test set.

Each task writes its part files under OUT/_<export>_parts/; the driver concatenates them in task order
(``assemble``), so an export lists the instances in the order of the split Parquet files.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dialogsmith import fsutil
from dialogsmith.filter import engine
from dialogsmith.filter.config import SPLITS
from dialogsmith.filter.vector import drop_last
from dialogsmith.formats import parquet
from dialogsmith.formats.parquet import TableFormat

PART_DIRS = ("_tsv_parts", "_jsonl_parts", "_refs_parts")
# The test split's responses by context, staged by the tasks for tsv/test.refs.txt.
REFS_PARTS = TableFormat(
    "filter_refs_parts",
    1,
    pa.schema(
        [("src", pa.string()), ("score", pa.string()), ("ref", pa.string()), ("instance_id", pa.string())]
    ),
)


def tsv_lines(kept: pa.Table, src, tgt) -> pa.Array:
    """DialoGPT TSV lines (no newline): ``link_id,parent_id,target_id<TAB>src<TAB>tgt``."""
    header = pc.binary_join_element_wise(
        kept.column("link_id"), kept.column("parent_id"), kept.column("target_id"), ","
    )
    return pc.binary_join_element_wise(header, src, tgt, "\t")


def concat_lines(lines: pa.Array) -> bytes:
    """The bytes of all strings of a (fresh, null-free) string array, each followed by a newline."""
    arr = pc.binary_join_element_wise(lines, pa.scalar("\n"), "")
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset : arr.offset + len(arr) + 1]
    return arr.buffers()[2][int(offsets[0]) : int(offsets[-1])].to_pybytes() if len(arr) else b""


def jsonl_bytes(kept: pa.Table) -> bytes:
    """One JSON object a line, UTF-8: ``{"context": turns[:-1], "response": turns[-1], "subreddit": ...,
    "id": instance_id}`` (the turns as written to the split Parquet)."""
    rows = zip(
        kept.column("turns").to_pylist(),
        kept.column("subreddit").to_pylist(),
        kept.column("instance_id").to_pylist(),
        strict=True,
    )
    return "".join(
        json.dumps({"context": t[:-1], "response": t[-1], "subreddit": s, "id": i}, ensure_ascii=False) + "\n"
        for t, s, i in rows
    ).encode("utf-8")


def write_task_exports(out: str, part: str, kept: pa.Table, split: np.ndarray, opts) -> None:
    """One task's export parts; ``split``: 0/1/2 per kept row."""
    if not kept.num_rows or not (opts.tsv or opts.refs or opts.jsonl):
        return
    in_split = [np.flatnonzero(split == j) for j in range(len(SPLITS))]
    if opts.jsonl:
        for s, rows in zip(SPLITS, in_split, strict=True):
            if len(rows):
                data = jsonl_bytes(kept.take(pa.array(rows)))
                fsutil.write_bytes(fsutil.join(out, "_jsonl_parts", s, f"{part}.jsonl"), data)
    if not (opts.tsv or opts.refs):
        return
    shown, _ = engine.make_batch(kept, False)  # src/tgt as the rules saw them, for the kept rows
    if opts.tsv:
        lines = tsv_lines(kept, shown.src, shown.tgt)
        month = pc.fill_null(kept.column("month").combine_chunks(), "unknown")
        for m in sorted(pc.unique(month).to_pylist()):
            data = concat_lines(lines.filter(pc.equal(month, m)))
            fsutil.write_bytes(fsutil.join(out, "_tsv_parts", "month", m or "unknown", f"{part}.tsv"), data)
        if opts.split_tsv:
            two = pc.binary_join_element_wise(shown.src, shown.tgt, "\t")
            for s, rows in zip(SPLITS, in_split, strict=True):
                if len(rows):
                    data = concat_lines(two.take(pa.array(rows)))
                    fsutil.write_bytes(fsutil.join(out, "_tsv_parts", "split", s, f"{part}.tsv"), data)
    test = in_split[2]
    if opts.refs and len(test):
        take = pa.array(test)
        weights = kept.column("turn_weights").take(take)
        refs = pa.table(
            {
                "src": pc.binary_join(drop_last(shown.turns.take(take)), " EOS "),
                "score": pa.array([f"{(w[-1] if w else 1.0):.1f}" for w in weights.to_pylist()], pa.string()),
                "ref": shown.response.take(take),
                "instance_id": kept.column("instance_id").take(take),
            }
        )
        parquet.write(fsutil.join(out, "_refs_parts", f"{part}.parquet"), refs, REFS_PARTS)


# --- driver -------------------------------------------------------------------------------------------


def concat_parts(parts_dir: str, dest: str) -> int:
    """``dest``: the part files under ``parts_dir`` one after the other (none: an empty file); its lines."""
    files = fsutil.list_files(parts_dir, "")
    fs, path = fsutil.resolve(dest)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    n = 0
    with fs.open_output_stream(path) as f:
        for part in files:
            data = fsutil.read_bytes(part)
            n += data.count(b"\n")
            f.write(data)
    return n


def write_refs(out: str, refs_min: int) -> int:
    """tsv/test.refs.txt: one line per context with >= refs_min human responses (siblings)."""
    files = parquet.files_of(fsutil.join(out, "_refs_parts"))
    lines = []
    if files:
        t = pa.concat_tables([parquet.read(f, REFS_PARTS) for f in files])
        t = t.sort_by([("src", "ascending"), ("instance_id", "ascending")])
        groups: dict[str, list[str]] = {}
        for s, sc, r in zip(
            t.column("src").to_pylist(),
            t.column("score").to_pylist(),
            t.column("ref").to_pylist(),
            strict=True,
        ):
            groups.setdefault(s, []).append(f"{sc}|{r}")
        lines = [s + "\t" + "\t".join(refs) for s, refs in groups.items() if len(refs) >= refs_min]
    fsutil.write_bytes(
        fsutil.join(out, "tsv", "test.refs.txt"), "".join(x + "\n" for x in lines).encode("utf-8")
    )
    return len(lines)


def assemble(out: str, opts, months: list[str], refs_min: int) -> int | None:
    """The exports from the tasks' parts (then removed); the number of refs contexts (None: no --refs)."""
    if opts.tsv:
        for m in months:
            concat_parts(fsutil.join(out, "_tsv_parts", "month", m), fsutil.join(out, "tsv", f"{m}.tsv"))
        if opts.split_tsv:
            for s in SPLITS:
                concat_parts(fsutil.join(out, "_tsv_parts", "split", s), fsutil.join(out, "tsv", f"{s}.tsv"))
    if opts.jsonl:
        for s in SPLITS:
            concat_parts(fsutil.join(out, "_jsonl_parts", s), fsutil.join(out, "jsonl", f"{s}.jsonl"))
    n_refs = write_refs(out, refs_min) if opts.refs else None
    for tmp in PART_DIRS:
        fsutil.remove(fsutil.join(out, tmp))
    return n_refs
