"""CREATE and DROP DATABASE, run from a maintenance connection on the target's server."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dbtool import queries
from dbtool.engine.session import SqlError
from dbtool.errors import ServerError

if TYPE_CHECKING:
    from dbtool.engine.session import Session as SqlSession

# PostgreSQL 13 added DROP DATABASE ... WITH (FORCE).
FORCE_MIN_SERVER_VERSION = 130000
CREATE = "CREATE DATABASE {}"
DROP = "DROP DATABASE IF EXISTS {}"
DROP_FORCE = "DROP DATABASE IF EXISTS {} WITH (FORCE)"
RENAME = "ALTER DATABASE {} RENAME TO {}"
RENAME_ATTEMPTS = 20
RENAME_RETRY_SECONDS = 0.05
IN_USE = "55006"  # object_in_use: a session is still on the database
DUPLICATE_DATABASE = "42P04"
# Two CREATE DATABASEs of one name at the same moment: the loser fails on pg_database's unique index.
UNIQUE_VIOLATION = "23505"


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


def create_database(admin: SqlSession, dbname: str) -> bool:
    """Create ``dbname`` from ``admin``, a maintenance session on its server; False when it already existed."""
    from psycopg import sql

    if database_exists(admin, dbname):
        return False
    try:
        admin.execute(sql.SQL(CREATE).format(sql.Identifier(dbname)))
    except SqlError as error:
        if error.sqlstate in (DUPLICATE_DATABASE, UNIQUE_VIOLATION):
            return False  # created by someone else between our check and our CREATE
        raise _server_error(f'cannot create database "{dbname}"', error) from None
    return True


def drop_database(
    admin: SqlSession,
    dbname: str,
    *,
    force: bool,
    on_sessions: Callable[[tuple[Session, ...]], None] | None = None,
) -> DropResult:
    """Drop ``dbname`` from ``admin``; with ``force``, end its other sessions (named first via ``on_sessions``).

    Without ``force`` a database with sessions is left alone and the sessions are reported, so
    production is never cut from under a running application by accident. Where the transport keeps
    sessions of its own on the database (the RDS Data API's pooled connections, which never go
    away) it is always forced.
    """
    force = force or admin.lingering_sessions
    from psycopg import sql

    if not database_exists(admin, dbname):
        return DropResult(existed=False)
    sessions = _sessions_allowed_to_end(admin, dbname, force)
    if sessions and admin.server_version < FORCE_MIN_SERVER_VERSION:
        raise ServerError(
            f'database "{dbname}" is in use and the server is older than PostgreSQL 13',
            "stop the sessions listed by ./bin/db-sessions, then drop again",
        )
    if sessions and on_sessions is not None:
        on_sessions(sessions)
    statement = DROP_FORCE if sessions else DROP
    try:
        admin.execute(sql.SQL(statement).format(sql.Identifier(dbname)))
    except SqlError as error:
        raise _server_error(f'cannot drop database "{dbname}"', error) from None
    return DropResult(existed=True, ended=sessions)


def rename_database(
    admin: SqlSession,
    old: str,
    new: str,
    *,
    force: bool,
    on_sessions: Callable[[tuple[Session, ...]], None] | None = None,
) -> None:
    """Rename ``old`` to ``new``. Its sessions are ended when ``force`` (named first via ``on_sessions``), else
    they make it refuse, as :func:`drop_database` does; the Data API's pooled connections are always ended."""
    from psycopg import sql

    force = force or admin.lingering_sessions
    for attempt in range(RENAME_ATTEMPTS):
        sessions = _sessions_allowed_to_end(admin, old, force)
        if sessions:
            if attempt == 0 and on_sessions is not None:
                on_sessions(sessions)
            admin.execute(queries.get("end_database_sessions"), {"dbname": old})
        try:
            admin.execute(sql.SQL(RENAME).format(sql.Identifier(old), sql.Identifier(new)))
            return
        except SqlError as error:
            if error.sqlstate != IN_USE or attempt == RENAME_ATTEMPTS - 1:
                raise _server_error(f'cannot rename database "{old}" to "{new}"', error) from None
            time.sleep(RENAME_RETRY_SECONDS)  # a session ended a moment ago is still leaving


def _sessions_allowed_to_end(admin: SqlSession, dbname: str, force: bool) -> tuple[Session, ...]:
    """The other sessions on ``dbname``; without ``force``, any of them is a refusal that names them."""
    rows = admin.execute(queries.get("database_sessions"), {"dbname": dbname})
    sessions = tuple(Session(*row) for row in rows)
    if sessions and not force:
        raise ServerError(
            f'database "{dbname}" has {len(sessions)} other session(s): {_describe(sessions)}',
            "stop the application, or pass --force to end them",
        )
    return sessions


def _describe(sessions: tuple[Session, ...]) -> str:
    return ", ".join(f"pid {s.pid} {s.user} {s.application or '-'}" for s in sessions)


def database_exists(session: SqlSession, dbname: str) -> bool:
    return bool(session.execute(queries.get("database_exists"), {"dbname": dbname}).scalar())


def _server_error(what: str, error: SqlError) -> ServerError:
    return ServerError(f"{what}: {error.message}", error.hint)
