"""dbtool: a PostgreSQL developer kit (the ``dbtool`` command) and the same connections for application code.

    import dbtool

    with dbtool.pool() as db:                      # CONNECTION_URL, from the environment or .env
        db.query_array_json(dbtool.sql_template("activities", "home"))

Importing this package loads nothing heavy: psycopg is imported on first use, botocore only when a
target takes its credentials from AWS, and click only by the command line.
"""

from __future__ import annotations

from dbtool.errors import (
    AuthenticationFailed,
    ConnectionFailed,
    DatabaseMissing,
    DbtoolError,
    TargetNotConfigured,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: `dbtool --help` imports almost nothing
__version__ = "0.1.0"  # pyproject.toml reads it from here

if TYPE_CHECKING:
    from typing import Any

    from dbtool.app.db import Db, PoolNotOpen, QueryShapeError, connect, pool
    from dbtool.app.templates import SqlTemplates, TemplateMissing, sql_template

_LAZY = {
    "connect": "dbtool.app.db",
    "pool": "dbtool.app.db",
    "Db": "dbtool.app.db",
    "PoolNotOpen": "dbtool.app.db",
    "QueryShapeError": "dbtool.app.db",
    "sql_template": "dbtool.app.templates",
    "SqlTemplates": "dbtool.app.templates",
    "TemplateMissing": "dbtool.app.templates",
}

__all__ = [
    "AuthenticationFailed",
    "ConnectionFailed",
    "DatabaseMissing",
    "Db",
    "DbtoolError",
    "PoolNotOpen",
    "QueryShapeError",
    "SqlTemplates",
    "TargetNotConfigured",
    "TemplateMissing",
    "connect",
    "pool",
    "sql_template",
]


def __getattr__(name: str) -> Any:
    """The public API, imported on first use so ``import dbtool`` (and ``dbtool --help``) stays fast."""
    if name not in _LAZY:
        raise AttributeError(f"module 'dbtool' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
