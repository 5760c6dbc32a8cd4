"""Shared fixtures: one real local Spark session per test run, and ../shared when it exists."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
# No progress lines in test output (stages and the make targets tests run); tests of the progress line
# unset it themselves.
os.environ.setdefault("DIALOGSMITH_PROGRESS", "0")


@pytest.fixture(scope="session")
def spark():
    from dialogsmith.spark import get_spark

    os.environ.setdefault("SPARK_LOG_LEVEL", "ERROR")
    session = get_spark("dialogsmith-tests", master="local[2]", conf={"spark.sql.shuffle.partitions": "4"})
    yield session
    session.stop()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared (specs, golden outputs, GPT-2 vocab). Tests that need it skip when it is absent."""
    if not SHARED.is_dir():
        pytest.skip("../shared is absent (a user's fresh clone): skipping tests that need it")
    return SHARED


@pytest.fixture(scope="session")
def gpt2_dir(shared_dir) -> Path:
    path = shared_dir / "gpt2"
    if not (path / "vocab.json").exists():
        pytest.skip("../shared/gpt2 is absent")
    return path


@pytest.fixture(scope="session")
def demo_outputs(tmp_path_factory, spark) -> Path:
    """The demo pipeline (dialogsmith.demo) run once per test session on a tiny sample; its DATA dir."""
    from dialogsmith.demo import DemoConfig, run_demo

    data = tmp_path_factory.mktemp("demo")
    run_demo(DemoConfig.tiny(data))
    return data
