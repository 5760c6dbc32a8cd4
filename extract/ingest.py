"""The extract stage under its former script name (users' `spark-submit extract/ingest.py …` commands):
the same as extract/extract.py and `dialogsmith extract`. See docs/extract.md.
"""

import sys

from dialogsmith.extract.job import main

if __name__ == "__main__":
    sys.exit(main())
