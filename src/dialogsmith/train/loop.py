"""The training loop: one process, or one process per rank under torchrun (runtime.Dist).

One optimizer step = ``world_size x grad_accum`` micro-batches taken from the global epoch plan. The loss
of a step is sum(CE over its target tokens) / (its number of target tokens, counted over all ranks before
the first backward), so a step's gradient is the exact token-mean gradient whatever the world size:
each rank backpropagates ``loss_sum * world / n_targets`` and DDP averages over ranks.

Read top to bottom: ``run`` -> ``_start`` (resume check, data, model, optimizer, plan, log) -> the loop
over optimizer steps (``_train_step``, log line, validation, checkpoint) -> ``_finish`` (final
validation, checkpoint, model dir, summary).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from dialogsmith.formats.shards import ShardDataset, ShardError
from dialogsmith.train import checkpoint as ckpt
from dialogsmith.train.config import TrainConfig, save_config
from dialogsmith.train.data import TrainBatch, collate, epoch_plan, group_steps, padding_fraction
from dialogsmith.train.model import LossModel, build_model, load_hf_tokenizer, lr_at, param_groups
from dialogsmith.train.perplexity import perplexity, scoring_plan, token_loss
from dialogsmith.train.runtime import Dist, StopFlag, autocast_for
from dialogsmith.train.verify import ShardCheck, check_token_ids, data_identity, default_workers, shard_report


def run(cfg: TrainConfig) -> dict:
    """Train as ``cfg`` says; returns the summary (also saved as OUT/summary.json)."""
    cfg.validate()
    d = Dist(cfg)
    try:
        return _train(cfg, d)
    finally:
        d.close()


# ---- the pieces of a run ---------------------------------------------------------------------------


class RunLog:
    """OUT/log.jsonl, appended by rank 0 (other ranks write nothing)."""

    def __init__(self, out: str, main: bool):
        self._fh = open(os.path.join(out, "log.jsonl"), "a") if main else None  # noqa: SIM115

    def __call__(self, rec: dict) -> None:
        if self._fh:
            self._fh.write(json.dumps(rec) + "\n")
            self._fh.flush()

    def close(self) -> None:
        if self._fh:
            self._fh.close()


class Verification:
    """The shards' sha256 running in the background (verify.ShardCheck), joined by every rank at the same
    point: before the first optimizer step, or after the loop if this process trained no step."""

    def __init__(self, check: ShardCheck, d: Dist, log: RunLog, root: str):
        self.check, self.d, self.log, self.root = check, d, log, root
        self.open = True

    def finish(self) -> None:
        """Join this rank's sha256 share and combine every rank's outcome."""
        self.open = False
        problems = self.check.wait()
        (n_bad,) = self.d.all_sum([float(len(problems))])
        if n_bad:
            raise ShardError(
                shard_report(self.root, problems)
                if problems
                else f"{self.root}: {int(n_bad)} shard sha256 problem(s) found by other ranks (see their errors)"
            )
        if self.d.main:
            self.log({"event": "verified", **self.check.summary()})

    def check_ids(self, batch: TrainBatch, rows, ds, vocab_limit: int) -> None:
        try:
            check_token_ids(int(batch.input_ids.max()), rows, ds, vocab_limit)
        except ShardError:
            if self.check.pending:  # the sha256 names the whole file, expected vs actual: say that first
                self.check.raise_for_problems()
            raise


@dataclass
class Counters:
    """Where the run is (saved in every checkpoint) and what this process did."""

    step: int
    epoch: int
    pos: int  # next optimizer step within the epoch
    tokens: int  # real tokens trained on, all runs of this output dir
    tokens_run: int = 0  # ... by this process
    slots_run: int = 0  # tokens computed by this process, padding included
    steps_run: int = 0

    def next_position(self, steps_in_epoch: int) -> tuple[int, int]:
        """(epoch, step in epoch) where a run resumed from here continues."""
        return (self.epoch, self.pos) if self.pos < steps_in_epoch else (self.epoch + 1, 0)


@dataclass
class Run:
    cfg: TrainConfig
    d: Dist
    log: RunLog
    train_ds: ShardDataset
    valid_ds: ShardDataset | None
    verification: Verification
    data_now: dict  # verify.data_identity of the input, saved in checkpoints
    tokenizer: object  # saved next to the model (None: the data came without one)
    lm: torch.nn.Module
    trained: torch.nn.Module  # LossModel(lm), DDP-wrapped under torchrun
    optimizer: torch.optim.Optimizer
    autocast: object
    precision: str
    scaler: torch.amp.GradScaler | None
    pad_id: int
    vocab_limit: int
    plan_kw: dict  # epoch_plan arguments besides the epoch
    per_step: int  # micro-batches per optimizer step, all ranks
    total_steps: int
    counters: Counters
    params: list = field(default_factory=list)


# ---- start: resume check, data, model, optimizer, plan ---------------------------------------------


def _manifest_path(cfg: TrainConfig) -> str:
    path = os.path.join(cfg.input, "manifest.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"--input {cfg.input}: no manifest.json (expected the tokenize stage's output dir)"
        )
    return path


def _open_datasets(cfg: TrainConfig, d: Dist):
    """(train, valid or None, ShardCheck). Every shard of both splits is checked (size and header) before
    it is opened; its sha256 (with --verify) is started in the background.

    Under torchrun every rank reads from every shard, and each node may hold its own copy of the data, so
    the ranks of a node share the hashing of all shards (shard k on local rank k mod local world size) and
    the outcome is combined over all ranks before the first optimizer step: each node's copy is hashed
    once, by all its ranks in parallel. (Rank 0 alone would leave other nodes' copies unchecked.)"""
    with open(_manifest_path(cfg)) as fh:
        splits = json.load(fh).get("splits", {})
    if "train" not in splits:
        raise ValueError(
            f"--input {cfg.input}: no train split in manifest.json (has: {', '.join(sorted(splits))})"
        )
    read = ["train"] + (["valid"] if "valid" in splits else [])
    part, workers = (d.local_rank, d.local_world), default_workers(d.local_world)
    check = ShardCheck(cfg.input, read, sha256=cfg.verify, part=part, workers=workers)
    train = ShardDataset(cfg.input, split="train")
    if len(train) == 0:
        raise ValueError(f"--input {cfg.input}: the train split is empty")
    valid = ShardDataset(cfg.input, split="valid") if "valid" in read else None
    if valid is not None and len(valid) == 0:
        valid = None
    return train, valid, check


def _load_model(cfg: TrainConfig, d: Dist, train_ds: ShardDataset, resume_dir: str | None):
    """(lm on the device in train mode, trainer state: the checkpoint's, or a fresh one)."""
    if resume_dir:
        from transformers import AutoModelForCausalLM

        kw = {}
        if cfg.dropout is not None:
            kw = {"resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout, "attn_pdrop": cfg.dropout}
        lm = AutoModelForCausalLM.from_pretrained(resume_dir, **kw)
        state = ckpt.load_state(resume_dir)
    else:
        lm = build_model(cfg, train_ds.vocab_size, int(train_ds.eos_id), train_ds.max_len)
        state = {"step": 0, "epoch": 0, "step_in_epoch": 0, "tokens": 0}
    # dropout streams differ per rank; restored from the checkpoint when resuming
    torch.manual_seed(cfg.seed * 1000 + d.rank)
    random.seed(cfg.seed * 1000 + d.rank)
    np.random.seed((cfg.seed * 1000 + d.rank) % 2**32)
    return lm, state


def _optimizer(cfg: TrainConfig, d: Dist, lm, resume_dir: str | None, state: dict):
    """(the module to train: LossModel, DDP-wrapped under torchrun; AdamW; autocast; precision; scaler),
    with the optimizer, scaler and RNG states of the checkpoint when resuming."""
    trained = LossModel(lm)
    if d.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        trained = DDP(trained, device_ids=[d.device.index] if d.device.type == "cuda" else None)
    optimizer = torch.optim.AdamW(
        param_groups(lm, cfg.weight_decay),
        lr=cfg.lr,
        betas=(cfg.adam_beta1, cfg.adam_beta2),
        eps=cfg.adam_eps,
        fused=(d.device.type == "cuda") or None,
    )
    autocast, precision, scaler = autocast_for(cfg, d.device)
    if resume_dir:
        ckpt.load_optimizer(resume_dir, optimizer, state)
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        ckpt.read_rng(resume_dir, d.rank)
    return trained, optimizer, autocast, precision, scaler


def _plan(cfg: TrainConfig, d: Dist, train_ds: ShardDataset):
    """(epoch_plan arguments, micro-batches per step, steps per epoch, micro-batches dropped per epoch,
    total steps). Every rank computes the same global epoch plans and takes its slice of each step."""
    per_step = d.world * cfg.grad_accum
    plan_kw = dict(batching=cfg.batching, batch_size=cfg.batch_size, max_len=train_ds.max_len,
                   seed=cfg.seed, bucket_factor=cfg.bucket_factor)  # fmt: skip
    first = epoch_plan(train_ds.lengths, epoch=0, **plan_kw)
    steps_per_epoch = len(first) // per_step
    if steps_per_epoch == 0:
        raise ValueError(
            f"the train split ({len(train_ds)} instances, {len(first)} micro-batches) is too small for one "
            f"step of {per_step} micro-batches (world {d.world} x grad_accum {cfg.grad_accum}): lower "
            "--batch-size or --grad-accum"
        )
    total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * steps_per_epoch))
    return plan_kw, per_step, steps_per_epoch, len(first) - steps_per_epoch * per_step, total_steps


