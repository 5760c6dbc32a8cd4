"""What the filter stage reports about its output: the funnel (instances removed by each rule, in order)
and the dataset card OUT/README.md, which makes the output a Hugging Face dataset folder as it is.

The card's YAML header lists the data files of each split (``configs``: the hub's convention, which
``datasets.load_dataset(OUT)`` honours for a local folder too); ``load_dataset("parquet", data_dir=OUT)``
finds the same splits by their directory names (train/, valid/ read as "validation", test/), and
neither picks up dropped/, tsv/ or jsonl/.
"""

from __future__ import annotations

import pyarrow as pa

from dialogsmith.filter import engine
from dialogsmith.filter.config import SPLITS, FilterConfig
from dialogsmith.filter.profiles import Profile
from dialogsmith.filter.rules import DUPLICATE_PAIR, RULES
from dialogsmith.formats.schemas import FILTERED
from dialogsmith.formats.stats import StageStats

HF_SPLITS = {"train": "train", "valid": "validation", "test": "test"}  # our directory -> datasets' name

COLUMN_NOTES = {
    "instance_id": "unique id of the instance (= target_id)",
    "link_id": "the thread: `t3_<submission id>`",
    "parent_id": "the response's parent comment or submission, with its `t1_`/`t3_` prefix",
    "target_id": "the response comment: `t1_<id>`",
    "subreddit": "lower-cased subreddit name",
    "month": "month of the response comment, `YYYY-MM` (the dump file it came from)",
    "target_score": "the response's Reddit score at dump time",
    "target_created_utc": "the response's creation time (epoch seconds)",
    "turn_ids": "ids of the turns, oldest first (a title turn has the link_id)",
    "turn_authors": "Reddit user names of the turns (null for a title turn)",
    "turns_raw": "the turns' texts as in the dump",
    "turns": "the turns' texts as the profile normalized them; the last one is the response",
    "turn_weights": "DialoGPT weights per turn: 1.0 trained on, 0.0 not",
    "weights_in_text": "DialoGPT's TSV shows each turn as `1.0 <text>` (dialogpt profile, leaves_only)",
    "split": "train, valid or test (a stable hash of link_id: a thread never spans two splits)",
}

TERMS = """\
The texts are Reddit comments (and, when instances were built with titles, submission titles) from the
Pushshift Reddit dumps (monthly files `RC_YYYY-MM` / `RS_YYYY-MM`). They belong to their authors, and
their use is governed by Reddit's User Agreement and Data API Terms (https://www.redditinc.com/policies).
Pushshift collected the dumps for research. Check that these terms allow what you intend (publishing
this folder, for instance to a dataset hub, or commercial use) before you do it. User names are in
`turn_authors`, and comments deleted after the dumps were made can still be in the data."""


# --- funnel ---------------------------------------------------------------------------------------


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


# --- dataset card ---------------------------------------------------------------------------------


