"""Tokenize stage entry point: `python tokenize/tokenize_shards.py --input <filter dir or DialoGPT TSV> --output <dir>`
(the same as `dialogsmith tokenize ...`).

Also runs unchanged under `spark-submit tokenize/tokenize_shards.py ...`. See docs/tokenize.md.
"""

import sys

from dialogsmith.tokenize.job import main

if __name__ == "__main__":
    sys.exit(main())
