"""``python -m dialogsmith``: the ``dialogsmith`` command."""

import sys

from dialogsmith.cli import main

sys.exit(main())
