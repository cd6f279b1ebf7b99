"""The `mlic` command line: `engine.cli.main` (global options, dispatch, error reporting) and one
module per group of commands, each with `register(subparsers)`. Command modules import torch only
inside their handlers, so `mlic --version` and the header-only commands start fast."""
