"""The ``dialogpt`` profile, pass 2 of one month of one link-id bucket: the released conv step, vectorized
over the targets (target rules, the walk, GPT normalization and weights of the turns used).

A parent named across buckets (see ``dialogpt.py``) cannot be followed here: a walk that reaches it is
returned *pending* with its turns so far, the chain above a comment another bucket names as parent is
exported, and a target whose leaf status depends on another bucket is *deferred*; the driver settles
them."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dialogsmith.idkeys import id_key, parent_keys
from dialogsmith.instances import walk
from dialogsmith.instances.columns import TargetColumns, TurnSource, instance_columns, instance_table
from dialogsmith.instances.config import TARGET_REASONS, BuildConfig
from dialogsmith.instances.dialogpt_pass1 import count_codes
from dialogsmith.instances.text import contiguous

PARENT_CROSS = -3  # the parent is a kept comment of another bucket


@dataclass
class CrossKeys:
    """A bucket's side of the candidate cross-bucket pairs (keys of ids, see ``idkeys.id_key``)."""

    parents: np.ndarray  # keys of this bucket's comments named as parent from another bucket
    children: np.ndarray  # keys of parents in another bucket named by this bucket's comments


NO_CROSS = CrossKeys(np.zeros(0, np.uint64), np.zeros(0, np.uint64))


@dataclass
class Turn:
    """One turn of a pending walk or of an exported chain (texts final, as pass 2 computed them)."""

    turn_id: str
    author: str | None
    raw: str
    text: str
    weight: float


@dataclass
class MonthResult:
    instances: pa.Table | None
    settle: dict  # pending walks, chains, deferred targets, kept children naming a candidate parent


@dataclass
class _Month:
    """One month's kept comments of a bucket, linked: what every step of pass 2 reads."""

    month: str
    rc: pa.Table
    pids: pa.Array  # null parent ids as "None" (str(None), as pass 1's TSV writes it)
    t1ids: pa.Array
    links: pa.Array
    parent: np.ndarray  # walk.parent_index; PARENT_CROSS for a parent a kept comment of another bucket may be
    leaf: np.ndarray
    maybe_parent: np.ndarray  # named as parent from another bucket (a candidate)
    named: list  # (month, parent id) of this bucket's comments that name a candidate of another bucket
    over_long: np.ndarray
    sub_title: dict[str, str]
    sub_subreddit: dict[str, str]

    def target_info(self, row: int) -> dict:
        link = self.links[row].as_py()
        return {
            "instance_id": self.t1ids[row].as_py(),
            "link_id": link,
            "parent_id": self.pids[row].as_py(),
            "subreddit": self.sub_subreddit.get(link, ""),
            "target_score": self.rc["score"][row].as_py(),
            "target_created_utc": self.rc["created_utc"][row].as_py(),
        }


def _link_month(cfg: BuildConfig, month: str, rc: pa.Table, subs: pa.Table, cross: CrossKeys) -> _Month:
    ntok = rc["ntok"].to_numpy()
    pids = contiguous(pc.fill_null(rc["parent_id"], "None"))
    t1ids = contiguous(pc.binary_join_element_wise("t1_", rc["id"], ""))
    parent, leaf = walk.parent_index(t1ids, pids)
    maybe_parent = np.zeros(len(parent), dtype=bool)
    if len(cross.parents):
        maybe_parent = np.isin(id_key(rc["id"]), cross.parents)
    named = []
    if len(cross.children):
        rows, key = parent_keys(pids)
        child = rows[(parent[rows] == walk.PARENT_MISSING) & np.isin(key, cross.children)]
        parent[child] = PARENT_CROSS
        named = [(month, pid) for pid in pids.take(pa.array(child)).to_pylist()]  # kept children name them
    over_long = ntok > cfg.max_len if cfg.max_len else np.zeros(len(ntok), dtype=bool)
    link_ids = subs["link_id"].to_pylist()
    return _Month(
        month, rc, pids, t1ids, contiguous(rc["link_id"]), parent, leaf, maybe_parent, named, over_long,
        dict(zip(link_ids, subs["title"].to_pylist(), strict=True)),
        dict(zip(link_ids, subs["subreddit"].to_pylist(), strict=True)),
    )  # fmt: skip


