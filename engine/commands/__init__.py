"""Command-line commands. Each module defines `register(subparsers)` adding its commands; a
command's handler takes the parsed arguments and returns the exit status."""

COMMAND_MODULES = [
    "engine.commands.project",
    "engine.commands.evaluate",
    "engine.commands.tag",
    "engine.commands.train",
    "engine.commands.detect",
]
