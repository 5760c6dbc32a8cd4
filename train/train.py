"""Fine-tune GPT-2 (DialoGPT recipe) on token shards.

    python train/train.py --input <tokenize out> --output <run dir> --model-config tiny
    torchrun --nproc-per-node 4 train/train.py --input ... --output ... --model microsoft/DialoGPT-small

Same as ``dialogsmith train``. See docs/train.md; `--help` lists every option.
"""

import sys

from dialogsmith.train.loop import main

if __name__ == "__main__":
    sys.exit(main())
