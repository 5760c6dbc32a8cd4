"""Comment and submission rows as the dumps spell them: ``(id, dict)`` pairs, fields and JSON types per era.

The thread shape (who replies to whom, when, what kind of text) comes in as numpy columns; the rest
(authors, scores, edits, flairs, ...) is drawn here from the caller's random stream. The per-line
Python work is one dict; columns become Python lists a chunk at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dialogsmith.sample.eras import CommentEra, submission_era
from dialogsmith.sample.vocab import (
    BACKSLASH,
    BOT,
    BOT_AUTHORS,
    BRACKETS,
    DELETED,
    DOMAINS,
    ENTITY,
    NEWLINE,
    NON_ENGLISH,
    REMOVED,
    SHOUT,
    SUBREDDITS,
    TOPIC_QUESTIONS,
    UNICODE,
    URL,
    TextBank,
    slug,
)

_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_B36_BYTES = np.frombuffer(_B36.encode(), dtype=np.uint8)


def b36(n: int) -> str:
    if n == 0:
        return "0"
    out = []
    while n:
        n, d = divmod(n, 36)
        out.append(_B36[d])
    return "".join(reversed(out))


def b36_many(values: np.ndarray) -> list[str]:
    """Vectorised base36 of a non-negative int64 array (~0.1 us per id)."""
    v = np.asarray(values, dtype=np.int64)
    if v.size == 0:
        return []
    width = len(b36(int(v.max())))
    digits = np.empty((v.size, width), dtype=np.uint8)
    rest = v.copy()
    for col in range(width - 1, -1, -1):
        digits[:, col] = _B36_BYTES[rest % 36]
        rest //= 36
    out = digits.view(f"S{width}").ravel().astype(f"U{width}").tolist()
    if int(v.min()) < 36 ** (width - 1):
        out = [s.lstrip("0") or "0" for s in out]
    return out


MISSING_SUBMISSION_SHARE = 0.01  # submissions never written: their comments point to an absent t3_


@dataclass
class Submissions:
    """A month's (classic) or a window's (realistic) submissions as ``submission_records`` reads them;
    index = rank by created_utc, id = sbase + index."""

    ym: tuple[int, int]
    sbase: int
    s_time: np.ndarray
    s_topic: np.ndarray  # question asked by the title, -1: none
    s_sub: np.ndarray  # subreddit index
    s_author: np.ndarray
    s_ncomments: np.ndarray  # comments created (written or not)
    s_missing: np.ndarray  # never written to RS


def make_submissions(rng, ym, sbase, times, topic, sub, author, ncomments, commented) -> Submissions:
    """Submissions whose ``s_missing`` marks MISSING_SUBMISSION_SHARE of the ``commented`` threads as
    never written to RS (comments whose submission the dump lacks, as in real months)."""
    n = len(times)
    return Submissions(
        ym,
        sbase,
        times,
        topic,
        sub,
        author,
        ncomments,
        (rng.random(n) < MISSING_SUBMISSION_SHARE) & commented,
    )


SUBREDDIT_IDS = ["t5_" + b36(36**4 * 2 + 7919 * 31 * (i + 1)) for i in range(len(SUBREDDITS))]

# --- comments ---------------------------------------------------------------------------------------

_CHUNK = 65536  # comments turned into Python lists at a time


@dataclass
class _Columns:
    """One chunk of comments, a Python list per field (list indexing is the cheapest per-line access)."""

    ids: list[str]
    parents: list[str]  # base36 of the parent comment (unused for a top-level comment)
    links: list[str]
    kinds: list[int]
    ptopics: list[int]
    asks: list[int]
    tops: list[bool]
    created: list[int]
    subs: list[str]
    sub_ids: list[str]
    authors: list[str]
    link_authors: list[str]
    rbits: list[int]
    scores: list[int]
    null_score: list[bool]
    edited: list[int]
    edit_kind: list[int]  # 0: not edited, 1: int time, 2: float time
    contro: list[int]
    gilded: list[int]
    retrieved: list[int]
    flair: list[int]
    raw_api: list[bool]


def comment_rows(
    bank: TextBank,
    era: CommentEra,
    bq: bool,
    rng: np.random.Generator,
    *,
    idnum: np.ndarray,
    parent_num: np.ndarray,  # -1: a top-level comment
    link_num: np.ndarray,
    created: np.ndarray,
    sub_i: np.ndarray,
    link_author_idx: np.ndarray,
    kind: np.ndarray,
    ptopic: np.ndarray,
    ask: np.ndarray,
):
    """Yield (id, dict) for the given comments in the given order; other fields drawn from ``rng``."""
    m = idnum.size
    author_idx = (len(bank.authors) * rng.random(m) ** 3).astype(np.int64)
    rbits_a = rng.integers(0, 2**31, m)
    # Scores: mostly small positive, a tail of big ones, ~12% zero or negative.
    mag = np.floor(np.exp(rng.normal(0.3, 1.4, m))).astype(np.int64)
    score_a = np.where(rng.random(m) < 0.12, 1 - mag, 1 + mag)
    null_score_a = rng.random(m) < era.null_score_share
    u_edit = rng.random(m)
    edit_time = created + 60 + (rng.random(m) * 86400).astype(np.int64)
    edit_kind_a = np.where(u_edit < 0.04, 1, np.where(u_edit < 0.05, 2, 0))  # 1: int, 2: float
    contro_a = (rng.random(m) < 0.05).astype(np.int64)
    gilded_a = np.where(rng.random(m) < 0.01, 1, 0)
    retrieved_a = created + 86400 * 30 + (rng.random(m) * 86400 * 60).astype(np.int64)
    flair_a = np.where(rng.random(m) < 0.05, rng.integers(1, len(bank.flairs), m), 0)
    raw_api_a = rng.random(m) < era.raw_api_share
    sub_names = np.array(SUBREDDITS, dtype=object)
    sub_id_names = np.array(SUBREDDIT_IDS, dtype=object)
    author_names = np.array(bank.authors, dtype=object)
    for lo in range(0, m, _CHUNK):
        sl = slice(lo, min(m, lo + _CHUNK))
        chunk = _Columns(
            ids=b36_many(idnum[sl]),
            parents=b36_many(np.maximum(parent_num[sl], 0)),
            links=b36_many(link_num[sl]),
            kinds=kind[sl].tolist(),
            ptopics=ptopic[sl].tolist(),
            asks=ask[sl].tolist(),
            tops=(parent_num[sl] < 0).tolist(),
            created=created[sl].tolist(),
            subs=sub_names[sub_i[sl]].tolist(),
            sub_ids=sub_id_names[sub_i[sl]].tolist(),
            authors=author_names[author_idx[sl]].tolist(),
            link_authors=author_names[link_author_idx[sl]].tolist(),
            rbits=rbits_a[sl].tolist(),
            scores=score_a[sl].tolist(),
            null_score=null_score_a[sl].tolist(),
            edited=edit_time[sl].tolist(),
            edit_kind=edit_kind_a[sl].tolist(),
            contro=contro_a[sl].tolist(),
            gilded=gilded_a[sl].tolist(),
            retrieved=retrieved_a[sl].tolist(),
            flair=flair_a[sl].tolist(),
            raw_api=raw_api_a[sl].tolist(),
        )
        yield from _comment_chunk(bank, era, bq, chunk)
        del chunk  # freed before the next chunk's lists are built


def _comment_chunk(bank: TextBank, era: CommentEra, bq: bool, c: _Columns):
    """Yield (id, dict) per comment of the chunk. The dict of the eras from 2015-12 on is built inline
    (the common case: no call per line); older eras and the BigQuery shape have their own builders."""
    bodies, flairs = bank.body, bank.flairs
    ids, kinds, rbits, subs, authors = c.ids, c.kinds, c.rbits, c.subs, c.authors
    ptopics, asks, tops, links, parents = c.ptopics, c.asks, c.tops, c.links, c.parents
    created, scores, null_score, flair, raw_api = c.created, c.scores, c.null_score, c.flair, c.raw_api
    edited_l, edit_kind, contro, gilded, retrieved = c.edited, c.edit_kind, c.contro, c.gilded, c.retrieved
    sub_ids, link_authors = c.sub_ids, c.link_authors
    for j in range(len(ids)):
        kind = kinds[j]
        body = bodies(kind, ptopics[j], asks[j], rbits[j], subs[j])
        author = authors[j]
        distinguished = None
        stickied = False
        if kind == DELETED or (kind == REMOVED and rbits[j] % 10 < 7):
            author = "[deleted]"
        elif kind == BOT:
            author = BOT_AUTHORS[rbits[j] % len(BOT_AUTHORS)]
            if author == "AutoModerator":
                distinguished = "moderator"
                stickied = rbits[j] & 32 == 0
        cid = ids[j]
        parent_id = "t3_" + links[j] if tops[j] else "t1_" + parents[j]
        link_id = "t3_" + links[j]
        sc = None if null_score[j] else scores[j]
        fl = flairs[flair[j]] or None
        if bq:
            yield cid, _bigquery_comment(c, j, era, body, author, fl, link_id, parent_id, sc, distinguished)
            continue
        ek = edit_kind[j]
        edited = False if ek == 0 else (edited_l[j] if ek == 1 else float(edited_l[j]))
        if era.created_str and not raw_api[j]:
            common = (body, author, fl, link_id, parent_id, sc, distinguished, edited, stickied)
            yield cid, _string_time_comment(c, j, era, *common)
            continue
        d = {
            "author": author,
            "author_flair_css_class": None,
            "author_flair_text": fl,
            "body": body,
            "controversiality": contro[j],
            "created_utc": float(created[j]) if era.float_created else created[j],
            "distinguished": distinguished,
            "edited": edited,
            "gilded": gilded[j],
            "id": cid,
            "link_id": link_id,
            "parent_id": parent_id,
            "retrieved_on": retrieved[j],
            "score": sc,
            "stickied": stickied,
            "subreddit": subs[j],
            "subreddit_id": sub_ids[j],
        }
        if era.ups:
            d["ups"] = sc
        if era.submitter_fields:
            d["is_submitter"] = author == link_authors[j]
            d["permalink"] = f"/r/{subs[j]}/comments/{links[j]}/_/{cid}/"
        if era.collapse_fields:
            d["can_gild"] = True
            d["collapsed"] = sc is not None and sc < -4
            d["collapsed_reason"] = None
        if era.float_created:
            d["_meta"] = {"retrieved_2nd_on": retrieved[j] + 86400 * 365}
        if raw_api[j]:
            _add_raw_api_fields(d, cid, body, created[j])
        yield cid, d


def _bigquery_comment(c: _Columns, j, era, body, author, fl, link_id, parent_id, sc, distinguished) -> dict:
    """The BigQuery export's row: every number a string, the fields it lacks null."""
    return {
        "body": body,
        "score_hidden": None,
        "archived": None,
        "name": None,
        "author": author,
        "author_flair_text": fl,
        "downs": None,
        "created_utc": str(c.created[j]),
        "subreddit_id": c.sub_ids[j],
        "link_id": link_id,
        "parent_id": parent_id,
        "score": None if sc is None else str(sc),
        "retrieved_on": str(c.retrieved[j]),
        "controversiality": str(c.contro[j]),
        "gilded": str(c.gilded[j]),
        "id": c.ids[j],
        "subreddit": c.subs[j],
        "ups": str(sc) if era.ups and sc is not None else None,
        "distinguished": distinguished,
        "author_flair_css_class": None,
    }


