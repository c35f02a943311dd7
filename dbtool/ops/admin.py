"""CREATE and DROP DATABASE, run from a maintenance connection on the target's server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dbtool import queries
from dbtool.engine.session import SqlError, open_maintenance_session
from dbtool.errors import ServerError

if TYPE_CHECKING:
    from dbtool.engine.session import Session as SqlSession
    from dbtool.targets.resolve import Target

# PostgreSQL 13 added DROP DATABASE ... WITH (FORCE).
FORCE_MIN_SERVER_VERSION = 130000
CREATE = "CREATE DATABASE {}"
DROP = "DROP DATABASE IF EXISTS {}"
DROP_FORCE = "DROP DATABASE IF EXISTS {} WITH (FORCE)"
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


def create_database(target: Target, *, session: SqlSession | None = None) -> bool:
    """Create the target's database; False when it already existed (not an error).

    ``session``, when given, is a maintenance session to use (and leave open) instead of a new one.
    """
    from psycopg import sql

    with _maintenance(target, session) as maintenance:
        if _exists(maintenance, target.dbname):
            return False
        try:
            maintenance.execute(sql.SQL(CREATE).format(sql.Identifier(target.dbname)))
        except SqlError as error:
            if error.sqlstate in (DUPLICATE_DATABASE, UNIQUE_VIOLATION):
                return False  # created by someone else between our check and our CREATE
            raise _server_error(f'cannot create database "{target.dbname}"', error) from None
    return True


def drop_database(
    target: Target,
    *,
    force: bool,
    on_sessions: Callable[[tuple[Session, ...]], None] | None = None,
    session: SqlSession | None = None,
) -> DropResult:
    """Drop the target's database; with ``force``, end its other sessions (named first via ``on_sessions``).

    Without ``force`` a database with sessions is left alone and the sessions are reported, so
    production is never cut from under a running application by accident. Through the RDS Data
    API it is always forced: the API's own pooled connections are sessions that never go away.
    ``session``, when given, is a maintenance session to use (and leave open) instead of a new one.
    """
    with _maintenance(target, session) as maintenance:
        return _drop(maintenance, target, force=force, on_sessions=on_sessions)


@contextmanager
def _maintenance(target: Target, session: SqlSession | None) -> Iterator[SqlSession]:
    """The caller's maintenance session, left open; else a new one, closed after."""
    if session is not None:
        yield session
        return
    with open_maintenance_session(target) as own:
        yield own


def _drop(
    session: SqlSession, target: Target, *, force: bool, on_sessions: Callable[[tuple[Session, ...]], None] | None
) -> DropResult:
    force = force or target.transport.lingering_sessions
    from psycopg import sql

    if not _exists(session, target.dbname):
        return DropResult(existed=False)
    rows = session.execute(queries.get("database_sessions"), {"dbname": target.dbname})
    sessions = tuple(Session(*row) for row in rows)
    if sessions and not force:
        raise ServerError(
            f'database "{target.dbname}" has {len(sessions)} other session(s): {_describe(sessions)}',
            "stop the application, or pass --force to end them",
        )
    if sessions and session.server_version < FORCE_MIN_SERVER_VERSION:
        raise ServerError(
            f'database "{target.dbname}" is in use and the server is older than PostgreSQL 13',
            "stop the sessions listed by ./bin/db-sessions, then drop again",
        )
    if sessions and on_sessions is not None:
        on_sessions(sessions)
    statement = DROP_FORCE if sessions else DROP
    try:
        session.execute(sql.SQL(statement).format(sql.Identifier(target.dbname)))
    except SqlError as error:
        raise _server_error(f'cannot drop database "{target.dbname}"', error) from None
    return DropResult(existed=True, ended=sessions)


def _describe(sessions: tuple[Session, ...]) -> str:
    return ", ".join(f"pid {s.pid} {s.user} {s.application or '-'}" for s in sessions)


def _exists(session: SqlSession, dbname: str) -> bool:
    return bool(session.execute(queries.get("database_exists"), {"dbname": dbname}).scalar())


def _server_error(what: str, error: SqlError) -> ServerError:
    return ServerError(f"{what}: {error.message}", error.hint)
