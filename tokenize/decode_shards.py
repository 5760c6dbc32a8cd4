"""Print token shards back as text: `python tokenize/decode_shards.py ROOT [--split train] [--n 5] [--verify]`
(the same as `dialogsmith shards decode ROOT ...`)."""

import sys

from dialogsmith.tokenize.decode import main

if __name__ == "__main__":
    sys.exit(main(["decode", *sys.argv[1:]]))
