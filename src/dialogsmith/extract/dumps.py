"""Dump files: their names (kind and month), which files an ``--input`` names, and reading one file
into typed rows and quarantine records.

Reading is layered: decode.py turns a file into decoded bytes, blocks.py cuts them into blocks of whole
lines, parse.py turns a block into rows; ``read_tables`` is the one loop over a file's blocks that
counts lines and collects quarantine records (the extract stage's tasks and ``read_dump`` both use it).
"""

from __future__ import annotations

import glob
import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow as pa

from dialogsmith import fsutil
from dialogsmith.extract.blocks import DEFAULT_BLOCK_SIZE, DumpReader
from dialogsmith.extract.decode import FILE_REASONS, compression_of, decoded_chunks
from dialogsmith.extract.parse import (
    COMMENTS,
    KINDS,
    OUTPUT_SCHEMA,
    SUBMISSIONS,
    BlockParser,
    Quarantined,
    parse_line,
)
from dialogsmith.formats import schemas

# The reading API in one place (the names are defined in decode.py, blocks.py and parse.py).
__all__ = [
    "COMMENTS",
    "DEFAULT_BLOCK_SIZE",
    "FILE_REASONS",
    "KINDS",
    "OUTPUT_SCHEMA",
    "SUBMISSIONS",
    "BlockParser",
    "DumpReader",
    "FileStats",
    "InputScan",
    "Quarantined",
    "compression_of",
    "decoded_chunks",
    "parse_dump_name",
    "parse_line",
    "quarantine_table",
    "read_dump",
    "read_tables",
    "scan_inputs",
    "valid_month",
]

# RC_/RS_ names: an optional JSON suffix, then an optional compression suffix (RC_2016-01.zst,
# RS_v2_2008-03.xz, RC_2005-12, RC_2019-01.ndjson.gz). Anything after that (``.zst.md5``) is not a dump.
_NAME_RE = re.compile(
    r"^R([CS])_(?:v2_)?(\d{4}-\d{2})(?i:\.(?:json|ndjson|jsonl))?(?i:\.(?:zst|zstd|bz2|xz|gz))?$"
)
FIRST_MONTH = "2005-06"  # the first Pushshift dump (RS_2005-06); comments start 2005-12
DUMP_SUFFIXES = (".ndjson", ".jsonl")  # plus RC_/RS_ names; other names only when listed explicitly
CHECKSUM_SUFFIXES = (".md5", ".sha1", ".sha256", ".sha512", ".sig", ".asc", ".torrent")
# Why a file found in an input directory is not read (stable identifiers, listed in stats.json).
SKIP_NOT_A_DUMP = "not_a_dump_name"  # neither RC_/RS_YYYY-MM[.ext] nor *.ndjson / *.jsonl
SKIP_CHECKSUM = "checksum_file"  # RC_2016-01.zst.md5 and the like
SKIP_BAD_MONTH = "invalid_month"  # RC_2099-13.zst: not a month between 2005-06 and today


# --- file names ---------------------------------------------------------------------------------


def parse_dump_name(name: str) -> tuple[str | None, str | None]:
    """(kind, month) from ``RC_2016-01.zst`` / ``RS_v2_2008-03.xz``; (None, None) for other names."""
    m = _NAME_RE.match(os.path.basename(name))
    if not m:
        return None, None
    return (COMMENTS if m.group(1) == "C" else SUBMISSIONS), m.group(2)


def valid_month(month: str, today: str | None = None) -> bool:
    """``YYYY-MM`` with a real month between the first dump (2005-06) and the current UTC month."""
    if not re.fullmatch(r"\d{4}-\d{2}", month or "") or not 1 <= int(month[5:]) <= 12:
        return False
    return FIRST_MONTH <= month <= (today or time.strftime("%Y-%m", time.gmtime()))


# --- the files of an --input --------------------------------------------------------------------


@dataclass
class InputScan:
    """The dump files an ``--input`` names, with the name each is known by, and what was skipped."""

    files: list[str]
    sources: dict[str, str]  # file (read or skipped) -> its path relative to the input directory
    skipped: dict[str, str]  # file -> skip reason
    roots: list[str]  # the directories given

    @property
    def paths(self) -> list[str]:
        """Everything the input consists of (for the OUT-is-not-an-input check)."""
        return [*self.roots, *self.files]


def scan_inputs(spec: str | list[str]) -> InputScan:
    """Dump files from a directory, a glob, or a comma-separated list of any of those.

    A path that exists is taken as it is, even when it holds ``,`` or ``[``; other parts are split on
    commas and globbed. Directories are scanned recursively; every file that is not read is listed with
    its reason. An explicitly named file with an impossible month is an error."""
    if isinstance(spec, list):
        parts = [str(p) for p in spec]
    elif fsutil.exists(str(spec)):
        parts = [str(spec)]
    else:
        parts = [p.strip() for p in str(spec).split(",") if p.strip()]
    files: list[str] = []
    skipped: dict[str, str] = {}
    roots: list[str] = []
    for part in parts:
        if not fsutil.exists(part) and any(ch in part for ch in "*?[") and "://" not in part:
            matched = sorted(glob.glob(part))
            if not matched:
                raise FileNotFoundError(f"--input: no file matches {part!r}")
            files.extend(m for m in matched if os.path.isfile(m))
        elif not fsutil.exists(part):
            raise FileNotFoundError(f"--input: {part!r} does not exist")
        elif os.path.isdir(part) or ("://" in part and _is_dir(part)):
            roots.append(part)
            found = []
            for f in _all_files(part):
                reason = skip_reason(f)
                if reason:
                    skipped[f] = reason
                else:
                    found.append(f)
            if not found:
                raise FileNotFoundError(
                    f"--input: no dump files in {part!r} (expected RC_YYYY-MM.zst, RS_YYYY-MM.bz2, *.ndjson, …)"
                    + (f"; skipped {_skipped_text(skipped)}" if skipped else "")
                )
            files.extend(found)
        else:
            kind, month = parse_dump_name(part)
            if kind and not valid_month(month):
                raise ValueError(
                    f"--input: {part}: {month} is not a month of the Pushshift dumps "
                    f"({FIRST_MONTH} .. this month)"
                )
            files.append(part)
    seen, out = set(), []
    for f in files:
        if f not in seen:
            seen.add(f)
            out.append(f)
    root = roots[0] if len(parts) == 1 and roots else None
    return InputScan(out, source_names([*out, *skipped], root), skipped, roots)