def _string_time_comment(
    c: _Columns, j, era, body, author, fl, link_id, parent_id, sc, distinguished, edited, stickied
) -> dict:
    """A 2007-11..2015-11 row: string created_utc, that era's key order and API fields."""
    cid = c.ids[j]
    d = {}
    if era.api_fields:
        d["score_hidden"] = False
        d["name"] = "t1_" + cid
    d["link_id"] = link_id
    d["body"] = body
    if era.api_fields:
        d["downs"] = 0
    d["created_utc"] = str(c.created[j])
    d["score"] = sc
    d["author"] = author
    d["distinguished"] = distinguished
    d["id"] = cid
    if era.api_fields:
        d["archived"] = True
    d["parent_id"] = parent_id
    d["subreddit"] = c.subs[j]
    d["author_flair_css_class"] = None
    d["author_flair_text"] = fl
    d["gilded"] = c.gilded[j]
    d["retrieved_on"] = c.retrieved[j]
    d["ups"] = sc
    d["controversiality"] = c.contro[j]
    d["subreddit_id"] = c.sub_ids[j]
    d["edited"] = edited
    d["stickied"] = stickied
    return d


def _add_raw_api_fields(d: dict, cid: str, body: str, created: int) -> None:
    """2015-02: about 1% of the rows came straight from the API (int created_utc, HTML, listing fields)."""
    d["body_html"] = '&lt;div class="md"&gt;&lt;p&gt;' + body + "&lt;/p&gt;\n&lt;/div&gt;"
    d["created"] = float(created + 28800)
    d["replies"] = ""
    d["likes"] = None
    d["user_reports"] = []
    d["mod_reports"] = []
    d["saved"] = False
    d["num_reports"] = None
    d["name"] = "t1_" + cid


