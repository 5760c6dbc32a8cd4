"""Entry point: `python filter/filter.py --input <instances dir> --output <dir> --profile default|paper|dialogpt`.

Works as a plain script and under `spark-submit filter/filter.py ...`; the logic is dialogsmith.filter.
"""

import sys

from dialogsmith.filter import main

if __name__ == "__main__":
    sys.exit(main())
