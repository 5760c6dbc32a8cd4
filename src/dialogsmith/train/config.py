"""Typed training configuration: defaults < YAML file (--config) < command-line flags.

The fields of :class:`TrainConfig` are the flags (``stage.option`` / ``stage.ConfigParser``, the same
config -> flags machinery as every stage). The resolved config is saved as JSON next to every checkpoint
(train_config.json) so a run can be reproduced or resumed from the checkpoint alone.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields

from dialogsmith.stage import ConfigParser, option

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
# (older trainer) falls back to comparing the --input path.
RESUME_DATA_KEYS = ("manifest_sha256", "tokenizer_sha256", "vocab_size", "eos_id", "max_len", "reverse")
RESUME_UNLOGGED = ("resume", "stop_after")  # how this process starts and stops, not what the run is
# Field names of earlier trainers, in the train_config.json of their checkpoints.
RENAMED_FIELDS = {"data": "input", "out": "output"}


@dataclass
class TrainConfig:
    input: str = option("", "tokenize-stage output dir (manifest.json + shards)", aliases=("--data",))
    output: str = option(
        "", "run dir: final model (save_pretrained + tokenizer), checkpoints/, log.jsonl", aliases=("--out",)
    )
    # model: a hub name / local dir of a pretrained GPT-2 (DialoGPT) checkpoint, or a preset / config.json
    model: str = option("", "pretrained GPT-2/DialoGPT hub name or local dir")
    model_config: str = option(
        "", "random init from a preset (tiny|mini|small|medium|large) or a config.json (wins over --model)"
    )
    n_positions: int = option(
        0, "for --model-config: 0 = max(1024 if the preset is a GPT-2 size, data max_len)"
    )
    dropout: float | None = option(None, "override resid/embd/attn dropout (default: the model's own)")
    # data / batching
    batching: str = option(
        "pack",
        "pack: several instances per row, block-diagonal mask (least padding); bucket: DialoGPT length "
        "buckets; none: shuffled, padded per batch",
        choices=("pack", "bucket", "none"),
    )
    batch_size: int = option(8, "rows per micro-batch per rank (pack: a row holds several instances)")
    grad_accum: int = option(1, "micro-batches per rank per optimizer step")
    bucket_factor: int = option(100, "DialoGPT: sort buckets of this many x batch size by length")
    pad_multiple: int = option(8, "pad rows to a multiple of this many tokens")
    verify: bool = option(
        True,
        "check every shard's sha256 against manifest.json before the first optimizer step, overlapped with "
        "start-up; sizes and headers are always checked (--no-verify skips only the sha256)",
    )
    epochs: float = option(1.0, "epochs to run when --max-steps is 0")
    max_steps: int = option(0, "total optimizer steps (0: derive from --epochs)")
    # optimization
    lr: float = option(5e-4, "peak learning rate")
    schedule: str = option(
        "linear",
        "linear warmup/decay | noam (DialoGPT: lr*1e4*d^-0.5*min(s^-0.5, s*w^-1.5)) | constant",
        choices=("linear", "noam", "constant"),
    )
    warmup_steps: int = option(100, "learning-rate warmup steps")
    weight_decay: float = option(0.01, "AdamW decoupled weight decay (none on biases and LayerNorm)")
    adam_beta1: float = option(0.9, "AdamW beta1")
    adam_beta2: float = option(0.999, "AdamW beta2")
    adam_eps: float = option(1e-6, "AdamW eps")
    max_grad_norm: float = option(1.0, "one global gradient-norm clip; 0 disables")
    precision: str = option(
        "auto",
        "auto: bf16 autocast on CUDA when supported, fp32 on CPU",
        choices=("auto", "fp32", "bf16", "fp16"),
    )
    seed: int = option(42, "seed of the data order, initialization and dropout")
    # evaluation / logging / checkpoints
    eval_every: int = option(0, "validation every N steps; 0: only at the end")
    eval_max_batches: int = option(0, "validation micro-batches; 0: the whole valid split")
    log_every: int = option(1, "log.jsonl line every N steps")
    save_every: int = option(0, "checkpoint every N steps; 0: only at the end (and on SIGTERM/SIGINT)")
    keep_last: int = option(3, "checkpoints kept")
    resume: str = option(
        "auto",
        "auto: latest checkpoint in --output if any | never (a fresh run: --output must hold no "
        "checkpoints) | a checkpoint dir. Resuming refuses changes of model, data, batching or optimizer "
        "fields (config.RESUME_FIXED)",
    )
    stop_after: int = option(0, "stop with a checkpoint after N steps in this process (simulates preemption)")
    device: str = option("auto", "auto | cpu | cuda | cuda:N")
    num_threads: int = option(0, "torch intra-op threads on CPU (0: torch default)")
    progress: bool = option(True, "progress bar and final summary on stderr")
    extra: dict = field(default_factory=dict, metadata={"cli": False})  # free-form notes from --config

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> TrainConfig:
        def bad(msg: str):
            raise ValueError(f"bad training config: {msg}")

        if not self.input:
            bad("--input (tokenize output dir) is required")
        if not self.output:
            bad("--output is required")
        if not self.model and not self.model_config:
            bad("give --model (pretrained name or dir) or --model-config (tiny|mini|small|medium|large|file)")
        for f in fields(self):
            allowed = f.metadata.get("choices")
            if allowed and getattr(self, f.name) not in allowed:
                bad(
                    f"--{f.name.replace('_', '-')} must be {'|'.join(allowed)}, got {getattr(self, f.name)!r}"
                )
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
    saved = {RENAMED_FIELDS.get(k, k): v for k, v in saved.items()}
    now = cfg.to_dict()
    refused, allowed = [], {}
    for name, value in now.items():
        if name not in saved or saved[name] == value or name in RESUME_UNLOGGED:
            continue
        if name in RESUME_FIXED or (name == "input" and not saved_data):
            refused.append(f"{name}: checkpoint={saved[name]!r} now={value!r}")
        else:
            allowed[name] = [saved[name], value]
    for key in RESUME_DATA_KEYS if saved_data else ():
        if key in saved_data and saved_data[key] != data_now.get(key):
            refused.append(f"data.{key}: checkpoint={saved_data[key]!r} now={data_now.get(key)!r}")
    return refused, allowed


def build_parser(prog: str = "dialogsmith train") -> ConfigParser:
    """``build_parser().parse_args(argv)`` returns the (unvalidated) TrainConfig."""
    return ConfigParser(
        TrainConfig,
        prog=prog,
        description="Fine-tune GPT-2 (DialoGPT recipe) on token shards from the tokenize stage. "
        "Runs on one CPU/GPU or under `torchrun --nproc-per-node N`. Flags override --config YAML.",
    )


def parse_config(argv: list[str] | None = None) -> TrainConfig:
    return build_parser().parse_args(argv).validate()


def save_config(cfg: TrainConfig, path: str) -> None:
    with open(path, "w") as fh:
        json.dump(cfg.to_dict(), fh, indent=2, sort_keys=True)
