"""Render the top-level help as click prints it at its standard width; ``python -m dbtool.cli.helptext`` rewrites
``help.txt`` with it (``tests/cli/test_packaging.py`` fails until the copy matches)."""

from __future__ import annotations

from pathlib import Path


def render() -> str:
    from click.testing import CliRunner

    from dbtool.cli import CLICK_MAX_WIDTH, group

    # CliRunner's terminal_width is click's forced text width; a real terminal of 80 columns or more gives 78.
    result = CliRunner().invoke(group(), ["--help"], prog_name="dbtool", terminal_width=CLICK_MAX_WIDTH - 2)
    return result.stdout


if __name__ == "__main__":
    from dbtool.cli import HELP_FILE

    Path(HELP_FILE).write_text(render(), encoding="utf-8")
