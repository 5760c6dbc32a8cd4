"""``python -m dialogsmith.demo``: the same as ``dialogsmith demo``."""

import sys

from dialogsmith.demo.run import main

sys.exit(main())
