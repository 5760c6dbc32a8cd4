"""``dialogsmith shards decode|verify``: look into a tokenize output.

``decode`` prints instances back as text, one line per turn (TRAIN = a training target, ctx = context
only); ``verify`` checks every shard against manifest.json (size, header, sha256).
"""

from __future__ import annotations

import argparse
import os
import sys

from dialogsmith import fsutil
from dialogsmith.formats.shards import MANIFEST, ShardDataset, ShardError, verify_shards
from dialogsmith.tokenize.bpe import load_bpe


def _decoder(tokenizer_dir: str):
    path = fsutil.join(tokenizer_dir, "tokenizer.json")
    if fsutil.exists(path):  # also on hdfs:// or s3://
        from tokenizers import Tokenizer

        return Tokenizer.from_str(fsutil.read_bytes(path).decode("utf-8"))
    return load_bpe(tokenizer_dir)


def decode(
    root: str, split: str = "train", n: int = 5, start: int = 0, verify: bool = False, out=None
) -> int:
    """Print instances back as text with turn boundaries and trainable marks; returns instances shown."""
    out = out or sys.stdout
    ds = ShardDataset(root, split, verify=verify)
    tok = _decoder(ds.tokenizer_dir)
    if verify:
        print(
            f"verified {len(ds.shards)} shard(s) of split '{split}' against {MANIFEST} (size + sha256)",
            file=out,
        )
    shown = 0
    for i in range(start, min(len(ds), start + n)):
        s, j = ds.locate(i)
        inst = ds.instance(i)
        name = os.path.basename(ds.shards[s].path)
        print(
            f"=== {split}[{i}] {name}#{j}  turns={len(inst.turns)}  example_len={inst.example_length}",
            file=out,
        )
        for k, (turn, flag) in enumerate(zip(inst.turns, inst.trainable, strict=True)):
            text = tok.decode(turn.tolist(), skip_special_tokens=False)
            print(f"  [{k}] {'TRAIN' if flag else 'ctx  '} | {text}", file=out)
        shown += 1
    return shown


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dialogsmith shards", description=__doc__.split("\n\n")[1])
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("decode", help="print instances back as text")
    d.add_argument("root", help="tokenize output directory (holds manifest.json)")
    d.add_argument("--split", default="train", help="split to read (default: train)")
    d.add_argument("--n", type=int, default=5, help="instances to print (default: 5)")
    d.add_argument("--start", type=int, default=0, help="first instance index (default: 0)")
    d.add_argument(
        "--verify", action="store_true", help="check every shard's size and sha256 against the manifest"
    )
    v = sub.add_parser("verify", help="check every shard against manifest.json; exit 1 on a problem")
    v.add_argument("root", help="tokenize output directory (holds manifest.json)")
    v.add_argument("--split", action="append", help="only this split (repeatable; default: all)")
    v.add_argument("--quick", action="store_true", help="sizes and headers only, no sha256")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "decode":
            decode(args.root, args.split, args.n, args.start, args.verify)
            return 0
        problems = verify_shards(args.root, args.split, full=not args.quick)
    except (ShardError, FileNotFoundError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for line in problems:
        print(line, file=sys.stderr)
    print(
        f"{args.root}: {len(problems)} problem(s)"
        if problems
        else f"{args.root}: all shards match {MANIFEST}"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
