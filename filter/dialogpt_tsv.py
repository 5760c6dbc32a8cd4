"""Entry point: `python filter/dialogpt_tsv.py --dumps <dir> --output <dir> [released extractor flags]`.

Drop-in for DialoGPT's reddit extractor (see docs/filter.md); logic in dialogsmith.recipes.dialogpt_tsv.
"""

import sys

from dialogsmith.recipes.dialogpt_tsv import main

if __name__ == "__main__":
    sys.exit(main())
