"""What a stored instance means for training: DialoGPT's example layout and the rule that fits an
instance into ``max_len`` tokens (docs/shard-format.md, "Example layout and labels")."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dialogsmith.formats.shards.header import IGNORE

# Stable drop reasons (asserted by tests, counted in stats.json).
TARGET_TOO_LONG = "target_too_long"
NO_TRAINABLE_TURN = "no_trainable_turn"


@dataclass
class ShardInstance:
    turns: list[np.ndarray]  # token ids per turn, no EOS inside
    trainable: np.ndarray  # bool per turn; turn 0 is never trainable

    @property
    def example_length(self) -> int:
        return sum(len(t) for t in self.turns) + len(self.turns) - 1


def fit_window(lengths: Sequence[int], trainable: Sequence[bool], max_len: int, reverse: bool = False):
    """Which turns make the example: ``(start, stop)`` (a slice) or a drop reason.

    ``trainable`` is per turn before position rules (a turn at position 0 of the window is never trained).
    Forward (``reverse=False``): the target is the last trainable turn at position >= 1; when the whole
    instance is longer than ``max_len`` the turns after the target (never trained) and then the oldest
    context turns are dropped, keeping at least the turn right before the target (its context).
    Reverse instances (turns newest first) lose their oldest turns, which are at the end.
    The input length of turns ``s..e`` is ``sum(lengths[s:e]) + (e - s - 1)`` (one EOS between turns).
    """
    n = len(lengths)
    trainable_at = [i for i in range(1, n) if trainable[i]]
    if not trainable_at:
        return NO_TRAINABLE_TURN

    def length(s: int, e: int) -> int:
        return sum(lengths[s:e]) + (e - s - 1)

    if length(0, n) <= max_len:
        return 0, n
    if reverse:
        # keep the newest turns (at the front); need at least turns 0..first trainable
        e = n
        while e > trainable_at[0] + 1 and length(0, e) > max_len:
            e -= 1
        return (0, e) if length(0, e) <= max_len else TARGET_TOO_LONG
    target = trainable_at[-1]
    e = target + 1
    s = 0
    while s < target - 1 and length(s, e) > max_len:
        s += 1
    if length(s, e) > max_len:
        return TARGET_TOO_LONG
    return s, e


def layout(
    turns: Sequence[Sequence[int]], trainable: Sequence[bool], eos_id: int
) -> tuple[np.ndarray, np.ndarray]:
    """input_ids and next-token labels of turns that already fit (no cutting); turn 0 never trained."""
    n_in = sum(len(t) for t in turns) + len(turns) - 1
    input_ids = np.empty(n_in, dtype=np.int64)
    labels = np.full(n_in, IGNORE, dtype=np.int64)
    pos = 0
    for i, turn in enumerate(turns):
        k = len(turn)
        if i > 0:
            input_ids[pos] = eos_id  # separator before turn i
            if trainable[i]:
                # position pos (the EOS) predicts t_i[0], ..., t_i[-1] predicts the closing EOS
                labels[pos : pos + k] = turn
                labels[pos + k] = eos_id if pos + k < n_in else IGNORE
            pos += 1
        input_ids[pos : pos + k] = turn
        pos += k
    if len(turns) > 1 and trainable[len(turns) - 1]:
        labels[n_in - 1] = eos_id  # the last turn's last token (or its EOS if empty) predicts EOS
    return input_ids, labels


def build_example(
    turns: list[Sequence[int]], trainable: Sequence[bool], eos_id: int, max_len: int, reverse: bool = False
) -> tuple[np.ndarray, np.ndarray] | str:
    """(input_ids int64, labels int64 with -100 = ignored) per the spec layout, or a drop reason.

    Keeps the target turn whole and drops the oldest context turns first (see ``fit_window``).
    """
    window = fit_window([len(t) for t in turns], trainable, max_len, reverse)
    if isinstance(window, str):
        return window
    s, e = window
    flags = [False] + [bool(f) for f in trainable[s + 1 : e]]
    return layout(turns[s:e], flags, eos_id)
