"""The training loop: one process, or one process per rank under torchrun (gloo on CPU, nccl on GPU).

One optimizer step = ``world_size x grad_accum`` micro-batches taken from the global epoch plan. The loss
of a step is sum(CE over its target tokens) / (its number of target tokens, counted over all ranks before
the first backward), so a step's gradient is the exact token-mean gradient whatever the world size:
each rank backpropagates ``loss_sum * world / n_targets`` and DDP averages over ranks.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import sys
import time

import numpy as np
import torch
import torch.distributed as dist

from dialogsmith.formats.shards import ShardError
from dialogsmith.train import checkpoint as ckpt
from dialogsmith.train.config import TrainConfig, resume_changes, save_config
from dialogsmith.train.data import collate, epoch_plan, group_steps, padding_fraction
from dialogsmith.train.model import LossModel, build_model, load_gpt2_tokenizer, lr_at, param_groups
from dialogsmith.train.verify import (
    ShardCheck,
    check_token_ids,
    data_identity,
    default_workers,
    shard_report,
)


class Dist:
    def __init__(self, cfg: TrainConfig):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(self.world)))
        if cfg.device == "auto":
            dev = f"cuda:{self.local_rank}" if torch.cuda.is_available() else "cpu"
        else:
            dev = cfg.device
        self.device = torch.device(dev)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.enabled = self.world > 1
        if self.enabled and not dist.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            dist.init_process_group(backend=backend)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_sum(self, values: list[float]) -> list[float]:
        t = torch.tensor(values, dtype=torch.float64)
        if self.enabled:
            backend_dev = self.device if dist.get_backend() == "nccl" else torch.device("cpu")
            t = t.to(backend_dev)
            dist.all_reduce(t)
        return t.cpu().tolist()

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


def load_tokenizer(tokenizer_dir: str | None, model_ref: str | None):
    """The data's tokenizer (so the run dir loads with AutoTokenizer), or the pretrained model's."""
    from transformers import AutoTokenizer

    if tokenizer_dir and os.path.isdir(tokenizer_dir):
        has = set(os.listdir(tokenizer_dir))
        if "tokenizer_config.json" in has or "tokenizer.json" in has:
            return AutoTokenizer.from_pretrained(tokenizer_dir)
        if {"vocab.json", "merges.txt"} <= has:
            return load_gpt2_tokenizer(tokenizer_dir)
    if model_ref:
        with contextlib.suppress(Exception):
            return AutoTokenizer.from_pretrained(model_ref)
    return None


def autocast_for(cfg: TrainConfig, device: torch.device):
    """(autocast context factory, dtype name, GradScaler or None)."""
    prec = cfg.precision
    if prec == "auto":
        prec = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if prec == "fp32":
        return contextlib.nullcontext, prec, None
    dtype = torch.bfloat16 if prec == "bf16" else torch.float16
    scaler = torch.amp.GradScaler(device.type) if prec == "fp16" else None
    return (lambda: torch.autocast(device.type, dtype=dtype)), prec, scaler


class StopFlag:
    """SIGTERM/SIGINT set a flag; the loop checkpoints at the end of the current step and exits."""

    def __init__(self):
        self.signal: int | None = None
        self._old = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass

    def _handle(self, signum, frame):
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C stops at once
        self.signal = signum

    def restore(self):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _manifest_path(cfg: TrainConfig) -> str:
    path = os.path.join(cfg.data, "manifest.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"--data {cfg.data}: no manifest.json (expected the tokenize stage's output dir)"
        )
    return path


def _open_datasets(cfg: TrainConfig, d: Dist):
    """(train, valid or None, ShardCheck). Every shard of both splits is checked (size and header) before
    it is opened; its sha256 (with --verify) is started in the background.

    Under torchrun every rank reads from every shard, and each node may hold its own copy of the data, so
    the ranks of a node share the hashing of all shards (shard k on local rank k mod local world size) and
    the outcome is combined over all ranks before the first optimizer step: each node's copy is hashed
    once, by all its ranks in parallel. (Rank 0 alone would leave other nodes' copies unchecked.)"""
    from dialogsmith.formats.shards import ShardDataset

    with open(_manifest_path(cfg)) as fh:
        splits = json.load(fh).get("splits", {})
    if "train" not in splits:
        raise ValueError(
            f"--data {cfg.data}: no train split in manifest.json (has: {', '.join(sorted(splits))})"
        )
    read = ["train"] + (["valid"] if "valid" in splits else [])
    check = ShardCheck(
        cfg.data,
        read,
        sha256=cfg.verify,
        part=(d.local_rank, d.local_world),
        workers=default_workers(d.local_world),
    )
    train = ShardDataset(cfg.data, split="train")
    if len(train) == 0:
        raise ValueError(f"--data {cfg.data}: the train split is empty")
    valid = ShardDataset(cfg.data, split="valid") if "valid" in read else None
    if valid is not None and len(valid) == 0:
        valid = None
    return train, valid, check


def _resume_dir(cfg: TrainConfig) -> str | None:
    """The checkpoint to continue from, or None for a fresh run; a fresh run never lands on top of
    another run's checkpoints."""
    existing = ckpt.latest_checkpoint(cfg.out)
    if cfg.resume == "auto":
        return existing
    if cfg.resume == "never":
        if existing:
            raise ValueError(
                f"--out {cfg.out} already holds checkpoints (newest: {existing}): --resume never would start a "
                "fresh run on top of them, mixing two runs' checkpoints and logs. Choose another --out for a "
                "fresh run (or --resume auto to continue this one)"
            )
        return None
    resume_dir = cfg.resume
    if not os.path.isfile(os.path.join(resume_dir, "trainer_state.json")):
        raise FileNotFoundError(f"--resume {resume_dir}: not a checkpoint dir (no trainer_state.json)")
    own = os.path.realpath(os.path.join(cfg.out, "checkpoints"))
    if existing and os.path.realpath(os.path.dirname(os.path.normpath(resume_dir))) != own:
        raise ValueError(
            f"--out {cfg.out} already holds checkpoints of another run (newest: {existing}): continuing "
            f"{resume_dir} there would mix two runs. Choose another --out"
        )
    return resume_dir


def _check_resume(cfg: TrainConfig, resume_dir: str, data_now: dict) -> dict[str, list]:
    """Refuse to continue a checkpoint with another model, data, batching or optimizer (config.RESUME_FIXED);
    return the other fields that changed, {field: [checkpoint, now]}."""
    saved = ckpt.load_train_config(resume_dir)
    if saved is None:
        raise ValueError(
            f"--resume: {resume_dir} has no train_config.json, so this run's configuration cannot be checked "
            "against it; start a fresh run with --resume never and another --out"
        )
    refused, allowed = resume_changes(saved, ckpt.load_state(resume_dir).get("data"), cfg, data_now)
    if refused:
        raise ValueError(
            f"cannot resume {resume_dir}: it was trained with another configuration, and these fields cannot "
            "change on resume (they define the model, the data, its order or the optimizer state):\n  "
            + "\n  ".join(refused)
            + "\nrun with the checkpoint's values to continue it, or start a fresh run with --resume never and "
            "another --out"
        )
    return allowed


def evaluate(loss_model, ds, cfg: TrainConfig, d: Dist, autocast, pad_id: int, vocab_limit: int) -> dict:
    plan = epoch_plan(
        ds.lengths,
        batching=cfg.batching,
        batch_size=cfg.batch_size,
        max_len=ds.max_len,
        seed=cfg.seed,
        epoch=0,
        bucket_factor=cfg.bucket_factor,
        shuffle=False,
    )
    if cfg.eval_max_batches:
        plan = plan[: cfg.eval_max_batches]
    was_training = loss_model.training
    loss_model.eval()
    loss_sum, n_targets = 0.0, 0
    bad_ids = None
    with torch.no_grad():
        for rows in plan[d.rank :: d.world]:
            b = collate(ds, rows, pad_id, cfg.pad_multiple)
            try:
                check_token_ids(int(b.input_ids.max()), rows, ds, vocab_limit)
            except ShardError as e:
                bad_ids = e  # raised by every rank after the sum below, so that no rank waits forever
                break
            b = b.to(d.device)
            with autocast():
                loss_sum += float(loss_model(b))
            n_targets += b.n_targets
    loss_model.train(was_training)
    loss_sum, n_targets, n_bad = d.all_sum([loss_sum, n_targets, 1.0 if bad_ids else 0.0])
    if n_bad:
        raise bad_ids or ShardError(f"{ds.split}: another rank found a token id beyond the vocabulary")
    loss = loss_sum / max(1.0, n_targets)
    return {"valid_loss": loss, "valid_ppl": math.exp(min(loss, 50.0)), "valid_targets": int(n_targets)}


def run(cfg: TrainConfig) -> dict:
    cfg.validate()
    d = Dist(cfg)
    try:
        return _run(cfg, d)
    finally:
        d.close()


def _run(cfg: TrainConfig, d: Dist) -> dict:
    from tqdm.auto import tqdm
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Writing model shards" bars at every checkpoint
    t_start = time.time()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    os.makedirs(cfg.out, exist_ok=True)
    # ---- resume or start: checked before anything is loaded or written ----
    resume_dir = _resume_dir(cfg)
    _manifest_path(cfg)
    data_now = data_identity(cfg.data)
    changed = _check_resume(cfg, resume_dir, data_now) if resume_dir else {}
    # the sha256 of the shards runs from here to the first optimizer step (ShardCheck)
    train_ds, valid_ds, shard_check = _open_datasets(cfg, d)
    pad_id = int(train_ds.eos_id)
    tokenizer = load_tokenizer(train_ds.tokenizer_dir, cfg.model or None)

    if resume_dir:
        from transformers import AutoModelForCausalLM

        kw = {}
        if cfg.dropout is not None:
            kw = {"resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout, "attn_pdrop": cfg.dropout}
        lm = AutoModelForCausalLM.from_pretrained(resume_dir, **kw)
        state = ckpt.load_state(resume_dir)
    else:
        lm = build_model(cfg, train_ds.vocab_size, pad_id, train_ds.max_len)
        state = {"step": 0, "epoch": 0, "step_in_epoch": 0, "tokens": 0}
    # dropout streams differ per rank; restored from the checkpoint when resuming
    torch.manual_seed(cfg.seed * 1000 + d.rank)
    random.seed(cfg.seed * 1000 + d.rank)
    np.random.seed((cfg.seed * 1000 + d.rank) % 2**32)

    vocab_limit = min(train_ds.vocab_size, lm.get_input_embeddings().num_embeddings)
    if pad_id >= vocab_limit:
        raise ValueError(f"--data {cfg.data}: eos id {pad_id} >= the model's vocabulary size {vocab_limit}")
    lm.to(d.device)
    lm.train()
    loss_model = LossModel(lm)
    trained = loss_model
    if d.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [d.device.index] if d.device.type == "cuda" else None
        trained = DDP(loss_model, device_ids=ids)
    fused = d.device.type == "cuda"
    optimizer = torch.optim.AdamW(
        param_groups(lm, cfg.weight_decay),
        lr=cfg.lr,
        betas=(cfg.adam_beta1, cfg.adam_beta2),
        eps=cfg.adam_eps,
        fused=fused or None,
    )
    autocast, prec, scaler = autocast_for(cfg, d.device)
    if resume_dir:
        ckpt.load_optimizer(resume_dir, optimizer, state)
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        ckpt.read_rng(resume_dir, d.rank)

    # ---- plan ----
    per_step = d.world * cfg.grad_accum
    plan_kw = dict(
        batching=cfg.batching,
        batch_size=cfg.batch_size,
        max_len=train_ds.max_len,
        seed=cfg.seed,
        bucket_factor=cfg.bucket_factor,
    )
    first = epoch_plan(train_ds.lengths, epoch=0, **plan_kw)
    steps_per_epoch = len(first) // per_step
    if steps_per_epoch == 0:
        raise ValueError(
            f"the train split ({len(train_ds)} instances, {len(first)} micro-batches) is too small for one "
            f"step of {per_step} micro-batches (world {d.world} x grad_accum {cfg.grad_accum}): lower "
            "--batch-size or --grad-accum"
        )
    total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * steps_per_epoch))
    d_model = int(getattr(lm.config, "n_embd", None) or getattr(lm.config, "hidden_size", 768))
    cfg_dict = cfg.to_dict()
    if d.main:
        save_config(cfg, os.path.join(cfg.out, "train_config.json"))

    log_path = os.path.join(cfg.out, "log.jsonl")
    log_fh = open(log_path, "a") if d.main else None  # noqa: SIM115

    def log(rec: dict) -> None:
        if log_fh:
            log_fh.write(json.dumps(rec) + "\n")
            log_fh.flush()

    if d.main:
        n_params = sum(p.numel() for p in lm.parameters())
        log(
            {
                "event": "start" if not resume_dir else "resume",
                "from": resume_dir,
                "step": state["step"],
                "total_steps": total_steps,
                "steps_per_epoch": steps_per_epoch,
                "dropped_tail_microbatches": len(first) - steps_per_epoch * per_step,
                "world_size": d.world,
                "device": str(d.device),
                "precision": prec,
                "params": n_params,
                "train_instances": len(train_ds),
            }
        )
        if changed:
            log({"event": "config_changed", "from": resume_dir, "fields": changed})
            lines = "".join(f"\n  {k}: checkpoint={v[0]!r} now={v[1]!r}" for k, v in changed.items())
            print(f"train: resuming {resume_dir} with these settings changed:{lines}", file=sys.stderr)

    verification_open = True

    def finish_verification() -> None:
        """Join this rank's sha256 share and combine every rank's outcome (all ranks call it at the same
        point: before the first optimizer step, or after the loop if there was none)."""
        nonlocal verification_open
        verification_open = False
        problems = shard_check.wait()
        (n_bad,) = d.all_sum([float(len(problems))])
        if n_bad:
            raise ShardError(
                shard_report(cfg.data, problems)
                if problems
                else f"{cfg.data}: {int(n_bad)} shard sha256 problem(s) found by other ranks (see their errors)"
            )
        if d.main:
            log({"event": "verified", **shard_check.summary()})

    def check_ids(batch, rows, ds) -> None:
        try:
            check_token_ids(int(batch.input_ids.max()), rows, ds, vocab_limit)
        except ShardError:
            if shard_check.pending:  # the sha256 names the whole file, expected vs actual: say that first
                shard_check.raise_for_problems()
            raise

    stop = StopFlag()
    bar = tqdm(
        total=total_steps,
        initial=state["step"],
        disable=not (d.main and cfg.progress),
        dynamic_ncols=True,
        file=sys.stderr,
    )

    step, epoch, pos = state["step"], state["epoch"], state["step_in_epoch"]
    saved_per_step = state.get("micro_batches_per_step", per_step)
    if saved_per_step != per_step:
        # resumed with another world size / accumulation: continue from the same micro-batch of the plan
        pos = math.ceil(pos * saved_per_step / per_step)
        log(
            {
                "event": "repositioned",
                "micro_batches_per_step": [saved_per_step, per_step],
                "step_in_epoch": pos,
            }
        )
    tokens_total = state.get("tokens", 0)
    run_steps = 0
    window_t, window_tokens = time.time(), 0
    slots_total, tokens_run = 0, 0
    last = {}
    last_valid = {}
    interrupted = None

    def save(step_in_epoch_next: int, epoch_now: int) -> str | None:
        if d.main:
            ckpt.begin(cfg.out, step)
        d.barrier()
        ckpt.write_rng(os.path.join(cfg.out, "checkpoints", f"step-{step:07d}.tmp"), d.rank)
        d.barrier()
        path = None
        if d.main:
            st = {
                "step": step,
                "epoch": epoch_now,
                "step_in_epoch": step_in_epoch_next,
                "tokens": tokens_total,
                "total_steps": total_steps,
                "world_size": d.world,
                "micro_batches_per_step": per_step,
                "scaler": scaler.state_dict() if scaler is not None else None,
                "data": data_now,
            }
            path = ckpt.finish(cfg.out, step, lm, tokenizer, cfg_dict, optimizer, st, cfg.keep_last)
            log({"event": "checkpoint", "step": step, "path": path})
        d.barrier()
        return path

    params = [p for g in optimizer.param_groups for p in g["params"]]
    while step < total_steps and interrupted is None:
        steps = group_steps(epoch_plan(train_ds.lengths, epoch=epoch, **plan_kw), per_step)
        s = pos
        while s < len(steps) and step < total_steps:
            micro = steps[s][d.rank * cfg.grad_accum : (d.rank + 1) * cfg.grad_accum]
            batches = [collate(train_ds, rows, pad_id, cfg.pad_multiple) for rows in micro]
            bad_ids = None
            for rows, b in zip(micro, batches, strict=True):
                try:
                    check_ids(b, rows, train_ds)
                except ShardError as e:
                    bad_ids = e  # raised by every rank after the sum below, so that no rank waits forever
                    break
            n_targets, n_bad = d.all_sum([sum(b.n_targets for b in batches), 1.0 if bad_ids else 0.0])
            if n_bad:
                raise bad_ids or ShardError("another rank found a token id beyond the vocabulary")
            scale = d.world / max(1.0, n_targets)
            lr = lr_at(step, cfg, total_steps, d_model)
            for g in optimizer.param_groups:
                g["lr"] = lr
            loss_sum = 0.0
            for k, b in enumerate(batches):
                sync = trained.no_sync() if d.enabled and k < len(batches) - 1 else contextlib.nullcontext()
                with sync:
                    with autocast():
                        loss = trained(b.to(d.device))
                    scaled = loss * scale
                    (scaler.scale(scaled) if scaler else scaled).backward()
                loss_sum += float(loss.detach())
            if verification_open:
                finish_verification()  # the sha256 ran during start-up and this step's forward/backward
            if scaler:
                scaler.unscale_(optimizer)
            max_norm = cfg.max_grad_norm if cfg.max_grad_norm > 0 else float("inf")
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
            if scaler:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            run_steps += 1
            s += 1
            want_stop = (
                1.0 if (stop.signal is not None or (cfg.stop_after and run_steps >= cfg.stop_after)) else 0.0
            )
            g_loss, g_tokens, g_slots, g_stop = d.all_sum(
                [loss_sum, sum(b.n_tokens for b in batches), sum(b.n_slots for b in batches), want_stop]
            )
            tokens_total += int(g_tokens)
            tokens_run += int(g_tokens)
            slots_total += int(g_slots)
            window_tokens += int(g_tokens)
            loss_mean = g_loss / max(1.0, n_targets)
            last = {"loss": loss_mean, "lr": lr, "grad_norm": grad_norm}
            bar.update(1)
            if d.main and (step % cfg.log_every == 0 or step == total_steps):
                now = time.time()
                tps = window_tokens / max(1e-9, now - window_t)
                window_t, window_tokens = now, 0
                rec = {
                    "step": step,
                    "epoch": epoch + s / len(steps),
                    "loss": loss_mean,
                    "ppl": math.exp(min(loss_mean, 50.0)),
                    "lr": lr,
                    "grad_norm": grad_norm,
                    "targets": int(n_targets),
                    "tokens": int(g_tokens),
                    "padding": padding_fraction(int(g_tokens), int(g_slots)),
                    "tokens_per_s": tps,
                    "time": now - t_start,
                }
                log(rec)
                bar.set_postfix(loss=f"{loss_mean:.3f}", lr=f"{lr:.2e}", tok_s=f"{tps:,.0f}", refresh=False)
            if valid_ds is not None and cfg.eval_every and step % cfg.eval_every == 0 and step < total_steps:
                last_valid = evaluate(loss_model, valid_ds, cfg, d, autocast, pad_id, vocab_limit)
                log({"step": step, **last_valid})
            if g_stop > 0:
                interrupted = "signal" if stop.signal is not None else "stop_after"
                # data position: next step of this epoch (or the next epoch when this one is done)
                nxt_epoch, nxt_pos = (epoch, s) if s < len(steps) else (epoch + 1, 0)
                save(nxt_pos, nxt_epoch)
                break
            if cfg.save_every and step % cfg.save_every == 0 and step < total_steps:
                nxt_epoch, nxt_pos = (epoch, s) if s < len(steps) else (epoch + 1, 0)
                save(nxt_pos, nxt_epoch)
        if interrupted is None:
            if s >= len(steps):
                epoch, pos = epoch + 1, 0
            else:
                pos = s
    bar.close()
    stop.restore()
    if verification_open:
        finish_verification()  # nothing was trained in this process: still verify before saving

    summary = {
        "step": step,
        "total_steps": total_steps,
        "interrupted": interrupted,
        "train_loss": last.get("loss"),
        "seconds": time.time() - t_start,
        "tokens": tokens_total,
        "tokens_this_run": tokens_run,
        "padding": padding_fraction(tokens_run, slots_total),
        "world_size": d.world,
        "device": str(d.device),
        "precision": prec,
    }
    if interrupted is None:
        if valid_ds is not None:
            last_valid = evaluate(loss_model, valid_ds, cfg, d, autocast, pad_id, vocab_limit)
            log({"step": step, **last_valid})
        nxt_epoch, nxt_pos = (epoch, pos)
        save(nxt_pos, nxt_epoch)
        if d.main:
            ckpt.save_model_dir(cfg.out, lm, tokenizer, cfg_dict)
    summary.update(last_valid)
    if d.main:
        summary["tokens_per_s"] = tokens_run / max(1e-9, summary["seconds"])
        log({"event": "summary", **summary})
        with open(os.path.join(cfg.out, "summary.json"), "w") as fh:
            json.dump(summary, fh, indent=2)
        log_fh.close()
        if cfg.progress:
            print(_format_summary(summary, cfg.out), file=sys.stderr)
    return summary


def _format_summary(s: dict, out: str) -> str:
    lines = [
        f"train: {'stopped early (' + s['interrupted'] + ')' if s['interrupted'] else 'done'} at step "
        f"{s['step']}/{s['total_steps']} in {s['seconds']:.1f}s on {s['world_size']}x {s['device']} ({s['precision']})",
        f"  train loss {s['train_loss']:.4f}" if s["train_loss"] is not None else "  train loss -",
        f"  tokens {s['tokens_this_run']:,} this run, {s.get('tokens_per_s', 0):,.0f} tokens/s, padding "
        f"{100 * s['padding']:.2f}%",
    ]
    if "valid_loss" in s:
        lines.append(f"  valid loss {s['valid_loss']:.4f}  ppl {s['valid_ppl']:.2f}")
    lines.append(f"  model: {out}  (checkpoints in {os.path.join(out, 'checkpoints')}, log {out}/log.jsonl)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``dialogsmith train`` / ``train/train.py`` / ``torchrun train/train.py``."""
    from dialogsmith.train.config import parse_config

    try:
        run(parse_config(argv))
    except (ValueError, FileNotFoundError) as e:
        print(f"train: error: {e}", file=sys.stderr)
        return 2
    return 0
