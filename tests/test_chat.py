"""Chat: a tiny model overfits a few dialogues, then greedy/beam/sampled/MMI replies reproduce them, through
dialogsmith.generation, the chat CLI, the eval CLI (the same generation code) and stock transformers
without this package."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from toydata import make_dataset

from dialogsmith.chat import main
from dialogsmith.generation import encode_history, generate_replies, load_model, reverse_scores
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
        input=str(root / "shards"),
        output=out,
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
    model, tok = load_model(forward)
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
    model, tok = load_model(forward)
    rev, _ = load_model(backward)
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


def test_history_keeps_the_newest_whole_turns(forward):
    _, tok = load_model(forward)
    eos = tok.eos_token_id
    history = ["hello there", "hi how are you today", "do you like cats"]
    turns = [tok.encode(t, add_special_tokens=False) + [eos] for t in history]
    both = turns[1] + turns[2]
    assert encode_history(tok, history, eos, 1000) == turns[0] + both
    assert encode_history(tok, history, eos, len(both)) == both  # the oldest turn dropped whole
    assert encode_history(tok, history, eos, len(both) - 1) == turns[2]  # not cut mid-turn
    assert encode_history(tok, history, eos, 1000, max_history=1) == turns[2]
    # only a newest turn longer than the budget loses tokens, from its start
    assert encode_history(tok, history, eos, 3) == turns[2][-3:]


def test_chat_and_eval_reply_the_same(forward, tmp_path, capsys):
    """eval generates in left-padded batches, chat one history at a time: same replies, same history rule
    (a history longer than the context window drops its oldest whole turns in both)."""
    from dialogsmith.eval import main as eval_main

    model, tok = load_model(forward)
    long = ["where do you live", "i live in a small red house"] * 12 + ["what is your name"]
    assert len(encode_history(tok, long, tok.eos_token_id, 10_000)) > model.config.n_positions
    histories = [[p] for p, _ in DIALOGUES] + [["hello there", "hi", "do you like cats"], long]
    chat_replies = [generate_replies(model, tok, h)[0] for h in histories]
    assert chat_replies[:4] == [r for _, r in DIALOGUES]

    refs = tmp_path / "test.refs.txt"
    refs.write_text("".join(" EOS ".join(h) + "\t1|ok\n" for h in histories))
    out = tmp_path / "eval"
    argv = ["--model", forward, "--refs-file", str(refs), "--out", str(out), "--device", "cpu",
            "--decode", "greedy", "--max-new-tokens", "40"]  # fmt: skip
    assert eval_main(argv) == 0
    capsys.readouterr()
    assert (out / "hyp.raw.txt").read_text().splitlines() == chat_replies


def test_chat_flags(forward, capsys):
    """Decoding flags are shared with eval (--strategy, eval's old --decode also works here)."""
    argv = ["--model", forward, "--decode", "beam", "--num-beams", "3", "--say", "do you like cats"]
    assert main(argv) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "bot: yes cats are great pets"
    assert main(["--say", "x"]) == 2
    assert "--model is required" in capsys.readouterr().err
