"""The ``dbtool`` command: click only, a module per command group over the library.

``main.py`` holds the group, the one place errors become ``error: …`` lines, and the shared options.
This package's own module imports nothing: ``dbtool --help`` prints ``help.txt``, click's rendering
of the top-level help at its standard width, without importing click (which alone costs several
times Python's start-up); ``tests/cli/test_packaging.py`` keeps the copy equal to click's output.
Everything else, and the help on a terminal narrower than click's 80 columns, goes through click.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing

if TYPE_CHECKING:
    from click import Group

HELP_FILE = os.path.join(os.path.dirname(__file__), "help.txt")
HELP_ARGUMENTS = (["--help"], ["-h"])
CLICK_MAX_WIDTH = 80  # click's HelpFormatter wraps at min(terminal columns, 80) - 2


def main() -> None:
    """The console script."""
    if sys.argv[1:] in HELP_ARGUMENTS and _columns() >= CLICK_MAX_WIDTH:
        try:
            with open(HELP_FILE, encoding="utf-8") as file:
                text = file.read()
        except OSError:
            text = ""
        if text:
            sys.stdout.write(text)
            sys.stdout.flush()
            return
    from dbtool.cli.main import cli

    cli.main()  # loads only the module of the command run (DbtoolGroup.get_command)


def group() -> Group:
    """The click group with every command's module loaded (for the tests and the help's copy)."""
    import importlib

    from dbtool.cli.main import COMMAND_MODULES, cli

    for module in sorted(set(COMMAND_MODULES.values())):  # each registers its commands on import
        importlib.import_module(f"dbtool.cli.{module}")
    return cli


def _columns() -> int:
    """The terminal width as click sees it (``shutil.get_terminal_size``, without importing shutil)."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or CLICK_MAX_WIDTH


def __getattr__(name: str) -> object:
    if name == "cli":
        return group()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["cli", "group", "main"]
