"""``dbtool drift``: does the target's schema match what the project's files produce?

The expected schema is built on a throwaway database on the local target's server (the project's own
PostgreSQL, or ``CONNECTION_URL``'s): ``db/schema.sql``, then the migrations the target has applied, through
the same engine and runner as ``setup`` and ``migrate``. Both sides are dumped with ``pg_dump --schema-only`` and
normalized so that equal schemas compare equal: comments, ``SET`` lines, pg_dump's ``\\restrict`` key and blank
lines go, the migrations table is left out (dbmate's and dbtool's differ), and a table's columns are compared
as a set of lines, not in their order (a column added by a migration comes last; in schema.sql it may not).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dbtool.targets.resolve import Target

SCRATCH_SUFFIX = "_dbtool_drift"
NOISE = re.compile(r"^(--.*|SET .*|SELECT pg_catalog\.set_config\(.*|\\(?:un)?restrict .*)$")
SCHEMA_FILE = "db/schema.sql"


def drift(target: Target, builder: Target) -> list[str]:
    """The differences, as unified diff lines from expected to actual; empty when there is no drift. ``builder``
    is the target on whose server the expected schema is built (a throwaway database, dropped afterwards)."""
    from dbtool.migrations.schemadump import pg_dump_schema

    actual = normalize(pg_dump_schema(target))
    with throwaway(builder, SCRATCH_SUFFIX) as scratch:
        build(target, scratch)
        expected = normalize(pg_dump_schema(scratch))
    return list(
        difflib.unified_diff(
            expected, actual, "expected (db/schema.sql + applied migrations)", target.display, lineterm="", n=2
        )
    )


@contextmanager
def throwaway(builder: Target, suffix: str) -> Iterator[Target]:
    """A new, empty database on ``builder``'s server, as a target; dropped afterwards, whatever happens."""
    from dbtool.engine.session import open_maintenance_session
    from dbtool.ops.admin import create_database, drop_database

    scratch = builder.on_database(f"{builder.dbname[:40]}{suffix}_{os.getpid()}")
    with open_maintenance_session(builder) as admin:
        drop_database(admin, scratch.dbname, force=True)
        create_database(admin, scratch.dbname)
        try:
            yield scratch
        finally:
            drop_database(admin, scratch.dbname, force=True)


def build(target: Target, scratch: Target) -> None:
    """The project's schema file, then the migrations the target has applied, into ``scratch``."""
    from dbtool.engine.loader import load_file
    from dbtool.engine.session import open_session
    from dbtool.migrations.runner import Migrations, Timeouts

    applied = {entry.version for entry in Migrations(target).status() if entry.state in ("applied", "changed")}
    schema = target.root / SCHEMA_FILE
    if schema.is_file():
        with open_session(scratch) as session:
            load_file(session, schema)
    Migrations(scratch, timeouts=Timeouts()).migrate(only=applied, allow_changed=True, hazards=False)


def normalize(dump: str) -> list[str]:
    """A schema dump as comparable lines: noise gone, the migrations table left out, columns sorted."""
    kept = [line.rstrip() for line in dump.splitlines() if line.strip() and not NOISE.match(line)]
    statements: list[list[str]] = []
    current: list[str] = []
    for line in kept:
        current.append(line)
        if line.endswith(";"):
            statements.append(current)
            current = []
    if current:
        statements.append(current)
    lines: list[str] = []
    for statement in statements:
        text = "\n".join(statement)
        if "schema_migrations" in text:
            continue
        if statement[0].startswith("CREATE TABLE ") and len(statement) > 2:
            columns = sorted(line.rstrip(",") for line in statement[1:-1])
            statement = [statement[0], *columns, statement[-1]]
        lines += [*statement, ""]
    return lines
