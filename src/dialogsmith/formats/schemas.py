"""On-disk table schemas, defined once, each with a version.

Every stage writes its tables with these schemas and stores ``{"dialogsmith.schema": name,
"dialogsmith.schema_version": N}`` in the Parquet key-value metadata. A reader checks both.

Partitioning: ``comments/`` and ``submissions/`` are split into ``bucket=<k>`` directories where
``k = link_bucket(link_id, n_buckets)``, so every thread (all comments sharing a ``link_id``, across
all months) and its submission live in the same bucket, and a later stage processes buckets
independently. ``n_buckets`` is recorded in the extract stage's ``stats.json`` (``extra.n_buckets``).
"""

from __future__ import annotations

import zlib

import pyarrow as pa

from dialogsmith.formats.parquet import TableFormat

# --- extract (ingest) -------------------------------------------------------------------------

COMMENTS_VERSION = 1
COMMENTS_SCHEMA = pa.schema(
    [
        ("id", pa.string()),  # base36, no prefix
        ("link_id", pa.string()),  # "t3_<id>"
        ("parent_id", pa.string()),  # "t1_<id>" (comment) or "t3_<id>" (submission)
        ("author", pa.string()),
        ("subreddit", pa.string()),
        ("subreddit_id", pa.string()),
        ("body", pa.string()),  # raw, exactly as in the dump (HTML-escaped &amp; &lt; &gt;)
        ("score", pa.int64()),  # null when the dump has null
        ("created_utc", pa.int64()),  # epoch seconds; string/float in some eras, coerced
        ("edited", pa.int64()),  # epoch seconds of the edit, null when never edited
        ("gilded", pa.int64()),
        ("controversiality", pa.int64()),
        ("distinguished", pa.string()),
        ("stickied", pa.bool_()),
        ("month", pa.string()),  # "YYYY-MM", from the file name
        ("source", pa.string()),  # file name the row came from
        ("line", pa.int64()),  # 1-based line number in that file
    ]
)

SUBMISSIONS_VERSION = 1
SUBMISSIONS_SCHEMA = pa.schema(
    [
        ("id", pa.string()),  # base36, no prefix
        ("link_id", pa.string()),  # "t3_<id>", derived, for bucketing and joins
        ("author", pa.string()),
        ("subreddit", pa.string()),
        ("subreddit_id", pa.string()),
        ("title", pa.string()),  # raw
        ("selftext", pa.string()),
        ("num_comments", pa.int64()),
        ("score", pa.int64()),
        ("created_utc", pa.int64()),
        ("domain", pa.string()),
        ("permalink", pa.string()),
        ("url", pa.string()),
        ("is_self", pa.bool_()),
        ("over_18", pa.bool_()),
        ("stickied", pa.bool_()),
        ("month", pa.string()),
        ("source", pa.string()),
        ("line", pa.int64()),
    ]
)

QUARANTINE_VERSION = 1
QUARANTINE = pa.schema(
    [
        ("source", pa.string()),  # file name
        ("line", pa.int64()),  # 1-based line number; for a decoder error, the line after the last good one
        ("reason", pa.string()),  # bad_utf8, bad_json, not_object, missing_field, bad_type, truncated_file, …
        ("detail", pa.string()),  # the error message
        ("head", pa.string()),  # first bytes of the line (UTF-8 with replacement)
    ]
)

# --- conversation building ----------------------------------------------------------------------

