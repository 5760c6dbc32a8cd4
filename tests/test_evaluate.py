"""`make eval` end to end on a tiny random GPT-2 and a tiny byte-level BPE tokenizer built here (by the
tokenize stage's small-BPE trainer)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from dialogsmith.eval import (
    EvalConfig,
    build_parser,
    evaluate,
    load_refs_file,
    load_test_split,
    perplexity_on_references,
    perplexity_on_shards,
    reference_example,
    reference_sets,
)
from dialogsmith.formats import parquet, schemas
from dialogsmith.generation import DecodeConfig, generate, load_model

REPO = Path(__file__).resolve().parents[1]
EOS = "<|endoftext|>"
CORPUS = [
    "hello how are you",
    "i am fine thanks",
    "what are you doing today",
    "i do n't know .",
    "he is a rocket scientist .",
    "i love it !",
    "that 's great , see you later",
] * 5

REFS_FILE = (
    "hello how are you EOS i am fine\t0.9|good to hear\t0.5|great !\n"
    "what are you doing today\t1.0|nothing much\n"
    "do you like it ?\t0.7|i love it !\t0.3|not really\n"
)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from dialogsmith.tokenize.bpe import train_small_bpe
    from dialogsmith.train.model import load_hf_tokenizer

    root = tmp_path_factory.mktemp("tiny-model")
    tok = load_hf_tokenizer(train_small_bpe(CORPUS, root / "bpe", vocab_size=300))
    model_dir = root / "model"
    tok.save_pretrained(model_dir)
    torch.manual_seed(0)
    cfg = GPT2Config(
        vocab_size=len(tok),
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    GPT2LMHeadModel(cfg).save_pretrained(model_dir)
    return str(model_dir)


@pytest.fixture()
def refs_file(tmp_path) -> str:
    p = tmp_path / "test.refs.txt"
    p.write_text(REFS_FILE, encoding="utf-8")
    return str(p)


def test_refs_file_parsing_and_reference_sets(refs_file):
    items = load_refs_file(refs_file)
    assert [it.context for it in items] == [
        ["hello how are you", "i am fine"],
        ["what are you doing today"],
        ["do you like it ?"],
    ]
    assert items[0].refs == ["good to hear", "great !"]
    sets = reference_sets(items)
    assert len(sets) == 2
    # missing references are filled by cycling the item's own references (the DSTC rule)
    assert [s[1] for s in sets] == ["nothing much", "nothing much"]
    assert sets[1] == ["great !", "nothing much", "not really"]


def test_bad_refs_file_is_a_clear_error(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_text("just a source without references\n")
    with pytest.raises(ValueError, match="line 1: expected"):
        load_refs_file(str(p))


def test_eval_entry_point_help():
    proc = subprocess.run(
        [sys.executable, str(REPO / "train" / "evaluate.py"), "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and "--refs-file" in proc.stdout and "--strategy" in proc.stdout
    assert "--output" in proc.stdout and "--out " not in proc.stdout  # --out: a hidden alias


def test_eval_flags_and_their_old_spellings():
    old = build_parser().parse_args(["--model", "m", "--refs-file", "r", "--out", "o", "--decode", "beam",
                                     "--no-clean", "--no-verify"])  # fmt: skip
    new = build_parser().parse_args(["--model", "m", "--refs-file", "r", "--output", "o", "--strategy", "beam",
                                     "--no-clean", "--no-verify"])  # fmt: skip
    assert old == new
    assert (new.output, new.strategy, new.clean, new.verify, new.num_beams, new.seed) == (
        "o",
        "beam",
        False,
        False,
        5,
        1234,
    )
    with pytest.raises(ValueError, match="--model is required"):
        EvalConfig(refs_file="r").validate()


def test_eval_cli_end_to_end(tiny_model, refs_file, tmp_path, capsys):
    from dialogsmith.eval import main

    out = tmp_path / "eval"
    argv = [
        "--model",
        tiny_model,
        "--refs-file",
        refs_file,
        "--out",
        str(out),
        "--max-new-tokens",
        "8",
        "--min-new-tokens",
        "3",
        "--device",
        "cpu",
    ]
    assert main(argv) == 0
    proc = capsys.readouterr()
    assert "test items" in proc.err
    header = proc.out.splitlines()[0]
    for col in [
        "NIST-2",
        "NIST-4",
        "BLEU-2",
        "BLEU-4",
        "METEOR",
        "Entropy-4",
        "Dist-1",
        "Dist-2",
        "Avg.Len",
        "PPL",
    ]:
        assert col in header
    assert "METEOR: absent" in proc.out
    result = json.loads((out / "metrics.json").read_text())
    assert len(result["metrics"]["nist"]) == 4 and len(result["metrics"]["bleu"]) == 4
    assert result["metrics"]["meteor"] is None
    assert result["perplexity"]["ppl"] > 1
    assert result["metrics"]["avg_len"] > 0  # --min-new-tokens kept the random model from stopping at once
    hyps = (out / "hyp.txt").read_text(encoding="utf-8").split("\n")
    assert len(hyps) == 4 and hyps[-1] == ""  # one line per test item
    assert (out / "ref0.txt").exists() and (out / "ref1.txt").exists()
    # the saved (cleaned) files give the same numbers through the metrics command
    m = subprocess.run(
        [sys.executable, "-m", "dialogsmith.metrics", "--hyp", str(out / "hyp.txt"), "--refs", str(out / "ref0.txt"),
         str(out / "ref1.txt")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert json.loads(m.stdout)["bleu"] == pytest.approx(result["metrics"]["bleu"])


def test_batched_generation_equals_one_by_one(tiny_model):
    model, tok = load_model(tiny_model, "cpu")
    contexts = [["hello how are you"], ["what are you doing today", "i am fine thanks", "i love it !"], ["i"]]
    greedy = DecodeConfig(max_new_tokens=6)
    assert generate(model, tok, contexts, greedy, batch_size=3) == generate(
        model, tok, contexts, greedy, batch_size=1
    )
    sampled = generate(model, tok, contexts, DecodeConfig("sample", top_k=5, top_p=0.9, max_new_tokens=6))
    beam = generate(model, tok, contexts, DecodeConfig("beam", num_beams=2, max_new_tokens=6))
    assert len(sampled) == len(beam) == 3 and all(len(r) == 1 and "\n" not in r[0] for r in sampled + beam)


def test_reference_example_matches_the_shard_layout(tiny_model):
    from dialogsmith.formats.shards import layout

    model, tok = load_model(tiny_model, "cpu")
    eos = tok.eos_token_id
    ctx, ref = ["hello how are you", "i am fine"], "good to hear"
    ids, labels = reference_example(tok, ctx, ref, eos, 64)
    turns = [tok.encode(t) for t in [*ctx, ref]]
    want_ids, want_labels = layout(turns, [False, False, True], eos)
    assert ids == want_ids.tolist() and labels == want_labels.tolist()


def _manual_ppl(model, examples) -> float:
    import torch
    import torch.nn.functional as F

    total, count = 0.0, 0
    for ids, labels in examples:
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([list(ids)])).logits[0]
        lab = torch.tensor(list(labels))
        total += float(F.cross_entropy(logits, lab, ignore_index=-100, reduction="sum"))
        count += int((lab != -100).sum())
    return math.exp(total / count)


def test_perplexity_on_shards_and_references(tiny_model, tmp_path, refs_file):
    from dialogsmith.formats.shards import ShardDataset, ShardInstance, write_dataset

    model, tok = load_model(tiny_model, "cpu")
    eos = tok.eos_token_id
    insts = []
    for a, b, c in [CORPUS[0:3], CORPUS[3:6], CORPUS[4:7], CORPUS[1:4]]:
        turns = [np.array(tok.encode(t), dtype=np.int64) for t in (a, b, c)]
        insts.append(ShardInstance(turns=turns, trainable=np.array([False, True, True])))
    write_dataset(tmp_path / "shards", {"valid": insts}, eos_id=eos, vocab_size=len(tok), max_len=64)
    got = perplexity_on_shards(model, str(tmp_path / "shards"), "valid", batch_size=3)
    ds = ShardDataset(str(tmp_path / "shards"), "valid")
    assert got["examples"] == 4
    assert got["ppl"] == pytest.approx(_manual_ppl(model, [ds.example(i) for i in range(4)]), rel=1e-5)

    items = load_refs_file(refs_file)
    got = perplexity_on_references(model, tok, items, eos, batch_size=2)
    want = _manual_ppl(
        model, [reference_example(tok, it.context, r, eos, 64) for it in items for r in it.refs]
    )
    assert got["ppl"] == pytest.approx(want, rel=1e-5) and got["examples"] == 5


def _filtered_table(rows: list[dict]) -> pa.Table:
    full = []
    for r in rows:
        n = len(r["turns"])
        full.append(
            {
                "instance_id": r["turn_ids"][-1], "link_id": "t3_x", "parent_id": r["turn_ids"][-2],
                "target_id": r["turn_ids"][-1], "subreddit": "test", "month": "2015-01",
                "target_score": r["score"], "target_created_utc": 0, "turn_ids": r["turn_ids"],
                "turn_authors": ["a"] * n, "turns_raw": r["turns"], "turns": r["turns"],
                "turn_weights": [1.0] * n, "weights_in_text": False, "split": r.get("split", "test"),
            }
        )  # fmt: skip
    return pa.Table.from_pylist(full, schema=schemas.FILTERED_TABLE.arrow_schema)


def test_test_split_groups_siblings_into_references(tiny_model, tmp_path):
    rows = [
        {
            "turn_ids": ["t3_x", "t1_a", "t1_b"],
            "turns": ["title: hi", "hello how are you", "fine"],
            "score": 2,
        },
        {
            "turn_ids": ["t3_x", "t1_a", "t1_c"],
            "turns": ["title: hi", "hello how are you", "great !"],
            "score": 9,
        },
        {"turn_ids": ["t3_x", "t1_d"], "turns": ["title: hi", "i love it !"], "score": 1},
        {"turn_ids": ["t3_x", "t1_e"], "turns": ["title: hi", "not in test"], "score": 1, "split": "valid"},
    ]
    (tmp_path / "filtered" / "test").mkdir(parents=True)
    parquet.write(
        str(tmp_path / "filtered" / "test" / "part-0.parquet"), _filtered_table(rows), schemas.FILTERED_TABLE
    )
    items = load_test_split(str(tmp_path / "filtered"))
    assert len(items) == 2
    by_ctx = {tuple(it.context): it.refs for it in items}
    assert by_ctx[("title: hi", "hello how are you")] == ["great !", "fine"]  # best-scored first
    assert by_ctx[("title: hi",)] == ["i love it !"]
    result = evaluate(
        EvalConfig(model=tiny_model, test_dir=str(tmp_path / "filtered"), output=str(tmp_path / "ev"), device="cpu",
                   max_new_tokens=5),
        log=lambda m: None,
    )  # fmt: skip
    assert result["items"] == 2 and result["metrics"]["n_refs"] == 2
    assert "NIST-2" in result["table"]


def test_eval_needs_exactly_one_test_set(tiny_model):
    with pytest.raises(ValueError, match="exactly one test set"):
        evaluate(EvalConfig(model=tiny_model), log=lambda m: None)