def _start(cfg: TrainConfig, d: Dist) -> Run:
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    os.makedirs(cfg.output, exist_ok=True)
    # resume or start: checked before anything is loaded or written
    resume_dir = ckpt.resume_from(cfg)
    _manifest_path(cfg)
    data_now = data_identity(cfg.input)
    changed = ckpt.check_resume(cfg, resume_dir, data_now) if resume_dir else {}
    # the sha256 of the shards runs from here to the first optimizer step (Verification)
    train_ds, valid_ds, shard_check = _open_datasets(cfg, d)
    pad_id = int(train_ds.eos_id)
    tokenizer = load_hf_tokenizer(train_ds.tokenizer_dir, cfg.model or None)

    lm, state = _load_model(cfg, d, train_ds, resume_dir)
    vocab_limit = min(train_ds.vocab_size, lm.get_input_embeddings().num_embeddings)
    if pad_id >= vocab_limit:
        raise ValueError(f"--input {cfg.input}: eos id {pad_id} >= the model's vocabulary size {vocab_limit}")
    lm.to(d.device)
    lm.train()
    trained, optimizer, autocast, precision, scaler = _optimizer(cfg, d, lm, resume_dir, state)

    plan_kw, per_step, steps_per_epoch, dropped, total_steps = _plan(cfg, d, train_ds)
    if d.main:
        save_config(cfg, os.path.join(cfg.output, "train_config.json"))
    log = RunLog(cfg.output, d.main)
    if d.main:
        log({"event": "resume" if resume_dir else "start", "from": resume_dir, "step": state["step"],
             "total_steps": total_steps, "steps_per_epoch": steps_per_epoch,
             "dropped_tail_microbatches": dropped, "world_size": d.world,
             "device": str(d.device), "precision": precision,
             "params": sum(p.numel() for p in lm.parameters()), "train_instances": len(train_ds)})  # fmt: skip
        if changed:
            log({"event": "config_changed", "from": resume_dir, "fields": changed})
            lines = "".join(f"\n  {k}: checkpoint={v[0]!r} now={v[1]!r}" for k, v in changed.items())
            print(f"train: resuming {resume_dir} with these settings changed:{lines}", file=sys.stderr)

    counters = Counters(state["step"], state["epoch"], state["step_in_epoch"], state.get("tokens", 0))
    saved_per_step = state.get("micro_batches_per_step", per_step)
    if saved_per_step != per_step:
        # resumed with another world size / accumulation: continue from the same micro-batch of the plan
        counters.pos = math.ceil(counters.pos * saved_per_step / per_step)
        log({"event": "repositioned", "micro_batches_per_step": [saved_per_step, per_step],
             "step_in_epoch": counters.pos})  # fmt: skip
    return Run(
        cfg=cfg,
        d=d,
        log=log,
        train_ds=train_ds,
        valid_ds=valid_ds,
        verification=Verification(shard_check, d, log, cfg.input),
        data_now=data_now,
        tokenizer=tokenizer,
        lm=lm,
        trained=trained,
        optimizer=optimizer,
        autocast=autocast,
        precision=precision,
        scaler=scaler,
        pad_id=pad_id,
        vocab_limit=vocab_limit,
        plan_kw=plan_kw,
        per_step=per_step,
        total_steps=total_steps,
        counters=counters,
        params=[p for g in optimizer.param_groups for p in g["params"]],
    )


