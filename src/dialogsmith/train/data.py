"""Batch planning and collation for the train stage.

An epoch's *plan* is a deterministic function of (seed, epoch, lengths, batching options): a list of
micro-batches, each a list of rows, each row an array of instance ids. Every rank computes the same
global plan and takes its own slice of each optimizer step, so resuming only needs (epoch, step).

Batching modes (padding fraction measured by benchmarks/bench_train.py, see docs/train.md):
- ``pack``: best-fit-decreasing packing of several instances into rows of ``max_len`` tokens; position
  ids restart at 0 for every instance and a block-diagonal causal mask keeps instances apart.
- ``bucket``: DialoGPT's length buckets (shuffle ids, sort buckets of ``bucket_factor x batch_size`` by
  length, cut into batches, shuffle the batches), one instance per row.
- ``none``: shuffled ids, one instance per row, padded per batch (what a stock collator does).
Rows are padded to the longest row of the micro-batch, rounded up to ``pad_multiple``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dialogsmith.formats.shards import IGNORE

MicroPlan = list[np.ndarray]  # rows of instance ids


def _rng(seed: int, epoch: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch])


def pack_rows(ids: np.ndarray, lengths: np.ndarray, capacity: int) -> list[np.ndarray]:
    """Best-fit decreasing: place each instance (longest first) in the fullest row where it fits.

    Rows are kept in buckets by remaining capacity (0..capacity), so a placement is O(capacity).
    """
    order = ids[np.argsort(-lengths[ids], kind="stable")]
    by_room: list[list[int]] = [[] for _ in range(capacity + 1)]  # room -> row indices
    rows: list[list[int]] = []
    room_of: list[int] = []
    for i in order.tolist():
        n = int(lengths[i])
        if n > capacity:
            raise ValueError(f"instance {i} has {n} tokens > row capacity {capacity}")
        target = -1
        for room in range(n, capacity + 1):
            if by_room[room]:
                target = by_room[room].pop()
                break
        if target < 0:
            target = len(rows)
            rows.append([])
            room_of.append(capacity)
        rows[target].append(i)
        room_of[target] -= n
        by_room[room_of[target]].append(target)
    return [np.asarray(r, dtype=np.int64) for r in rows]


def epoch_plan(
    lengths: np.ndarray,
    *,
    batching: str,
    batch_size: int,
    max_len: int,
    seed: int,
    epoch: int,
    bucket_factor: int = 100,
    shuffle: bool = True,
) -> list[MicroPlan]:
    """Micro-batches (lists of rows of instance ids) for one epoch over instances with these lengths."""
    lengths = np.asarray(lengths, dtype=np.int64)
    n = len(lengths)
    rng = _rng(seed, epoch)
    ids = rng.permutation(n) if shuffle else np.arange(n)
    batches: list[MicroPlan] = []
    if batching == "none":
        for s in range(0, n, batch_size):
            batches.append([ids[j : j + 1] for j in range(s, min(s + batch_size, n))])
        return batches
    if batching == "bucket":
        chunk = bucket_factor * batch_size
        for s in range(0, n, chunk):
            part = ids[s : s + chunk]
            part = part[np.argsort(lengths[part], kind="stable")]
            for b in range(0, len(part), batch_size):
                batches.append([part[j : j + 1] for j in range(b, min(b + batch_size, len(part)))])
    elif batching == "pack":
        mean_len = max(1.0, float(lengths.mean())) if n else 1.0
        per_row = max(1, int(max_len // mean_len))
        chunk = bucket_factor * batch_size * per_row
        for s in range(0, n, chunk):
            rows = pack_rows(ids[s : s + chunk], lengths, max_len)
            if shuffle:
                rows = [rows[k] for k in rng.permutation(len(rows))]
            for b in range(0, len(rows), batch_size):
                batches.append(rows[b : b + batch_size])
    else:
        raise ValueError(f"unknown batching {batching!r}")
    if shuffle:
        batches = [batches[k] for k in rng.permutation(len(batches))]
    return batches


def group_steps(batches: list[MicroPlan], per_step: int) -> list[list[MicroPlan]]:
    """Optimizer steps of ``per_step`` (= world_size x grad_accum) micro-batches; an incomplete tail is
    dropped so every rank does the same number of forward/backward passes (logged by the loop)."""
    n_steps = len(batches) // per_step
    return [batches[s * per_step : (s + 1) * per_step] for s in range(n_steps)]


@dataclass
class TrainBatch:
    input_ids: torch.Tensor  # [B, T] int64, padding = eos
    labels: torch.Tensor  # [B, T] int64 next-token targets, IGNORE elsewhere
    position_ids: torch.Tensor  # [B, T] restart at 0 for every instance
    segments: torch.Tensor  # [B, T] int64: instance index within its row, -1 for padding
    n_tokens: int  # real tokens
    n_slots: int  # B x T (tokens computed, padding included)
    n_targets: int
    packed: bool  # some row holds more than one instance

    def to(self, device: torch.device) -> TrainBatch:
        nb = device.type == "cuda"
        return TrainBatch(
            self.input_ids.to(device, non_blocking=nb),
            self.labels.to(device, non_blocking=nb),
            self.position_ids.to(device, non_blocking=nb),
            self.segments.to(device, non_blocking=nb),
            self.n_tokens,
            self.n_slots,
            self.n_targets,
            self.packed,
        )


def collate(ds, rows: MicroPlan, pad_id: int, pad_multiple: int = 8) -> TrainBatch:
    """Fetch the rows' instances from the shard dataset and lay them out as one padded batch."""
    row_parts = [[ds.example(int(i)) for i in row] for row in rows]
    row_lens = [sum(len(x) for x, _ in parts) for parts in row_parts]
    width = max(row_lens)
    width = -(-width // pad_multiple) * pad_multiple
    b = len(rows)
    input_ids = np.full((b, width), pad_id, dtype=np.int64)
    labels = np.full((b, width), IGNORE, dtype=np.int64)
    position_ids = np.zeros((b, width), dtype=np.int64)
    segments = np.full((b, width), -1, dtype=np.int64)
    packed = False
    for r, parts in enumerate(row_parts):
        packed |= len(parts) > 1
        pos = 0
        for k, (x, y) in enumerate(parts):
            n = len(x)
            input_ids[r, pos : pos + n] = x
            labels[r, pos : pos + n] = y
            position_ids[r, pos : pos + n] = np.arange(n)
            segments[r, pos : pos + n] = k
            pos += n
    n_tokens = int(sum(row_lens))
    return TrainBatch(
        torch.from_numpy(input_ids),
        torch.from_numpy(labels),
        torch.from_numpy(position_ids),
        torch.from_numpy(segments),
        n_tokens,
        b * width,
        int((labels != IGNORE).sum()),
        packed,
    )


def attention_mask_for(batch: TrainBatch, as_bool: bool, dtype: torch.dtype) -> torch.Tensor:
    """[B, 1, T, T] block-diagonal causal mask from segment ids (padding attends only to itself, so
    no softmax row is empty). Bool (True = attend) for SDPA/flash, additive float for eager."""
    seg = batch.segments
    t = seg.shape[1]
    causal = torch.ones(t, t, dtype=torch.bool, device=seg.device).tril()
    same = seg[:, :, None] == seg[:, None, :]  # [B, T, T]
    eye = torch.eye(t, dtype=torch.bool, device=seg.device)
    mask = (same & causal) | eye
    mask = mask[:, None]
    if as_bool:
        return mask
    out = torch.zeros(mask.shape, dtype=dtype, device=seg.device)
    return out.masked_fill_(~mask, torch.finfo(dtype).min)


def padding_fraction(n_tokens: int, n_slots: int) -> float:
    return 0.0 if n_slots == 0 else 1.0 - n_tokens / n_slots
