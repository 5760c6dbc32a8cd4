"""One task's outputs: dropped/ (every removed instance with its reason), the kept instances split into
train/valid/test by a stable hash of link_id, and the export parts (exports.py)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dialogsmith import fsutil
from dialogsmith.filter import engine, exports
from dialogsmith.filter.config import SPLITS
from dialogsmith.filter.profiles import Profile
from dialogsmith.filter.rules import DUPLICATE_PAIR
from dialogsmith.filter.tasks import Clock, Task, TaskOptions, drop_counts
from dialogsmith.formats import parquet
from dialogsmith.formats.schemas import DROPPED_TABLE, FILTERED_TABLE


def write_dropped(uri: str, table: pa.Table, bad: np.ndarray, good: pa.Table, codes, names) -> None:
    drop_rows = np.flatnonzero(codes >= 0)
    pieces = []
    if len(drop_rows):
        reasons = pa.array(np.array(names, dtype=object)[codes[drop_rows]], pa.string())
        pieces.append(good.take(pa.array(drop_rows)).append_column("reason", reasons))
    if bad.any():
        bad_t = table.filter(pa.array(bad))
        pieces.append(
            bad_t.append_column("reason", pa.array([engine.MALFORMED] * bad_t.num_rows, pa.string()))
        )
    if pieces:
        parquet.write(uri, pa.concat_tables(pieces), DROPPED_TABLE)


def _turns(table: pa.Table) -> pa.ListArray:
    col = table.column("turns")
    return col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)


def kept_rows(good: pa.Table, codes, turns_out, unescape_kept: bool) -> pa.Table:
    """The kept rows, with the turns the profile's rules judged (the default profile's unescaped text)."""
    keep = pa.array(np.flatnonzero(codes == -1))
    kept = good.take(keep)
    if turns_out is not None or unescape_kept:
        turns = turns_out.take(keep) if turns_out is not None else engine.unescape_turns(_turns(kept))
        kept = kept.set_column(kept.schema.get_field_index("turns"), "turns", turns)
    return kept


def kept_months(kept: pa.Table) -> dict[str, int]:
    """Kept instances per month ("unknown" for a null month)."""
    counts = pc.value_counts(pc.fill_null(kept.column("month").combine_chunks(), "unknown"))
    return {v["values"].as_py(): v["counts"].as_py() for v in counts}


def write_outputs(
    task: Task,
    profile: Profile,
    table: pa.Table,
    bad: np.ndarray,
    good: pa.Table,
    codes: np.ndarray,
    turns_out: pa.ListArray | None,
    opts: TaskOptions,
    clock: Clock,
    unescape_kept: bool = False,
) -> dict:
    """Write one task's dropped/, split Parquet and export parts; return its stats.

    ``codes`` index ``profile.rules()`` (``len(rules)`` = duplicate_pair, -1 = kept) per well-formed row;
    ``turns_out``: the judged texts of the well-formed rows to write for kept rows (None: as read, or
    HTML-unescaped here with ``unescape_kept``)."""
    names = [r.name for r in profile.rules()] + [DUPLICATE_PAIR]
    part = f"part-{task.index:05d}"
    dropped = drop_counts(codes, names, bad)
    write_dropped(fsutil.join(opts.out, "dropped", f"{part}.parquet"), table, bad, good, codes, names)

    kept = kept_rows(good, codes, turns_out, unescape_kept)
    split = engine.split_of(kept.column("link_id"), opts.fractions, opts.salt)
    split_counts = {s: int((split == j).sum()) for j, s in enumerate(SPLITS)}
    if opts.parquet:
        with_split = kept.append_column("split", pa.array(np.array(SPLITS, dtype=object)[split], pa.string()))
        for j, s in enumerate(SPLITS):
            if split_counts[s]:
                rows = with_split.filter(pa.array(split == j))
                parquet.write(fsutil.join(opts.out, s, f"{part}.parquet"), rows, FILTERED_TABLE)
    exports.write_task_exports(opts.out, part, kept, split, opts)
    clock.lap("write")
    return {
        "rows_in": table.num_rows,
        "rows_out": kept.num_rows,
        "dropped": dict(dropped),
        "splits": split_counts,
        "months": kept_months(kept) if kept.num_rows else {},
        **clock.report(),
    }
