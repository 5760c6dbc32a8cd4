"""`make demo`'s orchestrator: every step ran once (the session's demo_outputs), the report, and skipping."""

from __future__ import annotations

import json
import shutil

from dialogsmith.demo import STEP_NAMES, DemoConfig, run_demo


def test_demo_writes_every_output_and_the_report(demo_outputs):
    for sub in ("dumps", "extract", "conversations", "filter", "tokenizer", "shards", "model", "eval"):
        assert (demo_outputs / sub).is_dir(), sub
    report = json.loads((demo_outputs / "report.json").read_text())
    assert report["funnel"]["kept"] == report["stages"]["filter"]["rows_out"] > 0
    assert report["shards"]["train"]["instances"] > 0 and report["shards"]["train"]["shards"] >= 1
    curve = report["training"]["curve"]
    assert curve["train"] and curve["train"][-1]["step"] == DemoConfig.tiny(demo_outputs).train_steps
    assert curve["valid"], "validation losses from the trainer's log"
    assert report["replies"] and all("reply" in r and r["context"] for r in report["replies"])
    md = (demo_outputs / "report.md").read_text()
    for heading in ("## Filter funnel", "## Token shards", "## Training", "## Generated replies"):
        assert heading in md


def test_rerun_with_unchanged_inputs_skips_every_step(demo_outputs, tmp_path):
    data = tmp_path / "demo"
    shutil.copytree(demo_outputs, data)
    run_demo(DemoConfig.tiny(data))
    timings = json.loads((data / ".demo" / "timings.json").read_text())["steps"]
    assert list(timings) == STEP_NAMES
    assert all(t["skipped"] for t in timings.values()), timings

    # A changed parameter re-runs its step and what reads it; a lost output file re-runs its step.
    (data / "tokenizer" / "merges.txt").unlink()
    run_demo(DemoConfig.tiny(data, eval_items=8))
    timings = json.loads((data / ".demo" / "timings.json").read_text())["steps"]
    ran = [name for name, t in timings.items() if not t["skipped"]]
    assert ran == ["tokenizer", "eval"], timings  # the rebuilt tokenizer is identical: tokenize is skipped
    assert json.loads((data / "eval" / "metrics.json").read_text())["items"] == 8
