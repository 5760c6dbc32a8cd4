"""What the tokenize stage reads: the filter output's Parquet files, or DialoGPT TSV files (tsv.py).

Both are cut into work units on the driver from file metadata alone (Parquet footers, TSV line ends),
never from the cluster size: same input + config -> the same units -> byte-identical output. A unit
yields batches of (turns, turn_weights) Arrow lists with the counts of rows read and quarantined.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from dialogsmith import fsutil
from dialogsmith.formats import schemas
from dialogsmith.formats.schemas import SPLITS
from dialogsmith.tokenize.encode import quarantine_mask

PARQUET, TSV = "parquet", "tsv"


@dataclass
class TextBatch:
    """Usable rows of a unit (turns list<string>, weights list<float>), and what was read to get them."""

    turns: pa.Array
    weights: pa.Array
    rows_in: int
    quarantined: Counter


def files_by_split(root: str, suffix: str, top_level: str | None = None) -> dict[str, list[str]]:
    """{split: sorted files} from ``IN/<split>/`` (also ``IN/split=<split>/``); with ``top_level``,
    a file directly under IN goes to the split of its stem (``valid.tsv`` -> valid) or else to the
    split ``top_level``."""
    base = root.rstrip("/")
    prefix = fsutil.resolve(base)[1] if "://" not in base else base
    by_split: dict[str, list[str]] = {}
    for f in fsutil.list_files(root, suffix):
        parts = f[len(prefix) :].lstrip("/").split("/")
        if len(parts) >= 2:
            split = parts[0].removeprefix("split=")
        elif top_level is not None:
            stem = parts[0][: -len(suffix)]
            split = stem if stem in SPLITS else top_level
        else:
            continue  # a Parquet file at the top level is not a split's file
        by_split.setdefault(split, []).append(f)
    return {s: sorted(f) for s, f in by_split.items()}


def has_split_files(root: str, suffix: str, splits: list[str] | None, top_level: str | None = None) -> bool:
    """Whether ``root`` holds files of the splits asked for (default: train, valid or test)."""
    found = files_by_split(root, suffix, top_level)
    return any(s in found for s in splits or SPLITS)


def select_splits(
    by_split: dict[str, list[str]], splits: list[str] | None, where: str, kind: str
) -> dict[str, list[str]]:
    """The splits asked for (default: train, valid, test as found; the filter output also holds
    ``dropped/``), ordered train, valid, test, then others by name."""
    if splits:
        missing = [s for s in splits if s not in by_split]
        if missing:
            raise FileNotFoundError(
                f"{where}: no {kind} files for split(s) {missing} (found: {sorted(by_split) or 'none'})"
            )
        by_split = {s: by_split[s] for s in splits}
    else:
        by_split = {s: f for s, f in by_split.items() if s in SPLITS}
    rank = {s: i for i, s in enumerate(SPLITS)}
    return dict(sorted(by_split.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))


# --- Parquet (the filter stage's FILTERED table) ---------------------------------------------------


def discover_parquet(input_dir: str, splits: list[str] | None = None) -> dict[str, list[str]]:
    """{split: sorted parquet files} from ``IN/<split>/`` (also ``IN/split=<split>/``)."""
    found = files_by_split(input_dir, ".parquet")
    by_split = select_splits(found, splits, input_dir, "Parquet")
    if not by_split:
        raise FileNotFoundError(
            f"{input_dir}: no Parquet files under train/, valid/ or test/ (expected a filter stage output: "
            f"IN/train/*.parquet, ..., or DialoGPT TSV files; directories with Parquet files found: "
            f"{sorted(found) or 'none'}; see --splits)"
        )
    return by_split


def check_input_schema(path: str, schema: pa.Schema) -> None:
    """A file this project wrote must be the filter stage's kept instances (any other Parquet file is
    read too); only the list columns ``turns`` and ``turn_weights`` are needed."""
    if (schema.metadata or {}).get(b"dialogsmith.schema"):
        schemas.check_schema_metadata(schema, "filtered", schemas.FILTERED_VERSION, path)
    for col, typ in (("turns", pa.list_(pa.string())), ("turn_weights", pa.list_(pa.float32()))):
        if col not in schema.names:
            raise ValueError(f"{path}: missing column '{col}' (expected the FILTERED schema, schemas.py)")
        got = schema.field(col).type
        if not (pa.types.is_list(got) or pa.types.is_large_list(got)):
            raise ValueError(f"{path}: column '{col}' is {got}, expected {typ}")


@dataclass(frozen=True)
class ParquetUnit:
    """Whole row groups of one file."""

    split: str
    path: str
    row_groups: tuple[int, ...]
    rows: int

    def batches(self, batch_rows: int) -> Iterator[TextBatch]:
        fs, local = fsutil.resolve(self.path)
        with fs.open_input_file(local) as f:
            pf = pq.ParquetFile(f)
            for batch in pf.iter_batches(
                batch_size=batch_rows, row_groups=list(self.row_groups), columns=["turns", "turn_weights"]
            ):
                turns, weights = batch.column("turns"), batch.column("turn_weights")
                ok, quarantined = quarantine_mask(turns, weights)
                if not ok.all():
                    turns, weights = turns.filter(pa.array(ok)), weights.filter(pa.array(ok))
                yield TextBatch(turns, weights, len(batch), quarantined)


def plan_parquet(by_split: dict[str, list[str]], rows_per_unit: int) -> tuple[list[ParquetUnit], dict]:
    """Units of whole row groups (<= ``rows_per_unit`` rows unless one group is bigger) in file order,
    and the source description (fingerprint of split, name, size and rows of every file)."""
    units, digest, total_bytes = [], hashlib.sha256(), 0
    for split, files in by_split.items():
        for path in files:
            fs, local = fsutil.resolve(path)
            size = fs.get_file_info(local).size
            with fs.open_input_file(local) as f:
                meta = pq.ParquetFile(f).metadata
                check_input_schema(path, meta.schema.to_arrow_schema())
            digest.update(f"{split}\0{os.path.basename(path)}\0{size}\0{meta.num_rows}\n".encode())
            total_bytes += size
            group, rows = [], 0
            for g in range(meta.num_row_groups):
                n = meta.row_group(g).num_rows
                if group and rows + n > rows_per_unit:
                    units.append(ParquetUnit(split, path, tuple(group), rows))
                    group, rows = [], 0
                group.append(g)
                rows += n
            if group:
                units.append(ParquetUnit(split, path, tuple(group), rows))
    n_files = sum(len(f) for f in by_split.values())
    return units, {"fingerprint": digest.hexdigest(), "files": n_files, "bytes": total_bytes}
