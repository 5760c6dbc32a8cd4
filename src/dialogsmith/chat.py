"""DialoGPT-style decoding: history turns joined by EOS, generate after the last EOS; greedy, beam,
top-k / top-p sampling with temperature; MMI reranking with a reverse model (trained by this trainer on
``--reverse`` shards): sample N candidates, rescore each by log P_reverse(last user turn | candidate).

``generate_replies`` is the reusable entry (the eval stage calls it); ``main`` is the chat CLI.
"""

from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F


def _eos_id(tokenizer, model) -> int:
    eos = tokenizer.eos_token_id
    if eos is None:
        eos = model.generation_config.eos_token_id or model.config.eos_token_id
    if isinstance(eos, list):
        eos = eos[0]
    if eos is None:
        raise ValueError("the tokenizer has no EOS token (<|endoftext|>) and the model config names none")
    return int(eos)


def encode_history(
    tokenizer, history: list[str], eos_id: int, max_history: int, max_tokens: int
) -> list[int]:
    """``turn1 EOS turn2 EOS ... turnN EOS`` of the last ``max_history`` turns (0 = all), then the oldest
    whole turns dropped until it fits ``max_tokens``."""
    turns = history[-max_history:] if max_history > 0 else list(history)
    encoded = [tokenizer.encode(t) + [eos_id] for t in turns]
    while len(encoded) > 1 and sum(map(len, encoded)) > max_tokens:
        encoded.pop(0)
    ids = [i for t in encoded for i in t]
    return ids[-max_tokens:]


def _model_max_positions(model) -> int:
    cfg = model.config
    return int(getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None) or 1024)


@torch.no_grad()
def reverse_scores(
    reverse_model, query_ids: list[int], candidates: list[list[int]], eos_id: int
) -> list[float]:
    """log P_reverse(query EOS | candidate EOS) for each candidate (the MMI backward score).

    Rows are ``candidate EOS query EOS`` right-padded: with causal attention, padding after a row's end
    cannot change its scores, so no mask is needed. The query is the same for every candidate, so the sum
    and the per-token mean rank candidates identically."""
    device = next(reverse_model.parameters()).device
    max_pos = _model_max_positions(reverse_model)
    rows, starts = [], []
    for cand in candidates:
        row = (cand + [eos_id] + query_ids + [eos_id])[-max_pos:]
        rows.append(row)
        starts.append(len(row) - len(query_ids) - 1)
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), eos_id, dtype=torch.long)
    for r, row in enumerate(rows):
        ids[r, : len(row)] = torch.tensor(row)
    logp = F.log_softmax(reverse_model(input_ids=ids.to(device)).logits.float(), dim=-1)  # [N, T, V]
    scores = []
    for r, row in enumerate(rows):
        s = max(1, starts[r])
        targets = torch.tensor(row[s:], device=device)  # query tokens + closing EOS
        scores.append(float(logp[r, s - 1 : len(row) - 1].gather(1, targets[:, None]).sum()))
    return scores


@torch.no_grad()
def generate_replies(
    model,
    tokenizer,
    history: list[str],
    *,
    strategy: str = "greedy",
    num_replies: int = 1,
    max_new_tokens: int = 40,
    num_beams: int = 4,
    top_k: int = 0,
    top_p: float = 1.0,
    temperature: float = 1.0,
    max_history: int = 0,
    reverse_model=None,
    mmi_candidates: int = 16,
    mmi_top_k: int = 10,
    seed: int | None = None,
) -> list[str]:
    """Replies to ``history`` (oldest turn first; the last one is the user's), best first.

    strategy: ``greedy`` | ``beam`` (``num_beams``) | ``sample`` (``top_k`` 0 = off, ``top_p``,
    ``temperature``). With ``reverse_model`` (MMI): ``mmi_candidates`` replies are sampled (top-k
    ``mmi_top_k``, or the given top_k/top_p if strategy is ``sample``) and reranked by the reverse model.
    """
    if not history:
        raise ValueError("history must hold at least one turn")
    if strategy not in ("greedy", "beam", "sample"):
        raise ValueError(f"strategy must be greedy|beam|sample, got {strategy!r}")
    model.eval()
    eos_id = _eos_id(tokenizer, model)
    device = next(model.parameters()).device
    budget = max(1, _model_max_positions(model) - max_new_tokens)
    ctx = encode_history(tokenizer, history, eos_id, max_history, budget)
    input_ids = torch.tensor([ctx], dtype=torch.long, device=device)
    if seed is not None:
        torch.manual_seed(seed)
    kw = dict(
        attention_mask=torch.ones_like(input_ids),
        max_new_tokens=max_new_tokens,
        pad_token_id=eos_id,
        eos_token_id=eos_id,
    )
    if reverse_model is not None:
        n = max(mmi_candidates, num_replies)
        if strategy == "sample":
            kw.update(do_sample=True, top_k=top_k, top_p=top_p, temperature=temperature)
        else:
            kw.update(do_sample=True, top_k=mmi_top_k, top_p=1.0, temperature=temperature)
        kw.update(num_return_sequences=n)
    elif strategy == "greedy":
        kw.update(do_sample=False, num_beams=1)
    elif strategy == "beam":
        kw.update(
            do_sample=False,
            num_beams=max(num_beams, num_replies),
            num_return_sequences=num_replies,
            early_stopping=True,
        )
    else:
        kw.update(
            do_sample=True,
            top_k=top_k,
            top_p=top_p,
            temperature=temperature,
            num_return_sequences=num_replies,
        )
    out = model.generate(input_ids, **kw)[:, input_ids.shape[1] :]  # [n, new]
    candidates = []
    for row in out.tolist():
        if eos_id in row:
            row = row[: row.index(eos_id)]
        candidates.append(row)
    if reverse_model is not None:
        reverse_model.eval()
        query = tokenizer.encode(history[-1])
        scores = reverse_scores(reverse_model, query, candidates, eos_id)
        # an empty reply says nothing: rank it last
        order = sorted(range(len(candidates)), key=lambda i: (len(candidates[i]) == 0, -scores[i]))
        candidates = [candidates[i] for i in order]
    texts, seen = [], set()
    for row in candidates:
        text = tokenizer.decode(row, skip_special_tokens=True).strip()
        if reverse_model is not None and text in seen:
            continue
        seen.add(text)
        texts.append(text)
    return texts[:num_replies]


