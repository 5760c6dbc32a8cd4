"""Entry point: `python filter/filter.py --input <instances dir> --output <dir> --profile default|paper|dialogpt`.

The same as `dialogsmith filter ...`; works as a plain script and under `spark-submit filter/filter.py ...`.
The logic is dialogsmith.filter (docs/filter.md).
"""

import sys

from dialogsmith.filter import main

if __name__ == "__main__":
    sys.exit(main())
