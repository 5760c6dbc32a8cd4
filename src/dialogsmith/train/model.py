"""Tokenizers (transformers side), model construction and the loss module (the thing DDP wraps).

Loss (the DialoGPT training spec): token-mean cross entropy over the trainable positions of the *whole
optimizer step* (all micro-batches, all ranks). Labels are already next-token targets aligned to
input positions, so CE(logits[t], labels[t]) with no further shift. The LM head runs only on target
positions: same loss, and on CPU it skips ~half of the vocab projection (the largest matmul of a small
GPT-2 at vocab 50,257).
"""

from __future__ import annotations

import contextlib
import json
import os

import torch
import torch.nn.functional as F
from torch import nn

from dialogsmith.formats.shards import IGNORE
from dialogsmith.tokenize.bpe import EOS_TOKEN
from dialogsmith.train.config import MODEL_PRESETS, TrainConfig
from dialogsmith.train.data import TrainBatch, attention_mask_for


def _gpt2_tokenizer_from_files(tokenizer_dir: str):
    """A GPT2TokenizerFast from a byte-level BPE vocab.json + merges.txt (works with transformers 4 and 5,
    whose file-argument names differ)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2TokenizerFast

    bpe = ByteLevelBPETokenizer(
        os.path.join(tokenizer_dir, "vocab.json"), os.path.join(tokenizer_dir, "merges.txt")
    )
    eos = EOS_TOKEN
    return GPT2TokenizerFast(tokenizer_object=bpe._tokenizer, eos_token=eos, bos_token=eos, unk_token=eos)


def load_hf_tokenizer(source: str | None, fallback: str | None = None):
    """A ``transformers`` tokenizer (what ``save_pretrained`` writes next to the model) from ``source``,
    else from ``fallback``; None when neither gives one. Each is a directory or a hub name.

    A directory with ``tokenizer_config.json`` (the tokenize stage's ``OUT/tokenizer/``, a model dir,
    ``tokenize.bpe.train_small_bpe``'s output) loads with AutoTokenizer; one with only ``vocab.json`` +
    ``merges.txt`` (GPT-2's files) becomes a GPT2TokenizerFast with ``<|endoftext|>`` as EOS
    (AutoTokenizer would load a bare ``tokenizer.json`` without an EOS token). The tokenize stage's own
    tokenizer (``tokenizers`` library, no transformers) is ``dialogsmith.tokenize.bpe.load_bpe``."""
    from transformers import AutoTokenizer

    for ref in (source, fallback):
        if not ref:
            continue
        if os.path.isdir(ref):
            has = set(os.listdir(ref))
            if "tokenizer_config.json" in has:
                return AutoTokenizer.from_pretrained(ref)
            if {"vocab.json", "merges.txt"} <= has:
                return _gpt2_tokenizer_from_files(ref)
        else:
            with contextlib.suppress(OSError, ValueError):  # not a hub name, or offline
                return AutoTokenizer.from_pretrained(ref)
    return None


def build_model(cfg: TrainConfig, vocab_size: int, eos_id: int, max_len: int):
    """A GPT2LMHeadModel (or any causal LM) from a preset/config file (random init) or pretrained."""
    from transformers import AutoConfig, AutoModelForCausalLM, GPT2Config

    overrides = {}
    if cfg.dropout is not None:
        overrides = {"resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout, "attn_pdrop": cfg.dropout}
    if cfg.model_config:
        if cfg.model_config in MODEL_PRESETS:
            preset = dict(MODEL_PRESETS[cfg.model_config])
            default_pos = 1024 if preset["n_layer"] >= 12 else max(128, max_len)
            n_pos = cfg.n_positions or default_pos
            config = GPT2Config(
                vocab_size=vocab_size, n_positions=n_pos, bos_token_id=eos_id, eos_token_id=eos_id, **preset
            )
        elif os.path.isfile(cfg.model_config):
            with open(cfg.model_config) as fh:
                d = json.load(fh)
            d.setdefault("model_type", "gpt2")
            config = AutoConfig.for_model(**d)
            config.vocab_size = vocab_size
        else:
            raise ValueError(
                f"--model-config {cfg.model_config!r}: not a preset ({'|'.join(MODEL_PRESETS)}) nor a config file"
            )
        config.bos_token_id = config.eos_token_id = eos_id
        for k, v in overrides.items():
            setattr(config, k, v)
        torch.manual_seed(cfg.seed)
        model = AutoModelForCausalLM.from_config(config)
    else:
        try:
            model = AutoModelForCausalLM.from_pretrained(cfg.model, **overrides)
        except OSError as e:
            raise ValueError(
                f"--model {cfg.model!r}: cannot load a pretrained model (a local dir with config.json + "
                f"weights, or a hub name when online): {e}"
            ) from e
        if model.get_input_embeddings().num_embeddings < vocab_size:
            raise ValueError(
                f"data vocabulary ({vocab_size}) is larger than the model's "
                f"({model.get_input_embeddings().num_embeddings}): tokenize with the model's tokenizer"
            )
    n_pos = getattr(model.config, "n_positions", None) or getattr(
        model.config, "max_position_embeddings", None
    )
    if n_pos is not None and n_pos < max_len:
        raise ValueError(f"data max_len {max_len} exceeds the model's {n_pos} positions")
    model.generation_config.pad_token_id = eos_id
    model.generation_config.eos_token_id = eos_id
    model.generation_config.bos_token_id = eos_id
    return model


class LossModel(nn.Module):
    """Wraps a causal LM; forward returns the *sum* of target-token cross entropies (fp32) of a batch."""

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm

    def forward(self, batch: TrainBatch) -> torch.Tensor:
        lm = self.lm
        if batch.packed:
            impl = getattr(lm.config, "_attn_implementation", "eager") or "eager"
            mask = attention_mask_for(batch, as_bool=impl != "eager", dtype=torch.float32)
        elif (batch.segments < 0).any():
            mask = (batch.segments >= 0).long()  # [B, T] plain padding mask
        else:
            mask = None
        hidden = lm.base_model(
            input_ids=batch.input_ids, position_ids=batch.position_ids, attention_mask=mask
        ).last_hidden_state  # [B, T, d]
        keep = batch.labels != IGNORE  # [B, T]
        logits = lm.get_output_embeddings()(hidden[keep])  # [n_targets, V]
        return F.cross_entropy(logits.float(), batch.labels[keep], reduction="sum")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decoupled weight decay on weights; none on biases and LayerNorm (DialoGPT's no_decay)."""
    norm_params = set()
    for m in model.modules():
        if isinstance(m, nn.LayerNorm) or "norm" in type(m).__name__.lower():
            norm_params.update(id(p) for p in m.parameters(recurse=False))
    decay, no_decay = [], []
    seen = set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:  # tied wte/lm_head appear once
            continue
        seen.add(id(p))
        (no_decay if name.endswith("bias") or id(p) in norm_params else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def lr_at(step: int, cfg: TrainConfig, total_steps: int, d_model: int) -> float:
    """Learning rate for optimizer step ``step`` (0-based: the lr used by the step-th update)."""
    s = step + 1
    w = max(1, cfg.warmup_steps)
    if cfg.schedule == "noam":  # DialoGPT's noam_decay, multiplied by the base lr
        return cfg.lr * 1e4 * d_model**-0.5 * min(s**-0.5, s * w**-1.5)
    if cfg.schedule == "constant":
        return cfg.lr * min(1.0, s / w) if cfg.warmup_steps > 0 else cfg.lr
    # linear warmup to lr, then linear decay to 0 at total_steps
    if cfg.warmup_steps > 0 and s <= w:
        return cfg.lr * s / w
    return cfg.lr * max(0.0, (total_steps - step) / max(1, total_steps - min(cfg.warmup_steps, total_steps)))
