"""``python examples/mqd`` (or ``python -m mqd`` from examples/): the daemon."""

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a directory: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mqd.cli import main

sys.exit(main())
