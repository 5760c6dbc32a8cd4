"""What a dump line means: the kinds' fields, the quarantine reasons, the type coercions, and the parsers
that turn a block of lines into rows of ``schemas.COMMENTS_SCHEMA`` / ``SUBMISSIONS_SCHEMA``.

``parse_line`` defines the semantics, one line at a time (orjson). ``BlockParser`` hands a whole block to
the C line parser (``fastjson``), which takes the ordinary lines straight into Arrow columns and
declines anything it is not certain about; the declined lines go through ``parse_line``, which names
the quarantine reason. Without the C module (no compiler at install time, or the package shipped to
Spark executors as a zip) every line goes through ``parse_line``.

There is no third parser: Arrow's JSON reader with an explicit schema served executors without the
C module until it was measured against ``parse_line`` alone (rows/s per core, 200K lines each): a
generated 2016 month with 0.3% malformed lines 200-231K vs 144K, a 2012 month 196K vs 133K, the 2016
lines without the malformed ones 287K vs 147K: under 2x, for ~500 lines and a second copy of the
coercion rules.

Quarantine reasons, checked per line in this order (stable identifiers asserted by tests):
``empty_line`` (blank line), ``bad_utf8`` (not valid UTF-8), ``bad_json`` (not parseable),
``not_object`` (valid JSON that is not an object), ``missing_field`` (a required field absent or
null: comments need id, link_id, parent_id, body; submissions need id, title), ``bad_type``
(a required field that is not a string, or a typed field whose value cannot be coerced, e.g.
``"score": "abc"`` or ``"stickied": 3``). File-level reasons (``truncated_file``, ``decode_error``) are
decode.py's.

Type coercion (one schema for all eras): integer fields take ints, floats (truncated toward zero),
numeric strings (``"1"``, ``"1.5e9"``), and null / ``"null"`` / ``""`` (-> null); booleans take
true/false, 0/1 and the strings ``"true"``/``"false"``/``"0"``/``"1"``; ``edited`` is false/true/null
-> null (no edit time known) or an epoch number (int, float or string) -> int. String fields take
strings or null. Unknown fields (``_meta``, ``ups``, …) are ignored. ``body``/``title`` are kept raw.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from dialogsmith import fastjson
from dialogsmith.formats import schemas

if TYPE_CHECKING:
    from dialogsmith.extract.blocks import Block

COMMENTS = "comments"
SUBMISSIONS = "submissions"
KINDS = (COMMENTS, SUBMISSIONS)

# Stable per-line quarantine reasons.
EMPTY_LINE = "empty_line"
BAD_UTF8 = "bad_utf8"
BAD_JSON = "bad_json"
NOT_OBJECT = "not_object"
MISSING_FIELD = "missing_field"
BAD_TYPE = "bad_type"

HEAD_BYTES = 200  # bytes of a quarantined line kept in its record

# (field, kind): kind is str | int | bool | edited. Order = order in the output schema.
COMMENT_FIELDS = [
    ("id", "str"),
    ("link_id", "str"),
    ("parent_id", "str"),
    ("author", "str"),
    ("subreddit", "str"),
    ("subreddit_id", "str"),
    ("body", "str"),
    ("score", "int"),
    ("created_utc", "int"),
    ("edited", "edited"),
    ("gilded", "int"),
    ("controversiality", "int"),
    ("distinguished", "str"),
    ("stickied", "bool"),
]
SUBMISSION_FIELDS = [
    ("id", "str"),
    ("author", "str"),
    ("subreddit", "str"),
    ("subreddit_id", "str"),
    ("title", "str"),
    ("selftext", "str"),
    ("num_comments", "int"),
    ("score", "int"),
    ("created_utc", "int"),
    ("domain", "str"),
    ("permalink", "str"),
    ("url", "str"),
    ("is_self", "bool"),
    ("over_18", "bool"),
    ("stickied", "bool"),
]
FIELDS = {COMMENTS: COMMENT_FIELDS, SUBMISSIONS: SUBMISSION_FIELDS}
REQUIRED = {COMMENTS: ("id", "link_id", "parent_id", "body"), SUBMISSIONS: ("id", "title")}
OUTPUT_SCHEMA = {COMMENTS: schemas.COMMENTS_SCHEMA, SUBMISSIONS: schemas.SUBMISSIONS_SCHEMA}


# --- one line: the semantics ---------------------------------------------------------------------


class Quarantined(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


_NULL_STRINGS = {"", "null", "none"}
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _head_repr(v, n: int) -> str:
    """repr(v)[:n]; a list or dict nested deeper than repr can go (orjson takes 1024 levels) by its type."""
    try:
        return repr(v)[:n]
    except RecursionError:
        return f"<{type(v).__name__} nested too deep to show>"


def coerce_int(v):
    t = type(v)
    if t is int:
        if _INT64_MIN <= v <= _INT64_MAX:
            return v
        raise ValueError("out of int64 range")
    if v is None:
        return None
    if t is float:
        if not math.isfinite(v) or not (_INT64_MIN <= v <= _INT64_MAX):
            raise ValueError("not a finite int64")
        return int(v)
    if t is str:
        s = v.strip()
        if s.lower() in _NULL_STRINGS:
            return None
        try:
            out = int(s)
        except ValueError:
            return coerce_int(float(s))  # "1.5e9"; float() raises ValueError on "abc"
        return coerce_int(out)
    raise ValueError(f"expected a number, got {t.__name__}")


def coerce_bool(v):
    t = type(v)
    if t is bool or v is None:
        return v
    if t is int and v in (0, 1):
        return bool(v)
    if t is str:
        s = v.strip().lower()
        if s in ("true", "1"):
            return True
        if s in ("false", "0"):
            return False
        if s in _NULL_STRINGS:
            return None
    raise ValueError(f"expected a boolean, got {_head_repr(v, 40)}")


def coerce_edited(v):
    if v is None or type(v) is bool:
        return None
    if type(v) is str and v.strip().lower() in ("false", "true", *_NULL_STRINGS):
        return None
    return coerce_int(v)


def coerce_str(v):
    if v is None or type(v) is str:
        return v
    raise ValueError(f"expected a string, got {type(v).__name__}")


COERCE = {"int": coerce_int, "bool": coerce_bool, "edited": coerce_edited, "str": coerce_str}


def sniff_kind(obj) -> str | None:
    if isinstance(obj, dict):
        if "parent_id" in obj:
            return COMMENTS
        if "title" in obj:
            return SUBMISSIONS
    return None


def parse_line(line: bytes, kind: str, fields: list[tuple[str, str]] | None = None) -> dict:
    """One dump line -> a row dict of the kind's fields (or of ``fields``; no month/source/line).

    Raises Quarantined. Only the fields read are typed: a projection does not quarantine a line for
    a field it does not read."""
    if not line.strip():
        raise Quarantined(EMPTY_LINE, "blank line")
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as u:
            raise Quarantined(BAD_UTF8, str(u)) from None
        raise Quarantined(BAD_JSON, str(e)) from None
    if type(obj) is not dict:
        raise Quarantined(NOT_OBJECT, f"JSON {type(obj).__name__}, not an object")
    required = REQUIRED[kind]
    missing = [f for f in required if obj.get(f) is None]
    if missing:
        raise Quarantined(MISSING_FIELD, "missing " + ", ".join(missing))
    row = {}
    for name, ftype in fields or FIELDS[kind]:
        v = obj.get(name)
        t = type(v)
        # values already of the field's type (most of them) skip the coercion call: every coercion
        # returns them unchanged (and a required field is never None here)
        if v is None or (t is str and ftype == "str") or (t is bool and ftype == "bool"):
            row[name] = v
            continue
        if name in required and t is not str:
            raise Quarantined(BAD_TYPE, f"{name}: expected a string, got {t.__name__}")
        try:
            row[name] = COERCE[ftype](v)
        except ValueError as e:
            raise Quarantined(BAD_TYPE, f"{name}: {e} ({_head_repr(v, 60)})") from None
    return row


def head_of(line: bytes) -> str:
    return line[:HEAD_BYTES].decode("utf-8", "replace")


# --- a block of lines ----------------------------------------------------------------------------

_NATIVE_MAX_BYTES = 2**31 - 1  # the C parser writes int32 string offsets
_ARROW_TYPE = {"str": pa.string(), "int": pa.int64(), "bool": pa.bool_(), "edited": pa.int64()}
_NL = ord("\n")


def line_bounds(data: bytes, newlines: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) byte offsets of each line, ends exclusive of the newline."""
    nl = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == _NL) if newlines is None else newlines
    starts = np.concatenate(([0], nl + 1)).astype(np.int64)
    ends = np.concatenate((nl, [len(data)])).astype(np.int64)
    if data.endswith(b"\n") or not data:
        starts, ends = starts[:-1], ends[:-1]
    return starts, ends


