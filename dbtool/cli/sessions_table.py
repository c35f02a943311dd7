"""Render sessions as a boxed table, drawn here: importing rich for it cost ``dbtool sessions`` ~60 ms."""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Sequence

import click

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
ELLIPSIS = "…"


def render(rows: Sequence[Activity], *, title: str) -> None:
    """The table on stdout; on a terminal, the widest free-text column shrinks until the table fits."""
    header = [column for column, _ in COLUMNS]
    body = [_cells(row) for row in rows]
    widths = [
        min(max(len(cell) for cell in (name, *(line[i] for line in body))), limit or 10**6)
        for i, (name, limit) in enumerate(COLUMNS)
    ]
    if sys.stdout.isatty():
        _fit(widths, shutil.get_terminal_size().columns)
    click.echo(title)
    click.echo("┏" + "┳".join("━" * (w + 2) for w in widths) + "┓")
    click.echo(
        "┃"
        + "┃".join(
            f" {click.style(_cut(name, w).ljust(w), bold=True)} " for name, w in zip(header, widths, strict=True)
        )
        + "┃"
    )
    click.echo("┡" + "╇".join("━" * (w + 2) for w in widths) + "┩")
    for row, cells in zip(rows, body, strict=True):
        line = "│" + "│".join(f" {_cut(cell, w).ljust(w)} " for cell, w in zip(cells, widths, strict=True)) + "│"
        click.echo(click.style(line, bold=True) if row.is_self else line)
    click.echo("└" + "┴".join("─" * (w + 2) for w in widths) + "┘")
    click.echo(click.style("* this session", dim=True))


def _cells(row: Activity) -> list[str]:
    return [
        f"{row.pid}*" if row.is_self else str(row.pid),
        row.user,
        row.database,
        row.client,
        row.application or row.backend_type,
        row.state,
        duration(row.state_seconds),
        row.wait,
        " ".join(LEADING_COMMENTS.sub("", row.query).split()),
    ]


# Comments before a query (dbtool's own start with "-- purpose: …"): the table shows the SQL itself.
LEADING_COMMENTS = re.compile(r"\A(?:\s*(?:--[^\n]*(?:\n|\Z)|/\*.*?\*/))+", re.S)


def _fit(widths: list[int], columns: int) -> None:
    """Narrow the cuttable columns, widest first, to fit ``columns`` (never below 8 characters)."""
    cuttable = [i for i, (_, limit) in enumerate(COLUMNS) if limit is not None]
    while sum(widths) + 3 * len(widths) + 1 > columns:
        widest = max(cuttable, key=lambda i: widths[i])
        if widths[widest] <= 8:
            return
        widths[widest] -= 1


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + ELLIPSIS


def duration(seconds: float | None) -> str:
    """Compact human duration: 45s, 3m04s, 2h05m, 3d04h."""
    if seconds is None:
        return ""
    whole = int(seconds)
    for unit, size, sub, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60), ("m", 60, "s", 1)):
        if whole >= size:
            return f"{whole // size}{unit}{(whole % size) // sub_size:02d}{sub}"
    return f"{whole}s"
