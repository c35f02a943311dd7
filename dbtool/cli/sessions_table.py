"""Render sessions as a rich table (imported only when a table is shown, rich is slow to import)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from dbtool.ops.sessions import Activity

QUERY_WIDTH = 40
# (column, longest text shown; None = never cut). Free text is cut so one long query cannot push
# pid, state and age off a narrow terminal.
COLUMNS = (
    ("pid", None),
    ("user", 16),
    ("database", 16),
    ("client", 39),
    ("application", 20),
    ("state", None),
    ("for", None),
    ("wait", 20),
    ("query", QUERY_WIDTH),
)
# Piped output gets room for every column; rich would otherwise assume 80 columns.
PIPE_WIDTH = 200


def render(rows: Sequence[Activity], *, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column, max_width in COLUMNS:
        table.add_column(column, no_wrap=True, overflow="ellipsis", max_width=max_width)
    for row in rows:
        cells = (
            f"{row.pid}*" if row.is_self else str(row.pid),
            row.user,
            row.database,
            row.client,
            row.application or row.backend_type,
            row.state,
            duration(row.state_seconds),
            row.wait,
            " ".join(row.query.split()),
        )
        table.add_row(*cells, style="bold" if row.is_self else None)
    console = Console(width=None if sys.stdout.isatty() else PIPE_WIDTH)
    console.print(table)
    console.print("* this session", style="dim")


def duration(seconds: float | None) -> str:
    """Compact human duration: 45s, 3m04s, 2h05m, 3d04h."""
    if seconds is None:
        return ""
    whole = int(seconds)
    for unit, size, sub, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60), ("m", 60, "s", 1)):
        if whole >= size:
            return f"{whole // size}{unit}{(whole % size) // sub_size:02d}{sub}"
    return f"{whole}s"
