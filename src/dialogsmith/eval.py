"""`make eval`: generate responses for a multi-reference test set, score them with the paper's metrics,
measure perplexity, save JSON and print the paper's table.

Test sets:
- a filter output directory (``--test-dir``): ``test/*.parquet`` in the FILTERED schema; context =
  ``turns[:-1]``, reference = ``turns[-1]``; instances that share a context (siblings: same
  ``turn_ids[:-1]``) become one multi-reference test item;
- a DialoGPT ``test.refs.txt`` file (``--refs-file``): ``src<TAB>score|ref<TAB>score|ref...``, the
  source turns joined by `` EOS ``.

Items with fewer references than the most referenced one fill their reference sets by cycling their own
references, as the DSTC evaluation does (``refs[i % len(refs)]``): mteval needs every set complete.

Generation follows DialoGPT's recipe with stock ``transformers``: history = turn1 EOS turn2 EOS ... turnK
EOS, generate after the last EOS, keep the new tokens up to the first EOS.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from dialogsmith import fsutil
from dialogsmith.metrics import clean_str, compute_metrics

# --- test sets -------------------------------------------------------------------------------------


@dataclass
class TestItem:
    context: list[str]  # oldest turn first
    refs: list[str]  # one or more reference responses
    key: str = ""


def parse_refs_line(line: str, lineno: int = 0) -> TestItem:
    """One line of DialoGPT's test.refs.txt: ``src<TAB>score|ref<TAB>score|ref...``."""
    cells = line.rstrip("\r\n").split("\t")
    if len(cells) < 2:
        raise ValueError(f"line {lineno}: expected 'src<TAB>score|ref[<TAB>score|ref...]', got {line[:80]!r}")
    context = [t.strip() for t in cells[0].split(" EOS ")]
    refs = []
    for cell in cells[1:]:
        if not cell.strip():
            continue
        score, sep, ref = cell.partition("|")
        # DialoGPT writes "score|ref"; a cell without a score is taken as the reference itself.
        refs.append(ref.strip() if sep else score.strip())
    if not refs:
        raise ValueError(f"line {lineno}: no reference after the source")
    return TestItem(context=context, refs=refs, key=str(lineno))


def load_refs_file(path: str) -> list[TestItem]:
    items = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                items.append(parse_refs_line(line, lineno))
    if not items:
        raise ValueError(f"{path}: no test items")
    return items


def load_test_split(root: str, split: str = "test") -> list[TestItem]:
    """Multi-reference items from a filter output directory's ``<split>/*.parquet`` (FILTERED schema)."""
    import pyarrow.parquet as pq

    split_dir = fsutil.join(root, split)
    files = fsutil.list_files(split_dir, suffix=".parquet")
    if not files:
        raise FileNotFoundError(f"no Parquet files under {split_dir}: is {root} a filter output directory?")
    groups: dict[tuple, TestItem] = {}
    scores: dict[tuple, list] = {}
    need = {"turns", "turn_ids", "target_score"}
    for path in files:
        fs, local = fsutil.resolve(path)
        table = pq.read_table(local, filesystem=fs)
        missing = need - set(table.column_names)
        if missing:
            raise ValueError(f"{path}: not a filter output table (missing {', '.join(sorted(missing))})")
        names = ["turns", "turn_ids", "target_score"] + (["split"] if "split" in table.column_names else [])
        cols = table.select(names).to_pylist()
        for row in cols:
            if row.get("split") not in (None, split):
                continue
            turns, ids = row["turns"] or [], row["turn_ids"] or []
            if len(turns) < 2:
                continue
            key = tuple(ids[:-1]) if len(ids) == len(turns) else tuple(turns[:-1])
            item = groups.get(key)
            if item is None:
                item = groups[key] = TestItem(context=list(turns[:-1]), refs=[], key="/".join(map(str, key)))
                scores[key] = []
            item.refs.append(turns[-1])
            scores[key].append(row["target_score"] if row["target_score"] is not None else -math.inf)
    items = []
    for key in sorted(groups):  # stable order across runs
        item = groups[key]
        order = sorted(range(len(item.refs)), key=lambda i: -scores[key][i])  # best-scored reference first
        item.refs = [item.refs[i] for i in order]
        items.append(item)
    if not items:
        raise ValueError(f"{split_dir}: no instance with a context and a response")
    return items