# ---- one optimizer step, validation, checkpoint ----------------------------------------------------


def _train_step(r: Run, step_plan: list) -> dict:
    """Forward/backward of this rank's micro-batches of ``step_plan`` and one optimizer update.
    Returns this rank's sums (loss, tokens, slots) and the step's global target count, lr, grad norm."""
    cfg, d = r.cfg, r.d
    micro = step_plan[d.rank * cfg.grad_accum : (d.rank + 1) * cfg.grad_accum]
    batches = [collate(r.train_ds, rows, r.pad_id, cfg.pad_multiple) for rows in micro]  # [B, T] each
    bad_ids = None
    for rows, b in zip(micro, batches, strict=True):
        try:
            r.verification.check_ids(b, rows, r.train_ds, r.vocab_limit)
        except ShardError as e:
            bad_ids = e  # raised by every rank after the sum below, so that no rank waits forever
            break
    n_targets, n_bad = d.all_sum([sum(b.n_targets for b in batches), 1.0 if bad_ids else 0.0])
    if n_bad:
        raise bad_ids or ShardError("another rank found a token id beyond the vocabulary")
    scale = d.world / max(1.0, n_targets)
    d_model = int(getattr(r.lm.config, "n_embd", None) or getattr(r.lm.config, "hidden_size", 768))
    lr = lr_at(r.counters.step, cfg, r.total_steps, d_model)
    for g in r.optimizer.param_groups:
        g["lr"] = lr
    loss_sum = 0.0
    for k, b in enumerate(batches):
        # DDP all-reduces the gradients at the last micro-batch's backward only
        sync = r.trained.no_sync() if d.enabled and k < len(batches) - 1 else contextlib.nullcontext()
        with sync:
            with r.autocast():
                loss = r.trained(b.to(d.device))  # sum of CE over b's targets
            scaled = loss * scale
            (r.scaler.scale(scaled) if r.scaler else scaled).backward()
        loss_sum += float(loss.detach())
    if r.verification.open:
        r.verification.finish()  # the sha256 ran during start-up and this step's forward/backward
    if r.scaler:
        r.scaler.unscale_(r.optimizer)
    max_norm = cfg.max_grad_norm if cfg.max_grad_norm > 0 else float("inf")
    grad_norm = float(torch.nn.utils.clip_grad_norm_(r.params, max_norm))
    if r.scaler:
        r.scaler.step(r.optimizer)
        r.scaler.update()
    else:
        r.optimizer.step()
    r.optimizer.zero_grad(set_to_none=True)
    return {
        "loss_sum": loss_sum,
        "n_targets": n_targets,
        "tokens": sum(b.n_tokens for b in batches),
        "slots": sum(b.n_slots for b in batches),
        "lr": lr,
        "grad_norm": grad_norm,
    }


