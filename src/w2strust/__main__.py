"""``python -m w2strust``: the ``w2strust`` command, where the project is on PYTHONPATH but not installed."""

import sys

from .cli import main

sys.exit(main())
