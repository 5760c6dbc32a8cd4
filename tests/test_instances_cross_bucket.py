"""The dialogpt profile looks parents up by id in the whole month, as the released extractor does, even
when a comment names a comment of another thread (that may sit in another link_id bucket). Checked
against a month-wide reference (plain dicts, the spec's recursion) on hand-made chains that cross
buckets (twice, in cycles, through over-long comments, up to a title) and on generated months, through
both entry points: the instances stage (`--profile dialogpt`) and `dialogpt-tsv`."""

from __future__ import annotations

import io
import json
import zlib
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import zstandard

from dialogsmith.extract import dumps
from dialogsmith.extract import job as ingest
from dialogsmith.filter import job as filter_job
from dialogsmith.formats.stats import StageStats
from dialogsmith.instances import job as instances
from dialogsmith.instances.config import BuildConfig
from dialogsmith.recipes import dialogpt_tsv
from dialogsmith.text.dialogpt import gpt_normalize, minimal_normalize

N_BUCKETS = 4


def zst(lines: list[bytes]) -> bytes:
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=31, write_content_size=False)
    out = io.BytesIO()
    with zstandard.ZstdCompressor(compression_params=params).stream_writer(out, closefd=False) as w:
        w.write(b"".join(line + b"\n" for line in lines))
    return out.getvalue()


def links_in_buckets(n: int) -> list[str]:
    """Link ids of distinct buckets 0..n-1 (N_BUCKETS buckets)."""
    found: dict[int, str] = {}
    k = 0
    while len(found) < n:
        link = f"t3_x{k}"
        found.setdefault(zlib.crc32(link.encode()) % N_BUCKETS, link)
        k += 1
    return [found[b] for b in range(n)]


def reference_month(rs: list[dict], rc: list[dict], cfg: BuildConfig) -> dict[str, tuple]:
    """The released extractor's pass 1 + pass 2 (no clean checks), month-wide dicts:
    {target t1 id: (turn texts, weights)}. Rows are read as the project reads them (one per id)."""
    subs = {}
    for s in rs:
        if (s.get("num_comments") or 0) >= 2:
            subs[s["id"]] = s
    kept = {}
    for c in rc:
        body = c["body"]
        if body == "[deleted]" or ">" in body or "&gt;" in body or c["link_id"][3:] not in subs:
            continue
        norm = minimal_normalize(body)
        if len(norm.split()) < 2:
            continue
        kept[c["id"]] = {**c, "body": norm.rstrip()}
    parents = {c["parent_id"] for c in kept.values()}
    titled = {sid: minimal_normalize(s["title"]).rstrip() for sid, s in subs.items()}
    titled = {sid: t for sid, t in titled.items() if t}

    def walk(c, depth):
        if depth == 0 or len(c["body"].split()) > cfg.max_len:
            return []
        pid = c["parent_id"]
        if pid.startswith("t3_") and cfg.use_title:
            above = ["title: " + titled[pid[3:]]]  # KeyError: the target is skipped
        elif pid.startswith("t1_") and pid[3:] in kept:
            above = walk(kept[pid[3:]], depth - 1)
        else:
            above = []
        return above + [c["body"]]

    out = {}
    for cid, c in kept.items():
        if cfg.leaves_only and "t1_" + cid in parents:
            continue
        if (c["score"] or 0) < cfg.min_score:
            continue
        try:
            turns = walk(c, cfg.max_depth)
        except KeyError:
            continue
        if len(turns) < cfg.min_depth:
            continue
        texts = [gpt_normalize(t) for t in turns]
        out["t1_" + cid] = (texts, [1.0] * len(texts))
    return out


def comment(cid, link, parent, body, score=3):
    return {"id": cid, "link_id": link, "parent_id": parent, "author": "u" + cid, "subreddit": "s",
            "body": body, "score": score, "created_utc": 1_451_606_400}  # fmt: skip


def submission(link, title="a title here", n=5):
    return {"id": link[3:], "title": title, "num_comments": n, "permalink": f"/r/sub/comments/{link[3:]}/t/",
            "subreddit": "sub", "created_utc": 1_451_606_400}  # fmt: skip


def hand_month() -> tuple[list[dict], list[dict]]:
    a, b, c, d = links_in_buckets(4)
    rc = [
        # a chain that starts in thread a, crosses into b, then into c, which reaches its title
        comment("c1", c, c, "top of the third thread"),
        comment("c2", c, "t1_c1", "second in the third thread"),
        comment("b1", b, "t1_c2", "crosses from b into c"),
        comment("b2", b, "t1_b1", "below the crossing in b"),
        comment("a1", a, "t1_b2", "crosses from a into b"),
        comment("a2", a, "t1_a1", "the leaf target in a"),
        # a leaf of d, named as parent only by a comment of thread a: not a leaf any more
        comment("d1", d, d, "looks like a leaf in d"),
        comment("a3", a, "t1_d1", "my parent is in d"),
        # an over-long comment in the crossed chain cuts the context there
        comment("d2", d, d, " ".join(["long"] * 40)),
        comment("d3", d, "t1_d2", "below the long one"),
        comment("b3", b, "t1_d3", "crosses into d above"),
        # a cycle across buckets: the walk repeats turns up to max_depth, as the released recursion does
        comment("a4", a, "t1_b4", "cycle member in a"),
        comment("b4", b, "t1_a4", "cycle member in b"),
        comment("b5", b, "t1_b4", "a leaf under the cycle"),
        # a parent id that exists nowhere
        comment("c3", c, "t1_nowhere", "orphan in c"),
        comment("c4", c, "t1_c3", "below the orphan"),
    ]
    rs = [submission(x) for x in (a, b, c, d)]
    return rs, rc


