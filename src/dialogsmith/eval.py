"""``dialogsmith eval`` (`make eval`): generate responses for a multi-reference test set, score them with
the paper's metrics, measure perplexity, save JSON and print the paper's table.

Test sets:
- a filter output directory (``--test-dir``): ``test/*.parquet`` in the FILTERED schema; context =
  ``turns[:-1]``, reference = ``turns[-1]``; instances that share a context (siblings: same
  ``turn_ids[:-1]``) become one multi-reference test item;
- a DialoGPT ``test.refs.txt`` file (``--refs-file``): ``src<TAB>score|ref<TAB>score|ref...``, the
  source turns joined by `` EOS ``.

Items with fewer references than the most referenced one fill their reference sets by cycling their own
references, as the DSTC evaluation does (``refs[i % len(refs)]``): mteval needs every set complete.

Responses come from ``dialogsmith.generation`` (the same code and history rule as ``dialogsmith chat``);
perplexity from ``dialogsmith.train.perplexity`` (the train stage's validation loss).
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dialogsmith import fsutil
from dialogsmith.formats import parquet
from dialogsmith.formats.schemas import FILTERED_TABLE
from dialogsmith.formats.shards import IGNORE, ShardDataset
from dialogsmith.generation import (
    DecodeConfig,
    context_window,
    encode_history,
    generate,
    load_model,
    model_eos_id,
)
from dialogsmith.metrics import clean_str, compute_metrics
from dialogsmith.stage import ERRORS, ConfigParser, option
from dialogsmith.train.perplexity import TokenLoss, scoring_plan, token_loss
from dialogsmith.train.verify import ShardCheck, default_workers

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
    split_dir = fsutil.join(root, split)
    files = parquet.files_of(split_dir)
    if not files:
        raise FileNotFoundError(f"no Parquet files under {split_dir}: is {root} a filter output directory?")
    groups: dict[tuple, TestItem] = {}
    scores: dict[tuple, list] = {}
    for path in files:
        table = parquet.read(path, FILTERED_TABLE, columns=["turns", "turn_ids", "target_score", "split"])
        for row in table.to_pylist():
            if row["split"] not in (None, split):
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


# --- perplexity ------------------------------------------------------------------------------------


class ReferenceExamples:
    """Every reference response with its context, as examples in the shard layout (``reference_example``)."""

    split = "references"

    def __init__(self, examples: list[tuple[list[int], list[int]]]):
        self._examples = [(np.asarray(x, dtype=np.int64), np.asarray(y, dtype=np.int64)) for x, y in examples]
        self.lengths = np.array([len(x) for x, _ in self._examples], dtype=np.int64)

    def __len__(self) -> int:
        return len(self._examples)

    def example(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self._examples[i]


def reference_example(tokenizer, context: Sequence[str], ref: str, eos_id: int, max_len: int) -> tuple:
    """input = c1 EOS ... cK EOS r, labels = r's tokens and its closing EOS (the shard layout). The context
    follows the generation history rule (oldest whole turns dropped to fit ``max_len`` with the reply);
    only a reply longer than the window itself loses its first tokens."""
    resp = tokenizer.encode(ref, add_special_tokens=False)
    hist = encode_history(tokenizer, context, eos_id, max(1, max_len - len(resp)))
    input_ids = hist + resp
    labels = [IGNORE] * (len(hist) - 1) + resp + [eos_id]
    if len(input_ids) > max_len:
        input_ids, labels = input_ids[-max_len:], labels[-max_len:]
    return input_ids, labels


def _ppl_summary(result: TokenLoss, source: str, n: int) -> dict:
    return {
        "source": source,
        "examples": n,
        "tokens": result.n_targets,
        "loss": result.loss,
        "ppl": result.ppl,
    }


def perplexity_on_shards(
    model, root: str, split: str = "test", batch_size: int = 16, max_examples: int = 0
) -> dict:
    """Token-mean cross entropy over a tokenize output dir's split (computed as the train stage's
    validation loss). Token ids beyond the model's (or the data's) vocabulary are refused, naming shard
    and instance."""
    ds = ShardDataset(root, split)
    n = len(ds) if not max_examples else min(len(ds), max_examples)
    limit = min(ds.vocab_size, model.get_input_embeddings().num_embeddings)
    plan = scoring_plan(ds.lengths[:n], batch_size=batch_size)
    result = token_loss(model, ds, plan, pad_id=ds.eos_id, vocab_limit=limit)
    return _ppl_summary(result, f"shards:{root}:{split}", n)


def perplexity_on_references(
    model, tokenizer, items: Sequence[TestItem], eos_id: int, batch_size: int = 16
) -> dict:
    """Perplexity of every reference response given its context."""
    max_len = context_window(model)
    ds = ReferenceExamples(
        [reference_example(tokenizer, it.context, r, eos_id, max_len) for it in items for r in it.refs]
    )
    limit = model.get_input_embeddings().num_embeddings
    top = max((int(x.max()) for x in (ds.example(i)[0] for i in range(len(ds))) if len(x)), default=0)
    if top >= limit:
        raise ValueError(f"the tokenizer gives token id {top} >= the model's vocabulary size {limit}")
    result = token_loss(model, ds, scoring_plan(ds.lengths, batch_size=batch_size), pad_id=eos_id)
    return _ppl_summary(result, "references", len(ds))


# --- table -----------------------------------------------------------------------------------------

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


# --- config and entry point ------------------------------------------------------------------------


@dataclass
class EvalConfig(DecodeConfig):
    """The flags of ``dialogsmith eval``: the decoding fields (DecodeConfig, with eval's own defaults for
    ``num_beams`` and ``seed``) and these."""

    model: str = option("", "model directory (a train output) or hub name")
    test_dir: str | None = option(None, "test set: a filter output directory; reads <dir>/<split>/*.parquet")
    refs_file: str | None = option(
        None, "test set: DialoGPT test.refs.txt: src<TAB>score|ref<TAB>score|ref..."
    )
    split: str = option("test", "split of --test-dir")
    max_items: int = option(0, "evaluate only the first N test items (0: all)")
    n_refs: int = option(0, "reference sets (0: the most references of any item)")
    output: str | None = option(
        None, "directory for metrics.json, hyp.txt, ref*.txt (default: <model>/eval)", aliases=("--out",)
    )
    name: str | None = option(None, "row name in the table (default: the model directory name)")
    clean: bool = option(True, "score the texts cleaned by the DSTC clean_str (--no-clean: as they are)")
    meteor_jar: str | None = option(None, "meteor-1.5.jar; without it METEOR is reported as absent")
    shards: str | None = option(
        None, "tokenize output dir: perplexity on its --ppl-split instead of the references"
    )
    ppl_split: str = option("test", "split of --shards for perplexity")
    ppl_max_examples: int = option(0, "cap the perplexity examples (0: all)")
    verify: bool = option(
        True, "sha256 of the --shards split against its manifest.json (sizes and headers: always checked)"
    )
    reverse_model: str | None = option(None, "reverse model dir: MMI-rerank sampled responses")
    device: str = option("auto", "auto | cpu | cuda | cuda:N")
    batch_size: int = option(16, "test items per generate call; examples per perplexity batch")
    num_beams: int = option(5, "beam search: beams")
    seed: int | None = option(1234, "torch seed set before generating (sampling, MMI)")

    def validate(self) -> EvalConfig:
        if not self.model:
            raise ValueError("--model is required")
        if bool(self.test_dir) == bool(self.refs_file):
            raise ValueError(
                "give exactly one test set: --test-dir <filter output dir> or --refs-file <test.refs.txt>"
            )
        super().validate()
        return self


def _one_line(text: str) -> str:
    return " ".join(text.split())  # responses are written one per line


def evaluate(cfg: EvalConfig, log=print) -> dict:
    """Generate, score, measure perplexity; write the files into ``cfg.output`` (if set); the result."""
    cfg.validate()
    t0 = time.time()
    shard_check = None
    if cfg.shards:
        # sizes and headers now; the sha256 in the background while the test set and the model load
        shard_check = ShardCheck(cfg.shards, [cfg.ppl_split], sha256=cfg.verify, workers=default_workers())
    items = load_refs_file(cfg.refs_file) if cfg.refs_file else load_test_split(cfg.test_dir, cfg.split)
    if cfg.max_items:
        items = items[: cfg.max_items]
    model, tokenizer = load_model(cfg.model, cfg.device)
    reverse = load_model(cfg.reverse_model, cfg.device)[0] if cfg.reverse_model else None
    if shard_check is not None:
        shard_check.raise_for_problems()  # before hours of generation, not after
    log(
        f"[eval] {len(items)} test items, up to {max(len(it.refs) for it in items)} references; "
        f"device {next(model.parameters()).device}"
    )
    t1 = time.time()
    replies = generate(model, tokenizer, [it.context for it in items], cfg, reverse_model=reverse,
                       batch_size=cfg.batch_size)  # fmt: skip
    hyps = [_one_line(r[0]) if r else "" for r in replies]
    gen_s = time.time() - t1
    ref_sets = reference_sets(items, cfg.n_refs or None)
    # Score (and save) the texts as the DSTC evaluation does: cleaned first, unless --no-clean.
    scored_hyps = [clean_str(h) for h in hyps] if cfg.clean else hyps
    scored_refs = [[clean_str(r) for r in refs] for refs in ref_sets] if cfg.clean else ref_sets
    metrics = compute_metrics(scored_hyps, scored_refs, meteor_jar=cfg.meteor_jar)
    if cfg.shards:
        ppl = perplexity_on_shards(model, cfg.shards, cfg.ppl_split, cfg.batch_size, cfg.ppl_max_examples)
    else:
        ppl = perplexity_on_references(
            model, tokenizer, items, model_eos_id(tokenizer, model), cfg.batch_size
        )
    name = cfg.name or os.path.basename(os.path.normpath(cfg.model)) or cfg.model
    result = {
        "name": name,
        "model": cfg.model,
        "test_set": cfg.refs_file or f"{cfg.test_dir}:{cfg.split}",
        "items": len(items),
        "decode": {**cfg.decode_settings(), "batch_size": cfg.batch_size, "reverse_model": cfg.reverse_model},
        "clean": cfg.clean,
        "metrics": metrics,
        "perplexity": ppl,
        "generation_seconds": gen_s,
        "seconds": time.time() - t0,
        "table": format_table([(name, table_row(metrics, ppl["ppl"]))]),
    }
    if cfg.output:
        _write_outputs(cfg.output, result, hyps, scored_hyps, scored_refs, items)
    return result


def _write_outputs(out: str, result: dict, hyps, scored_hyps, scored_refs, items) -> None:
    def lines(texts) -> bytes:
        return "".join(t + "\n" for t in texts).encode()

    fsutil.write_json(fsutil.join(out, "metrics.json"), result)
    fsutil.write_bytes(fsutil.join(out, "hyp.txt"), lines(scored_hyps))
    fsutil.write_bytes(fsutil.join(out, "hyp.raw.txt"), lines(hyps))
    for k, refs in enumerate(scored_refs):
        fsutil.write_bytes(fsutil.join(out, f"ref{k}.txt"), lines(refs))
    fsutil.write_bytes(fsutil.join(out, "contexts.txt"), lines(" EOS ".join(it.context) for it in items))


def build_parser() -> ConfigParser:
    """``build_parser().parse_args(argv)`` returns the EvalConfig."""
    return ConfigParser(
        EvalConfig,
        prog="dialogsmith eval",
        description="Generate responses for a multi-reference test set with a trained (DialoGPT-style) model, "
        "score them with the DialoGPT paper's metrics (NIST, BLEU, METEOR, Entropy, Dist, length), measure "
        "perplexity, save JSON and print the paper's table.",
    )


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = build_parser().parse_args(argv)
        if not cfg.output and os.path.isdir(cfg.model):
            cfg.output = os.path.join(cfg.model, "eval")
        result = evaluate(cfg, log=lambda m: print(m, file=sys.stderr))
    except (*ERRORS, OSError, KeyError) as e:
        print(f"eval: error: {e}", file=sys.stderr)
        return 2
    print(result["table"])
    ppl = result["perplexity"]
    print(f"perplexity ({ppl['source']}): {ppl['ppl'] if ppl['ppl'] is None else round(ppl['ppl'], 3)}")
    if result["metrics"]["meteor"] is None:
        print("METEOR: absent (pass --meteor-jar meteor-1.5.jar to compute it)")
    return 0
