"""The filter stage as a Spark job: instances/ → kept (train/valid/test) + dropped + stats + funnel.

Spark schedules Python tasks; each task reads a slice of the instance Parquet files with pyarrow,
judges it with the profile's rules (vectorized, see rules.py), writes its own output files and returns
a small stats dict to the driver. Corpus-level rules take one extra pass each:
- bland_response: pass 1 counts response trigrams (reduceByKey), frequent ones are broadcast;
- duplicate_pair: pass 2 sends the 64-bit (context, response) key of every instance that survived the
  other rules; for each key seen more than once the earliest instance (created_utc, instance_id) wins,
  and only those winners are broadcast (the number of duplicate groups, not of instances).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dialogsmith import fsutil, outputs
from dialogsmith.filter import engine
from dialogsmith.filter.profiles import (
    ORDERS,
    FilterParams,
    Profile,
    bland_threshold,
    load_lists,
    make_profile,
)
from dialogsmith.filter.rules import DUPLICATE_PAIR
from dialogsmith.schemas import (
    DROPPED,
    DROPPED_VERSION,
    FILTERED,
    FILTERED_VERSION,
    INSTANCES,
    INSTANCES_VERSION,
    with_metadata,
)
from dialogsmith.stats import StageStats, Timer, finish

STAGE = "filter"
SPLITS = ("train", "valid", "test")


# --- CLI --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="filter/filter.py",
        description="Filter dialogue instances with a named-rule profile; write kept instances split into "
        "train/valid/test by a stable hash of link_id, dropped instances with their reason, stats.json "
        "and a funnel report (instances removed by each rule, in order).",
    )
    p.add_argument(
        "--input",
        required=True,
        help="conversations output dir (holding instances/) or a dir of instance Parquet files",
    )
    p.add_argument("--output", required=True, help="output dir (replaced atomically)")
    outputs.add_safety_flags(p)
    p.add_argument(
        "--profile", default="default", choices=sorted(ORDERS), help="rule profile (default: %(default)s)"
    )
    p.add_argument(
        "--bl_words",
        "--bl-words",
        dest="bl_words",
        help="word/phrase blocklist (flashtext semantics); "
        "default: the one the instances were built with (input stats.json), if any",
    )
    p.add_argument(
        "--bl_subreddits", "--bl-subreddits", dest="bl_subreddits", help="subreddit blocklist (paper/default)"
    )
    p.add_argument(
        "--disable",
        action="append",
        default=[],
        help="rule names to switch off (comma-separated, repeatable)",
    )
    d = FilterParams()
    p.add_argument(
        "--max-token-chars", type=int, default=d.max_token_chars, help="long_token limit (%(default)s)"
    )
    p.add_argument("--max-tokens", type=int, default=d.max_tokens, help="too_many_tokens limit (%(default)s)")
    p.add_argument(
        "--bland-fraction", type=float, default=d.bland_fraction, help="bland_response share (%(default)s)"
    )
    p.add_argument(
        "--bland-min-count",
        type=int,
        default=d.bland_min_count,
        help="a trigram is frequent when seen more than this at the paper's corpus size (%(default)s)",
    )
    p.add_argument(
        "--no-bland-scale", action="store_true", help="use --bland-min-count as is, not scaled to corpus size"
    )
    p.add_argument(
        "--bland-floor", type=int, default=d.bland_floor, help="lowest scaled threshold (%(default)s)"
    )
    p.add_argument(
        "--no-unescape-html", action="store_true", help="default profile: do not html-unescape turns"
    )
    p.add_argument("--split", default="0.98,0.01,0.01", help="train,valid,test fractions (%(default)s)")
    p.add_argument(
        "--split-salt", default="dialogsmith-split-v1", help="salt of the link_id hash (%(default)s)"
    )
    p.add_argument(
        "--export-tsv",
        action="store_true",
        help="also write tsv/<month>.tsv (DialoGPT format) and tsv/<split>.tsv (2-column src<TAB>tgt)",
    )
    p.add_argument(
        "--refs", action="store_true", help="also write tsv/test.refs.txt (multi-reference test set)"
    )
    p.add_argument(
        "--refs-min", type=int, default=2, help="min responses per context in test.refs.txt (%(default)s)"
    )
    p.add_argument(
        "--no-parquet", action="store_true", help="skip the per-split Parquet output (TSV-only runs)"
    )
    p.add_argument(
        "--rows-per-task", type=int, default=200_000, help="instances per Spark task (%(default)s)"
    )
    p.add_argument("--quiet", action="store_true", help="do not print the funnel table")
    return p


def parse_fractions(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or min(parts) < 0 or abs(sum(parts) - 1.0) > 1e-9:
        raise SystemExit(f"--split: expected three fractions summing to 1 (train,valid,test), got {text!r}")
    return parts  # type: ignore[return-value]


def params_from_args(args) -> FilterParams:
    disabled = tuple(r.strip() for item in args.disable for r in item.split(",") if r.strip())
    return FilterParams(
        bl_words=args.bl_words,
        bl_subreddits=args.bl_subreddits,
        max_token_chars=args.max_token_chars,
        max_tokens=args.max_tokens,
        bland_fraction=args.bland_fraction,
        bland_min_count=args.bland_min_count,
        bland_scale=not args.no_bland_scale,
        bland_floor=args.bland_floor,
        disabled=disabled,
    )


# --- input ------------------------------------------------------------------------------------


def require_instances(input_dir: str) -> None:
    """An instances stage output must be complete; a plain directory of instance Parquet files (a user's
    own data, no stage files in it) is read as it is."""
    if fsutil.exists(input_dir) and not outputs.looks_like_stage_output(input_dir, ["instances"]):
        return
    outputs.require_input(input_dir, "instances")


def instance_files(input_dir: str) -> list[str]:
    sub = fsutil.join(input_dir, "instances")
    base = sub if fsutil.exists(sub) else input_dir
    if not fsutil.exists(base):
        raise SystemExit(f"--input {input_dir}: no such directory")
    files = fsutil.list_files(base, ".parquet")
    if not files:
        raise SystemExit(
            f"--input {input_dir}: no instance Parquet files under {base} (run `make instances` first)"
        )
    return files


def plan_tasks(files: list[str], rows_per_task: int) -> list[dict]:
    """Group row groups of the input files into tasks of about rows_per_task instances."""
    tasks, parts, rows = [], [], 0
    for path in files:
        fs, p = fsutil.resolve(path)
        meta = pq.ParquetFile(p, filesystem=fs).metadata
        missing = [n for n in INSTANCES.names if n not in meta.schema.to_arrow_schema().names]
        if missing:
            raise SystemExit(f"{path}: not an instances table (missing columns {missing})")
        for rg in range(meta.num_row_groups):
            parts.append((path, rg))
            rows += meta.row_group(rg).num_rows
            if rows >= rows_per_task:
                tasks.append({"index": len(tasks), "parts": parts, "rows": rows})
                parts, rows = [], 0
    if parts:
        tasks.append({"index": len(tasks), "parts": parts, "rows": rows})
    return tasks


def read_task(task: dict) -> pa.Table:
    tables = []
    for path, rg in task["parts"]:
        fs, p = fsutil.resolve(path)
        meta = pq.read_schema(p, filesystem=fs).metadata or {}
        version = meta.get(b"dialogsmith.schema_version")
        if version is not None and version.decode() != str(INSTANCES_VERSION):
            raise ValueError(
                f"{path}: instances schema version {version.decode()}, this filter reads {INSTANCES_VERSION}"
            )
        tables.append(pq.ParquetFile(p, filesystem=fs).read_row_group(rg, columns=INSTANCES.names))
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    return table.cast(INSTANCES.remove_metadata()) if table.schema != INSTANCES else table


# --- tasks (run on executors) -----------------------------------------------------------------


def _prepared(task: dict, profile: Profile):
    return prepare_table(read_task(task), profile)


def prepare_table(table: pa.Table, profile: Profile):
    """(table, malformed mask, well-formed rows, their rule batch, the turns the rules judged)."""
    bad = engine.malformed_mask(table)
    good = table.filter(pa.array(~bad)) if bad.any() else table
    batch, turns_out = engine.make_batch(good, profile.params.unescape_html)
    return table, bad, good, batch, turns_out


def task_trigrams(task: dict, profile: Profile) -> list[tuple[str, int]]:
    _, _, _, batch, _ = _prepared(task, profile)
    return list(engine.trigram_counts(batch).items())


def task_pair_keys(task: dict, profile: Profile, frequent) -> list[tuple[bytes, tuple[int, str]]]:
    params = load_lists(profile.params)
    params.frequent = frequent.value if frequent is not None else None
    _, _, good, batch, turns_out = _prepared(task, profile)
    codes = engine.judge(batch, profile.rules(), params)
    keep = np.nonzero(codes == -1)[0]
    keys = engine.pair_keys(turns_out.take(pa.array(keep)))
    created = pc.fill_null(good.column("target_created_utc"), 0).to_numpy()[keep]
    ids = good.column("instance_id").take(pa.array(keep)).to_pylist()
    return [(k, (int(c), i)) for k, c, i in zip(keys, created, ids, strict=True)]


def drop_counts(codes: np.ndarray, names: list[str], bad: np.ndarray) -> Counter:
    """Dropped instances per reason: ``codes`` index ``names`` (-1 = kept), ``bad`` = malformed rows."""
    dropped = Counter({engine.MALFORMED: int(bad.sum())}) if bad.any() else Counter()
    for k, n in zip(*np.unique(codes[codes >= 0], return_counts=True), strict=True):
        dropped[names[k]] += int(n)
    return dropped


def tsv_lines(kept: pa.Table, src, tgt):
    """DialoGPT TSV lines (no newline): ``link_id,parent_id,target_id<TAB>src<TAB>tgt``."""
    header = pc.binary_join_element_wise(
        kept.column("link_id"), kept.column("parent_id"), kept.column("target_id"), ","
    )
    return pc.binary_join_element_wise(header, src, tgt, "\t")


def concat_lines(lines: pa.Array) -> bytes:
    """The bytes of all strings of a (fresh, null-free) string array, each followed by a newline."""
    arr = pc.binary_join_element_wise(lines, pa.scalar("\n"), "")
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset : arr.offset + len(arr) + 1]
    return arr.buffers()[2][int(offsets[0]) : int(offsets[-1])].to_pybytes() if len(arr) else b""


def _write_parquet(table: pa.Table, uri: str, schema: pa.Schema) -> None:
    fs, path = fsutil.resolve(uri)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    pq.write_table(table.cast(schema), path, filesystem=fs, compression="snappy")


def task_final(task: dict, profile: Profile, frequent, winners, opts: dict) -> dict:
    params = load_lists(profile.params)
    params.frequent = frequent.value if frequent is not None else None
    rules = profile.rules()
    names = [r.name for r in rules] + [DUPLICATE_PAIR]
    table, bad, good, batch, turns_out = _prepared(task, profile)
    codes = engine.judge(batch, rules, params)
    if winners is not None and winners.value:
        win = winners.value
        keep = np.nonzero(codes == -1)[0]
        keys = engine.pair_keys(turns_out.take(pa.array(keep)))
        ids = good.column("instance_id").take(pa.array(keep)).to_pylist()
        for row, k, i in zip(keep, keys, ids, strict=True):
            w = win.get(k)
            if w is not None and w != i:
                codes[row] = len(rules)
    out, part = opts["out"], f"part-{task['index']:05d}"
    dropped = drop_counts(codes, names, bad)

    # dropped/: every removed instance with its reason
    drop_rows = np.nonzero(codes >= 0)[0]
    pieces = []
    if len(drop_rows):
        reasons = pa.array(np.array(names, dtype=object)[codes[drop_rows]], pa.string())
        pieces.append(good.take(pa.array(drop_rows)).append_column("reason", reasons))
    if bad.any():
        bad_t = table.filter(pa.array(bad))
        pieces.append(
            bad_t.append_column("reason", pa.array([engine.MALFORMED] * bad_t.num_rows, pa.string()))
        )
    if pieces:
        _write_parquet(
            pa.concat_tables(pieces), fsutil.join(out, "dropped", f"{part}.parquet"), opts["dropped_schema"]
        )

    keep = np.nonzero(codes == -1)[0]
    keep_arr = pa.array(keep)
    kept = good.take(keep_arr)
    if profile.params.unescape_html:  # the default profile writes the text its rules judged
        kept = kept.set_column(kept.schema.get_field_index("turns"), "turns", turns_out.take(keep_arr))
    split = engine.split_of(kept.column("link_id"), opts["fractions"], opts["salt"])
    split_counts = {s: int((split == j).sum()) for j, s in enumerate(SPLITS)}
    if opts["parquet"]:
        names_arr = pa.array(np.array(SPLITS, dtype=object)[split], pa.string())
        with_split = kept.append_column("split", names_arr)
        for j, s in enumerate(SPLITS):
            if split_counts[s]:
                _write_parquet(
                    with_split.filter(pa.array(split == j)),
                    fsutil.join(out, s, f"{part}.parquet"),
                    opts["filtered_schema"],
                )

    months: dict[str, int] = {}
    if opts["tsv"] or opts["refs"]:
        src, tgt = batch.src.take(keep_arr), batch.tgt.take(keep_arr)
    if opts["tsv"] and len(keep):
        lines = tsv_lines(kept, src, tgt)
        month = kept.column("month").combine_chunks()
        for m in sorted(set(pc.unique(month).to_pylist())):
            sel = pc.equal(month, m)
            months[m or "unknown"] = int(pc.sum(sel).as_py())
            fsutil.write_bytes(
                fsutil.join(out, "_tsv_parts", "month", m or "unknown", f"{part}.tsv"),
                concat_lines(lines.filter(sel)),
            )
        if opts["split_tsv"]:
            two = pc.binary_join_element_wise(src, tgt, "\t")
            for j, s in enumerate(SPLITS):
                if split_counts[s]:
                    fsutil.write_bytes(
                        fsutil.join(out, "_tsv_parts", "split", s, f"{part}.tsv"),
                        concat_lines(two.filter(pa.array(split == j))),
                    )
    if opts["refs"]:
        test = np.nonzero(split == 2)[0]
        if len(test):
            turns_t = batch.turns.take(keep_arr).take(pa.array(test))
            ctx = pc.binary_join(_drop_last(turns_t), " EOS ")
            weights = kept.column("turn_weights").take(pa.array(test))
            score = [f"{(w[-1] if w else 1.0):.1f}" for w in weights.to_pylist()]
            refs = pa.table(
                {
                    "src": ctx,
                    "score": pa.array(score, pa.string()),
                    "ref": batch.response.take(keep_arr).take(pa.array(test)),
                    "instance_id": kept.column("instance_id").take(pa.array(test)),
                }
            )
            _write_parquet(refs, fsutil.join(out, "_refs_parts", f"{part}.parquet"), refs.schema)
    return {
        "rows_in": table.num_rows,
        "rows_out": int(len(keep)),
        "dropped": dict(dropped),
        "splits": split_counts,
        "months": months,
    }


def _drop_last(lists: pa.ListArray) -> pa.ListArray:
    offsets = engine._offsets(lists)
    flat = lists.flatten()
    not_last = np.ones(len(flat), dtype=bool)
    not_last[offsets[1:] - 1] = False
    return engine._relist(offsets - np.arange(len(offsets)), flat.filter(pa.array(not_last)))


# --- driver -----------------------------------------------------------------------------------


def _concat_parts(parts_dir: str, dest: str) -> int:
    files = fsutil.list_files(parts_dir, ".tsv")
    fs, path = fsutil.resolve(dest)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    n = 0
    with fs.open_output_stream(path) as f:
        for part in files:
            data = fsutil.read_bytes(part)
            n += data.count(b"\n")
            f.write(data)
    return n


def write_refs(out: str, refs_min: int) -> int:
    """tsv/test.refs.txt: one line per context with >= refs_min human responses (siblings)."""
    files = fsutil.list_files(fsutil.join(out, "_refs_parts"), ".parquet")
    lines = []
    if files:
        t = pa.concat_tables(
            [pq.read_table(fsutil.resolve(f)[1], filesystem=fsutil.resolve(f)[0]) for f in files]
        )
        t = t.sort_by([("src", "ascending"), ("instance_id", "ascending")])
        groups: dict[str, list[str]] = {}
        for s, sc, r in zip(
            t.column("src").to_pylist(),
            t.column("score").to_pylist(),
            t.column("ref").to_pylist(),
            strict=True,
        ):
            groups.setdefault(s, []).append(f"{sc}|{r}")
        lines = [s + "\t" + "\t".join(refs) for s, refs in groups.items() if len(refs) >= refs_min]
    fsutil.write_bytes(
        fsutil.join(out, "tsv", "test.refs.txt"), "".join(x + "\n" for x in lines).encode("utf-8")
    )
    return len(lines)


def funnel_report(profile: Profile, stats: StageStats) -> dict:
    steps, remaining = [], stats.rows_in
    for name in (engine.MALFORMED, *profile.order):
        enabled = name == engine.MALFORMED or name not in profile.params.disabled
        removed = stats.dropped.get(name, 0)
        remaining -= removed
        steps.append({"rule": name, "enabled": enabled, "removed": removed, "remaining": remaining})
    return {"profile": profile.name, "rows_in": stats.rows_in, "kept": stats.rows_out, "steps": steps}


def format_funnel(f: dict) -> str:
    width = max(len(s["rule"]) for s in f["steps"]) + 2
    rows = [
        f"filter funnel (profile {f['profile']}): {f['rows_in']:,} instances in",
        f"{'rule':<{width}}{'removed':>12}{'remaining':>14}{'share':>8}",
    ]
    for s in f["steps"]:
        share = f"{100 * s['removed'] / f['rows_in']:.2f}%" if f["rows_in"] else "-"
        removed = f"{s['removed']:,}" if s["enabled"] else "off"
        rows.append(f"{s['rule']:<{width}}{removed:>12}{s['remaining']:>14,}{share:>8}")
    rows.append(f"{'kept':<{width}}{'':>12}{f['kept']:>14,}")
    return "\n".join(rows)


def _input_config(input_dir: str) -> dict:
    path = fsutil.join(input_dir, "stats.json")
    if not fsutil.exists(path):
        return {}
    try:
        return (fsutil.read_json(path).get("extra") or {}).get("config") or {}
    except Exception:  # a foreign or damaged stats.json only loses the defaults it would give
        return {}


def run(args, input=None, spark=None) -> StageStats:
    """Run the filter job. ``input``: an optional pyarrow Table of instances (tests), else --input."""
    from dialogsmith.spark import get_spark

    timer = Timer()
    fractions = parse_fractions(args.split)
    params = params_from_args(args)
    in_cfg = _input_config(args.input) if input is None else {}
    if params.bl_words is None and in_cfg.get("bl_words"):
        params.bl_words = in_cfg["bl_words"]
    try:
        profile = make_profile(args.profile, params)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    if args.no_unescape_html:
        profile.params.unescape_html = False
    for path in (params.bl_words, params.bl_subreddits):
        if path and not fsutil.exists(path):
            raise SystemExit(f"list file not found: {path}")
    load_lists(FilterParams(**{**profile.params.options(), "disabled": ()}))  # fail early on a bad list
    force = bool(getattr(args, "force", False))
    if input is None:
        require_instances(args.input)
    outputs.check_target(args.output, STAGE, [args.input] if input is None else [], force)
    spark = spark or get_spark("dialogsmith-filter")
    sc = spark.sparkContext

    with outputs.stage_output(args.output, STAGE, [args.input] if input is None else [], force) as out:
        if input is not None:
            _write_parquet(
                input,
                fsutil.join(out, "_input", "part-00000.parquet"),
                with_metadata(INSTANCES, "instances", INSTANCES_VERSION),
            )
            files = fsutil.list_files(fsutil.join(out, "_input"), ".parquet")
        else:
            files = instance_files(args.input)
        tasks = plan_tasks(files, args.rows_per_task)
        n_in = sum(t["rows"] for t in tasks)
        prof = profile  # params hold file names only; each task loads the lists once per process

        frequent_bc, threshold, n_frequent = None, None, 0
        if prof.bland and n_in:
            threshold = bland_threshold(prof.params, n_in)
            frequent = (
                sc.parallelize(tasks, len(tasks))
                .flatMap(lambda t: task_trigrams(t, prof))
                .reduceByKey(lambda a, b: a + b)
                .filter(lambda kv, th=threshold: kv[1] > th)
                .keys()
                .collect()
            )
            n_frequent = len(frequent)
            frequent_bc = sc.broadcast(frozenset(frequent))

        winners_bc = None
        if prof.dedup and n_in:
            dup = (
                sc.parallelize(tasks, len(tasks))
                .flatMap(lambda t: task_pair_keys(t, prof, frequent_bc))
                .mapValues(lambda v: (v, 1))
                .reduceByKey(lambda a, b: (min(a[0], b[0]), a[1] + b[1]))
                .filter(lambda kv: kv[1][1] > 1)
                .map(lambda kv: (kv[0], kv[1][0][1]))
                .collect()
            )
            winners_bc = sc.broadcast(dict(dup))

        opts = {
            "out": out,
            "fractions": fractions,
            "salt": args.split_salt,
            "parquet": not args.no_parquet,
            "tsv": args.export_tsv,
            "split_tsv": args.export_tsv and not args.no_parquet,
            "refs": args.refs,
            "filtered_schema": with_metadata(FILTERED, "filtered", FILTERED_VERSION),
            "dropped_schema": with_metadata(DROPPED, "dropped", DROPPED_VERSION),
        }
        results = (
            sc.parallelize(tasks, max(1, len(tasks)))
            .map(lambda t: task_final(t, prof, frequent_bc, winners_bc, opts))
            .collect()
            if tasks
            else []
        )

        stats = StageStats(stage=STAGE)
        splits, months = Counter(), Counter()
        for r in results:
            stats.add(
                StageStats(stage="filter", rows_in=r["rows_in"], rows_out=r["rows_out"], dropped=r["dropped"])
            )
            splits.update(r["splits"])
            months.update(r["months"])
        stats.dropped = {k: v for k, v in stats.dropped.items() if v}

        # Consumers read OUT/<split>/*.parquet: an empty split still gets one (empty) file.
        if opts["parquet"]:
            for s in SPLITS:
                if not fsutil.list_files(fsutil.join(out, s), ".parquet"):
                    _write_parquet(
                        FILTERED.empty_table(),
                        fsutil.join(out, s, "part-empty.parquet"),
                        opts["filtered_schema"],
                    )
        if not fsutil.list_files(fsutil.join(out, "dropped"), ".parquet"):
            _write_parquet(
                DROPPED.empty_table(),
                fsutil.join(out, "dropped", "part-empty.parquet"),
                opts["dropped_schema"],
            )
        tsv_files = {}
        if args.export_tsv:
            for m in sorted(months):
                tsv_files[m] = _concat_parts(
                    fsutil.join(out, "_tsv_parts", "month", m), fsutil.join(out, "tsv", f"{m}.tsv")
                )
            if opts["split_tsv"]:
                for s in SPLITS:
                    _concat_parts(
                        fsutil.join(out, "_tsv_parts", "split", s), fsutil.join(out, "tsv", f"{s}.tsv")
                    )
        n_refs = write_refs(out, args.refs_min) if args.refs else None
        for tmp in ("_tsv_parts", "_refs_parts", "_input"):
            fsutil.remove(fsutil.join(out, tmp))

        stats.seconds = timer.seconds
        stats.extra = {
            "profile": prof.name,
            "rules": prof.enabled(),
            "splits": {s: splits.get(s, 0) for s in SPLITS},
            "months": dict(sorted(months.items())),
            "config": {**prof.params.options(), "split": list(fractions), "split_salt": args.split_salt},
            "input_config": in_cfg,
            "tasks": len(tasks),
        }
        if threshold is not None:
            stats.extra["bland_threshold"] = threshold
            stats.extra["frequent_trigrams"] = n_frequent
        if n_refs is not None:
            stats.extra["refs_contexts"] = n_refs
        stats.check()
        funnel = funnel_report(prof, stats)
        stats.write(fsutil.join(out, "stats.json"))
        fsutil.write_json(fsutil.join(out, "funnel.json"), funnel)
    if not getattr(args, "quiet", False):
        print(format_funnel(funnel), file=sys.stderr)
    return stats


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        stats = run(args)
    except (FileNotFoundError, ValueError, outputs.OutputRefused, outputs.IncompleteInput) as e:
        print(f"filter: error: {e}", file=sys.stderr)
        return 2
    return finish(stats, args.strict)


if __name__ == "__main__":
    sys.exit(main())
