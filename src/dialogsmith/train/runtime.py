"""The process a training run lives in: its rank and device (one process, or one per rank under torchrun:
gloo on CPU, nccl on GPU), its precision (autocast, GradScaler) and its stop signals."""

from __future__ import annotations

import contextlib
import os
import signal

import torch
import torch.distributed as dist

from dialogsmith.train.config import TrainConfig


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
