"""Chat: a tiny model overfits a few dialogues, then greedy/beam/sampled/MMI replies reproduce them, through
our generate_replies, the chat CLI, and stock transformers without this package."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from toydata import make_dataset

from dialogsmith.chat import generate_replies, load, main, reverse_scores
from dialogsmith.train.config import TrainConfig
from dialogsmith.train.loop import run

DIALOGUES = [
    ["hello there", "hi how are you today"],
    ["what is your name", "my name is bob the bot"],
    ["do you like cats", "yes cats are great pets"],
    ["where do you live", "i live in a small red house"],
]


def _train(root, reverse: bool) -> str:
    make_dataset(str(root / "shards"), DIALOGUES, None, max_len=64, vocab_size=300, reverse=reverse)
    out = str(root / "model")
    cfg = TrainConfig(
        data=str(root / "shards"),
        out=out,
        model_config="tiny",
        batch_size=4,
        max_steps=90,
        lr=1e-2,
        warmup_steps=10,
        dropout=0.0,
        progress=False,
        resume="never",
        num_threads=1,
    )
    assert run(cfg)["train_loss"] < 0.05
    return out


@pytest.fixture(scope="module")
def forward(tmp_path_factory) -> str:
    return _train(tmp_path_factory.mktemp("fwd"), reverse=False)


@pytest.fixture(scope="module")
def backward(tmp_path_factory) -> str:
    return _train(tmp_path_factory.mktemp("rev"), reverse=True)


def test_greedy_and_beam_reproduce_memorized_replies(forward):
    model, tok = load(forward)
    for prompt, response in DIALOGUES:
        assert generate_replies(model, tok, [prompt]) == [response]
    prompt, response = DIALOGUES[2]
    assert generate_replies(model, tok, [prompt], strategy="beam", num_beams=3)[0] == response
    sampled = generate_replies(
        model, tok, [prompt], strategy="sample", top_k=3, top_p=0.9, seed=0, num_replies=2
    )
    assert len(sampled) == 2 and sampled[0] == response
    # history: older turns are joined by EOS before the prompt; max_history=1 keeps only the last one
    assert generate_replies(model, tok, ["hello there", "hi", "do you like cats"], max_history=1) == [
        response
    ]
    with pytest.raises(ValueError, match="strategy"):
        generate_replies(model, tok, ["x"], strategy="nope")


def test_mmi_reranking_prefers_the_reply_that_explains_the_query(forward, backward):
    model, tok = load(forward)
    rev, _ = load(backward)
    eos = tok.eos_token_id
    query = tok.encode("what is your name")
    right, wrong = tok.encode("my name is bob the bot"), tok.encode("yes cats are great pets")
    s_right, s_wrong = reverse_scores(rev, query, [right, wrong], eos)
    assert s_right > s_wrong
    replies = generate_replies(
        model, tok, ["what is your name"], reverse_model=rev, mmi_candidates=8, num_replies=2, seed=1
    )
    assert replies[0] == "my name is bob the bot"


def test_chat_cli_say_mode(forward, capsys):
    argv = ["--model", forward, "--max-history", "1", "--say", "hello there", "--say", "where do you live"]
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "user: hello there",
        "bot: hi how are you today",
        "user: where do you live",
        "bot: i live in a small red house",
    ]
    assert main(["--model", forward + "-missing", "--say", "x"]) == 2


def test_output_dir_chats_with_stock_transformers(forward):
    """No dialogsmith import: AutoModelForCausalLM + AutoTokenizer + generate, the DialoGPT way."""
    script = textwrap.dedent(
        f"""
        import sys
        from transformers import AutoModelForCausalLM, AutoTokenizer
        tok = AutoTokenizer.from_pretrained({forward!r})
        model = AutoModelForCausalLM.from_pretrained({forward!r})
        ids = tok.encode("do you like cats" + tok.eos_token, return_tensors="pt")
        out = model.generate(ids, max_new_tokens=20, do_sample=False, pad_token_id=tok.eos_token_id)
        print(tok.decode(out[0, ids.shape[-1]:], skip_special_tokens=True).strip())
        assert not any(m.startswith("dialogsmith") for m in sys.modules)
        """
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180, cwd="/")
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "yes cats are great pets"