def load(path: str, device: str = "auto"):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        model = AutoModelForCausalLM.from_pretrained(path)
    except OSError as e:
        raise ValueError(
            f"{path}: cannot load a model (a train output dir or a hub name when online): {e}"
        ) from e
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: no tokenizer files next to the model: {e}") from e
    dev = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    return model.to(dev).eval(), tokenizer


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train/chat.py",
        description="Chat with a DialoGPT-style model (a train output dir or a hub name). Interactive on stdin "
        "(/reset clears the history, /quit leaves), or non-interactive with --say.",
    )
    p.add_argument("--model", required=True, help="model dir (train output) or hub name")
    p.add_argument(
        "--reverse-model", help="reverse model dir for MMI reranking (trained on --reverse shards)"
    )
    p.add_argument("--strategy", choices=["greedy", "beam", "sample"], default="greedy")
    p.add_argument("--num-beams", type=int, default=4)
    p.add_argument("--top-k", type=int, default=0, help="sampling: keep the k most likely tokens (0 = off)")
    p.add_argument("--top-p", type=float, default=1.0, help="sampling: nucleus mass")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--max-new-tokens", type=int, default=40)
    p.add_argument("--max-history", type=int, default=0, help="turns of history kept (0 = all that fit)")
    p.add_argument("--mmi-candidates", type=int, default=16, help="MMI: sampled candidates to rerank")
    p.add_argument("--mmi-top-k", type=int, default=10, help="MMI: top-k of the candidate sampling")
    p.add_argument("--num-replies", type=int, default=1, help="replies shown per turn (best first)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--say", action="append", help="a user turn (repeatable): non-interactive mode")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        model, tokenizer = load(args.model, args.device)
        reverse = load(args.reverse_model, args.device)[0] if args.reverse_model else None
    except ValueError as e:
        print(f"chat: error: {e}", file=sys.stderr)
        return 2
    decoding = dict(
        strategy=args.strategy,
        num_replies=args.num_replies,
        max_new_tokens=args.max_new_tokens,
        num_beams=args.num_beams,
        top_k=args.top_k,
        top_p=args.top_p,
        temperature=args.temperature,
        max_history=args.max_history,
        reverse_model=reverse,
        mmi_candidates=args.mmi_candidates,
        mmi_top_k=args.mmi_top_k,
        seed=args.seed,
    )
    history: list[str] = []

    def reply(text: str) -> None:
        history.append(text)
        replies = generate_replies(model, tokenizer, history, **decoding)
        history.append(replies[0] if replies else "")
        for k, r in enumerate(replies):
            print(f"bot{'' if k == 0 else f'[{k}]'}: {r}", flush=True)

    if args.say:
        for text in args.say:
            print(f"user: {text}")
            reply(text)
        return 0
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            print("user: ", end="", flush=True)
        line = sys.stdin.readline()
        if not line:
            return 0
        text = line.strip()
        if text in ("/quit", "/exit"):
            return 0
        if text == "/reset":
            history.clear()
            continue
        if text:
            reply(text)