def reference_sets(items: Sequence[TestItem], n_refs: int | None = None) -> list[list[str]]:
    """Aligned reference sets for mteval: set i holds ``refs[i % len(refs)]`` of every item (DSTC rule)."""
    k = n_refs or max(len(it.refs) for it in items)
    return [[it.refs[i % len(it.refs)] for it in items] for i in range(k)]


# --- model and generation --------------------------------------------------------------------------


@dataclass
class DecodeConfig:
    strategy: str = "greedy"  # greedy | beam | sample
    num_beams: int = 5
    top_k: int = 0  # sampling: 0 = off
    top_p: float = 1.0  # sampling: nucleus mass
    temperature: float = 1.0
    max_new_tokens: int = 40
    min_new_tokens: int = 0  # > 0 forbids EOS before that many tokens
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    batch_size: int = 16
    seed: int = 1234

    def generate_kwargs(self) -> dict:
        kw: dict = {"max_new_tokens": self.max_new_tokens}
        if self.min_new_tokens:
            kw["min_new_tokens"] = self.min_new_tokens
        if self.strategy == "greedy":
            kw.update(do_sample=False, num_beams=1)
        elif self.strategy == "beam":
            kw.update(do_sample=False, num_beams=self.num_beams, early_stopping=True)
        elif self.strategy == "sample":
            kw.update(
                do_sample=True, num_beams=1, top_k=self.top_k, top_p=self.top_p, temperature=self.temperature
            )
        else:
            raise ValueError(f"unknown decoding strategy {self.strategy!r} (greedy, beam, sample)")
        if self.repetition_penalty != 1.0:
            kw["repetition_penalty"] = self.repetition_penalty
        if self.no_repeat_ngram_size:
            kw["no_repeat_ngram_size"] = self.no_repeat_ngram_size
        return kw


def pick_device(name: str = "auto") -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def load_model(model_dir: str, device: str = "cpu"):
    """(model, tokenizer, eos_id) with stock transformers, from a directory or a hub name."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir)
    except OSError as e:
        raise FileNotFoundError(f"cannot load a model and tokenizer from {model_dir!r}: {e}") from None
    eos_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else model.config.eos_token_id
    if eos_id is None:
        raise ValueError(f"{model_dir}: the tokenizer has no eos token (DialoGPT separates turns with it)")
    model.to(device).eval()
    return model, tokenizer, int(eos_id)


def context_window(model) -> int:
    cfg = model.config
    for name in ("n_positions", "max_position_embeddings", "n_ctx"):
        if getattr(cfg, name, None):
            return int(getattr(cfg, name))
    return 1024


def encode_history(tokenizer, context: Sequence[str], eos_id: int) -> list[int]:
    """turn1 EOS turn2 EOS ... turnK EOS (DialoGPT's chat input)."""
    ids: list[int] = []
    for turn in context:
        ids.extend(tokenizer.encode(turn, add_special_tokens=False))
        ids.append(eos_id)
    return ids


def _one_line(text: str) -> str:
    return " ".join(text.split())  # responses are written one per line


def generate_responses(
    model, tokenizer, contexts: Sequence[Sequence[str]], eos_id: int, cfg: DecodeConfig
) -> list[str]:
    """Decode one response per context; batches are left-padded, long histories keep their newest tokens."""
    import torch

    device = next(model.parameters()).device
    max_in = max(1, context_window(model) - cfg.max_new_tokens)
    encoded = [encode_history(tokenizer, c, eos_id)[-max_in:] for c in contexts]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))  # similar lengths share a batch
    out: list[str] = [""] * len(encoded)
    kwargs = cfg.generate_kwargs()
    torch.manual_seed(cfg.seed)
    for start in range(0, len(order), cfg.batch_size):
        idx = order[start : start + cfg.batch_size]
        width = max(len(encoded[i]) for i in idx)
        input_ids = torch.full((len(idx), width), eos_id, dtype=torch.long)  # (B, T) left-padded
        attention = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            ids = encoded[i]
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention[row, width - len(ids) :] = 1
        with torch.no_grad():
            gen = model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention.to(device),
                pad_token_id=eos_id,
                eos_token_id=eos_id,
                **kwargs,
            )
        for row, i in enumerate(idx):
            new = gen[row, width:].tolist()  # (max_new_tokens,) at most
            if eos_id in new:
                new = new[: new.index(eos_id)]
            out[i] = _one_line(tokenizer.decode(new, skip_special_tokens=True))
    return out


