"""``python -m aioapollo``: the command line (see ``aioapollo --help``)."""

import sys

from ._cli.main import main

if __name__ == "__main__":
    sys.exit(main())
