"""Months and the dumps' eras: which fields a month's rows have, and with which JSON types."""

from __future__ import annotations

import re
from calendar import timegm
from dataclasses import dataclass

_MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")


def parse_month(month: str) -> tuple[int, int]:
    m = _MONTH_RE.match(month)
    if not m or not 1 <= int(m.group(2)) <= 12 or not 2005 <= int(m.group(1)) <= 2099:
        raise ValueError(f"bad month {month!r}: expected YYYY-MM between 2005-01 and 2099-12")
    return int(m.group(1)), int(m.group(2))


def month_bounds(ym: tuple[int, int]) -> tuple[int, int]:
    """[start, end) of the month in epoch seconds (UTC)."""
    y, mo = ym
    nxt = (y + 1, 1) if mo == 12 else (y, mo + 1)
    return timegm((y, mo, 1, 0, 0, 0)), timegm((nxt[0], nxt[1], 1, 0, 0, 0))


def month_index(ym: tuple[int, int]) -> int:
    """Months since 2005-01: seeds the month's random streams and offsets its ids."""
    return (ym[0] - 2005) * 12 + ym[1] - 1


@dataclass(frozen=True)
class CommentEra:
    created_str: bool  # 2007-11..2015-11: "created_utc": "1293862275"
    api_fields: bool  # 2007-11..2015-07: name, downs, score_hidden, archived
    raw_api_share: float  # 2015-02: ~1% of rows with int created_utc and raw-API fields
    ups: bool  # absent from 2016-10
    null_score_share: float  # 2017-10, 2017-11: score can be null
    submitter_fields: bool  # 2017-01 on: permalink, is_submitter
    collapse_fields: bool  # 2017-06 on: can_gild, collapsed, collapsed_reason
    float_created: bool  # 2023 on: float created_utc and a _meta object


def comment_era(ym: tuple[int, int]) -> CommentEra:
    return CommentEra(
        created_str=(2007, 11) <= ym <= (2015, 11),
        api_fields=(2007, 11) <= ym <= (2015, 7),
        raw_api_share=0.01 if ym == (2015, 2) else 0.0,
        ups=ym < (2016, 10),
        null_score_share=0.1 if ym in ((2017, 10), (2017, 11)) else 0.0,
        submitter_fields=ym >= (2017, 1),
        collapse_fields=ym >= (2017, 6),
        float_created=ym >= (2023, 1),
    )


@dataclass(frozen=True)
class SubmissionEra:
    created_str: bool  # 2014-01..2015-11
    null_subreddit_id_share: float  # 2017: subreddit_id can be null
    retrieved_on: bool  # missing in 2016-07..2016-09 (the real dumps lack it in some months)
    float_created: bool


def submission_era(ym: tuple[int, int]) -> SubmissionEra:
    return SubmissionEra(
        created_str=(2014, 1) <= ym <= (2015, 11),
        null_subreddit_id_share=0.03 if ym[0] == 2017 else 0.0,
        retrieved_on=not ((2016, 7) <= ym <= (2016, 9)),
        float_created=ym >= (2023, 1),
    )
