"""Train/eval safety: shards verified against manifest.json before the first step, token ids checked per
batch, and a resume that refuses to mix configurations. Everything through the real entry points."""

from __future__ import annotations

import importlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from toydata import make_dataset

from dialogsmith.formats.shards import HEADER, ShardDataset, ShardReader
from dialogsmith.train.config import TrainConfig
from dialogsmith.train.data import epoch_plan, group_steps
from dialogsmith.train.loop import run

REPO = Path(__file__).resolve().parents[1]
WORDS = "the cat dog sat on a mat ran far home red blue big small why how yes no ok fine".split()


def _dialogues(n: int, seed: int) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    return [
        [" ".join(rng.choice(WORDS, size=rng.integers(2, 9))) for _ in range(rng.integers(2, 5))]
        for _ in range(n)
    ]


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("safety") / "shards"
    make_dataset(str(root), _dialogues(48, 0), _dialogues(8, 1), max_len=64)
    return root


@pytest.fixture(scope="module")
def train_entry():
    sys.path.insert(0, str(REPO / "train"))
    try:
        return importlib.import_module("train")
    finally:
        sys.path.pop(0)


def _cfg(data, out, **kw) -> TrainConfig:
    base = dict(
        input=str(data),
        output=str(out),
        model_config="tiny",
        batch_size=2,
        max_steps=4,
        lr=2e-3,
        warmup_steps=2,
        progress=False,
        num_threads=1,
        resume="never",
    )
    base.update(kw)
    return TrainConfig(**base)


def _argv(data, out, *extra: str) -> list[str]:
    return ["--input", str(data), "--output", str(out), "--model-config", "tiny", "--batch-size", "2",
            "--max-steps", "2", "--num-threads", "1", "--no-progress", *extra]  # fmt: skip


def _records(out) -> list[dict]:
    path = Path(out) / "log.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _trained_steps(out) -> list[int]:
    return [r["step"] for r in _records(out) if "loss" in r]