def _target_rules(
    cfg: BuildConfig, m: _Month, cand: np.ndarray, keys, bl_subs
) -> tuple[np.ndarray, np.ndarray]:
    """Per candidate: the index in TARGET_REASONS of the first target rule it fails (-1: none), and
    whether it is deferred (a leaf here that a kept comment of another bucket may reply to)."""
    reason = np.full(len(cand), -1, dtype=np.int16)

    def rule(bad: np.ndarray, name: str) -> None:
        reason[bad & (reason < 0)] = TARGET_REASONS.index(name)

    links_list = None
    if keys is not None:
        links_list = m.links.to_pylist()
        ids_list = m.t1ids.to_pylist()
        keep = np.fromiter((links_list[i] + "\t" + ids_list[i] in keys.keep for i in cand), bool, len(cand))
        rule(~keep, "not_in_keys")
    if cfg.leaves_only:
        rule(~m.leaf[cand], "not_leaf")
    deferred = m.maybe_parent[cand] & (reason < 0) if cfg.leaves_only else np.zeros(len(cand), dtype=bool)
    if bl_subs is not None:
        if links_list is None:
            links_list = m.links.to_pylist()
        subs_c = [m.sub_subreddit.get(links_list[i], "") for i in cand]
        rule(np.fromiter((not x for x in subs_c), bool, len(cand)), "missing_submission")
        rule(np.fromiter((bool(x) and x in bl_subs for x in subs_c), bool, len(cand)), "blocked_subreddit")
    scores = pc.fill_null(m.rc["score"], 0).to_numpy(zero_copy_only=False)
    rule(scores[cand] < cfg.min_score, "low_score")
    return reason, deferred


