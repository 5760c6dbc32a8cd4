"""Train stage: loss per the spec, batching plans, schedules, exact resume, SIGTERM, torchrun DDP."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from toydata import make_dataset

from dialogsmith.formats.shards import ShardDataset, ShardInstance, build_example, write_dataset
from dialogsmith.stage import StageError
from dialogsmith.train.config import TrainConfig, build_parser, parse_config, resume_changes
from dialogsmith.train.data import collate, epoch_plan, group_steps, pack_rows
from dialogsmith.train.loop import run
from dialogsmith.train.model import LossModel, lr_at, param_groups

REPO = Path(__file__).resolve().parents[1]
E = 50  # EOS id of the hand-built vocabularies below
WORDS = "the cat dog sat on a mat ran far home red blue big small why how yes no ok fine".split()


def _dialogues(n: int, seed: int) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    return [
        [" ".join(rng.choice(WORDS, size=rng.integers(2, 9))) for _ in range(rng.integers(2, 5))]
        for _ in range(n)
    ]


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("train") / "shards"
    make_dataset(str(root), _dialogues(48, 0), _dialogues(8, 1), max_len=64)
    return str(root)


def _cfg(toy: str, out, **kw) -> TrainConfig:
    base = dict(
        input=toy,
        output=str(out),
        model_config="tiny",
        batch_size=2,
        max_steps=6,
        lr=2e-3,
        warmup_steps=2,
        progress=False,
        num_threads=1,
        resume="never",
    )
    base.update(kw)
    return TrainConfig(**base)


def _losses(out) -> dict[int, float]:
    recs = [json.loads(line) for line in open(os.path.join(out, "log.jsonl"))]
    return {r["step"]: r["loss"] for r in recs if "loss" in r}


def _weights(out) -> dict[str, torch.Tensor]:
    return load_file(os.path.join(out, "model.safetensors"))


# ---- loss --------------------------------------------------------------------------------------


def test_spec_worked_example_layout():
    ex = build_example([[1, 2], [3, 4, 5], [6], [7, 8]], [False, True, False, True], E, 128)
    x, y = ex
    assert x.tolist() == [1, 2, E, 3, 4, 5, E, 6, E, 7, 8]
    assert y.tolist() == [-100, -100, 3, 4, 5, E, -100, -100, 7, 8, E]


@pytest.mark.parametrize("batching", ["pack", "bucket", "none"])
def test_batch_loss_equals_reference(tmp_path, batching):
    """LossModel's token-mean CE of a (packed or padded) batch == GPT2LMHeadModel's own loss with labels
    built by hand per the spec (input + closing EOS, labels shifted right by one, which HF undoes)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    rng = np.random.default_rng(3)
    insts = [ShardInstance([np.array([1, 2]), np.array([3, 4, 5]), np.array([6]), np.array([7, 8])],
                           np.array([False, True, False, True]))]  # fmt: skip
    for _ in range(9):
        k = int(rng.integers(2, 5))
        turns = [rng.integers(0, E, size=rng.integers(1, 7)) for _ in range(k)]
        insts.append(
            ShardInstance(
                turns, np.array([False] + [bool(rng.integers(0, 2)) or i == k - 1 for i in range(1, k)])
            )
        )
    write_dataset(tmp_path / "d", {"train": insts}, eos_id=E, vocab_size=E + 1, max_len=32)
    ds = ShardDataset(str(tmp_path / "d"))
    torch.manual_seed(0)
    lm = GPT2LMHeadModel(GPT2Config(vocab_size=E + 1, n_positions=64, n_layer=2, n_embd=32, n_head=2)).eval()

    # hand-built reference for the spec's worked example
    ref_in = torch.tensor([[1, 2, E, 3, 4, 5, E, 6, E, 7, 8, E]])
    ref_lab = torch.tensor([[-100, -100, -100, 3, 4, 5, E, -100, -100, 7, 8, E]])
    with torch.no_grad():
        worked = float(lm(input_ids=ref_in, labels=ref_lab).loss)
    plan = epoch_plan(ds.lengths[:1], batching=batching, batch_size=1, max_len=32, seed=0, epoch=0)
    b = collate(ds, plan[0], E)
    with torch.no_grad():
        assert float(LossModel(lm)(b)) / b.n_targets == pytest.approx(worked, rel=1e-5)

    # a whole batch: reference = sum over instances of HF mean loss x its targets / all targets
    ref_sum, ref_n = 0.0, 0
    for i in range(len(ds)):
        x, y = ds.example(i)
        inp = torch.tensor(np.append(x, E))[None]
        lab = torch.tensor(np.concatenate([[-100], y]))[None]
        n = int((lab != -100).sum())
        with torch.no_grad():
            ref_sum += float(lm(input_ids=inp, labels=lab).loss) * n
        ref_n += n
    plan = epoch_plan(ds.lengths, batching=batching, batch_size=len(ds), max_len=32, seed=0, epoch=0)
    assert len(plan) == 1
    b = collate(ds, plan[0], E)
    if batching == "pack":
        assert b.packed and b.input_ids.shape[0] < len(ds)
    with torch.no_grad():
        ours = float(LossModel(lm)(b))
    assert b.n_targets == ref_n
    assert ours / b.n_targets == pytest.approx(ref_sum / ref_n, rel=1e-5)