# --- perplexity ------------------------------------------------------------------------------------


def _batched_loss(model, batches) -> tuple[float, int]:
    """Sum of token cross entropy over labels != -100, and the number of such tokens."""
    import torch
    import torch.nn.functional as F

    device = next(model.parameters()).device
    total, count = 0.0, 0
    for input_ids, labels in batches:
        width = max(len(x) for x in input_ids)
        ids = torch.zeros((len(input_ids), width), dtype=torch.long)  # (B, T) right-padded
        lab = torch.full((len(input_ids), width), -100, dtype=torch.long)
        att = torch.zeros((len(input_ids), width), dtype=torch.long)
        for r, (x, y) in enumerate(zip(input_ids, labels, strict=True)):
            ids[r, : len(x)] = torch.as_tensor(np.asarray(x, dtype=np.int64))
            lab[r, : len(y)] = torch.as_tensor(np.asarray(y, dtype=np.int64))
            att[r, : len(x)] = 1
        with torch.no_grad():
            logits = model(input_ids=ids.to(device), attention_mask=att.to(device)).logits  # (B, T, V)
        # labels[t] is the target of logits[t] (already shifted by the shard layout)
        loss = F.cross_entropy(
            logits.float().reshape(-1, logits.size(-1)), lab.to(device).reshape(-1), reduction="sum"
        )
        total += float(loss)
        count += int((lab != -100).sum())
    return total, count


def _length_batches(examples: list[tuple], batch_size: int):
    order = sorted(range(len(examples)), key=lambda i: len(examples[i][0]))
    for s in range(0, len(order), batch_size):
        chunk = [examples[i] for i in order[s : s + batch_size]]
        yield [c[0] for c in chunk], [c[1] for c in chunk]


def _summary(total: float, count: int, source: str, n: int) -> dict:
    loss = total / count if count else float("nan")
    return {
        "source": source,
        "examples": n,
        "tokens": count,
        "loss": loss,
        "ppl": math.exp(loss) if count else None,
    }


def perplexity_on_shards(
    model, root: str, split: str = "test", batch_size: int = 16, max_examples: int = 0
) -> dict:
    """Token-mean cross entropy over a tokenize output dir's split (the train stage's validation loss).
    Token ids beyond the model's (or the data's) vocabulary are refused, naming shard and instance."""
    from dialogsmith.formats.shards import ShardDataset
    from dialogsmith.train.verify import check_token_ids

    ds = ShardDataset(root, split)
    n = len(ds) if not max_examples else min(len(ds), max_examples)
    examples = [ds.example(i) for i in range(n)]
    limit = min(ds.vocab_size, model.get_input_embeddings().num_embeddings)
    top = max((int(x.max()) for x, _ in examples if len(x)), default=0)
    check_token_ids(top, [np.arange(n)], ds, limit)
    total, count = _batched_loss(model, _length_batches(examples, batch_size))
    return _summary(total, count, f"shards:{root}:{split}", n)


def reference_example(tokenizer, context: Sequence[str], ref: str, eos_id: int, max_len: int) -> tuple:
    """input = c1 EOS ... cK EOS r (labels: r's tokens and its closing EOS), the oldest tokens cut first."""
    hist = encode_history(tokenizer, context, eos_id)
    resp = tokenizer.encode(ref, add_special_tokens=False)
    input_ids = hist + resp
    labels = [-100] * (len(hist) - 1) + resp + [eos_id]
    if len(input_ids) > max_len:
        input_ids, labels = input_ids[-max_len:], labels[-max_len:]
    return input_ids, labels


def perplexity_on_references(
    model, tokenizer, items: Sequence[TestItem], eos_id: int, batch_size: int = 16
) -> dict:
    """Perplexity of every reference response given its context."""
    max_len = context_window(model)
    examples = [reference_example(tokenizer, it.context, r, eos_id, max_len) for it in items for r in it.refs]
    total, count = _batched_loss(model, _length_batches(examples, batch_size))
    return _summary(total, count, "references", len(examples))


# --- table and entry point -------------------------------------------------------------------------

TABLE_COLUMNS = [
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
]


