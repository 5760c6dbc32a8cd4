"""DialoGPT-style reply generation, the one implementation behind ``dialogsmith chat`` and ``dialogsmith eval``.

Input: the history turns joined by EOS, ``turn1 EOS turn2 EOS ... turnK EOS``; the reply is generated
after the last EOS with stock ``transformers`` ``generate`` and kept up to the first EOS it produces.

History rule (``encode_history``): keep the newest ``max_history`` turns (0: all), then drop the oldest
*whole* turns until the input fits the model's context window minus ``max_new_tokens``. Only when the
newest turn alone is longer than that are tokens cut, from its start (its newest tokens stay).

Decoding (``DecodeConfig``): greedy | beam | sample (top-k, top-p, temperature), with an optional
repetition penalty, no-repeat n-gram size and minimum reply length. MMI reranking with a reverse model
(trained by this trainer on the tokenize stage's ``--reverse`` shards): ``mmi_candidates`` replies are
sampled and ranked by log P_reverse(last turn | reply).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dialogsmith.stage import option
from dialogsmith.train.model import load_hf_tokenizer

STRATEGIES = ("greedy", "beam", "sample")


@dataclass
class DecodeConfig:
    """Decoding settings; its fields are flags of ``dialogsmith chat`` and ``dialogsmith eval``."""

    strategy: str = option("greedy", "decoding strategy", choices=STRATEGIES, aliases=("--decode",))
    num_beams: int = option(4, "beam search: beams")
    top_k: int = option(0, "sampling: keep the k most likely tokens (0: off)")
    top_p: float = option(1.0, "sampling: nucleus mass")
    temperature: float = option(1.0, "sampling: temperature")
    max_new_tokens: int = option(40, "reply length limit, in tokens")
    min_new_tokens: int = option(0, "forbid EOS before this many new tokens")
    repetition_penalty: float = option(1.0, "> 1 discourages tokens already in the input or reply")
    no_repeat_ngram_size: int = option(0, "forbid repeating an n-gram of this many tokens (0: off)")
    max_history: int = option(0, "history turns kept, the newest (0: all that fit the context window)")
    mmi_candidates: int = option(16, "MMI (with a reverse model): sampled candidates to rerank")
    mmi_top_k: int = option(10, "MMI: top-k of the candidate sampling (with --strategy sample: its own)")
    seed: int | None = option(None, "torch seed set before generating (sampling, MMI)")

    def validate(self) -> DecodeConfig:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be {'|'.join(STRATEGIES)}, got {self.strategy!r}")
        if self.max_new_tokens < 1:
            raise ValueError("--max-new-tokens must be >= 1")
        return self

    def decode_settings(self) -> dict:
        """The decoding fields only (a subclass's config holds more), e.g. for metrics.json."""
        return {name: getattr(self, name) for name in DecodeConfig.__dataclass_fields__}

    def generate_kwargs(self, n: int, mmi: bool) -> dict:
        """``model.generate`` arguments for ``n`` replies per input (greedy gives one)."""
        kw: dict = {"max_new_tokens": self.max_new_tokens}
        if self.min_new_tokens:
            kw["min_new_tokens"] = self.min_new_tokens
        if mmi or self.strategy == "sample":
            kw.update(
                do_sample=True, num_beams=1, top_k=self.top_k, top_p=self.top_p, temperature=self.temperature
            )
            if mmi and self.strategy != "sample":
                kw.update(top_k=self.mmi_top_k, top_p=1.0)
        elif self.strategy == "greedy":
            kw.update(do_sample=False, num_beams=1)
            n = 1
        else:
            kw.update(do_sample=False, num_beams=max(self.num_beams, n), early_stopping=True)
        if n > 1:
            kw["num_return_sequences"] = n
        if self.repetition_penalty != 1.0:
            kw["repetition_penalty"] = self.repetition_penalty
        if self.no_repeat_ngram_size:
            kw["no_repeat_ngram_size"] = self.no_repeat_ngram_size
        return kw


# --- model, tokenizer, context ---------------------------------------------------------------------


def device_for(name: str = "auto") -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def load_model(path: str, device: str = "auto"):
    """(model in eval mode on ``device``, its tokenizer) from a train output dir or a hub name."""
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(path)
    except OSError as e:
        raise ValueError(
            f"{path}: cannot load a model (a train output dir, or a hub name when online): {e}"
        ) from e
    tokenizer = load_hf_tokenizer(path)
    if tokenizer is None:
        raise ValueError(f"{path}: no tokenizer files next to the model")
    model_eos_id(tokenizer, model)  # DialoGPT separates turns with it: fail at load, not at the first reply
    return model.to(device_for(device)).eval(), tokenizer


def model_eos_id(tokenizer, model) -> int:
    """The turn separator: the tokenizer's EOS, else the one the model's generation config names."""
    eos = tokenizer.eos_token_id
    if eos is None:
        eos = model.generation_config.eos_token_id or model.config.eos_token_id
    if isinstance(eos, list):
        eos = eos[0]
    if eos is None:
        raise ValueError("the tokenizer has no EOS token (<|endoftext|>) and the model config names none")
    return int(eos)


def context_window(model) -> int:
    cfg = model.config
    for name in ("n_positions", "max_position_embeddings", "n_ctx"):
        if getattr(cfg, name, None):
            return int(getattr(cfg, name))
    return 1024


def encode_history(
    tokenizer, history: Sequence[str], eos_id: int, max_tokens: int, max_history: int = 0
) -> list[int]:
    """``turn1 EOS ... turnK EOS`` of the newest turns that fit ``max_tokens`` (the module's history rule)."""
    turns = history[-max_history:] if max_history > 0 else history
    kept: list[list[int]] = []  # newest first
    total = 0
    for turn in reversed(turns):
        ids = tokenizer.encode(turn, add_special_tokens=False) + [eos_id]
        if kept and total + len(ids) > max_tokens:
            break
        kept.append(ids)
        total += len(ids)
    ids = [i for turn in reversed(kept) for i in turn]
    return ids[-max_tokens:]  # cuts only a newest turn that alone is longer than max_tokens


# --- generation ------------------------------------------------------------------------------------


@torch.no_grad()
def reverse_scores(
    reverse_model, query_ids: list[int], candidates: list[list[int]], eos_id: int
) -> list[float]:
    """log P_reverse(query EOS | candidate EOS) for each candidate (the MMI backward score).

    Rows are ``candidate EOS query EOS`` right-padded: with causal attention, padding after a row's end
    cannot change its scores, so no mask is needed. The query is the same for every candidate, so the sum
    and the per-token mean rank candidates identically."""
    device = next(reverse_model.parameters()).device
    max_pos = context_window(reverse_model)
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


def _left_padded(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), both [B, T], rows aligned to the right."""
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for k, ids in enumerate(rows):
        input_ids[k, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        attention[k, width - len(ids) :] = 1
    return input_ids, attention


@torch.no_grad()
def generate(
    model,
    tokenizer,
    histories: Sequence[Sequence[str]],
    decoding: DecodeConfig,
    *,
    num_replies: int = 1,
    reverse_model=None,
    batch_size: int = 16,
) -> list[list[str]]:
    """Up to ``num_replies`` replies to each history (oldest turn first; the last turn is the one replied
    to), best first. Histories of similar length share a ``generate`` call, left-padded (greedy and beam
    replies do not depend on the batching: tested). With ``reverse_model`` the replies are MMI-reranked
    samples, duplicates removed."""
    decoding.validate()
    if any(len(h) == 0 for h in histories):
        raise ValueError("a history must hold at least one turn")
    model.eval()
    eos_id = model_eos_id(tokenizer, model)
    device = next(model.parameters()).device
    budget = max(1, context_window(model) - decoding.max_new_tokens)
    encoded = [encode_history(tokenizer, h, eos_id, budget, decoding.max_history) for h in histories]
    mmi = reverse_model is not None
    kwargs = decoding.generate_kwargs(max(decoding.mmi_candidates, num_replies) if mmi else num_replies, mmi)
    per_input = kwargs.get("num_return_sequences", 1)
    if decoding.seed is not None:
        torch.manual_seed(decoding.seed)
    candidates: list[list[list[int]]] = [[] for _ in encoded]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))  # similar lengths share a batch
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        input_ids, attention = _left_padded([encoded[i] for i in idx], eos_id)  # [B, T]
        out = model.generate(input_ids=input_ids.to(device), attention_mask=attention.to(device),
                             pad_token_id=eos_id, eos_token_id=eos_id, **kwargs)  # fmt: skip
        for k, new in enumerate(out[:, input_ids.shape[1] :].tolist()):  # [B * per_input, new]
            candidates[idx[k // per_input]].append(new[: new.index(eos_id)] if eos_id in new else new)
    replies = []
    for history, cands in zip(histories, candidates, strict=True):
        if mmi:
            reverse_model.eval()
            query = tokenizer.encode(history[-1], add_special_tokens=False)
            scores = reverse_scores(reverse_model, query, cands, eos_id)
            # an empty reply says nothing: rank it last
            cands = [
                cands[i] for i in sorted(range(len(cands)), key=lambda i: (len(cands[i]) == 0, -scores[i]))
            ]
        texts = [tokenizer.decode(c, skip_special_tokens=True).strip() for c in cands]
        if mmi:
            texts = list(dict.fromkeys(texts))
        replies.append(texts[:num_replies])
    return replies


def generate_replies(
    model, tokenizer, history: Sequence[str], *, num_replies: int = 1, reverse_model=None, **decoding
) -> list[str]:
    """Replies to one history, best first; ``decoding``: fields of DecodeConfig (``strategy="sample"``...)."""
    return generate(
        model,
        tokenizer,
        [history],
        DecodeConfig(**decoding),
        num_replies=num_replies,
        reverse_model=reverse_model,
    )[0]
