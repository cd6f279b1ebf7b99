"""`python -m engine` runs the `mlic` command line."""

import sys

from engine.cli import main

sys.exit(main())