def table_row(metrics: dict, ppl: float | None) -> list[str]:
    """The paper's table cells: BLEU, METEOR and Dist in percent, as the paper prints them."""

    def pct(x):
        return "-" if x is None else f"{100 * x:.2f}%"

    return [
        f"{metrics['nist'][1]:.2f}",
        f"{metrics['nist'][3]:.2f}",
        pct(metrics["bleu"][1]),
        pct(metrics["bleu"][3]),
        pct(metrics["meteor"]),
        f"{metrics['entropy'][3]:.2f}",
        pct(metrics["dist"][0]),
        pct(metrics["dist"][1]),
        f"{metrics['avg_len']:.1f}",
        "-" if ppl is None else f"{ppl:.2f}",
    ]


def format_table(rows: list[tuple[str, list[str]]]) -> str:
    header = ["Method", *TABLE_COLUMNS]
    body = [[name, *cells] for name, cells in rows]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(cells):
        return (
            "| "
            + " | ".join(
                c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
            + " |"
        )

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep, *[line(r) for r in body]])


@dataclass
class EvalConfig:
    model: str
    out: str | None = None
    test_dir: str | None = None
    refs_file: str | None = None
    split: str = "test"
    shards: str | None = None
    ppl_split: str = "test"
    ppl_max_examples: int = 0
    max_items: int = 0
    n_refs: int = 0
    clean: bool = True
    meteor_jar: str | None = None
    device: str = "auto"
    name: str | None = None
    verify: bool = True  # sha256 of the --shards split against its manifest (sizes/headers: always)
    decode: DecodeConfig = field(default_factory=DecodeConfig)


