"""Entry point of `make eval MODEL=<dir> EVAL_ARGS='--refs-file test.refs.txt ...'`; see docs/eval.md."""

import sys

from dialogsmith.eval import main

if __name__ == "__main__":
    sys.exit(main())
