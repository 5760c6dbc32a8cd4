"""ShardDataset as a PyTorch dataset: ds[i], ds.collate and a real DataLoader (no Spark)."""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from dialogsmith.formats.shards import IGNORE, ShardDataset, ShardInstance, write_dataset

E = 99  # eos id of a 100-id vocabulary
DOCS = Path(__file__).resolve().parents[1] / "docs" / "shard-format.md"


def inst(turns, flags):
    return ShardInstance([np.array(t, dtype=np.int64) for t in turns], np.array(flags, dtype=bool))


INSTANCES = [
    inst([[1, 2], [3, 4, 5], [6], [7, 8]], [0, 1, 0, 1]),  # the spec's worked example
    inst([[9], [10]], [0, 1]),
    inst([[11, 12, 13], [14], [15, 16]], [0, 0, 1]),
    inst([[17], [18, 19], [20]], [0, 1, 0]),  # the last turn is context only
    inst([[21, 22, 23, 24, 25], [26, 27, 28, 29, 30, 31]], [0, 1]),
]


@pytest.fixture
def root(tmp_path):
    write_dataset(tmp_path, {"train": INSTANCES}, eos_id=E, vocab_size=E + 1, max_len=32, shard_size=2)
    return tmp_path


def test_getitem_is_the_example_with_weights(root):
    ds = ShardDataset(root, split="train")
    item = ds[0]
    assert item["input_ids"].tolist() == [1, 2, E, 3, 4, 5, E, 6, E, 7, 8]
    assert item["labels"].tolist() == [IGNORE, IGNORE, 3, 4, 5, E, IGNORE, IGNORE, 7, 8, E]
    assert item["weights"].tolist() == [0, 0, 1, 1, 1, 1, 0, 0, 1, 1, 1]
    assert item["input_ids"].dtype == item["labels"].dtype == np.int64 and item["weights"].dtype == np.float32
    assert ds[-1]["input_ids"].tolist() == ds[len(ds) - 1]["input_ids"].tolist()
    with pytest.raises(IndexError):
        ds[len(ds)]
    assert [len(ds[i]["input_ids"]) for i in range(len(ds))] == ds.lengths.tolist()


def check_batch(ds, batch, ids, width):
    b = len(ids)
    for name in ("input_ids", "labels", "attention_mask", "weights"):
        assert batch[name].shape == (b, width), name
    assert batch["input_ids"].dtype == batch["labels"].dtype == batch["attention_mask"].dtype == torch.int64
    assert batch["weights"].dtype == torch.float32
    for r, i in enumerate(ids):
        x, y = ds.example(i)
        n = len(x)
        assert batch["attention_mask"][r].tolist() == [1] * n + [0] * (width - n)
        assert batch["input_ids"][r].tolist() == x.tolist() + [E] * (width - n)  # padding: the eos id
        assert batch["labels"][r].tolist() == y.tolist() + [IGNORE] * (width - n)
    assert torch.equal(batch["weights"] > 0, batch["labels"] != IGNORE)
    # already shifted: a target at position j is the input token at j + 1 (the closing EOS at the end)
    for r in range(b):
        n = int(batch["attention_mask"][r].sum())
        for j in torch.nonzero(batch["labels"][r] != IGNORE).flatten().tolist():
            assert batch["labels"][r, j] == (batch["input_ids"][r, j + 1] if j + 1 < n else E)


def test_dataloader_with_collate_pads_to_the_longest(root):
    ds = ShardDataset(root, split="train")
    loader = DataLoader(ds, batch_size=2, collate_fn=ds.collate)
    batches = list(loader)
    assert len(batches) == 3
    order = [[0, 1], [2, 3], [4]]
    for ids, batch in zip(order, batches, strict=True):
        check_batch(ds, batch, ids, max(int(ds.lengths[i]) for i in ids))
    assert batches[0]["input_ids"].shape == (2, 11) and batches[2]["input_ids"].shape == (1, 12)


def test_collate_to_a_multiple_of_8(root):
    ds = ShardDataset(root, split="train")
    loader = DataLoader(ds, batch_size=3, collate_fn=functools.partial(ds.collate, pad_to_multiple_of=8))
    first = next(iter(loader))
    check_batch(ds, first, [0, 1, 2], 16)  # longest 11 -> 16


def docs_snippet() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.S)
    snippet = [b for b in blocks if "DataLoader(" in b]
    assert snippet, "docs/shard-format.md lost its DataLoader snippet"
    return snippet[0]


def test_the_documented_loss_is_the_next_token_loss(root):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=E + 1, n_positions=32, n_layer=1, n_embd=16, n_head=2))
    model.eval()
    scope = {"root": str(root), "model": model}
    with torch.no_grad():
        exec(compile(docs_snippet(), str(DOCS), "exec"), scope)
        assert torch.isfinite(scope["loss"])
        # the same loss by hand, one target at a time: -log P(labels[j] | input_ids[:j + 1])
        ds = ShardDataset(root)
        nll = []
        for i in range(len(ds)):
            x, y = ds.example(i)
            logp = torch.log_softmax(model(input_ids=torch.from_numpy(x)[None]).logits[0], -1)
            nll += [-logp[j, y[j]] for j in range(len(y)) if y[j] != IGNORE]
        batch = ds.collate([ds[i] for i in range(len(ds))])
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        ours = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten())
        assert torch.allclose(ours, torch.stack(nll).mean(), atol=1e-5)
        # what the docs warn about: transformers shifts labels= again, a different (wrong) loss
        shifted_again = model(**{k: batch[k] for k in ("input_ids", "attention_mask", "labels")}).loss
        assert not torch.allclose(shifted_again, ours, atol=1e-3)


def test_the_format_imports_without_torch_or_a_tokenizer():
    code = (
        "import sys, dialogsmith.formats.shards; "
        "print(sorted(m for m in ('torch', 'tokenizers', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