def _validate(r: Run) -> dict:
    """Loss and perplexity on the valid split (the first --eval-max-batches micro-batches), all ranks."""
    cfg, ds = r.cfg, r.valid_ds
    plan = scoring_plan(ds.lengths, batching=cfg.batching, batch_size=cfg.batch_size, max_len=ds.max_len,
                        bucket_factor=cfg.bucket_factor, max_batches=cfg.eval_max_batches)  # fmt: skip
    result = token_loss(r.lm, ds, plan, pad_id=r.pad_id, pad_multiple=cfg.pad_multiple,
                        vocab_limit=r.vocab_limit, autocast=r.autocast, part=(r.d.rank, r.d.world),
                        all_sum=r.d.all_sum)  # fmt: skip
    loss = result.loss_sum / max(1, result.n_targets)
    return {"valid_loss": loss, "valid_ppl": perplexity(loss), "valid_targets": result.n_targets}


def _save(r: Run, epoch_next: int, pos_next: int) -> str | None:
    """A checkpoint of the current step (every rank writes its RNG state; rank 0 the rest), committed by
    an atomic rename; ``(epoch_next, pos_next)`` is where a resumed run continues."""
    cfg, d, c = r.cfg, r.d, r.counters
    if d.main:
        ckpt.begin(cfg.output, c.step)
    d.barrier()
    ckpt.write_rng(os.path.join(cfg.output, "checkpoints", f"step-{c.step:07d}.tmp"), d.rank)
    d.barrier()
    path = None
    if d.main:
        state = {
            "step": c.step,
            "epoch": epoch_next,
            "step_in_epoch": pos_next,
            "tokens": c.tokens,
            "total_steps": r.total_steps,
            "world_size": d.world,
            "micro_batches_per_step": r.per_step,
            "scaler": r.scaler.state_dict() if r.scaler is not None else None,
            "data": r.data_now,
        }
        path = ckpt.finish(
            cfg.output, c.step, r.lm, r.tokenizer, cfg.to_dict(), r.optimizer, state, cfg.keep_last
        )
        r.log({"event": "checkpoint", "step": c.step, "path": path})
    d.barrier()
    return path


# ---- the loop --------------------------------------------------------------------------------------


