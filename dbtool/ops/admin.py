"""CREATE and DROP DATABASE, run from a maintenance connection on the target's server."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dbtool import queries
from dbtool.engine.connection import connect_maintenance
from dbtool.errors import ServerError
from dbtool.targets.resolve import Target

# PostgreSQL 13 added DROP DATABASE ... WITH (FORCE).
FORCE_MIN_SERVER_VERSION = 130000
CREATE = "CREATE DATABASE {}"
DROP = "DROP DATABASE IF EXISTS {}"
DROP_FORCE = "DROP DATABASE IF EXISTS {} WITH (FORCE)"


@dataclass(frozen=True)
class Session:
    """A session connected to a database that a drop would end."""

    pid: int
    user: str
    application: str


@dataclass(frozen=True)
class DropResult:
    existed: bool
    ended: tuple[Session, ...] = ()


def create_database(target: Target) -> bool:
    """Create the target's database; False when it already existed (not an error)."""
    import psycopg
    from psycopg import sql

    with connect_maintenance(target) as conn:
        if _exists(conn, target.dbname):
            return False
        try:
            conn.execute(sql.SQL(CREATE).format(sql.Identifier(target.dbname)))
        except psycopg.errors.DuplicateDatabase:
            return False  # created by someone else between our check and our CREATE
        except psycopg.Error as error:
            raise _server_error(f'cannot create database "{target.dbname}"', error) from None
    return True


def drop_database(
    target: Target, *, force: bool, on_sessions: Callable[[tuple[Session, ...]], None] | None = None
) -> DropResult:
    """Drop the target's database; with ``force``, end its other sessions (named first via ``on_sessions``).

    Without ``force`` a database with sessions is left alone and the sessions are reported, so
    production is never cut from under a running application by accident.
    """
    import psycopg
    from psycopg import sql

    with connect_maintenance(target) as conn:
        if not _exists(conn, target.dbname):
            return DropResult(existed=False)
        rows = conn.execute(queries.get("database_sessions"), {"dbname": target.dbname})
        sessions = tuple(Session(*row) for row in rows)
        if sessions and not force:
            raise ServerError(
                f'database "{target.dbname}" has {len(sessions)} other session(s): {_describe(sessions)}',
                "stop the application, or pass --force to end them",
            )
        if sessions and conn.info.server_version < FORCE_MIN_SERVER_VERSION:
            raise ServerError(
                f'database "{target.dbname}" is in use and the server is older than PostgreSQL 13',
                "stop the sessions listed by ./bin/db-sessions, then drop again",
            )
        if sessions and on_sessions is not None:
            on_sessions(sessions)
        statement = DROP_FORCE if sessions else DROP
        try:
            conn.execute(sql.SQL(statement).format(sql.Identifier(target.dbname)))
        except psycopg.Error as error:
            raise _server_error(f'cannot drop database "{target.dbname}"', error) from None
    return DropResult(existed=True, ended=sessions)


def _describe(sessions: tuple[Session, ...]) -> str:
    return ", ".join(f"pid {s.pid} {s.user} {s.application or '-'}" for s in sessions)


def _exists(conn: object, dbname: str) -> bool:
    row = conn.execute(queries.get("database_exists"), {"dbname": dbname}).fetchone()  # type: ignore[attr-defined]
    return bool(row and row[0])


def _server_error(what: str, error: Exception) -> ServerError:
    diag = getattr(error, "diag", None)
    message = getattr(diag, "message_primary", None) or str(error).strip()
    return ServerError(f"{what}: {message}", getattr(diag, "message_hint", None))
