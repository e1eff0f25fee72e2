"""``python -m aioapollo``: the command line (see ``aioapollo._cli``)."""

import sys

from ._cli import main

sys.exit(main())