class TurnTexts:
    """The turns of a month, GPT-normalized, with their weights: 0.0 for a text with a ``--bl-words``
    entry or whose sha224 is a ``--keys`` discard hash, else 1.0."""

    def __init__(self, m: _Month, bl_words, keys):
        self.m, self.bl_words = m, bl_words
        self.discard = keys.discard_hashes if keys else None

    def weight(self, text: str) -> float:
        if self.bl_words is not None and self.bl_words.contains(text):
            return 0.0
        if self.discard and hashlib.sha224(text.encode("utf-8")).hexdigest() in self.discard:
            return 0.0
        return 1.0

    def _weights_of(self, texts: pa.Array) -> pa.Array:
        if self.bl_words is None and not self.discard:
            return pa.array(np.ones(len(texts), np.float32))
        return pa.array([self.weight(x) for x in texts.to_pylist()], pa.float32())

    def texts(self, needed_rows: np.ndarray) -> tuple[pa.Array, pa.Array]:
        """(texts, weights) of comment rows. Each distinct body is normalized once (the normalization is
        a pure function of the body). The rstrip of pass 1 changes nothing here: GPT normalization
        starts by splitting on whitespace."""
        from dialogsmith.text.dialogpt import gpt_normalize_array, minimal_normalize_array

        enc = pc.dictionary_encode(contiguous(self.m.rc["body"].take(pa.array(needed_rows))))
        uniq = gpt_normalize_array(minimal_normalize_array(enc.dictionary))
        return uniq.take(enc.indices), self._weights_of(uniq).take(enc.indices)

    def title_turn(self, link: str) -> Turn | None:
        from dialogsmith.text.dialogpt import gpt_normalize, minimal_normalize

        raw = self.m.sub_title.get(link)
        if raw is None:
            return None
        text = gpt_normalize("title: " + minimal_normalize(raw).rstrip())
        return Turn(link, None, "title: " + raw, text, self.weight(text))

    def turns_of(self, rows: np.ndarray) -> list[Turn]:
        if not len(rows):
            return []
        tx, w = self.texts(rows)
        take = pa.array(rows)
        return [
            Turn(i, a, r, t, float(x))
            for i, a, r, t, x in zip(
                self.m.t1ids.take(take).to_pylist(), self.m.rc["author"].take(take).to_pylist(),
                self.m.rc["body"].take(take).to_pylist(), tx.to_pylist(), w.to_pylist(), strict=True,
            )
        ]  # fmt: skip

    def turns_of_groups(self, groups: list[np.ndarray]) -> list[list[Turn]]:
        """``turns_of`` every group of rows, normalized in one batch: a call costs ~1 ms of fixed Arrow
        kernel work, and a bucket has thousands of walks and chains of a few rows each (one call per
        walk was a quarter of the pass-2 CPU on a 5M-line month)."""
        if not groups:
            return []
        flat = self.turns_of(np.concatenate([np.asarray(g, dtype=np.int64) for g in groups]))
        bounds = np.cumsum([0] + [len(g) for g in groups]).tolist()
        return [flat[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _pending_walks(cfg, m: _Month, cand, alive, walks, deferred, turns: TurnTexts) -> tuple[np.ndarray, list]:
    """The walks that reach a comment whose parent is in another bucket: (mask over ``alive``, the
    walks for the driver, with their turns so far, newest first)."""
    last = walks.steps[np.arange(len(alive)), np.maximum(walks.length - 1, 0)] if len(alive) else alive
    waiting = (walks.length > 0) & (walks.length < cfg.max_depth) & (m.parent[last] == PARENT_CROSS)
    pending = []
    ks = np.flatnonzero(waiting)
    groups = [walks.steps[k, : walks.length[k]] for k in ks]
    for k, rows, walk_turns in zip(ks, groups, turns.turns_of_groups(groups), strict=True):
        pending.append(
            {
                "month": m.month,
                "target": m.target_info(int(cand[alive[k]])),
                "turns": [asdict(t) for t in walk_turns],
                "next": m.pids[int(rows[-1])].as_py(),
                "deferred": bool(deferred[alive[k]]),
            }
        )
    return waiting, pending


def _chains(cfg, m: _Month, turns: TurnTexts) -> dict:
    """The chains above this bucket's candidate parents, for the pending walks of other buckets."""
    chains = {}
    members = np.flatnonzero(m.maybe_parent)
    if not len(members):
        return chains
    cw = walk.walk_targets(members, m.parent, m.over_long, cfg.max_depth, detect_cycles=False)
    groups = [cw.steps[k, : cw.length[k]] for k in range(len(members))]
    for k, (x, rows, chain_turns) in enumerate(
        zip(members, groups, turns.turns_of_groups(groups), strict=True)
    ):
        end = int(rows[-1]) if len(rows) else int(x)
        reaches_cross = len(rows) and len(rows) < cfg.max_depth and m.parent[end] == PARENT_CROSS
        chains[f"{m.month}\t{m.t1ids[int(x)].as_py()}"] = {
            "turns": [asdict(tt) for tt in chain_turns],
            "top": bool(cw.top[k]),
            "title": asdict(tt) if cw.top[k] and (tt := turns.title_turn(m.links[end].as_py())) else None,
            "next": m.pids[end].as_py() if reaches_cross else None,
        }
    return chains


def month_pass2(
    cfg, task, month, rc, subs, keys, bl_words, bl_subs, cross: CrossKeys, ins, extra
) -> MonthResult:
    """Pass 2 of one month of one bucket: the instances that are final here, and what the driver settles."""
    m = _link_month(cfg, month, rc, subs, cross)
    if task["n_shards"] > 1:  # contiguous slices of the released order (whole threads per shard)
        cand = walk.shard_slice(
            walk.released_order(m.links, m.pids, rc["id"]), task["shard"], task["n_shards"]
        )
    else:  # the order of the output lines does not matter (compare sorted, as the spec says)
        cand = np.arange(rc.num_rows, dtype=np.int64)
    extra["candidates"] += len(cand)
    reason, deferred = _target_rules(cfg, m, cand, keys, bl_subs)
    turns = TurnTexts(m, bl_words, keys)
    # the walks of the targets still alive; those that reach a cross child wait for the driver
    alive = np.flatnonzero(reason < 0)
    walks = walk.walk_targets(cand[alive], m.parent, m.over_long, cfg.max_depth, detect_cycles=False)
    waiting, pending = _pending_walks(cfg, m, cand, alive, walks, deferred, turns)
    t = walk.Targets.of(alive, walks).keep(~waiting)  # rows: positions in cand
    chains = _chains(cfg, m, turns)
    title_rows: dict[str, int] = {}  # link_id -> title row, in the order the walks need them

    def title_index(top_links: pa.Array) -> np.ndarray:
        found = (
            title_rows.setdefault(x, len(title_rows)) if x in m.sub_title else -1
            for x in top_links.to_pylist()
        )
        return np.fromiter(found, np.int64, len(top_links))

    trimmed = walk.title_and_depth(
        t, cand[t.rows], m.over_long, m.links, title_index if cfg.use_title else None, cfg.min_depth, True
    )
    for name, bad in (
        ("missing_submission", trimmed.untitled),
        ("target_too_long", trimmed.too_long),
        ("too_shallow", trimmed.too_shallow),
    ):
        hit = t.rows[bad]
        reason[hit[reason[hit] < 0]] = TARGET_REASONS.index(name)
    t = trimmed.targets
    counted = ~deferred
    counted[alive[waiting]] = False
    count_codes(ins.dropped, np.where(counted, reason, -1), TARGET_REASONS)
    settle = {"pending": pending, "chains": chains, "named": m.named, "deferred": []}
    for pos in np.flatnonzero(deferred & (reason >= 0)):
        settle["deferred"].append(
            {"month": month, "id": m.t1ids[int(cand[pos])].as_py(), "reason": TARGET_REASONS[reason[pos]]}
        )
    if len(t.rows) == 0:
        return MonthResult(None, settle)
    titles = [(tt.raw, tt.text, tt.weight) for tt in (turns.title_turn(link) for link in title_rows)]
    held = deferred[t.rows]
    t.rows = cand[t.rows]  # positions in cand -> comment rows
    table = _instances(cfg, m, t, titles, turns, texts_only=task.get("tsv") is not None)
    if held.any():  # a deferred target's instance waits for the driver
        settle["deferred"] += [
            {"month": month, "id": row["instance_id"], "instance": row}
            for row in table.filter(pa.array(held)).to_pylist()
        ]
        table = table.filter(pa.array(~held))
    return MonthResult(table, settle)


def _instances(cfg, m: _Month, t: walk.Targets, titles, turns: TurnTexts, texts_only: bool) -> pa.Table:
    """The instances of the targets ``t`` (comment rows). ``texts_only``: for the TSV only turns and
    weights matter, no raw texts, authors or turn ids are gathered."""
    source = TurnSource(m.t1ids, contiguous(m.rc["author"]), contiguous(m.rc["body"]), turns.texts, titles)
    cols = instance_columns(t, m.rc.num_rows, source, texts_only=texts_only)
    take = pa.array(t.rows)
    target_links = m.links.take(take)
    subreddits = [m.sub_subreddit.get(link, "") for link in target_links.to_pylist()]
    target = TargetColumns(
        target_links, m.pids.take(take), m.t1ids.take(take), pa.array(subreddits, pa.string()),
        pa.array([m.month] * len(t.rows), pa.string()), m.rc["score"].take(take), m.rc["created_utc"].take(take),
    )  # fmt: skip
    return instance_table(cfg, t, cols, target)