# --- submissions ------------------------------------------------------------------------------------


def submission_records(plan, bank: TextBank, bq: bool, rng: np.random.Generator):
    """Yield (id, dict) per written submission of ``plan`` (a classic MonthPlan or a realistic
    Submissions: ``ym, sbase, s_time, s_topic, s_sub, s_author, s_ncomments, s_missing``)."""
    era = submission_era(plan.ym)
    n = plan.s_time.size
    ids = b36_many(plan.sbase + np.arange(n))
    rb = rng.integers(0, 2**31, n).tolist()
    u = rng.random((n, 4)).tolist()
    mag = np.floor(np.exp(rng.normal(1.0, 1.8, n))).astype(np.int64).tolist()
    noise = rng.integers(-2, 4, n).tolist()
    created_l = plan.s_time.tolist()
    for t in range(n):
        if plan.s_missing[t]:
            continue
        sid = ids[t]
        sub_i = int(plan.s_sub[t])
        sub = SUBREDDITS[sub_i]
        r = rb[t]
        title, is_self, domain, url, selftext = _submission_text(
            bank, sid, sub, int(plan.s_topic[t]), r, u[t]
        )
        ncom = int(plan.s_ncomments[t])
        if u[t][3] < 0.1:  # the crawl's count disagrees with the comments present
            ncom = max(0, ncom + noise[t])
        author = "[deleted]" if u[t][2] < 0.03 else bank.authors[int(plan.s_author[t])]
        created = created_l[t]
        score = mag[t] if r & 7 else -mag[t] // 3
        sub_id = SUBREDDIT_IDS[sub_i]
        if era.null_subreddit_id_share and u[t][3] > 1 - era.null_subreddit_id_share:
            sub_id = None
        d = {
            "id": sid,
            "title": title,
            "subreddit": sub,
            "num_comments": str(ncom) if bq else ncom,
            "score": str(score) if bq else score,
            "created_utc": str(created)
            if bq or era.created_str
            else float(created)
            if era.float_created
            else created,
            "domain": domain,
            "permalink": f"/r/{sub}/comments/{sid}/{slug(title)}/",
            "url": url,
            "is_self": is_self,
            "selftext": selftext,
            "over_18": r % 50 == 0,
            "author": author,
            "stickied": False if bq else r % 97 == 0,
            "subreddit_id": sub_id,
        }
        if bq:
            d["retrieved_on"] = str(created + 86400 * 40)
        elif era.retrieved_on:
            d["retrieved_on"] = created + 86400 * 40
        yield sid, d


def _submission_text(bank: TextBank, sid: str, sub: str, topic: int, r: int, u: list[float]):
    """(title, is_self, domain, url, selftext): a question of a topic, rule-tripping text or filler."""
    if topic >= 0:
        title = TOPIC_QUESTIONS[topic][r % len(TOPIC_QUESTIONS[topic])]
    elif u[0] < 0.2:
        kind = (URL, BRACKETS, SHOUT, NON_ENGLISH, ENTITY, UNICODE, BACKSLASH, NEWLINE)[r % 8]
        title = bank.body(kind, -1, -1, r >> 3, sub)
    else:
        title = bank.filler[r % 8192]
    is_self = u[1] < 0.5
    if is_self:
        domain = "self." + sub
        url = f"https://www.reddit.com/r/{sub}/comments/{sid}/{slug(title)}/"
        v = u[2]
        if v < 0.05:
            selftext = "[deleted]"
        elif v < 0.1:
            selftext = "[removed]"
        elif v < 0.5:
            selftext = ""
        else:
            selftext = bank.filler[(r >> 13) % 8192]
    else:
        domain = DOMAINS[r % len(DOMAINS)]
        url = f"https://{domain}/{b36(r)}"
        selftext = ""
    return title, is_self, domain, url, selftext
