"""Checkpoints without pickle: weights via ``save_pretrained`` (safetensors), tokenizer files, optimizer
tensors in safetensors + everything else in JSON, per-rank RNG states (torch's as uint8 tensors).

Layout of ``<out>/checkpoints/step-0000123/``::

    config.json generation_config.json model.safetensors   # loads with AutoModelForCausalLM
    tokenizer.json vocab.json merges.txt tokenizer_config.json ...   # loads with AutoTokenizer
    train_config.json            # TrainConfig of the run
    trainer_state.json           # step, epoch, data position and identity, optimizer hyper-parameters, counters
    optimizer.safetensors        # AdamW moments and step counters
    rng-rank<R>.safetensors/json # torch (cpu, cuda) / numpy / python RNG of each rank
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from dialogsmith.train.config import TrainConfig, resume_changes

STEP_DIR = re.compile(r"^step-(\d+)$")


def checkpoint_dirs(out: str) -> list[tuple[int, str]]:
    root = os.path.join(out, "checkpoints")
    if not os.path.isdir(root):
        return []
    found = []
    for name in os.listdir(root):
        m = STEP_DIR.match(name)
        if m and os.path.isfile(os.path.join(root, name, "trainer_state.json")):
            found.append((int(m.group(1)), os.path.join(root, name)))
    return sorted(found)


def latest_checkpoint(out: str) -> str | None:
    dirs = checkpoint_dirs(out)
    return dirs[-1][1] if dirs else None


# ---- optimizer -------------------------------------------------------------------------------------


def optimizer_to_files(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict] = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{pid}.{k}"] = v.detach().to("cpu").contiguous()
            else:
                scalars.setdefault(str(pid), {})[k] = v
    groups = []
    for g in sd["param_groups"]:
        g = {k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()}
        groups.append(g)
    return tensors, {"param_groups": groups, "scalar_state": scalars}


def optimizer_from_files(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict
) -> None:
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    for pid, st in meta.get("scalar_state", {}).items():
        state.setdefault(int(pid), {}).update(st)
    groups = []
    for g in meta["param_groups"]:
        g = dict(g)
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    optimizer.load_state_dict({"state": state, "param_groups": groups})


# ---- RNG -------------------------------------------------------------------------------------------


def rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["torch_cuda"] = torch.cuda.get_rng_state()
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    meta = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
    }
    return tensors, meta


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    if "torch_cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["torch_cuda"])
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


def write_rng(ckpt_dir: str, rank: int) -> None:
    tensors, meta = rng_state()
    save_file(tensors, os.path.join(ckpt_dir, f"rng-rank{rank}.safetensors"))
    with open(os.path.join(ckpt_dir, f"rng-rank{rank}.json"), "w") as fh:
        json.dump(meta, fh)


def read_rng(ckpt_dir: str, rank: int) -> bool:
    path = os.path.join(ckpt_dir, f"rng-rank{rank}.safetensors")
    if not os.path.exists(path):
        return False  # resumed with more ranks than were saved: those ranks keep their seeded RNG
    with open(os.path.join(ckpt_dir, f"rng-rank{rank}.json")) as fh:
        set_rng_state(load_file(path), json.load(fh))
    return True


# ---- whole checkpoint ------------------------------------------------------------------------------


def save_model_dir(path: str, lm, tokenizer, cfg_dict: dict) -> None:
    """What makes a directory usable by stock transformers: weights, configs, tokenizer."""
    lm.save_pretrained(path, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(path)
    with open(os.path.join(path, "train_config.json"), "w") as fh:
        json.dump(cfg_dict, fh, indent=2, sort_keys=True)


def begin(out: str, step: int) -> str:
    """Rank 0: a fresh temporary dir for checkpoint ``step`` (call before a barrier)."""
    tmp = os.path.join(out, "checkpoints", f"step-{step:07d}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    return tmp


def finish(out: str, step: int, lm, tokenizer, cfg_dict: dict, optimizer, state: dict, keep_last: int) -> str:
    """Rank 0, after every rank wrote its RNG into the temporary dir: the rest, then an atomic rename."""
    tmp = os.path.join(out, "checkpoints", f"step-{step:07d}.tmp")
    final = os.path.join(out, "checkpoints", f"step-{step:07d}")
    save_model_dir(tmp, lm, tokenizer, cfg_dict)
    tensors, meta = optimizer_to_files(optimizer)
    save_file(tensors, os.path.join(tmp, "optimizer.safetensors"))
    with open(os.path.join(tmp, "trainer_state.json"), "w") as fh:
        json.dump({**state, "optimizer": meta}, fh, indent=2)
    if os.path.exists(final):
        shutil.rmtree(final)
    os.replace(tmp, final)
    if keep_last > 0:
        for _, old in checkpoint_dirs(out)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def load_state(ckpt_dir: str) -> dict:
    with open(os.path.join(ckpt_dir, "trainer_state.json")) as fh:
        return json.load(fh)


def load_train_config(ckpt_dir: str) -> dict | None:
    """The TrainConfig (as saved) the checkpoint was trained with, or None for a checkpoint without one."""
    path = os.path.join(ckpt_dir, "train_config.json")
    if not os.path.isfile(path):
        return None
    with open(path) as fh:
        return json.load(fh)


def load_optimizer(ckpt_dir: str, optimizer, state: dict) -> None:
    tensors = load_file(os.path.join(ckpt_dir, "optimizer.safetensors"))
    optimizer_from_files(optimizer, tensors, state["optimizer"])


# ---- resume or start -------------------------------------------------------------------------------


def resume_from(cfg: TrainConfig) -> str | None:
    """The checkpoint to continue from, or None for a fresh run; a fresh run never lands on top of
    another run's checkpoints."""
    existing = latest_checkpoint(cfg.output)
    if cfg.resume == "auto":
        return existing
    if cfg.resume == "never":
        if existing:
            raise ValueError(
                f"--output {cfg.output} already holds checkpoints (newest: {existing}): --resume never would "
                "start a fresh run on top of them, mixing two runs' checkpoints and logs. Choose another "
                "--output for a fresh run (or --resume auto to continue this one)"
            )
        return None
    resume_dir = cfg.resume
    if not os.path.isfile(os.path.join(resume_dir, "trainer_state.json")):
        raise FileNotFoundError(f"--resume {resume_dir}: not a checkpoint dir (no trainer_state.json)")
    own = os.path.realpath(os.path.join(cfg.output, "checkpoints"))
    if existing and os.path.realpath(os.path.dirname(os.path.normpath(resume_dir))) != own:
        raise ValueError(
            f"--output {cfg.output} already holds checkpoints of another run (newest: {existing}): continuing "
            f"{resume_dir} there would mix two runs. Choose another --output"
        )
    return resume_dir


def check_resume(cfg: TrainConfig, resume_dir: str, data_now: dict) -> dict[str, list]:
    """Refuse to continue a checkpoint with another model, data, batching or optimizer (config.RESUME_FIXED);
    return the other fields that changed, {field: [checkpoint, now]}."""
    saved = load_train_config(resume_dir)
    if saved is None:
        raise ValueError(
            f"--resume: {resume_dir} has no train_config.json, so this run's configuration cannot be checked "
            "against it; start a fresh run with --resume never and another --output"
        )
    refused, allowed = resume_changes(saved, load_state(resume_dir).get("data"), cfg, data_now)
    if refused:
        raise ValueError(
            f"cannot resume {resume_dir}: it was trained with another configuration, and these fields cannot "
            "change on resume (they define the model, the data, its order or the optimizer state):\n  "
            + "\n  ".join(refused)
            + "\nrun with the checkpoint's values to continue it, or start a fresh run with --resume never and "
            "another --output"
        )
    return allowed
