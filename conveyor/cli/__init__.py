"""The command line: ``conveyor`` (and ``python -m conveyor``), thin over ``conveyor.App``."""

from conveyor.cli.main import cli, main

__all__ = ["cli", "main"]
