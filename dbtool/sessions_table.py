"""Render sessions as a rich table (imported only when a table is shown, rich is slow to import)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from dbtool.sessions import Activity

QUERY_WIDTH = 40
COLUMNS = (
    ("pid", 7),
    ("user", 6),
    ("database", 6),
    ("client", 6),
    ("application", 6),
    ("state", 6),
    ("for", 5),
    ("wait", 4),
    ("query", 10),
)
# Piped output is not squeezed to 80 columns: rich would cut every column to an ellipsis.
PIPE_WIDTH = 200


def render(rows: Sequence[Activity], *, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    # Narrow terminals shrink the free-text columns; pid, state and age always stay readable.
    for column, max_width in COLUMNS:
        table.add_column(column, no_wrap=True, overflow="ellipsis", max_width=max_width)
    for row in rows:
        table.add_row(
            f"{row.pid}*" if row.is_self else str(row.pid),
            row.user,
            row.database,
            row.client,
            row.application or row.backend_type,
            row.state,
            duration(row.state_seconds),
            row.wait,
            " ".join(row.query.split())[:QUERY_WIDTH],
            style="bold" if row.is_self else None,
        )
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
