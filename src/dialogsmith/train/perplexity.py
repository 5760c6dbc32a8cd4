"""Token-mean cross entropy and perplexity of a causal LM on examples in the shard layout: the train
stage's validation loss and the eval stage's perplexity are this one function.

An example is ``(input_ids, labels)`` with labels already shifted (``labels[t]`` is the target of
position ``t``, ``IGNORE`` elsewhere; ``formats.shards.layout``). Examples are batched by the train
stage's planner and collator (``train.data``) and scored by its ``LossModel``, so the validation loss
and a training step's loss are computed the same way.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from dialogsmith.formats.shards import ShardError
from dialogsmith.train.data import MicroPlan, collate, epoch_plan
from dialogsmith.train.model import LossModel
from dialogsmith.train.verify import check_token_ids

# exp() of a diverged loss overflows a float; perplexities are reported up to e^50
MAX_LOG_PPL = 50.0


def perplexity(loss: float) -> float:
    return math.exp(min(loss, MAX_LOG_PPL))


@dataclass
class TokenLoss:
    loss_sum: float  # sum of the target tokens' cross entropy (nats)
    n_targets: int

    @property
    def loss(self) -> float:
        return self.loss_sum / self.n_targets if self.n_targets else float("nan")

    @property
    def ppl(self) -> float | None:
        return perplexity(self.loss) if self.n_targets else None


def scoring_plan(
    lengths: np.ndarray,
    *,
    batch_size: int,
    batching: str = "bucket",
    max_len: int = 0,
    bucket_factor: int = 100,
    max_batches: int = 0,
) -> list[MicroPlan]:
    """Micro-batches over every example once, in a fixed order (no shuffling); ``max_batches`` > 0 keeps
    the first that many. ``bucket`` batches examples of similar length (least padding, one per row)."""
    plan = epoch_plan(
        lengths,
        batching=batching,
        batch_size=batch_size,
        max_len=max_len or int(max(lengths, default=1)),
        seed=0,
        epoch=0,
        bucket_factor=bucket_factor,
        shuffle=False,
    )
    return plan[:max_batches] if max_batches else plan


def _one_process_sum(values: list[float]) -> list[float]:
    return values


@torch.no_grad()
def token_loss(
    lm,
    ds,
    plan: list[MicroPlan],
    *,
    pad_id: int,
    pad_multiple: int = 8,
    vocab_limit: int | None = None,
    autocast: Callable = contextlib.nullcontext,
    part: tuple[int, int] = (0, 1),
    all_sum: Callable[[list[float]], list[float]] = _one_process_sum,
) -> TokenLoss:
    """Cross entropy of ``lm`` summed over the target tokens of the micro-batches of ``plan``.

    ``ds``: anything with ``example(i)`` (a ``ShardDataset``, or in-memory examples). ``vocab_limit``:
    refuse ids at or above it before the forward (``verify.check_token_ids`` names shard and instance).
    Under torchrun ``part = (rank, world)`` takes every world-th micro-batch and ``all_sum`` adds the
    ranks' sums; a bad id found by one rank is raised by every rank (after the sum, so none waits)."""
    rank, world = part
    device = next(lm.parameters()).device
    loss_model = LossModel(lm)
    was_training = lm.training
    lm.eval()
    loss_sum, n_targets, bad_ids = 0.0, 0, None
    try:
        for rows in plan[rank::world]:
            b = collate(ds, rows, pad_id, pad_multiple)  # [B, T] right-padded rows
            if vocab_limit is not None:
                try:
                    check_token_ids(int(b.input_ids.max()), rows, ds, vocab_limit)
                except ShardError as e:
                    bad_ids = e
                    break
            b = b.to(device)
            with autocast():
                loss_sum += float(loss_model(b))
            n_targets += b.n_targets
    finally:
        lm.train(was_training)
    loss_sum, n_targets, n_bad = all_sum([loss_sum, n_targets, 1.0 if bad_ids else 0.0])
    if n_bad:
        raise bad_ids or ShardError(f"{ds.split}: another rank found a token id beyond the vocabulary")
    return TokenLoss(loss_sum, int(n_targets))
