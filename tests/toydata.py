"""Small real datasets for tests and benchmarks: a byte-level BPE trained on the dialogues themselves by
the tokenize stage's ``train_small_bpe`` (no hub download), and shards written through
dialogsmith.formats.shards."""

from __future__ import annotations

import os

import numpy as np

from dialogsmith.formats.shards import ShardInstance, build_example, write_dataset
from dialogsmith.tokenize.bpe import EOS_TOKEN, train_small_bpe
from dialogsmith.train.model import load_hf_tokenizer


def dialogues_to_instances(
    dialogues: list[list[str]], tokenizer, max_len: int, reverse: bool = False
) -> list[ShardInstance]:
    """Turn i >= 1 trainable (all responses), turn 0 context; with reverse=True the turn order is flipped
    (the reverse model for MMI predicts the source from the response)."""
    eos_id = tokenizer.convert_tokens_to_ids(EOS_TOKEN)
    out = []
    for turns in dialogues:
        if reverse:
            turns = list(reversed(turns))
        ids = [np.asarray(tokenizer.encode(t, add_special_tokens=False), dtype=np.int64) for t in turns]
        flags = np.array([False] + [True] * (len(ids) - 1))
        inst = ShardInstance(turns=ids, trainable=flags)
        if inst.example_length > max_len or isinstance(
            build_example(ids, flags, eos_id, max_len, reverse), str
        ):
            continue  # too long for one example: callers pass short dialogues
        out.append(inst)
    return out


def make_dataset(
    root: str,
    train: list[list[str]],
    valid: list[list[str]] | None = None,
    *,
    tokenizer_dir: str | None = None,
    max_len: int = 128,
    reverse: bool = False,
    vocab_size: int = 400,
) -> dict:
    """Write a tokenize-stage-style output dir (manifest + shards + tokenizer/) from raw dialogues."""
    if tokenizer_dir is None:
        texts = [t for d in train + (valid or []) for t in d]
        tokenizer_dir = train_small_bpe(texts, os.path.join(str(root) + "-tokenizer"), vocab_size)
    tok = load_hf_tokenizer(tokenizer_dir)
    eos_id = tok.convert_tokens_to_ids(EOS_TOKEN)
    splits = {"train": dialogues_to_instances(train, tok, max_len, reverse)}
    if valid:
        splits["valid"] = dialogues_to_instances(valid, tok, max_len, reverse)
    return write_dataset(
        root, splits, eos_id, len(tok), max_len, tokenizer_dir=tokenizer_dir, reverse=reverse
    )