INSTANCES_VERSION = 1
INSTANCES = pa.schema(
    [
        ("instance_id", pa.string()),  # = target_id; unique within a profile's output
        ("link_id", pa.string()),  # "t3_<id>"
        ("parent_id", pa.string()),  # the target's parent, with prefix
        ("target_id", pa.string()),  # "t1_<id>"
        ("subreddit", pa.string()),  # lower-cased
        ("month", pa.string()),  # the target comment's month "YYYY-MM"
        ("target_score", pa.int64()),
        ("target_created_utc", pa.int64()),
        ("turn_ids", pa.list_(pa.string())),  # oldest first; the title turn has the link_id
        ("turn_authors", pa.list_(pa.string())),  # null entry for the title turn
        ("turns_raw", pa.list_(pa.string())),  # raw texts as in the dump (title turn: "title: " + raw title)
        ("turns", pa.list_(pa.string())),  # the profile's normalized texts (dialogpt: GPT normalization)
        ("turn_weights", pa.list_(pa.float32())),  # DialoGPT weights: 1.0 trained on, 0.0 not
        # True when DialoGPT's TSV writes each turn as "1.0 <text>"/"0.0 <text>" (dialogpt profile with
        # leaves_only and clean on); the dialogpt filter rules see the text with that prefix.
        ("weights_in_text", pa.bool_()),
    ]
)

# --- filter -------------------------------------------------------------------------------------

FILTERED_VERSION = 1
SPLITS = ("train", "valid", "test")  # the filter output's split directories (datasets: valid/ = "validation")
FILTERED = INSTANCES.append(pa.field("split", pa.string()))  # "train" | "valid" | "test"
DROPPED_VERSION = 1
DROPPED = INSTANCES.append(pa.field("reason", pa.string()))


# --- the tables as written (formats/parquet.py reads and writes them) ------------------------------

# Values that repeat (threads, authors, subreddits, months, file names, reasons): dictionary-encoded.
_EXTRACT_DICTIONARY = ("link_id", "author", "subreddit", "subreddit_id", "distinguished", "domain", "month")
_EXTRACT_DICTIONARY += ("source", "reason")
COMMENTS_TABLE = TableFormat("comments", COMMENTS_VERSION, COMMENTS_SCHEMA, "snappy", _EXTRACT_DICTIONARY)
SUBMISSIONS_TABLE = TableFormat(  # link_id is unique per submission
    "submissions",
    SUBMISSIONS_VERSION,
    SUBMISSIONS_SCHEMA,
    "snappy",
    tuple(c for c in _EXTRACT_DICTIONARY if c != "link_id"),
)
QUARANTINE_TABLE = TableFormat("quarantine", QUARANTINE_VERSION, QUARANTINE, "snappy", _EXTRACT_DICTIONARY)
# 817K instances: zstd with dictionaries wrote in 1.67 s and read back in 2.15 s (54 MB); lz4 without
# dictionaries for the texts 1.29 s and 0.74 s (93 MB). The filter reads everything back: lz4.
INSTANCES_TABLE = TableFormat(
    "instances", INSTANCES_VERSION, INSTANCES, "lz4", ("link_id", "subreddit", "month"),
    statistics=("instance_id", "month", "target_score", "target_created_utc"),
)  # fmt: skip
_FILTER_DICTIONARY = ("subreddit", "month", "link_id", "reason", "split", "turn_weights", "weights_in_text")
FILTERED_TABLE = TableFormat("filtered", FILTERED_VERSION, FILTERED, "snappy", _FILTER_DICTIONARY)
DROPPED_TABLE = TableFormat("dropped", DROPPED_VERSION, DROPPED, "snappy", _FILTER_DICTIONARY)
TABLES = {
    t.name: t
    for t in (
        COMMENTS_TABLE,
        SUBMISSIONS_TABLE,
        QUARANTINE_TABLE,
        INSTANCES_TABLE,
        FILTERED_TABLE,
        DROPPED_TABLE,
    )
}


def with_metadata(schema: pa.Schema, name: str, version: int) -> pa.Schema:
    return TableFormat(name, version, schema).arrow_schema


def check_schema_metadata(schema: pa.Schema, name: str, version: int, where: str) -> None:
    TableFormat(name, version, pa.schema([])).check(schema, where)


def link_bucket(link_id: str, n_buckets: int) -> int:
    """Stable bucket of a thread: the same on every machine and Python version (crc32, not hash())."""
    return zlib.crc32(link_id.encode("utf-8")) % n_buckets
