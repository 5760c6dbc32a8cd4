"""The instances stage under its old script name (kept: users and spark-submit call it).

    python extract/conversations.py --input <extract dir> --output <dir> [--profile default|dialogpt] [flags]

Same as extract/instances.py and `dialogsmith instances`; see docs/instances.md and `--help`.
"""

import sys

from dialogsmith.instances.job import main

if __name__ == "__main__":
    sys.exit(main())
