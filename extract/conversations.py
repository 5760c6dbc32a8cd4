"""Conversation building: ingested comments/submissions -> multi-turn instances.

    python extract/conversations.py --input <extract dir> --output <dir> [--profile default|dialogpt] [flags]
    spark-submit extract/conversations.py ...

See docs/conversations.md and `--help`.
"""

import sys

from dialogsmith.instances.job import main

if __name__ == "__main__":
    sys.exit(main())
