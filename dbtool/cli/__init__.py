"""The ``dbtool`` command: click only, a module per command group over the library.

``main.py`` holds the group, the one place errors become ``error: …`` lines, and the shared options.
"""

from dbtool.cli import aws, database, deploy, inspect, local, migrate  # noqa: F401 - each registers its commands
from dbtool.cli.main import cli, main

__all__ = ["cli", "main"]
