"""Hand-built instance rows for the filter tests (INSTANCES schema)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from dialogsmith import outputs
from dialogsmith.formats.schemas import INSTANCES, INSTANCES_VERSION, with_metadata

_n = [0]


def instance(
    turns,
    *,
    weights=None,
    wit=None,
    link="t3_a",
    authors=None,
    raw=None,
    sub="pics",
    month="2011-01",
    target=None,
    parent=None,
    created=0,
    score=1,
) -> dict:
    _n[0] += 1
    target = target or f"t1_x{_n[0]}"
    k = len(turns)
    weights = weights if weights is not None else [1.0] * k
    return {
        "instance_id": target,
        "link_id": link,
        "parent_id": parent or f"t1_p{_n[0]}",
        "target_id": target,
        "subreddit": sub,
        "month": month,
        "target_score": score,
        "target_created_utc": created,
        "turn_ids": [f"t1_{_n[0]}_{i}" for i in range(k)],
        "turn_authors": authors if authors is not None else [f"user{i % 2}" for i in range(k)],
        "turns_raw": raw if raw is not None else list(turns),
        "turns": list(turns),
        "turn_weights": weights,
        "weights_in_text": bool(wit),
    }


def table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=INSTANCES)


def corpus() -> list[dict]:
    """180 clean instances in 60 threads, one instance for each of several rules, one malformed."""
    rows = []
    for k in range(60):  # 60 threads, 3 clean instances each
        for j in range(3):
            rows.append(
                instance(
                    [f"question number {k} is here", f"an answer {j} to the thing {k}"],
                    link=f"t3_l{k}",
                    parent=f"t1_q{k}",
                    created=k * 10 + j,
                )
            )
    rows += [
        instance(["hi there", "one"]),  # tgt_too_short
        instance(["hi there", "see __url__ now"]),  # has_url
        instance(["hi there", "WHATS this"]),  # shouting
        instance(["hi there", "the (thing)"]),  # has_brackets
        instance(["hi there", "und para mit"]),  # no_common_word (paper, default)
        instance(["the q", "the reply"], raw=["[removed]", "the reply"]),  # removed_comment (default)
        instance(["the q", "the reply by a bot"], authors=["u", "AutoModerator"]),  # bot_author (default)
        instance(["same context is here", "the same reply"], link="t3_d1", created=5),
        instance(["same context is here", "the same reply"], link="t3_d2", created=1),  # wins the dedup
        instance(["the q", "the &amp; reply"]),  # kept; default unescapes to "&"
        {**instance(["x"]), "turns": []},  # malformed_instance
    ]
    return rows


def write_instances_dir(d: Path, rows: list[dict]) -> Path:
    """An instances stage output holding ``rows``: two files with small row groups (several tasks)."""
    (d / "instances").mkdir(parents=True)
    t = table(rows).cast(with_metadata(INSTANCES, "instances", INSTANCES_VERSION))
    half = t.num_rows // 2
    pq.write_table(t.slice(0, half), d / "instances" / "part-00000.parquet", row_group_size=40)
    pq.write_table(t.slice(half), d / "instances" / "part-00001.parquet", row_group_size=40)
    (d / "stats.json").write_text(
        json.dumps({"stage": "instances", "extra": {"config": {"profile": "test"}}})
    )
    outputs.write_marker(str(d), "instances")
    return d
