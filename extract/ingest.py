"""Ingest Pushshift dumps into Parquet: `python extract/ingest.py --input DUMPS --output OUT`.

Also runs unchanged under `spark-submit extract/ingest.py --input … --output …`. See docs/extract.md.
"""

import sys

from dialogsmith.extract.job import main

if __name__ == "__main__":
    sys.exit(main())
