"""Hand-built instance rows for the filter tests (INSTANCES schema)."""

from __future__ import annotations

import pyarrow as pa

from dialogsmith.formats.schemas import INSTANCES

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