def write_month(root: Path, rs: list[dict], rc: list[dict], month: str = "2016-01") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / f"RS_{month}.zst").write_bytes(zst([json.dumps(s).encode() for s in rs]))
    (root / f"RC_{month}.zst").write_bytes(zst([json.dumps(c).encode() for c in rc]))
    return root


def instances_of(out: Path) -> dict[str, tuple]:
    t = pq.read_table(out / "instances", columns=["instance_id", "turns", "turn_weights"])
    return {
        i: (turns, [float(w) for w in weights])
        for i, turns, weights in zip(
            t["instance_id"].to_pylist(), t["turns"].to_pylist(), t["turn_weights"].to_pylist(), strict=True
        )
    }


@pytest.mark.parametrize("use_title", [0, 1])
def test_hand_made_chains_across_buckets(spark, tmp_path, use_title):
    rs, rc = hand_month()
    dumps_dir = write_month(tmp_path / "dumps", rs, rc)
    flags = ["--min_score", "1", "--min_depth", "2", "--max_depth", "4", "--use_title", str(use_title)]
    cfg = instances.build_parser().parse_args(
        ["--input", "-", "--output", "-", "--profile", "dialogpt", *flags]
    )
    cfg = cfg.build()
    want = reference_month(rs, rc, cfg)
    assert "t1_a2" in want and "t1_a3" in want and "t1_b5" in want  # crossing walks exist
    assert "t1_d1" not in want  # a comment of another thread replies to it
    extract, inst = tmp_path / "extract", tmp_path / "inst"
    assert (
        ingest.main(["--input", str(dumps_dir), "--output", str(extract), "--buckets", str(N_BUCKETS)]) == 0
    )
    argv = ["--input", str(extract), "--output", str(inst), "--profile", "dialogpt", *flags]
    assert instances.main(argv) == 0
    got = instances_of(inst)
    assert got == want
    stats = StageStats.read(str(inst / "stats.json"))
    assert stats.extra["cross_bucket_candidates"] >= 4 and stats.extra["cross_bucket_walks"] >= 3
    assert stats.extra["deferred_targets"] >= 1  # d1: a leaf in its bucket, replied to from another
    # dialogpt-tsv: the same instances through the filter's rules, as TSV lines
    filt = tmp_path / "filt"
    assert filter_job.main(["--input", str(inst), "--output", str(filt), "--profile", "dialogpt",
                            "--export-tsv", "--no-parquet", "--quiet"]) == 0  # fmt: skip
    tsv = tmp_path / "tsv"
    assert dialogpt_tsv.main(["--dumps", str(dumps_dir), "--output", str(tsv), "--quiet",
                              "--buckets", str(N_BUCKETS), *flags]) == 0  # fmt: skip
    a = sorted((tsv / "2016-01.tsv").read_bytes().splitlines())
    b = sorted((filt / "tsv" / "2016-01.tsv").read_bytes().splitlines())
    assert a == b and len(a) >= 3


def test_generated_months_with_cross_thread_parents(spark, tmp_path):
    """A generated month with parents named across threads: the instances stage equals the month-wide
    reference, whatever the number of buckets."""
    from dialogsmith.sample.synth import SynthConfig, generate

    try:
        cfg_s = SynthConfig(months=["2016-05"], comments_per_month=6000, seed=21, shape="realistic")
    except TypeError:
        pytest.skip("the generator has no realistic shape")
    dumps_dir = tmp_path / "dumps"
    generate(dumps_dir, cfg_s)
    rows = {}
    for kind in ("RS", "RC"):
        table, _, _ = dumps.read_dump(str(dumps_dir / f"{kind}_2016-05.zst"))
        table = ingest.dedup_first(table)
        rows[kind] = table.to_pylist()
    cross = {c["id"] for c in rows["RC"]} & {
        c["parent_id"][3:] for c in rows["RC"] if c["parent_id"] and c["parent_id"].startswith("t1_")
    }
    cfg = (
        instances.build_parser()
        .parse_args(["--input", "-", "--output", "-", "--profile", "dialogpt"])
        .build()
    )
    want = reference_month(rows["RS"], [c for c in rows["RC"] if c["body"] is not None], cfg)
    extract = tmp_path / "extract"
    assert ingest.main(["--input", str(dumps_dir), "--output", str(extract), "--buckets", "7"]) == 0
    inst = tmp_path / "inst"
    assert instances.main(["--input", str(extract), "--output", str(inst), "--profile", "dialogpt"]) == 0
    assert instances_of(inst) == want
    assert cross and StageStats.read(str(inst / "stats.json")).extra["cross_bucket_candidates"] > 0
