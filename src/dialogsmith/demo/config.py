"""The demo's settings (``DemoConfig``: its fields are the ``dialogsmith demo`` flags) and its steps' shape."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dialogsmith.sample.config import month_list
from dialogsmith.stage import option

STATE_DIR = ".demo"  # DATA/.demo/<step>.json: each step's fingerprint and the files it wrote


class DemoError(RuntimeError):
    pass


@dataclass
class DemoConfig:
    data: str = option("data/demo", "working directory: one output directory per step")
    seed: int = option(1234, "sample and training seed")
    comments: int = option(20_000, "comment lines per month of the sample", metavar="N")
    months: list[str] = option(
        ["2016-01", "2016-02"], "sample months (default: 2016-01,2016-02)", type=month_list, metavar="A,B"
    )
    instances_profile: str = option("default", "instances profile", aliases=("--conv-profile",))
    filter_profile: str = option("default", "filter profile")
    # more valid/test than the 98/1/1 default: the sample is small
    split: str = option("0.9,0.05,0.05", "train,valid,test fractions")
    tokenizer: str = option(
        "", "tokenizer dir (vocab.json + merges.txt or tokenizer.json; default: train a small BPE)"
    )
    vocab_size: int = option(2000, "vocabulary of the small BPE")
    max_len: int = option(128, "max tokens of a training example")
    model_config: str = option("tiny", "trainer model preset")
    # 500 steps: the tiny model's replies to the sample's questions become on-topic
    train_steps: int = option(500, "optimizer steps")
    batch_size: int = option(16, "trainer rows per batch")
    lr: float = option(3e-3, "peak learning rate")
    warmup_steps: int = option(20, "learning-rate warmup steps")
    eval_items: int = option(100, "test items generated and scored")
    replies: int = option(5, "generated replies shown in the report")
    force: bool = option(False, "run every step even when its inputs are unchanged")
    until: str = option("", "stop after this step (a step's name)", metavar="STEP")
    progress: bool = option(True, "progress bars")

    @classmethod
    def tiny(cls, data: str | Path, **overrides) -> DemoConfig:
        """A sample small enough for the test suite (seconds per step): notebooks run against it."""
        base = dict(
            data=str(data), comments=1500, vocab_size=600, max_len=64, train_steps=30, batch_size=8,
            warmup_steps=5, eval_items=16, progress=False,
        )  # fmt: skip
        return cls(**{**base, **overrides})


@dataclass(frozen=True)
class Step:
    """One step of the demo; it writes DATA/<name> (the stage's name: make target = CLI subcommand =
    subpackage = output directory)."""

    name: str
    reads: tuple[str, ...]  # steps whose outputs this one reads
    params: Callable[[DemoConfig], dict]  # what of the config this step's output depends on
    run: Callable[
        [DemoConfig, Path], dict
    ]  # writes DATA/<name>; returns a summary for DATA/.demo/<name>.json

    def out(self, cfg: DemoConfig) -> Path:
        return Path(cfg.data) / self.name
