"""``dialogsmith <stage> [options]``: one command, one subcommand per stage (make targets call it).

Every subcommand is its stage's own command line (``dialogsmith extract --help``); the stage scripts in
``extract/ filter/ tokenize/ train/`` run the same code (and serve ``spark-submit``).
"""

from __future__ import annotations

import importlib
import sys

# subcommand: (module with main(argv) -> int, what it does)
COMMANDS: dict[str, tuple[str, str]] = {
    "sample": (
        "dialogsmith.sample.job",
        "synthetic Pushshift-style RC_/RS_ dumps (for trying every stage)",
    ),
    "extract": ("dialogsmith.extract.job", "dumps -> typed, deduplicated Parquet bucketed by thread"),
    "instances": ("dialogsmith.instances.job", "comment trees -> dialogue instances"),
    "filter": ("dialogsmith.filter.job", "instances -> train/valid/test (named rules, funnel)"),
    "dialogpt-tsv": (
        "dialogsmith.recipes.dialogpt_tsv",
        "the released DialoGPT extractor, exactly: dumps -> <month>.tsv",
    ),
    "tokenize": ("dialogsmith.tokenize.job", "filter output or DialoGPT TSV -> token shards"),
    "pipeline": (
        "dialogsmith.pipeline",
        "extract -> instances -> filter -> tokenize in one Spark session, resumable",
    ),
    "train": ("dialogsmith.train.loop", "fine-tune GPT-2 on token shards (torchrun for several GPUs)"),
    "chat": ("dialogsmith.chat", "talk to a model (greedy, beam, sampling, MMI reranking)"),
    "eval": (
        "dialogsmith.eval",
        "generate for a test set; NIST, BLEU, METEOR, Entropy, Dist, perplexity",
    ),
    "metrics": ("dialogsmith.metrics.__main__", "the paper's metrics for hypothesis/reference files"),
    "demo": ("dialogsmith.demo", "every stage on a synthetic sample, and a report"),
    "shards": ("dialogsmith.tokenize.decode", "look into token shards (decode, verify)"),
    "cluster": ("dialogsmith.cluster", "a local Spark standalone cluster, the package for spark-submit"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: dialogsmith <command> [options]   (dialogsmith <command> --help)", "", "commands:"]
    lines += [f"  {name:<{width}}  {what}" for name, (_, what) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from dialogsmith import __version__

        print(f"dialogsmith {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"dialogsmith: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    sys.argv[0] = f"dialogsmith {name}"  # argparse's usage lines name the subcommand
    rc = module.main(rest)
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    sys.exit(main())
