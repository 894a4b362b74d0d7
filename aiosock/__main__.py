"""``python -m aiosock``: see :mod:`aiosock.cli`."""

import sys

from aiosock.cli import main

sys.exit(main())