def _train(cfg: TrainConfig, d: Dist) -> dict:
    from tqdm.auto import tqdm
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Writing model shards" bars at every checkpoint
    t_start = time.time()
    r = _start(cfg, d)
    c = r.counters
    stop = StopFlag()
    show = d.main and cfg.progress
    bar = tqdm(total=r.total_steps, initial=c.step, disable=not show, dynamic_ncols=True, file=sys.stderr)
    window_t, window_tokens = time.time(), 0
    last, last_valid, interrupted = {}, {}, None
    while c.step < r.total_steps and interrupted is None:
        steps = group_steps(epoch_plan(r.train_ds.lengths, epoch=c.epoch, **r.plan_kw), r.per_step)
        while c.pos < len(steps) and c.step < r.total_steps:
            s = _train_step(r, steps[c.pos])
            c.step, c.pos, c.steps_run = c.step + 1, c.pos + 1, c.steps_run + 1
            stopping = stop.signal is not None or (cfg.stop_after and c.steps_run >= cfg.stop_after)
            g_loss, g_tokens, g_slots, g_stop = d.all_sum(
                [s["loss_sum"], s["tokens"], s["slots"], 1.0 if stopping else 0.0]
            )
            c.tokens += int(g_tokens)
            c.tokens_run += int(g_tokens)
            c.slots_run += int(g_slots)
            window_tokens += int(g_tokens)
            loss = g_loss / max(1.0, s["n_targets"])
            last = {"loss": loss, "lr": s["lr"], "grad_norm": s["grad_norm"]}
            bar.update(1)
            if d.main and (c.step % cfg.log_every == 0 or c.step == r.total_steps):
                now = time.time()
                tps = window_tokens / max(1e-9, now - window_t)
                window_t, window_tokens = now, 0
                r.log({"step": c.step, "epoch": c.epoch + c.pos / len(steps), "loss": loss,
                       "ppl": perplexity(loss), "lr": s["lr"], "grad_norm": s["grad_norm"],
                       "targets": int(s["n_targets"]), "tokens": int(g_tokens),
                       "padding": padding_fraction(int(g_tokens), int(g_slots)), "tokens_per_s": tps,
                       "time": now - t_start})  # fmt: skip
                bar.set_postfix(loss=f"{loss:.3f}", lr=f"{s['lr']:.2e}", tok_s=f"{tps:,.0f}", refresh=False)
            if (
                r.valid_ds is not None
                and cfg.eval_every
                and c.step % cfg.eval_every == 0
                and c.step < r.total_steps
            ):
                last_valid = _validate(r)
                r.log({"step": c.step, **last_valid})
            if g_stop > 0:
                interrupted = "signal" if stop.signal is not None else "stop_after"
                _save(r, *c.next_position(len(steps)))
                break
            if cfg.save_every and c.step % cfg.save_every == 0 and c.step < r.total_steps:
                _save(r, *c.next_position(len(steps)))
        if interrupted is None and c.pos >= len(steps):
            c.epoch, c.pos = c.epoch + 1, 0
    bar.close()
    stop.restore()
    return _finish(r, interrupted, last, last_valid, time.time() - t_start)


def _finish(r: Run, interrupted: str | None, last: dict, last_valid: dict, seconds: float) -> dict:
    """Final validation and checkpoint (unless interrupted: the checkpoint is written), the model dir,
    summary.json; returns the summary."""
    cfg, d, c = r.cfg, r.d, r.counters
    if r.verification.open:
        r.verification.finish()  # nothing was trained in this process: still verify before saving
    if interrupted is None:
        if r.valid_ds is not None:
            last_valid = _validate(r)
            r.log({"step": c.step, **last_valid})
        _save(r, c.epoch, c.pos)
        if d.main:
            ckpt.save_model_dir(cfg.output, r.lm, r.tokenizer, cfg.to_dict())
    summary = {
        "step": c.step,
        "total_steps": r.total_steps,
        "interrupted": interrupted,
        "train_loss": last.get("loss"),
        "seconds": seconds,
        "tokens": c.tokens,
        "tokens_this_run": c.tokens_run,
        "padding": padding_fraction(c.tokens_run, c.slots_run),
        "world_size": d.world,
        "device": str(d.device),
        "precision": r.precision,
        **last_valid,
    }
    if d.main:
        summary["tokens_per_s"] = c.tokens_run / max(1e-9, seconds)
        r.log({"event": "summary", **summary})
        with open(os.path.join(cfg.output, "summary.json"), "w") as fh:
            json.dump(summary, fh, indent=2)
        if cfg.progress:
            print(_format_summary(summary, cfg.output), file=sys.stderr)
    r.log.close()
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
    from dialogsmith.stage import ERRORS
    from dialogsmith.train.config import parse_config

    try:
        run(parse_config(argv))
    except ERRORS as e:
        print(f"train: error: {e}", file=sys.stderr)
        return 2
    return 0
