"""`python -m engine` runs the `mlic` command line."""

import sys

from engine.cli.main import main

sys.exit(main())
