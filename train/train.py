"""Fine-tune GPT-2 (DialoGPT recipe) on token shards.

    python train/train.py --data <tokenize out> --out <run dir> --model-config tiny
    torchrun --nproc-per-node 4 train/train.py --data ... --out ... --model microsoft/DialoGPT-small

See docs/train.md; `--help` lists every option.
"""

from __future__ import annotations

import sys

from dialogsmith.train.config import parse_config
from dialogsmith.train.loop import run


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = parse_config(argv)
        run(cfg)
    except (ValueError, FileNotFoundError) as e:
        print(f"train: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
