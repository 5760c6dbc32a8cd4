"""Print token shards back as text: `python tokenize/decode_shards.py ROOT [--split train] [--n 5] [--verify]`."""

import sys

from dialogsmith.formats.shards import decode_main

if __name__ == "__main__":
    sys.exit(decode_main())