# ---- plans, schedules, optimizer groups -----------------------------------------------------------


@pytest.mark.parametrize("batching", ["pack", "bucket", "none"])
def test_epoch_plan_covers_each_instance_once(batching):
    lengths = np.random.default_rng(0).integers(3, 129, size=1000)
    kw = dict(batching=batching, batch_size=8, max_len=128, seed=7)
    p0 = epoch_plan(lengths, epoch=0, **kw)
    ids = np.concatenate([row for mb in p0 for row in mb])
    assert sorted(ids.tolist()) == list(range(1000))
    assert all(lengths[row].sum() <= 128 for mb in p0 for row in mb)
    assert all(len(mb) <= 8 for mb in p0)
    again = epoch_plan(lengths, epoch=0, **kw)
    assert [r.tolist() for mb in again for r in mb] == [r.tolist() for mb in p0 for r in mb]
    other = epoch_plan(lengths, epoch=1, **kw)
    assert [r.tolist() for mb in other for r in mb] != [r.tolist() for mb in p0 for r in mb]
    steps = group_steps(p0, 4)
    assert len(steps) == len(p0) // 4 and all(len(s) == 4 for s in steps)


def test_packing_is_dense():
    lengths = np.random.default_rng(1).integers(10, 129, size=2000)
    rows = pack_rows(np.arange(2000), lengths, 128)
    fill = lengths.sum() / (len(rows) * 128)
    assert fill > 0.97, fill
    with pytest.raises(ValueError, match="capacity"):
        pack_rows(np.arange(1), np.array([200]), 128)


def test_schedules_and_decay_groups():
    cfg = TrainConfig(lr=1e-5, schedule="noam", warmup_steps=4000)
    for step in (0, 10, 3999, 10_000):
        s = step + 1
        want = 1e-5 * 1e4 * 768**-0.5 * min(s**-0.5, s * 4000**-1.5)
        assert lr_at(step, cfg, 0, 768) == pytest.approx(want)
    cfg = TrainConfig(lr=1.0, schedule="linear", warmup_steps=10)
    assert lr_at(0, cfg, 100, 64) == pytest.approx(0.1)
    assert lr_at(9, cfg, 100, 64) == pytest.approx(1.0)
    assert lr_at(99, cfg, 100, 64) == pytest.approx(1 / 90)
    from transformers import GPT2Config, GPT2LMHeadModel

    lm = GPT2LMHeadModel(GPT2Config(vocab_size=60, n_positions=16, n_layer=1, n_embd=16, n_head=2))
    decay, no_decay = param_groups(lm, 0.01)
    names = {id(p): n for n, p in lm.named_parameters()}
    assert all(not names[id(p)].endswith("bias") and ".ln_" not in names[id(p)] for p in decay["params"])
    assert any("ln_f" in names[id(p)] for p in no_decay["params"]) and no_decay["weight_decay"] == 0.0
    assert sum(p.numel() for g in (decay, no_decay) for p in g["params"]) == lm.num_parameters()


