"""Conversation building: the extract output's comments/submissions -> multi-turn dialogue instances.

    python extract/instances.py --input <extract dir> --output <dir> [--profile default|dialogpt] [flags]
    spark-submit extract/instances.py ...

The same as `dialogsmith instances` (extract/conversations.py is its old name). See docs/instances.md
and `--help`.
"""

import sys

from dialogsmith.instances.job import main

if __name__ == "__main__":
    sys.exit(main())