def skip_reason(path: str) -> str | None:
    """Why a file found in an input directory is not a dump to read (None: read it)."""
    name = os.path.basename(path)
    if name.lower().endswith(CHECKSUM_SUFFIXES):
        return SKIP_CHECKSUM
    kind, month = parse_dump_name(name)
    if kind:
        return None if valid_month(month) else SKIP_BAD_MONTH
    stem = name
    if compression_of(name) != "plain":
        stem = os.path.splitext(name)[0]
    if stem.lower().endswith(DUMP_SUFFIXES) and not name.startswith((".", "_")):
        return None
    return SKIP_NOT_A_DUMP


def _all_files(root: str) -> list[str]:
    import pyarrow.fs as pafs

    fs, path = fsutil.resolve(root)
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    out = []
    for info in infos:
        if info.type != pafs.FileType.File:
            continue
        rel = info.path[len(path) :].lstrip("/")
        if rel.split("/")[-1] in ("_SUCCESS", "_dialogsmith.json", "synth_report.json", "stats.json"):
            continue  # the sample stage's own files
        out.append(info.path if "://" not in root else fsutil.join(root, rel))
    return sorted(out)


def source_names(files: list[str], root: str | None) -> dict[str, str]:
    """Each file's name in the output (``source``) and in stats: its path relative to ``root`` (the one
    input directory), else to the deepest directory holding every file; unique by construction."""
    if not files:
        return {}
    if root is None:
        dirs = [f.rsplit("/", 1)[0] if "/" in f else "." for f in files]
        root = os.path.commonpath(dirs) if all("://" not in d for d in dirs) else _common_prefix(dirs)
    base = root.rstrip("/") + "/"
    out = {}
    for f in files:
        out[f] = f[len(base) :] if f.startswith(base) else os.path.relpath(f, root)
    return out


def _common_prefix(dirs: list[str]) -> str:
    parts = [d.split("/") for d in dirs]
    common = []
    for level in zip(*parts, strict=False):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    return "/".join(common)


def _skipped_text(skipped: dict[str, str]) -> str:
    items = [f"{os.path.basename(f)} ({r})" for f, r in sorted(skipped.items())]
    return ", ".join(items[:5]) + (f" and {len(items) - 5} more" if len(items) > 5 else "")


def _is_dir(uri: str) -> bool:
    import pyarrow.fs as pafs

    fs, path = fsutil.resolve(uri)
    return fs.get_file_info(path).type == pafs.FileType.Directory


# --- reading one file ---------------------------------------------------------------------------


@dataclass
class FileStats:
    """One file's (or slice's) accounting: lines read = parsed + quarantined."""

    lines: int = 0
    parsed: int = 0
    quarantined: Counter = field(default_factory=Counter)
    error: str | None = None  # "<reason>: <decoder message>" when the file broke

    def to_dict(self) -> dict:
        return {
            "lines": self.lines,
            "parsed": self.parsed,
            "quarantined": {k: int(v) for k, v in sorted(self.quarantined.items())},
            "error": self.error,
        }


def read_tables(
    reader: DumpReader, parser: BlockParser, stats: FileStats, quarantine: list[dict]
) -> Iterator[pa.Table]:
    """The rows of the blocks ``reader`` yields, one table per block, parsed by ``parser``; counts go
    to ``stats`` and quarantine records to ``quarantine``. A decoder break is recorded once, by the
    reader whose byte range holds it, and counts as one line read."""
    for block in reader:
        res = parser.parse(block)
        stats.lines += block.n_lines
        stats.parsed += res.parsed
        stats.quarantined.update(res.quarantined)
        quarantine.extend(res.quarantine)
        yield from res.tables
    if reader.error and reader.owns(reader.error_offset):
        reason, message = reader.error
        quarantine.append(parser.error_record(reader.error_line, reason, message, reader.tail))
        stats.quarantined[reason] += 1
        stats.lines += 1
        stats.error = f"{reason}: {message}"


def quarantine_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=schemas.QUARANTINE)


def read_dump(
    uri: str, kind: str | None = None, block_size: int = DEFAULT_BLOCK_SIZE, native: bool | None = None
) -> tuple[pa.Table, pa.Table, FileStats]:
    """Read one dump file into (rows, quarantine, stats); rows have the kind's output schema.
    ``native=False``: every line through ``parse_line`` (the reference)."""
    name_kind, month = parse_dump_name(uri)
    parser = BlockParser(os.path.basename(uri), name_kind or kind, month, native=native)
    stats, quarantine = FileStats(), []
    tables = list(read_tables(DumpReader(uri, block_size), parser, stats, quarantine))
    schema = OUTPUT_SCHEMA[parser.kind or COMMENTS]
    rows = pa.concat_tables(tables) if tables else schema.empty_table()
    return rows, quarantine_table(quarantine), stats
