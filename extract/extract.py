"""The extract stage: `python extract/extract.py --input DUMPS --output OUT` (= `dialogsmith extract`).

Also runs unchanged under `spark-submit extract/extract.py --input … --output …`. See docs/extract.md.
"""

import sys

from dialogsmith.extract.job import main

if __name__ == "__main__":
    sys.exit(main())
