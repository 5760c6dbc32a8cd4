"""Train-stage throughput on CPU: this trainer (packing, and DialoGPT length buckets) next to
transformers' Trainer with a per-batch padding collator, same model config, same examples, same run.

Reports steady-state tokens/s (real input tokens, steps after the first two), padding fraction of each,
and the ratio to Trainer. Goal: >= 1.2x Trainer tokens/s with padding < 5%.

    python benchmarks/bench_train.py [--steps 12] [--instances 1500] [--model-config mini]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dialogsmith.train.config import MODEL_PRESETS, TrainConfig
from dialogsmith.train.loop import run

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the toy dataset maker is test code
from toydata import make_dataset  # noqa: E402

GPT2_DIR = REPO.parent / "shared" / "gpt2"
WORDS = (
    "i you the a to and it is that of in this was for not but on my have be with just like so what "
    "they are if can do get people think would your at all about one out more time there no really "
    "good know how why because it's don't me yes well actually pretty sure thanks game reddit post "
    "comment point lol agree wrong right never always best worst great bad fun work years day"
).split()


def sample_dialogues(n: int, seed: int) -> list[list[str]]:
    """Reddit-like turn counts and lengths: 2-5 turns of 3-30 words (instances ~10-128 tokens)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        k = int(rng.integers(2, 6))
        out.append([" ".join(rng.choice(WORDS, size=int(rng.integers(3, 31)))) for _ in range(k)])
    return out


def steady_rate(log_path: str, skip: int = 2) -> float:
    recs = [json.loads(x) for x in open(log_path)]
    steps = [r for r in recs if "loss" in r]
    t0 = steps[skip - 1]["time"]
    tokens = sum(r["tokens"] for r in steps[skip:])
    return tokens / (steps[-1]["time"] - t0)


def bench_ours(data: str, work: str, batching: str, rows: int, steps: int, preset: str) -> dict:
    out = os.path.join(work, f"ours-{batching}")
    cfg = TrainConfig(
        input=data,
        output=out,
        model_config=preset,
        batching=batching,
        batch_size=rows,
        max_steps=steps,
        lr=5e-4,
        warmup_steps=5,
        progress=False,
        resume="never",
        dropout=0.0,
    )
    s = run(cfg)
    return {"tokens_per_s": steady_rate(os.path.join(out, "log.jsonl")), "padding": s["padding"]}


def bench_trainer(data: str, work: str, batch: int, steps: int, preset: str) -> dict:
    from transformers import (
        AutoModelForCausalLM,
        DataCollatorForSeq2Seq,
        GPT2Config,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from dialogsmith.formats.shards import ShardDataset
    from dialogsmith.train.model import load_hf_tokenizer

    ds = ShardDataset(data)
    tok = load_hf_tokenizer(ds.tokenizer_dir)
    tok.pad_token = tok.eos_token
    # the same examples in HF's convention: HF shifts labels itself, so append the closing EOS to the
    # input and shift our next-token labels right by one (loss identical, see tests/test_train.py)
    examples = []
    for i in range(len(ds)):
        x, y = ds.example(i)
        examples.append({"input_ids": np.append(x, ds.eos_id).tolist(), "labels": [-100, *y.tolist()]})
    counts = {"tokens": 0, "slots": 0}
    base = DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100)

    def collate(features):
        b = base(features)
        counts["tokens"] += int(b["attention_mask"].sum()) - len(features)  # our token definition
        counts["slots"] += b["input_ids"].numel()
        return b

    times: list[tuple[float, int]] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            times.append((time.time(), counts["tokens"]))

    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=ds.vocab_size, n_positions=max(128, ds.max_len), bos_token_id=ds.eos_id,
        eos_token_id=ds.eos_id, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **MODEL_PRESETS[preset],
    )  # fmt: skip
    model = AutoModelForCausalLM.from_config(config)
    args = TrainingArguments(
        output_dir=os.path.join(work, "trainer"),
        per_device_train_batch_size=batch,
        max_steps=steps,
        learning_rate=5e-4,
        warmup_steps=5,
        weight_decay=0.01,
        max_grad_norm=1.0,
        logging_strategy="no",
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        dataloader_num_workers=0,
        disable_tqdm=True,
        seed=0,
    )
    Trainer(
        model=model, args=args, train_dataset=examples, data_collator=collate, callbacks=[Clock()]
    ).train()
    (t0, k0), (t1, k1) = times[1], times[-1]
    # the collator runs one batch ahead of the step; tokens per step are what its batches held
    return {"tokens_per_s": (k1 - k0) / (t1 - t0), "padding": 1 - counts["tokens"] / counts["slots"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--instances", type=int, default=1500)
    p.add_argument("--batch", type=int, default=16, help="instances per Trainer/bucket batch")
    p.add_argument("--model-config", default="mini", choices=sorted(MODEL_PRESETS))
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as work:
        data = os.path.join(work, "shards")
        tok_dir = str(GPT2_DIR) if (GPT2_DIR / "vocab.json").exists() else None
        make_dataset(data, sample_dialogues(args.instances, 0), None, tokenizer_dir=tok_dir, max_len=128)
        from dialogsmith.formats.shards import ShardDataset

        lengths = ShardDataset(data).lengths
        rows = max(1, round(args.batch * float(lengths.mean()) / 128))  # same tokens per step as Trainer
        vocab = "GPT-2 50,257" if tok_dir else "toy BPE"
        print(
            f"bench_train: {len(lengths)} instances (mean {lengths.mean():.1f} tokens), model {args.model_config} "
            f"{MODEL_PRESETS[args.model_config]}, vocab {vocab}, {args.steps} steps, {torch.get_num_threads()} threads"
        )
        results = {
            "trainer (pad per batch)": bench_trainer(data, work, args.batch, args.steps, args.model_config),
            "ours pack": bench_ours(data, work, "pack", rows, args.steps, args.model_config),
            "ours bucket": bench_ours(data, work, "bucket", args.batch, args.steps, args.model_config),
        }
    base = results["trainer (pad per batch)"]["tokens_per_s"]
    print(f"{'':26s} {'tokens/s':>10s} {'padding':>8s} {'vs Trainer':>10s}")
    for name, r in results.items():
        print(
            f"{name:26s} {r['tokens_per_s']:10,.0f} {100 * r['padding']:7.2f}% {r['tokens_per_s'] / base:9.2f}x"
        )
    best = results["ours pack"]
    ok = best["tokens_per_s"] >= 1.2 * base and best["padding"] < 0.05
    print(f"goal (>= 1.2x Trainer, padding < 5%): {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