def _copy(toy: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "shards"
    shutil.copytree(toy, dst)
    return dst


def _first_instance(root: Path, split: str = "train") -> tuple[Path, int, int]:
    """(shard file, index in that shard, index in the split) of the first instance the trainer reads
    (first row of the first micro-batch of epoch 0 with _cfg's batching), or instance 0 for eval."""
    ds = ShardDataset(str(root), split)
    if split == "train":
        plan = epoch_plan(ds.lengths, batching="pack", batch_size=2, max_len=ds.max_len, seed=42, epoch=0)
        i = int(group_steps(plan, 1)[0][0][0][0])
    else:
        i = 0
    s, j = ds.locate(i)
    return Path(ds.shards[s].path), j, i


def _token_byte(shard: Path, j: int) -> int:
    """File offset of the first token of instance j (docs/shard-format.md)."""
    r = ShardReader(shard)
    n, t, itemsize = r.n_instances, r.n_turns, r.tokens.itemsize
    index = 16 * (n + 1) + 5 * t
    return HEADER.size + index + (-index) % 8 + int(r.token_offsets[j]) * itemsize


def _poke(shard: Path, offset: int, value: int) -> None:
    raw = bytearray(shard.read_bytes())
    raw[offset] = value
    shard.write_bytes(bytes(raw))


def _flip_in_range(shard: Path, j: int, vocab: int) -> None:
    """Flip the lowest bit of instance j's first token: still a valid id, so only sha256 can tell."""
    at = _token_byte(shard, j)
    old = int.from_bytes(shard.read_bytes()[at : at + 2], "little")
    assert (old ^ 1) < vocab
    _poke(shard, at, (old ^ 1) & 0xFF)


def _flip_out_of_range(shard: Path, j: int) -> None:
    """Set the top bit of instance j's first token (uint16): id >= 32768 > any toy vocabulary."""
    at = _token_byte(shard, j) + 1
    _poke(shard, at, shard.read_bytes()[at] | 0x80)


# ---- shard verification ---------------------------------------------------------------------------


def test_in_range_flip_is_refused_by_sha256_before_the_first_step(toy, tmp_path, train_entry, capsys):
    data = _copy(toy, tmp_path)
    shard, j, _ = _first_instance(data)
    _flip_in_range(shard, j, ShardDataset(str(data)).vocab_size)

    out = tmp_path / "run"
    assert train_entry.main(_argv(data, out)) == 2
    err = capsys.readouterr().err
    assert "train/shard-00000.bin" in err and "sha256 mismatch" in err, err
    expected = json.loads((data / "manifest.json").read_text())["splits"]["train"]["shards"][0]["sha256"]
    assert expected in err  # expected vs actual, both printed
    assert _trained_steps(out) == [] and not (out / "checkpoints").exists()

    # the id stays below the vocabulary size: without the sha256 nothing notices and training runs
    assert train_entry.main(_argv(data, tmp_path / "unverified", "--no-verify")) == 0
    assert _trained_steps(tmp_path / "unverified") == [1, 2]


def test_out_of_range_id_is_named_by_the_batch_check(toy, tmp_path, train_entry, capsys):
    data = _copy(toy, tmp_path)
    shard, j, i = _first_instance(data)
    _flip_out_of_range(shard, j)
    out = tmp_path / "run"
    assert train_entry.main(_argv(data, out, "--no-verify")) == 2  # not a bare IndexError
    err = capsys.readouterr().err
    assert f"{shard}: instance {j} (train instance {i})" in err and "vocab size" in err, err
    assert _trained_steps(out) == []


@pytest.mark.parametrize("split", ["train", "valid"])
def test_truncated_shard_is_refused_even_with_no_verify(toy, tmp_path, train_entry, capsys, split):
    """The size/header check always runs. A broken valid shard used to be skipped silently (no
    validation at all); now it is an error like a broken train shard."""
    data = _copy(toy, tmp_path)
    shard = data / split / "shard-00000.bin"
    size = shard.stat().st_size
    shard.write_bytes(shard.read_bytes()[:-3])
    out = tmp_path / "run"
    assert train_entry.main(_argv(data, out, "--no-verify")) == 2
    err = capsys.readouterr().err
    assert f"{split}/shard-00000.bin: {size - 3} bytes, manifest.json says {size}" in err, err
    assert _trained_steps(out) == []


@pytest.fixture(scope="module")
def tiny_run(toy, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("safety-model") / "run"
    run(_cfg(toy, out, max_steps=2))
    return out


def test_eval_perplexity_is_the_trainers_validation_loss(toy, tiny_run):
    """One implementation (train.perplexity): eval's perplexity on the valid split of the run's data equals
    the validation loss the trainer logged, whatever the batching."""
    from dialogsmith.eval import perplexity_on_shards
    from dialogsmith.generation import load_model

    summary = json.loads((tiny_run / "summary.json").read_text())
    model, _ = load_model(str(tiny_run), "cpu")
    got = perplexity_on_shards(model, str(toy), "valid", batch_size=3)
    assert got["tokens"] == summary["valid_targets"]
    assert got["loss"] == pytest.approx(summary["valid_loss"], rel=1e-5)
    assert got["ppl"] == pytest.approx(summary["valid_ppl"], rel=1e-5)


def test_eval_refuses_corrupted_shards(toy, tiny_run, tmp_path, capsys):
    from dialogsmith.eval import main

    refs = tmp_path / "test.refs.txt"
    refs.write_text("the cat sat EOS on a mat\t1|yes ok\nhow far\t1|home\n")
    data = _copy(toy, tmp_path)
    shard, j, _ = _first_instance(data, "valid")
    _flip_in_range(shard, j, ShardDataset(str(data), "valid").vocab_size)
    argv = ["--model", str(tiny_run), "--refs-file", str(refs), "--output", str(tmp_path / "ev"), "--device",
            "cpu", "--max-new-tokens", "3", "--shards", str(data), "--ppl-split", "valid"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "valid/shard-00000.bin" in err and "sha256 mismatch" in err, err
    assert not (tmp_path / "ev" / "metrics.json").exists()

    # an id beyond the vocabulary with --no-verify: the per-batch check names shard and instance
    _flip_out_of_range(shard, j)
    assert main([*argv, "--no-verify"]) == 2
    err = capsys.readouterr().err
    assert f"{shard}: instance {j} (valid instance {j})" in err, err


# ---- resume ---------------------------------------------------------------------------------------


def test_resume_refuses_a_changed_model_or_data(toy, tmp_path, capsys):
    out = tmp_path / "run"
    run(_cfg(toy, out, stop_after=2))
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["model_config"] == "tiny"

    with pytest.raises(ValueError) as e:
        run(_cfg(toy, out, model_config="mini", batch_size=3, resume="auto"))
    msg = str(e.value)
    assert "model_config: checkpoint='tiny' now='mini'" in msg and "batch_size: checkpoint=2 now=3" in msg
    assert "--resume never" in msg and "another --output" in msg
    assert json.loads((out / "train_config.json").read_text()) == saved  # still what ran
    assert _trained_steps(out) == [1, 2]

    # an explicit checkpoint dir is checked the same way
    ckpt = out / "checkpoints" / "step-0000002"
    with pytest.raises(ValueError, match="model_config: checkpoint='tiny' now='mini'"):
        run(_cfg(toy, tmp_path / "elsewhere", model_config="mini", resume=str(ckpt)))

    # other data (another tokenizer and vocabulary) under the same flags
    other = tmp_path / "other-shards"
    make_dataset(str(other), _dialogues(48, 5), None, max_len=64, vocab_size=300)
    with pytest.raises(ValueError, match=r"data\.manifest_sha256: checkpoint='[0-9a-f]+' now='[0-9a-f]+'"):
        run(_cfg(other, out, resume="auto"))

    # --resume never on top of existing checkpoints would mix two runs in one directory
    with pytest.raises(ValueError, match="already holds checkpoints.*another --output"):
        run(_cfg(toy, out, model_config="mini", resume="never"))
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-0000002"]
    assert _trained_steps(out) == [1, 2]


def test_resume_with_harmless_changes_runs_and_logs_them(toy, tmp_path, capsys):
    out = tmp_path / "run"
    run(_cfg(toy, out, stop_after=2))
    moved = _copy(toy, tmp_path)  # same shards at another path: the same data
    s = run(_cfg(moved, out, resume="auto", max_steps=5, eval_every=2, log_every=2))
    assert s["step"] == 5 and s["interrupted"] is None
    changed = [r for r in _records(out) if r.get("event") == "config_changed"]
    assert len(changed) == 1
    fields = changed[0]["fields"]
    assert fields["max_steps"] == [4, 5] and fields["eval_every"] == [0, 2] and fields["log_every"] == [1, 2]
    assert fields["input"] == [str(toy), str(moved)]
    err = capsys.readouterr().err
    assert "max_steps: checkpoint=4 now=5" in err and "eval_every: checkpoint=0 now=2" in err
    saved = json.loads((out / "train_config.json").read_text())
    assert (saved["max_steps"], saved["eval_every"], saved["input"]) == (5, 2, str(moved))
    valid_steps = [r["step"] for r in _records(out) if "valid_loss" in r and "event" not in r]
    assert valid_steps == [4, 5]  # --eval-every 2 took effect after the resume (and the final one at 5)