def _size_category(n: int) -> str:
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")]
    bounds += [(10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")]
    return next((label for limit, label in bounds if n < limit), "1B<n<10B")


def _type_name(t: pa.DataType) -> str:
    return f"list<{_type_name(t.value_type)}>" if pa.types.is_list(t) else str(t)


def data_files(cfg: FilterConfig, splits: dict[str, int]) -> dict[str, str]:
    """datasets' split name -> the glob of its files (the Parquet, else the JSON Lines export), for the
    splits that hold instances (datasets refuses a split without rows); empty: no data files."""
    if not (cfg.parquet or cfg.jsonl):
        return {}
    glob = "{}/*.parquet" if cfg.parquet else "jsonl/{}.jsonl"
    return {HF_SPLITS[s]: glob.format(s) for s in SPLITS if splits.get(s)}


def _header(cfg: FilterConfig, kept: int, splits: dict[str, int]) -> list[str]:
    lines = [
        "---",
        f"pretty_name: Reddit dialogues, dialogsmith filter profile {cfg.profile}",
        "license: other",
    ]
    lines += ["task_categories:", "- text-generation", "tags:", "- dialogue", "- reddit", "- dialogpt"]
    lines += ["size_categories:", f"- {_size_category(kept)}"]
    files = data_files(cfg, splits)
    if files:
        lines += ["configs:", "- config_name: default", "  data_files:"]
        for split, path in files.items():
            lines += [f"  - split: {split}", f'    path: "{path}"']
    return [*lines, "---", ""]


def _table(head: tuple[str, ...], rows: list[tuple]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return out + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows] + [""]


def dataset_card(cfg: FilterConfig, profile: Profile, stats: StageStats, funnel: dict) -> str:
    """OUT/README.md: the YAML header for datasets and the hub, then what the folder holds."""
    splits, months = stats.extra["splits"], stats.extra["months"]
    text = _header(cfg, stats.rows_out, splits)
    text += [
        f"# Reddit dialogues (dialogsmith, filter profile `{profile.name}`)",
        "",
        f"Multi-turn dialogue instances (context turns and a response) built from Reddit comments with "
        f"dialogsmith and filtered with the `{profile.name}` profile: {stats.rows_out:,} instances kept of "
        f"{stats.rows_in:,}. Every instance removed is counted under the rule that removed it (the funnel "
        "below); `dropped/` holds them with their reason.",
        "",
        "```python",
        "from datasets import load_dataset",
        'ds = load_dataset("parquet", data_dir="<this folder>")  # or load_dataset("<this folder>")',
        "```",
        "",
        "## Splits",
        "",
    ]
    files = data_files(cfg, splits)
    text += _table(
        ("split", "files", "instances"),
        [(HF_SPLITS[s], f"`{files.get(HF_SPLITS[s], '-')}`", f"{splits[s]:,}") for s in SPLITS],
    )
    text += [
        f"Split by a stable hash of `link_id` (fractions {cfg.split}, salt `{cfg.split_salt}`): a thread "
        "never spans two splits.",
        "",
        *_empty_splits_note(splits),
        "## Funnel",
        "",
    ]
    text += _table(("rule", "removed", "remaining", "drops an instance when"), _funnel_rows(funnel))
    off = [r for r in profile.order if r in profile.params.disabled]
    text += [f"Switched off: {', '.join(off)}.", ""] if off else []
    text += ["## Columns", ""]
    text += _table(
        ("column", "type", "meaning"),
        [(f"`{f.name}`", _type_name(f.type), COLUMN_NOTES.get(f.name, "")) for f in FILTERED],
    )
    text += ["## Source months", ""]
    text += (
        _table(("month", "instances kept"), [(m, f"{n:,}") for m, n in months.items()])
        if months
        else ["none", ""]
    )
    text += _exports_note(cfg)
    text += ["## Source and terms of use", "", TERMS, ""]
    return "\n".join(text)


def _empty_splits_note(splits: dict[str, int]) -> list[str]:
    empty = [HF_SPLITS[s] for s in SPLITS if not splits.get(s)]
    if not empty:
        return []
    return [
        f"No instance fell in {', '.join(empty)}: the header lists the other splits only (`datasets` refuses "
        'a split without rows); with `load_dataset("parquet", data_dir=...)` ask for a split, e.g. '
        '`split="train"`.',
        "",
    ]


def _funnel_rows(funnel: dict) -> list[tuple]:
    what = {r.name: r.doc for r in RULES.values()}
    what[engine.MALFORMED] = "no turns, a null turn, or weights not aligned with the turns"
    what[DUPLICATE_PAIR] = "the same (context, response) pair was kept earlier"
    return [
        (
            f"`{s['rule']}`",
            f"{s['removed']:,}" if s["enabled"] else "off",
            f"{s['remaining']:,}",
            what[s["rule"]],
        )
        for s in funnel["steps"]
    ]


def _exports_note(cfg: FilterConfig) -> list[str]:
    lines = []
    if cfg.jsonl:
        lines.append(
            '- `jsonl/{train,valid,test}.jsonl`: one object a line, `{"context": [...], "response": ..., '
            '"subreddit": ..., "id": ...}` (the turns of `turns`; `id` is `instance_id`).'
        )
    if cfg.export_tsv:
        lines.append(
            "- `tsv/<month>.tsv`: DialoGPT's format, `link_id,parent_id,comment_id<TAB>src<TAB>tgt`."
        )
        if cfg.parquet:
            lines.append("- `tsv/{train,valid,test}.tsv`: `src<TAB>tgt`.")
    if cfg.refs:
        lines.append(
            "- `tsv/test.refs.txt`: the multi-reference test set, `src<TAB>score|ref<TAB>score|ref...`."
        )
    lines.append(
        "- `dropped/`: every removed instance with its `reason`; `stats.json`, `funnel.json`: the counts."
    )
    return ["## Files", "", *lines, ""]
