"""``python -m ferlab``: the same command line as ``ferlab``."""

import sys

from ferlab.cli import main

sys.exit(main())
