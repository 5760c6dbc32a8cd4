"""``dialogsmith metrics`` (also ``python -m dialogsmith.metrics``):
--hyp FILE --refs FILE [FILE ...] [--meteor-jar JAR] [--clean]"""

from __future__ import annotations

import argparse
import sys

import orjson

from dialogsmith.metrics import MeteorError, compute_metrics, read_lines


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dialogsmith metrics",
        description="The DialoGPT paper's metrics (DSTC-7 evaluation): NIST-1..4 and BLEU-1..4 as mteval-v14c.pl "
        "computes them (multi-reference), METEOR 1.5 (with --meteor-jar), Entropy-1..4, Dist-1/2, average length. "
        "Files hold one whitespace-tokenized text per line; reference files are aligned line by line with the "
        "hypothesis file. Prints one JSON object.",
    )
    p.add_argument("--hyp", required=True, help="hypothesis file, one response per line")
    p.add_argument("--refs", required=True, nargs="+", help="reference files (one per reference set)")
    p.add_argument("--meteor-jar", default=None, help="path to meteor-1.5.jar; without it METEOR is null")
    p.add_argument(
        "--clean",
        action="store_true",
        help="apply the DSTC clean_str (lower-case, tokenize, split contractions) to every line first; "
        "leave off for files that are already normalized like the paper's test set",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        hyps = read_lines(args.hyp)
        ref_sets = [read_lines(path) for path in args.refs]
        for path, refs in zip(args.refs, ref_sets, strict=True):
            if len(refs) != len(hyps):
                raise ValueError(f"{path} has {len(refs)} lines but {args.hyp} has {len(hyps)}")
        result = compute_metrics(hyps, ref_sets, meteor_jar=args.meteor_jar, clean=args.clean)
    except (OSError, ValueError, MeteorError) as e:
        print(f"metrics: error: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
