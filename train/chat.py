"""Chat with a trained model the DialoGPT way (see docs/train.md):

python train/chat.py --model runs/tiny --say "hi there" --say "how are you?"
python train/chat.py --model runs/small --strategy sample --top-p 0.9 --reverse-model runs/small-rev
"""

from __future__ import annotations

import sys

from dialogsmith.chat import main

if __name__ == "__main__":
    sys.exit(main())
