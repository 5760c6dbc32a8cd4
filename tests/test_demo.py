"""`make demo`'s orchestrator: every step ran once (the session's demo_outputs), the report, and skipping."""

from __future__ import annotations

import json
import shutil

from dialogsmith.demo import STEP_NAMES, DemoConfig, cache, run_demo

SOURCES_ONLY = shutil.ignore_patterns("__pycache__", "*.so", "*.pyc")


def test_demo_writes_every_output_and_the_report(demo_outputs):
    assert STEP_NAMES == [
        "sample",
        "extract",
        "instances",
        "filter",
        "tokenizer",
        "tokenize",
        "train",
        "eval",
    ]
    for step in STEP_NAMES:  # one name per stage: its output directory is named as the stage
        assert (demo_outputs / step).is_dir(), step
    report = json.loads((demo_outputs / "report.json").read_text())
    assert report["sample"]["comments"] > 0
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


def test_the_code_fingerprint_covers_every_source_file_of_the_package(tmp_path):
    """Not only a step's own module: an edit of a module it imports (extract/dumps.py, metrics/, text/)
    or of the C kernels changes it; rebuilding or byte-compiling does not."""
    package = tmp_path / "dialogsmith"
    shutil.copytree(cache.PACKAGE_DIR, package, ignore=SOURCES_ONLY)
    original = cache.source_hash(package)
    assert original == cache.source_hash(cache.PACKAGE_DIR)
    edited = [
        "extract/dumps.py",
        "metrics/__init__.py",
        "text/dialogpt.py",
        "formats/schemas.py",
        "_fastjson.c",
    ]
    for rel in edited:
        path = package / rel
        before = path.read_bytes()
        path.write_bytes(before + b"\n")
        assert cache.source_hash(package) != original, rel
        path.write_bytes(before)
        assert cache.source_hash(package) == original, f"{rel}: the hash is of contents, not of times"
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "stage.cpython-311.pyc").write_bytes(b"compiled")
    (package / "_fastjson.cpython-311-x86_64-linux-gnu.so").write_bytes(b"built")
    assert cache.source_hash(package) == original, "build products are not sources"
    (package / "sample" / "new_module.py").write_text("X = 1\n")
    assert cache.source_hash(package) != original, "a new module counts too"


def test_an_edit_of_a_module_a_step_imports_reruns_the_step(demo_outputs, tmp_path, monkeypatch):
    data = tmp_path / "demo"
    shutil.copytree(demo_outputs, data)
    package = tmp_path / "dialogsmith"
    shutil.copytree(cache.PACKAGE_DIR, package, ignore=SOURCES_ONLY)
    monkeypatch.setattr(cache, "PACKAGE_DIR", package)  # the sources the fingerprints are taken of

    def ran() -> list[str]:
        run_demo(DemoConfig.tiny(data, until="extract"))
        timings = json.loads((data / ".demo" / "timings.json").read_text())["steps"]
        return [name for name, t in timings.items() if not t["skipped"]]

    ran()  # fingerprints of the copy (the tree may have changed since demo_outputs was made)
    assert ran() == [], "the same sources: nothing to do"
    # extract/job.py is unchanged; extract/dumps.py, which it imports, is edited.
    dumps = package / "extract" / "dumps.py"
    dumps.write_text(dumps.read_text() + "\n# an edit\n")
    assert ran() == ["sample", "extract"]
