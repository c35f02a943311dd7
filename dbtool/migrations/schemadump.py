"""``dbtool schema dump``: db/schema.sql from the database itself, migrations table rows included.

The schema comes from ``pg_dump --schema-only`` (the password through ``PGPASSWORD``, never argv).
The rows of ``schema_migrations`` follow it, as dbmate's dump does, so that loading the file (``db-setup``
or ``schema-load``) leaves those migrations applied and ``migrate`` runs only newer ones.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from dbtool import queries
from dbtool.errors import DbtoolError, ToolMissing
from dbtool.targets.psql import find_pg_dump, password_environment, require_network_route
from dbtool.targets.resolve import Target

MISMATCH = re.compile(r"server version: (?P<server>[\d.]+).*?pg_dump version: (?P<client>[\d.]+)", re.S)
# pg_dump 15.18+ brackets a plain dump with \restrict KEY / \unrestrict KEY, a random key on each run.
RESTRICT = re.compile(r"^\\(?P<command>restrict|unrestrict) (?P<key>[A-Za-z0-9]+)$", re.M)
ROWS_HEADER = "\n--\n-- Applied migrations (dbtool schema dump): loading this file marks them applied\n--\n\n"


def dump_schema(target: Target, path: Path) -> int:
    """Write the target's schema and applied migrations to ``path``; the number of migration rows."""
    schema = pg_dump_schema(target)
    rows = _migration_rows(target)
    text = schema + (ROWS_HEADER + rows[1] if rows[0] else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return rows[0]


def pg_dump_schema(target: Target) -> str:
    """``pg_dump --schema-only`` of the target, its ``\\restrict`` key made stable."""
    require_network_route(target, "schema dump (pg_dump)")
    return stable_restrict_key(_pg_dump(target))


def stable_restrict_key(dump: str) -> str:
    """The dump with its ``\\restrict`` key replaced by one derived from the rest of it: the same schema gives
    the same bytes (no diff in git, the same setup template), while the key stays one that the dump's own
    content cannot name (it would have to contain its own hash), which is what psql's check needs."""
    import hashlib

    found = RESTRICT.search(dump)
    if found is None:
        return dump  # an older pg_dump: nothing random
    digest = hashlib.sha256(RESTRICT.sub(r"\\\g<command>", dump).encode()).hexdigest()
    key = digest[: len(found["key"])] if len(found["key"]) <= len(digest) else digest
    return RESTRICT.sub(lambda match: f"\\{match['command']} {key}", dump)


def _pg_dump(target: Target) -> str:
    argv = [
        find_pg_dump(),
        "--schema-only",
        "--no-owner",
        "--no-privileges",
        "--dbname",
        target.conninfo_for(with_password=False),
    ]
    result = subprocess.run(argv, capture_output=True, text=True, env=password_environment(target))
    if result.returncode == 0:
        return result.stdout
    error = target.redact(result.stderr.strip())
    mismatch = MISMATCH.search(error)
    if mismatch is not None:
        major = mismatch["server"].split(".")[0]
        raise ToolMissing(
            f"pg_dump {mismatch['client']} is older than the server ({mismatch['server']}) and refuses to dump it",
            f"install the version {major} client: apt-get install postgresql-client-{major}, or put its bin on PATH",
        )
    first = error.splitlines()[0] if error else f"exit code {result.returncode}"
    raise DbtoolError(f"pg_dump failed: {first.removeprefix('pg_dump: error: ')}")


def _migration_rows(target: Target) -> tuple[int, str]:
    """INSERTs of schema_migrations' rows (as literals, applied_at kept for rollback order)."""
    from psycopg import sql

    from dbtool.engine.session import open_session

    with open_session(target) as session:
        table = session.execute(queries.get("migrations_table")).one()
        if table is None:
            return 0, ""
        schema, name, extended = table
        columns = ["version", "applied_at", "checksum", "name"] if extended else ["version"]
        identifier = sql.Identifier(schema, name)
        query = sql.SQL("SELECT {} FROM {} ORDER BY {}").format(
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            identifier,
            sql.SQL("applied_at, version" if extended else "version"),
        )
        values = [
            sql.SQL("({})").format(sql.SQL(", ").join(map(sql.Literal, row))).as_string(None)
            for row in session.execute(query)
        ]
        if not values:
            return 0, ""
        insert = (
            sql.SQL("INSERT INTO {} ({}) VALUES\n    ")
            .format(identifier, sql.SQL(", ").join(map(sql.Identifier, columns)))
            .as_string(None)
        )
    return len(values), insert + ",\n    ".join(values) + ";\n"
