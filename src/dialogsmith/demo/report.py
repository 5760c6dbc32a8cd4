"""The demo's report: what every step wrote, summed up in DATA/report.json and DATA/report.md."""

from __future__ import annotations

import json
from pathlib import Path

from dialogsmith.demo.config import STATE_DIR
from dialogsmith.demo.steps import SPARK_STEPS


def write_report(data: Path, replies: int = 5) -> dict:
    """Build the report from what the steps wrote; save DATA/report.json and DATA/report.md."""
    report = build_report(data, replies)
    (data / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    (data / "report.md").write_text(format_report(report))
    return report


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _stage_line(stats: dict) -> dict:
    keys = ("rows_in", "rows_out", "dropped", "quarantined", "merged", "seconds")
    return {k: stats[k] for k in keys if k in stats}


def training_curve(log_path: Path) -> dict:
    """Loss numbers from the trainer's log.jsonl: train loss per logged step and validation losses."""
    train, valid = [], []
    if log_path.exists():
        for line in log_path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if "event" in rec:
                continue
            if "loss" in rec:
                train.append(
                    {
                        "step": rec["step"],
                        "loss": round(rec["loss"], 4),
                        "tokens_per_s": round(rec.get("tokens_per_s", 0)),
                    }
                )
            vals = {k: v for k, v in rec.items() if k.startswith("valid") and isinstance(v, int | float)}
            if vals:
                valid.append({"step": rec["step"], **{k: round(v, 4) for k, v in vals.items()}})
    # A handful of points of the train curve: every ~10% of the run.
    stride = max(1, len(train) // 10)
    points = train[::stride]
    if train and points[-1] is not train[-1]:
        points.append(train[-1])
    return {"train": points, "valid": valid}


def sample_replies(eval_dir: Path, n: int) -> list[dict]:
    def lines(name: str) -> list[str]:
        p = eval_dir / name
        return p.read_text().splitlines() if p.exists() else []

    contexts, hyps, refs = lines("contexts.txt"), lines("hyp.txt"), lines("ref0.txt")
    out = []
    for i in range(min(n, len(contexts), len(hyps))):
        out.append(
            {
                "context": contexts[i].split(" EOS "),
                "reply": hyps[i],
                "reference": refs[i] if i < len(refs) else "",
            }
        )
    return out


def build_report(data: Path, replies: int = 5) -> dict:
    sample = _read_json(data / "sample" / "synth_report.json")
    report: dict = {
        "data": str(data),
        "sample": {
            k: sample.get(k) for k in ("comments", "submissions", "lines", "duplicates", "quarantine")
        },
        "stages": {name: _stage_line(_read_json(data / name / "stats.json")) for name in SPARK_STEPS},
        "funnel": _read_json(data / "filter" / "funnel.json"),
    }
    manifest = _read_json(data / "tokenize" / "manifest.json")
    report["shards"] = {
        split: {
            "shards": len(s["shards"]),
            "instances": s["instances"],
            "turns": s["turns"],
            "tokens": s["tokens"],
        }
        for split, s in manifest.get("splits", {}).items()
    }
    report["shards_vocab_size"] = manifest.get("vocab_size")
    report["training"] = {
        "summary": _read_json(data / "train" / "summary.json"),
        "curve": training_curve(data / "train" / "log.jsonl"),
    }
    metrics = _read_json(data / "eval" / "metrics.json")
    report["eval"] = {k: metrics.get(k) for k in ("items", "metrics", "perplexity", "table")}
    report["replies"] = sample_replies(data / "eval", replies)
    report["timings"] = _read_json(data / STATE_DIR / "timings.json").get("steps", {})
    return report


def _funnel_rows(funnel: dict) -> list[tuple[str, str]]:
    """(rule, "removed (→ remaining)") rows of the filter's funnel.json, in rule order."""
    out = []
    for r in funnel.get("steps", []):
        removed = r.get("removed") if r.get("enabled", True) else "off"
        out.append((str(r.get("rule")), f"{removed} (→ {r.get('remaining')})"))
    return out


def format_report(r: dict) -> str:
    md = ["# dialogsmith demo report", "", f"Data: `{r['data']}`", ""]
    s = r.get("sample", {})
    md += [
        "## Sample",
        f"{s.get('lines')} dump lines: {s.get('comments')} comments, {s.get('submissions')} submissions, "
        f"{s.get('duplicates')} duplicated lines, malformed {s.get('quarantine')}",
        "",
    ]
    md += [
        "## Stages",
        "",
        "| stage | rows in | rows out | dropped | quarantined | merged | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, st in r.get("stages", {}).items():
        if not st:
            continue
        md.append(
            f"| {name} | {st.get('rows_in')} | {st.get('rows_out')} | {sum(st.get('dropped', {}).values())} | "
            f"{sum(st.get('quarantined', {}).values())} | {sum(st.get('merged', {}).values())} | {st.get('seconds')} |"
        )
    funnel = r.get("funnel", {})
    md += [
        "",
        f"## Filter funnel (profile {funnel.get('profile')})",
        "",
        "| rule | removed (→ remaining) |",
        "|---|---|",
    ]
    md += [f"| {name} | {count} |" for name, count in _funnel_rows(funnel)]
    if "kept" in funnel:
        md.append(f"| **kept** | {funnel['kept']} |")
    md += [
        "",
        "## Token shards",
        "",
        "| split | shards | instances | turns | tokens |",
        "|---|---|---|---|---|",
    ]
    for split, sh in r.get("shards", {}).items():
        md.append(f"| {split} | {sh['shards']} | {sh['instances']} | {sh['turns']} | {sh['tokens']} |")
    tr = r.get("training", {})
    summ = tr.get("summary", {})
    md += ["", "## Training", ""]
    if summ:
        md.append(
            f"{summ.get('step')} steps in {summ.get('seconds', 0):.0f} s, {summ.get('tokens_per_s', 0):,.0f} tokens/s, "
            f"padding {summ.get('padding', 0):.1%}; final train loss {summ.get('train_loss', float('nan')):.3f}"
        )
    curve = tr.get("curve", {})
    if curve.get("train"):
        md.append("")
        md.append("train loss: " + ", ".join(f"{p['step']}: {p['loss']:.3f}" for p in curve["train"]))
    for p in curve.get("valid", []):
        vals = ", ".join(f"{k} {v:.3f}" for k, v in p.items() if k in ("valid_loss", "valid_ppl"))
        md.append(f"- step {p['step']}: {vals}")
    ev = r.get("eval", {})
    if ev.get("table"):
        md += ["", f"## Evaluation ({ev.get('items')} test items)", "", "```", ev["table"].rstrip(), "```"]
    if r.get("replies"):
        md += ["", "## Generated replies", ""]
        for rep in r["replies"]:
            md.append("- context: " + " ⏎ ".join(f"“{t}”" for t in rep["context"]))
            md.append(f"  - model: “{rep['reply']}”")
            if rep.get("reference"):
                md.append(f"  - human: “{rep['reference']}”")
    t = r.get("timings", {})
    if t:
        md += ["", "## Timings", ""]
        md.append(
            ", ".join(
                f"{k} " + ("skipped" if v.get("skipped") else f"{v.get('seconds', 0):.1f} s")
                for k, v in t.items()
            )
        )
    return "\n".join(md) + "\n"