def test_config_yaml_and_flags(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("input: d\noutput: o\nmodel_config: tiny\nlr: 0.01\nbatch_size: 3\n")
    cfg = parse_config(["--config", str(y), "--lr", "0.5", "--no-progress"])
    assert (cfg.lr, cfg.batch_size, cfg.progress, cfg.model_config) == (0.5, 3, False, "tiny")
    assert (cfg.input, cfg.output) == ("d", "o")
    with pytest.raises(ValueError, match="--model"):
        parse_config(["--input", "d", "--output", "o"])
    y.write_text("bogus: 1\n")
    with pytest.raises(StageError, match="unknown config field 'bogus'"):
        parse_config(["--config", str(y)])
    with pytest.raises(ValueError, match="--batching must be pack|bucket|none"):
        TrainConfig(input="d", output="o", model_config="tiny", batching="rows").validate()


def test_input_output_flags_keep_their_old_spellings():
    """--input/--output as in every stage; --data/--out (the Makefile's, older scripts') still work, and so
    do the old field names in a saved train_config.json."""
    new = parse_config(["--input", "shards", "--output", "run", "--model-config", "tiny"])
    old = parse_config(["--data", "shards", "--out", "run", "--model-config", "tiny"])
    assert new == old and (new.input, new.output) == ("shards", "run")
    help_text = build_parser().format_help()
    assert "--input" in help_text and "--output" in help_text
    assert "--data" not in help_text and "--out " not in help_text  # hidden aliases
    # a checkpoint's train_config.json written before the rename: data/out are input/output
    saved = {**new.to_dict(), "data": "shards", "out": "run"}
    del saved["input"], saved["output"]
    assert resume_changes(saved, None, new, {}) == ([], {})
    moved = dataclasses.replace(new, input="elsewhere", output="run2")
    refused, allowed = resume_changes(saved, None, moved, {})  # no data identity saved: the path counts
    assert refused == ["input: checkpoint='shards' now='elsewhere'"] and allowed == {
        "output": ["run", "run2"]
    }


# ---- training runs --------------------------------------------------------------------------------


def test_resume_is_exact(toy, tmp_path):
    """6 steps straight == 3 steps, stop (checkpoint), resume for 3 more: same losses, same weights.
    Dropout is on and grad accumulation is used, so RNG and optimizer state must be restored."""
    full = tmp_path / "full"
    run(_cfg(toy, full, grad_accum=2, dropout=0.1, save_every=4, keep_last=1))
    cut = tmp_path / "cut"
    s1 = run(_cfg(toy, cut, grad_accum=2, dropout=0.1, stop_after=3, resume="auto"))
    assert s1["interrupted"] == "stop_after" and s1["step"] == 3
    assert (cut / "checkpoints" / "step-0000003" / "optimizer.safetensors").exists()
    s2 = run(_cfg(toy, cut, grad_accum=2, dropout=0.1, resume="auto"))
    assert s2["step"] == 6 and s2["interrupted"] is None
    lf, lc = _losses(full), _losses(cut)
    assert list(lf) == list(range(1, 7)) and lc == lf
    wf, wc = _weights(full), _weights(cut)
    assert wf.keys() == wc.keys() and all(torch.equal(wf[k], wc[k]) for k in wf)
    # keep_last=1 pruned the step-4 checkpoint of the full run
    assert sorted(os.listdir(full / "checkpoints")) == ["step-0000006"]
    state = json.loads((cut / "checkpoints" / "step-0000006" / "trainer_state.json").read_text())
    assert state["step"] == 6 and "param_groups" in state["optimizer"]
    assert s2["valid_loss"] > 0 and s2["valid_ppl"] == pytest.approx(math.exp(s2["valid_loss"]))


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def test_torchrun_two_ranks_match_single_process(toy, tmp_path):
    """Same global batch (2 ranks x 1 micro-batch vs 1 process x 2 accumulated): same losses/weights."""
    single = tmp_path / "single"
    run(_cfg(toy, single, grad_accum=2, dropout=0.0, max_steps=4))
    ddp = tmp_path / "ddp"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    args = [
        "--input",
        toy,
        "--output",
        str(ddp),
        "--model-config",
        "tiny",
        "--batch-size",
        "2",
        "--grad-accum",
        "1",
    ]
    args += ["--max-steps", "4", "--lr", "2e-3", "--warmup-steps", "2", "--dropout", "0", "--no-progress"]
    args += ["--num-threads", "1"]
    r = subprocess.run(
        torchrun + [str(REPO / "train" / "train.py"), *args],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    ls, ld = _losses(single), _losses(ddp)
    assert list(ld) == [1, 2, 3, 4]
    for k in ls:
        assert ld[k] == pytest.approx(ls[k], rel=1e-5, abs=1e-6)
    ws, wd = _weights(single), _weights(ddp)
    for k in ws:
        torch.testing.assert_close(wd[k], ws[k], rtol=1e-4, atol=1e-5)
    summary = json.loads((ddp / "summary.json").read_text())
    assert summary["world_size"] == 2


def test_sigterm_writes_checkpoint_and_stops_cleanly(toy, tmp_path):
    """A real SIGTERM to this process mid-run: the step finishes, a checkpoint is written, run() returns."""
    out = tmp_path / "sig"
    log = out / "log.jsonl"

    def fire():
        deadline = time.time() + 120
        while time.time() < deadline and not (log.exists() and '"loss"' in log.read_text()):
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=fire, daemon=True).start()
    previous = signal.getsignal(signal.SIGTERM)
    summary = run(_cfg(toy, out, max_steps=100_000))
    assert signal.getsignal(signal.SIGTERM) == previous  # handlers restored
    assert summary["interrupted"] == "signal" and 1 <= summary["step"] < 100_000
    ck = out / "checkpoints" / f"step-{summary['step']:07d}"
    assert json.loads((ck / "trainer_state.json").read_text())["step"] == summary["step"]
    resumed = run(_cfg(toy, out, max_steps=summary["step"] + 1, resume="auto"))
    assert resumed["step"] == summary["step"] + 1 and resumed["interrupted"] is None


def test_bad_input_is_a_clear_error(tmp_path, capsys):
    sys.path.insert(0, str(REPO / "train"))
    try:
        import importlib

        entry = importlib.import_module("train")
    finally:
        sys.path.pop(0)
    rc = entry.main(
        ["--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o"), "--model-config", "tiny"]
    )
    assert rc == 2 and "manifest.json" in capsys.readouterr().err


def test_resume_with_other_accumulation_continues_from_the_same_micro_batch(toy, tmp_path):
    out = tmp_path / "re"
    run(_cfg(toy, out, grad_accum=2, stop_after=2, resume="auto"))  # 4 micro-batches consumed
    s = run(_cfg(toy, out, grad_accum=1, max_steps=3, resume="auto"))
    assert s["step"] == 3
    events = [json.loads(x) for x in open(out / "log.jsonl")]
    moved = [e for e in events if e.get("event") == "repositioned"]
    assert moved and moved[0]["micro_batches_per_step"] == [2, 1] and moved[0]["step_in_epoch"] == 4
