"""Typed training configuration: defaults < YAML file (--config) < command-line flags.

The resolved config is saved as JSON next to every checkpoint (train_config.json) so a run can be
reproduced or resumed from the checkpoint alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field, fields

import yaml

# Model presets for --model-config (random init). GPT-2 sizes are the DialoGPT ones.
MODEL_PRESETS: dict[str, dict] = {
    "tiny": {"n_layer": 2, "n_embd": 64, "n_head": 2},
    "mini": {"n_layer": 4, "n_embd": 128, "n_head": 4},
    "small": {"n_layer": 12, "n_embd": 768, "n_head": 12},
    "medium": {"n_layer": 24, "n_embd": 1024, "n_head": 16},
    "large": {"n_layer": 36, "n_embd": 1280, "n_head": 20},
}


# ---- resume rules, in one place ----
# A resumed run continues the checkpoint's weights, optimizer moments and position in the epoch plan, so
# these fields must equal the checkpoint's train_config.json (value: what a change would break). Every
# other field may change on resume (--max-steps/--epochs extension, --eval-every, logging, --lr,
# --grad-accum: the loop repositions in the plan, --device, --precision, ...); the change is logged and
# train_config.json records the new value, which is what runs.
RESUME_FIXED: dict[str, str] = {
    "model": "initial weights",
    "model_config": "architecture",
    "n_positions": "architecture",
    "dropout": "model config (saved in the checkpoint)",
    "batching": "epoch plan: data order and position",
    "batch_size": "epoch plan: data order and position",
    "bucket_factor": "epoch plan: data order and position",
    "seed": "epoch plan: data order and position",
    "schedule": "learning-rate curve",
    # AdamW's hyper-parameters are part of the optimizer state: the checkpoint's values would silently win
    "weight_decay": "optimizer state",
    "adam_beta1": "optimizer state",
    "adam_beta2": "optimizer state",
    "adam_eps": "optimizer state",
}
# The data is compared by identity, not by path (moving the shards is fine): these keys of
# verify.data_identity(), saved in every checkpoint's trainer_state.json. A checkpoint without them
# (older trainer) falls back to comparing the --data path.
RESUME_DATA_KEYS = ("manifest_sha256", "tokenizer_sha256", "vocab_size", "eos_id", "max_len", "reverse")
RESUME_UNLOGGED = ("resume", "stop_after")  # how this process starts and stops, not what the run is


@dataclass
class TrainConfig:
    data: str = ""  # tokenize-stage output dir (manifest.json + shards)
    out: str = ""  # run dir: final model, checkpoints/, log.jsonl
    # model: a hub name / local dir of a pretrained GPT-2 (DialoGPT) checkpoint, or a preset / config.json
    model: str = ""
    model_config: str = ""  # tiny|mini|small|medium|large|<config.json>: random init (wins over --model)
    n_positions: int = 0  # for --model-config: 0 = max(1024 if preset is a GPT-2 size, data max_len)
    dropout: float | None = None  # override resid/embd/attn dropout (None: the model's own)
    # data / batching
    batching: str = "pack"  # pack | bucket | none (chosen by benchmarks/bench_train.py, see docs/train.md)
    batch_size: int = 8  # rows per micro-batch per rank (pack: a row holds several instances)
    grad_accum: int = 1  # micro-batches per rank per optimizer step
    bucket_factor: int = 100  # DialoGPT: sort buckets of 100 x batch size by length
    pad_multiple: int = 8
    verify: bool = True  # sha256 of every shard vs manifest.json before the first step (sizes: always)
    epochs: float = 1.0
    max_steps: int = 0  # 0: run `epochs`
    # optimization
    lr: float = 5e-4
    schedule: str = "linear"  # linear | noam | constant
    warmup_steps: int = 100
    weight_decay: float = 0.01
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-6
    max_grad_norm: float = 1.0  # one global norm; 0 disables
    precision: str = "auto"  # auto (bf16 on cuda if supported, else fp32) | fp32 | bf16 | fp16
    seed: int = 42
    # evaluation / logging / checkpoints
    eval_every: int = 0  # steps; 0: only at the end
    eval_max_batches: int = 0  # 0: the whole valid split
    log_every: int = 1
    save_every: int = 0  # steps; 0: only at the end (and on SIGTERM/SIGINT)
    keep_last: int = 3
    resume: str = "auto"  # auto (latest checkpoint in out/, if any) | never | <checkpoint dir>
    stop_after: int = (
        0  # stop (with a checkpoint) after this many steps in this process; for tests/preemption
    )
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    num_threads: int = 0  # torch intra-op threads on CPU (0: torch default)
    progress: bool = True
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown training config keys: {unknown}")
        return cls(**d)

    def validate(self) -> TrainConfig:
        def bad(msg: str):
            raise ValueError(f"bad training config: {msg}")

        if not self.data:
            bad("--data (tokenize output dir) is required")
        if not self.out:
            bad("--out is required")
        if not self.model and not self.model_config:
            bad("give --model (pretrained name or dir) or --model-config (tiny|mini|small|medium|large|file)")
        if self.batching not in ("pack", "bucket", "none"):
            bad(f"--batching must be pack|bucket|none, got {self.batching!r}")
        if self.schedule not in ("linear", "noam", "constant"):
            bad(f"--schedule must be linear|noam|constant, got {self.schedule!r}")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            bad(f"--precision must be auto|fp32|bf16|fp16, got {self.precision!r}")
        for name in ("batch_size", "grad_accum", "bucket_factor", "pad_multiple"):
            if getattr(self, name) < 1:
                bad(f"--{name.replace('_', '-')} must be >= 1")
        if self.epochs <= 0 and self.max_steps <= 0:
            bad("--epochs or --max-steps must be positive")
        if self.lr <= 0:
            bad("--lr must be positive")
        return self


def resume_changes(
    saved: dict, saved_data: dict | None, cfg: TrainConfig, data_now: dict
) -> tuple[list[str], dict[str, list]]:
    """(refused: ``field: checkpoint=... now=...`` lines, allowed: {field: [checkpoint, now]}) between a
    checkpoint's train_config.json (+ its data identity) and this run's config (+ its data identity).
    Fields the checkpoint does not know (saved by an older trainer) are skipped."""
    now = cfg.to_dict()
    refused, allowed = [], {}
    for name, value in now.items():
        if name not in saved or saved[name] == value or name in RESUME_UNLOGGED:
            continue
        if name in RESUME_FIXED or (name == "data" and not saved_data):
            refused.append(f"{name}: checkpoint={saved[name]!r} now={value!r}")
        else:
            allowed[name] = [saved[name], value]
    for key in RESUME_DATA_KEYS if saved_data else ():
        if key in saved_data and saved_data[key] != data_now.get(key):
            refused.append(f"data.{key}: checkpoint={saved_data[key]!r} now={data_now.get(key)!r}")
    return refused, allowed


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train/train.py",
        description="Fine-tune GPT-2 (DialoGPT recipe) on token shards from the tokenize stage. "
        "Runs on one CPU/GPU or under `torchrun --nproc-per-node N`. Flags override --config YAML.",
    )
    p.add_argument("--config", help="YAML (or JSON) file with TrainConfig fields; flags override it")
    defaults = TrainConfig()
    helps = {
        "data": "tokenize-stage output dir (manifest.json + shards)",
        "out": "run dir: final model (save_pretrained + tokenizer), checkpoints/, log.jsonl",
        "model": "pretrained GPT-2/DialoGPT hub name or local dir",
        "model_config": "random init from a preset (tiny|mini|small|medium|large) or a config.json",
        "batching": "pack: several instances per row, block-diagonal mask (default, least padding); "
        "bucket: DialoGPT length buckets; none: shuffled, padded per batch",
        "batch_size": "rows per micro-batch per rank",
        "grad_accum": "micro-batches per rank per optimizer step",
        "schedule": "linear warmup/decay | noam (DialoGPT: lr*1e4*d^-0.5*min(s^-0.5, s*w^-1.5)) | constant",
        "precision": "auto: bf16 autocast on CUDA when supported, fp32 on CPU",
        "resume": "auto: latest checkpoint in --out if any | never (a fresh run: --out must hold no "
        "checkpoints) | a checkpoint dir. Resuming refuses changes of model, data, batching or optimizer "
        "fields (config.RESUME_FIXED)",
        "stop_after": "stop with a checkpoint after N steps in this process (simulates preemption)",
        "max_steps": "total optimizer steps (0: derive from --epochs)",
        "verify": "check every shard's sha256 against manifest.json before the first optimizer step, "
        "overlapped with start-up; sizes and headers are always checked (--no-verify skips only the sha256)",
    }
    for f in fields(TrainConfig):
        if f.name == "extra":
            continue
        default = getattr(defaults, f.name)
        h = helps.get(f.name, "") + f" (default: {default})"
        if isinstance(default, bool):
            p.add_argument(
                _flag(f.name), dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=h
            )
        elif f.name == "dropout":
            p.add_argument(_flag(f.name), dest=f.name, type=float, default=None, help=h)
        else:
            p.add_argument(_flag(f.name), dest=f.name, type=type(default), default=None, help=h)
    return p


def parse_config(argv: list[str] | None = None) -> TrainConfig:
    args = build_parser().parse_args(argv)
    values: dict = {}
    if args.config:
        with open(args.config) as fh:
            loaded = yaml.safe_load(fh) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{args.config}: expected a mapping of TrainConfig fields")
        values.update({k.replace("-", "_"): v for k, v in loaded.items()})
    for k, v in vars(args).items():
        if k != "config" and v is not None:
            values[k] = v
    return TrainConfig.from_dict(values).validate()


def save_config(cfg: TrainConfig, path: str) -> None:
    with open(path, "w") as fh:
        json.dump(cfg.to_dict(), fh, indent=2, sort_keys=True)