def evaluate(cfg: EvalConfig, log=print) -> dict:
    if bool(cfg.test_dir) == bool(cfg.refs_file):
        raise ValueError(
            "give exactly one test set: --test-dir <filter output dir> or --refs-file <test.refs.txt>"
        )
    t0 = time.time()
    shard_check = None
    if cfg.shards:
        from dialogsmith.train.verify import ShardCheck, default_workers

        # sizes and headers now; the sha256 in the background while the test set and the model load
        shard_check = ShardCheck(cfg.shards, [cfg.ppl_split], sha256=cfg.verify, workers=default_workers())
    items = load_refs_file(cfg.refs_file) if cfg.refs_file else load_test_split(cfg.test_dir, cfg.split)
    if cfg.max_items:
        items = items[: cfg.max_items]
    device = pick_device(cfg.device)
    model, tokenizer, eos_id = load_model(cfg.model, device)
    if shard_check is not None:
        shard_check.raise_for_problems()  # before hours of generation, not after
    log(
        f"[eval] {len(items)} test items, up to {max(len(it.refs) for it in items)} references; device {device}"
    )
    t1 = time.time()
    hyps = generate_responses(model, tokenizer, [it.context for it in items], eos_id, cfg.decode)
    gen_s = time.time() - t1
    ref_sets = reference_sets(items, cfg.n_refs or None)
    # Score (and save) the texts as the DSTC evaluation does: cleaned first, unless --no-clean.
    scored_hyps = [clean_str(h) for h in hyps] if cfg.clean else hyps
    scored_refs = [[clean_str(r) for r in refs] for refs in ref_sets] if cfg.clean else ref_sets
    metrics = compute_metrics(scored_hyps, scored_refs, meteor_jar=cfg.meteor_jar)
    if cfg.shards:
        ppl = perplexity_on_shards(
            model, cfg.shards, cfg.ppl_split, cfg.decode.batch_size, cfg.ppl_max_examples
        )
    else:
        ppl = perplexity_on_references(model, tokenizer, items, eos_id, cfg.decode.batch_size)
    name = cfg.name or os.path.basename(os.path.normpath(cfg.model)) or cfg.model
    result = {
        "name": name,
        "model": cfg.model,
        "test_set": cfg.refs_file or f"{cfg.test_dir}:{cfg.split}",
        "items": len(items),
        "decode": asdict(cfg.decode),
        "clean": cfg.clean,
        "metrics": metrics,
        "perplexity": ppl,
        "generation_seconds": gen_s,
        "seconds": time.time() - t0,
        "table": format_table([(name, table_row(metrics, ppl["ppl"]))]),
    }
    if cfg.out:
        fsutil.write_json(fsutil.join(cfg.out, "metrics.json"), result)
        fsutil.write_bytes(fsutil.join(cfg.out, "hyp.txt"), "".join(h + "\n" for h in scored_hyps).encode())
        fsutil.write_bytes(fsutil.join(cfg.out, "hyp.raw.txt"), "".join(h + "\n" for h in hyps).encode())
        for k, refs in enumerate(scored_refs):
            fsutil.write_bytes(fsutil.join(cfg.out, f"ref{k}.txt"), "".join(r + "\n" for r in refs).encode())
        fsutil.write_bytes(
            fsutil.join(cfg.out, "contexts.txt"),
            "".join(" EOS ".join(it.context) + "\n" for it in items).encode(),
        )
    return result


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train/evaluate.py",
        description="Generate responses for a multi-reference test set with a trained (DialoGPT-style) model, "
        "score them with the DialoGPT paper's metrics (NIST, BLEU, METEOR, Entropy, Dist, length), measure "
        "perplexity, save JSON and print the paper's table.",
    )
    p.add_argument("--model", required=True, help="model directory (save_pretrained output) or hub name")
    src = p.add_argument_group("test set (one of)")
    src.add_argument("--test-dir", help="filter output directory; reads <dir>/<split>/*.parquet")
    src.add_argument("--refs-file", help="DialoGPT test.refs.txt: src<TAB>score|ref<TAB>score|ref...")
    p.add_argument("--split", default="test", help="split of --test-dir (default test)")
    p.add_argument("--max-items", type=int, default=0, help="evaluate only the first N test items")
    p.add_argument(
        "--n-refs", type=int, default=0, help="reference sets (default: the most refs of any item)"
    )
    p.add_argument("--out", help="directory for metrics.json, hyp.txt, ref*.txt (default: <model>/eval)")
    p.add_argument("--name", help="row name in the table (default: the model directory name)")
    p.add_argument("--no-clean", action="store_true", help="score texts as they are (no DSTC clean_str)")
    p.add_argument("--meteor-jar", help="meteor-1.5.jar; without it METEOR is reported as absent")
    p.add_argument(
        "--shards", help="tokenize output dir: perplexity on its --ppl-split instead of the references"
    )
    p.add_argument("--ppl-split", default="test", help="split of --shards for perplexity (default test)")
    p.add_argument("--ppl-max-examples", type=int, default=0, help="cap the perplexity examples (0 = all)")
    p.add_argument(
        "--no-verify",
        action="store_true",
        help="skip the sha256 of the --shards split against its manifest.json (sizes and headers are "
        "always checked)",
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    d = p.add_argument_group("decoding")
    d.add_argument("--decode", default="greedy", choices=["greedy", "beam", "sample"])
    d.add_argument("--num-beams", type=int, default=5)
    d.add_argument("--top-k", type=int, default=0)
    d.add_argument("--top-p", type=float, default=1.0)
    d.add_argument("--temperature", type=float, default=1.0)
    d.add_argument("--max-new-tokens", type=int, default=40)
    d.add_argument("--min-new-tokens", type=int, default=0, help="forbid EOS before this many new tokens")
    d.add_argument("--repetition-penalty", type=float, default=1.0)
    d.add_argument("--no-repeat-ngram-size", type=int, default=0)
    d.add_argument("--batch-size", type=int, default=16)
    d.add_argument("--seed", type=int, default=1234)
    return p


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    decode = DecodeConfig(
        strategy=args.decode,
        num_beams=args.num_beams,
        top_k=args.top_k,
        top_p=args.top_p,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
        min_new_tokens=args.min_new_tokens,
        repetition_penalty=args.repetition_penalty,
        no_repeat_ngram_size=args.no_repeat_ngram_size,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    return EvalConfig(
        model=args.model,
        out=args.out if args.out else os.path.join(args.model, "eval") if os.path.isdir(args.model) else None,
        test_dir=args.test_dir,
        refs_file=args.refs_file,
        split=args.split,
        shards=args.shards,
        ppl_split=args.ppl_split,
        ppl_max_examples=args.ppl_max_examples,
        max_items=args.max_items,
        n_refs=args.n_refs,
        clean=not args.no_clean,
        meteor_jar=args.meteor_jar,
        device=args.device,
        name=args.name,
        verify=not args.no_verify,
        decode=decode,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = evaluate(config_from_args(args), log=lambda m: print(m, file=sys.stderr))
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(result["table"])
    ppl = result["perplexity"]
    print(f"perplexity ({ppl['source']}): {ppl['ppl'] if ppl['ppl'] is None else round(ppl['ppl'], 3)}")
    if result["metrics"]["meteor"] is None:
        print("METEOR: absent (pass --meteor-jar meteor-1.5.jar to compute it)")
    return 0
