"""``dbtool drift``: does the target's schema match what the project's files produce?

The expected schema is built on a throwaway database: ``db/schema.sql`` (after the extensions ``dbtool.toml``
declares), then the migrations the target has applied, through the same engine and runner as ``setup`` and
``migrate``. The CLI builds it on the local target's server; the deploy-time handler, which has no server of
its own, on the target's server (a database beside it, dropped after).

Both sides are described by one catalog query (``queries/schema_description.sql``), which runs on either
transport, the RDS Data API included, and needs no ``pg_dump``: schemas, extensions, types, sequences, tables
(columns sorted by name, so column order is not drift), constraints, indexes, views, functions, triggers, rules
and policies, written as DDL with every name schema-qualified; extension members and the migrations table
(dbmate's and dbtool's differ) left out, and so are the extensions ``dbtool.toml`` declares (``up`` installs
those; ``dbtool extensions --check`` compares them). The differences are a unified diff of the two descriptions.
"""

from __future__ import annotations

import difflib
import os
import secrets
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from dbtool import queries
from dbtool.errors import DbtoolError

if TYPE_CHECKING:
    from dbtool.engine.session import Session
    from dbtool.targets.resolve import Target

SCRATCH_SUFFIX = "_dbtool_drift"
SCHEMA_FILE = "db/schema.sql"
EXPECTED = "expected (db/schema.sql + applied migrations)"
SHOWN_LINES = 6  # lines of a diff a one-line error quotes
EXTENSION_KIND = 2  # schema_description.sql's kind for CREATE EXTENSION rows


class Drifted(DbtoolError):
    """The target's schema differs from what the project's files produce."""


class SchemaAhead(DbtoolError):
    """``db/schema.sql`` already holds migrations the target has not applied (it was dumped after them): what
    the files produce for the target cannot be built, so there is nothing to compare yet."""


def drift(target: Target, builder: Target, actual: list[str] | None = None) -> list[str]:
    """The differences, as unified diff lines from expected to ``actual`` (default: the target described now);
    empty when there is no drift. ``builder`` is the target on whose server the expected schema is built (a
    throwaway database, dropped afterwards)."""
    actual = describe_target(target) if actual is None else actual
    with throwaway(builder, SCRATCH_SUFFIX) as scratch:
        build(target, scratch)
        expected = describe_target(scratch)
    return list(difflib.unified_diff(expected, actual, EXPECTED, target.display, lineterm="", n=2))


def refuse_drift(target: Target, builder: Target) -> None:
    """Raise :class:`Drifted`, quoting the first changed lines, when the target has drifted; a database with
    no schema yet (``up`` loads it) has nothing to drift from."""
    actual = describe_target(target)
    if not any(actual):
        return
    differences = drift(target, builder, actual)
    if not differences:
        return
    changed = [line for line in differences[2:] if line[:1] in "+-" and line[1:].strip()]
    shown = "; ".join(line[:160] for line in changed[:SHOWN_LINES])
    more = f" (and {len(changed) - SHOWN_LINES} more lines)" if len(changed) > SHOWN_LINES else ""
    raise Drifted(
        f"{target.display} has drifted from db/schema.sql and its applied migrations: {shown}{more}",
        "nothing was applied; see it all with dbtool drift, then add a migration that makes the files match "
        "(or undo the change by hand)",
        remedy="drift",
    )


@contextmanager
def throwaway(builder: Target, suffix: str) -> Iterator[Target]:
    """A new, empty database on ``builder``'s server, as a target; dropped afterwards, whatever happens."""
    from dbtool.engine.session import open_maintenance_session
    from dbtool.errors import ServerError
    from dbtool.ops.admin import create_database, drop_database

    scratch = builder.on_database(f"{builder.dbname[:36]}{suffix}_{os.getpid()}_{secrets.token_hex(2)}")
    with open_maintenance_session(builder) as admin:
        try:
            create_database(admin, scratch.dbname)
        except ServerError as error:
            raise ServerError(
                f"cannot build a throwaway database on {builder.display}: {error.message}",
                "the database user needs CREATEDB for it (ALTER ROLE … CREATEDB)",
                remedy="drift",
            ) from None
        try:
            yield scratch
        finally:
            drop_database(admin, scratch.dbname, force=True)


def build(target: Target, scratch: Target) -> None:
    """The declared extensions, the project's schema file, then the migrations the target has applied, into
    ``scratch``."""
    from dbtool.engine.loader import load_file
    from dbtool.engine.session import open_session
    from dbtool.migrations.runner import Migrations
    from dbtool.migrations.timeouts import Timeouts

    applied = {entry.version for entry in Migrations(target).status() if entry.state in ("applied", "changed")}
    declared = target.context.declaration.extensions
    schema = target.root / SCHEMA_FILE
    if declared or schema.is_file():
        with open_session(scratch) as session:
            if declared:
                from dbtool.ops.extensions import reconcile

                reconcile(session, declared)
            if schema.is_file():
                load_file(session, schema)
    built = Migrations(scratch, timeouts=Timeouts())
    marked = {entry.version for entry in built.status() if entry.state != "pending"}
    ahead = sorted((marked & {m.version for m in built.files}) - applied, key=int)  # files pending on the target
    if ahead:
        count = f"{len(ahead)} migration{'s' * (len(ahead) != 1)}"
        raise SchemaAhead(
            f"db/schema.sql marks {count} applied that {target.display} has not applied ({', '.join(ahead[:3])}"
            f"{', …' if len(ahead) > 3 else ''}), so what the files produce for it cannot be built",
            "db/schema.sql was dumped after them; compare once they are applied (dbtool migrate, then dbtool drift)",
        )
    built.migrate(only=applied, allow_changed=True, hazards=False)


def describe_target(target: Target) -> list[str]:
    from dbtool.engine.session import open_session

    with open_session(target) as session:  # declared extensions are up's (dbtool extensions --check compares them)
        return describe(session, leave_out=set(target.context.declaration.extensions))


def describe(session: Session, *, leave_out: Collection[str] = ()) -> list[str]:
    """The schema as comparable lines: each object's DDL, then a blank line, in a fixed order; the extensions
    named in ``leave_out`` left out."""
    session.begin()
    try:  # every name qualified, whatever the session's search_path
        session.execute(queries.get("set_setting"), {"name": "search_path", "value": "pg_catalog", "local": True})
        rows = session.execute(queries.get("schema_description")).rows
    finally:
        session.rollback()
    lines: list[str] = []
    for kind, name, ddl in rows:
        if kind == EXTENSION_KIND and name in leave_out:
            continue
        lines += [*ddl.splitlines(), ""]
    return lines