@dataclass
class BlockResult:
    tables: list[pa.Table] = field(default_factory=list)  # at most one: the block's rows in line order
    quarantine: list[dict] = field(default_factory=list)
    parsed: int = 0
    quarantined: Counter = field(default_factory=Counter)
    slow: int = 0  # lines that went through parse_line (the C parser declined them, or it is off)


class BlockParser:
    """Parse the blocks of one file into rows of the output schema and quarantine records."""

    def __init__(
        self,
        source: str,
        kind: str | None,
        month: str | None,
        columns: tuple[str, ...] | None = None,
        native: bool | None = None,
    ):
        self.source = source
        self.columns = columns  # None: every field of the kind; else a projection (required fields always)
        self.kind = kind  # None: sniffed from the first object with parent_id/title
        self.month = month  # None: from each row's created_utc (UTC)
        # the C line parser when it is built and on (fastjson.AVAILABLE); False: parse_line for every line
        self.native = fastjson.AVAILABLE if native is None else native

    @property
    def engine(self) -> str:
        """The line parser that takes the ordinary lines: "native" (C) or "python" (parse_line)."""
        return "native" if self.native else "python"

    @property
    def fields(self) -> list[tuple[str, str]]:
        """The (name, type) fields read: the kind's, or the projection's plus the required ones."""
        if self.columns is None:
            return FIELDS[self.kind]
        keep = {*self.columns, *REQUIRED[self.kind]} | ({"created_utc"} if self.month is None else set())
        return [(n, t) for n, t in FIELDS[self.kind] if n in keep]

    @property
    def output_schema(self) -> pa.Schema:
        schema = OUTPUT_SCHEMA[self.kind]
        if self.columns is None:
            return schema
        read = {n for n, _ in self.fields} | {"link_id", "month", "source", "line"}
        return pa.schema([f for f in schema if f.name in read])

    def parse(self, block: Block) -> BlockResult:
        res = BlockResult()
        data = block.data
        if not data:
            return res
        if self.kind is None:
            self._sniff(data)
        starts, ends = line_bounds(data, block.newlines)
        tables = []
        if self.native and len(data) < _NATIVE_MAX_BYTES:
            native, declined = self._native_lines(data, starts, ends, block.first_line)
            tables.append(native)
        else:
            declined = range(len(starts))
        res.slow = len(declined)
        slow = self._python_lines(data, starts, ends, declined, block.first_line, res)
        if slow is not None:
            tables.append(slow)
        tables = [t for t in tables if t.num_rows]
        if tables:
            table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
            if len(tables) > 1:  # C rows and parse_line rows: back to file order
                table = table.take(pc.sort_indices(table.column("line")))
            table = self._finish(table)
            res.tables = [table]
            res.parsed = table.num_rows
        return res

    def error_record(self, line: int, reason: str, detail: str, tail: bytes) -> dict:
        """The quarantine record of a decoder break at ``line`` (``tail``: the partial line)."""
        return self._qrow(line, reason, detail, tail)

    # internals ---------------------------------------------------------------------------------
    def _native_lines(self, data: bytes, starts, ends, first_line: int) -> tuple[pa.Table, list[int]]:
        """The C parser's rows (kind fields + line) and the indices of the lines it declined."""
        rows, columns = fastjson.parse_lines(data, starts, ends, self.fields, REQUIRED[self.kind])
        columns["line"] = pa.array(rows + first_line, pa.int64())
        table = pa.table(columns)
        if len(rows) == len(starts):
            return table, []
        taken = np.zeros(len(starts), dtype=bool)
        taken[rows] = True
        return table, np.flatnonzero(~taken).tolist()

    def _python_lines(self, data: bytes, starts, ends, lines, first_line: int, res: BlockResult):
        """``parse_line`` on the block's ``lines`` (indices): their rows as a table (None when there are
        none); the quarantined ones go to ``res``."""
        if not len(lines):
            return None
        kind, fields = self.kind, self.fields
        idx = np.asarray(lines, dtype=np.int64)
        bounds = zip(idx.tolist(), starts[idx].tolist(), ends[idx].tolist(), strict=True)  # Python ints
        rows = []
        for i, lo, hi in bounds:
            line = data[lo:hi]
            try:
                row = parse_line(line, kind, fields)
            except Quarantined as q:
                res.quarantine.append(self._qrow(first_line + i, q.reason, q.detail, line))
                res.quarantined[q.reason] += 1
                continue
            row["line"] = first_line + i
            rows.append(row)
        if not rows:
            return None
        schema = pa.schema([*((name, _ARROW_TYPE[ft]) for name, ft in fields), ("line", pa.int64())])
        return pa.Table.from_pylist(rows, schema=schema)

    def _sniff(self, data: bytes) -> None:
        for line in data.split(b"\n", 1000)[:1000]:
            try:
                kind = sniff_kind(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue
            if kind:
                self.kind = kind
                return
        self.kind = COMMENTS

    def _qrow(self, line_no: int, reason: str, detail: str, line: bytes) -> dict:
        return {
            "source": self.source,
            "line": line_no,
            "reason": reason,
            "detail": detail,
            "head": head_of(line),
        }

    def _finish(self, table: pa.Table) -> pa.Table:
        """Kind fields + line -> the output schema (derived link_id, month, source)."""
        n = table.num_rows
        cols = {name: table.column(name) for name, _ in self.fields}
        if self.kind == SUBMISSIONS:
            cols["link_id"] = pc.binary_join_element_wise("t3_", cols["id"], "")
        if self.month is not None:
            cols["month"] = pa.repeat(pa.scalar(self.month), n)
        else:
            ts = pc.cast(cols["created_utc"], pa.timestamp("s", tz="UTC"))
            cols["month"] = pc.strftime(ts, format="%Y-%m")
        cols["source"] = pa.repeat(pa.scalar(self.source), n)
        cols["line"] = table.column("line")
        schema = self.output_schema
        return pa.table([cols[f.name] for f in schema], schema=schema)
