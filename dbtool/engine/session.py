"""The one interface everything that runs SQL talks to, whatever carries it.

The SQL file engine, migrations, create/drop, sessions, doctor and wait hold a :class:`Session`
and never a driver's connection. Two transports implement it: libpq (:mod:`dbtool.engine.libpq`,
a psycopg connection) and, for Aurora without a network route, the RDS Data API. A transport turns
its driver's failures into :class:`SqlError`, so callers read the server's SQLSTATE, message and
position the same way from either.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from dbtool.engine.split import Run
    from dbtool.targets.resolve import Target

Params = Mapping[str, Any] | Sequence[Any] | None


class SqlError(Exception):
    """An error the server reported for a statement, with PostgreSQL's fields as far as the transport has them.

    ``position`` is the server's 1-based character position in the statement text sent; ``offset`` is
    the byte offset it points at in the SQL the caller passed (the failing statement's start when the
    server gave no position), in ``run`` when the error belongs to an earlier run of a file than the
    one being sent. ``copy_line`` is the 1-based line of COPY data that failed.
    """

    def __init__(
        self,
        message: str,
        *,
        sqlstate: str | None = None,
        detail: str | None = None,
        hint: str | None = None,
        context: str | None = None,
        position: int | None = None,
        offset: int | None = None,
        copy_line: int | None = None,
        run: Run | None = None,
    ) -> None:
        super().__init__(message)
        self.run = run
        self.message, self.sqlstate, self.detail, self.hint = message, sqlstate, detail, hint
        self.context, self.position, self.offset, self.copy_line = context, position, offset, copy_line

    def describe(self) -> str:
        """The primary message with its detail, as the one-line errors show it."""
        return f"{self.message} ({self.detail.rstrip('.')})" if self.detail else self.message


@dataclass
class Result:
    """What a statement returned: its rows (tuples of Python values), column names and affected-row count."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    rowcount: int = -1

    def one(self) -> tuple[Any, ...] | None:
        return self.rows[0] if self.rows else None

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self.rows)


class Session(Protocol):
    """A conversation with one database on a target's server.

    Outside :meth:`begin` … :meth:`commit` every statement commits on its own.
    """

    dbname: str
    transport: str  # "libpq" or "data-api", for messages
    session_locks: bool  # whether a session-level advisory lock lasts (not over the Data API's pooled calls)
    lingering_sessions: bool  # the service keeps sessions of its own on a database (DROP must end them)
    statement_limit: int | None  # characters one statement may have (the Data API's 65,536), or None

    @property
    def server_version(self) -> int: ...  # PostgreSQL's server_version_num, e.g. 150008

    @property
    def in_transaction(self) -> bool: ...  # inside a transaction, ours or one a statement began

    def execute(self, query: Any, params: Params = None) -> Result:
        """One statement (text, bytes or a psycopg.sql composition), with ``%(name)s`` parameters."""
        ...

    def execute_batch(self, run: Run) -> None:
        """A run of a file's statements inside the caller's transaction, sent as the transport sends them best.

        A transport may hold statements back to send with the next run's (every other call sends them
        first). A failure raises :class:`SqlError` whose ``run`` and ``offset`` say where it points;
        the transaction is then failed, as after any error.
        """
        ...

    def execute_statement(self, sql: bytes, kind: str | None = None) -> None:
        """One statement of a file, as written; ``kind`` is the splitter's (``begin``, ``commit`` …)."""
        ...

    def refuses(self, sql: bytes, *, standard_strings: bool = True) -> tuple[str, str] | None:
        """Why a statement over :attr:`statement_limit` cannot be sent, and a hint; None when it can (split).

        Asked of every such statement of a file before any of it is sent.
        """
        ...

    def copy_in(self, statement: bytes, data: Iterator[bytes]) -> None:
        """``COPY … FROM stdin`` with its data; a failing row raises :class:`SqlError` with ``copy_line``."""
        ...

    def start_file(self) -> None:
        """Get ready to run a file's bytes as written (libpq: the file is UTF-8 unless it says otherwise)."""
        ...

    def flush(self) -> None:
        """Send what :meth:`execute_batch` held back; its errors point at their runs."""
        ...

    def begin(self) -> None: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def add_notice_handler(self, handler: Any) -> None:
        """``handler(text)`` for each server notice, where the transport carries them."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Session: ...

    def __exit__(self, *exc: object) -> None: ...


def open_session(target: Target, *, dbname: str | None = None, connect_timeout: float | None = None) -> Session:
    """A session on the target's database (or ``dbname`` on the same server), over the target's transport.

    Connection failures raise :class:`~dbtool.errors.ConnectionFailed` and its subclasses, with a hint.
    """
    if target.transport.kind == "data-api":
        from dbtool.engine.dataapi import open_data_api

        return open_data_api(target, dbname=dbname)
    from dbtool.engine.libpq import open_libpq

    return open_libpq(target, dbname=dbname, connect_timeout=connect_timeout)


def open_maintenance_session(target: Target) -> Session:
    """A session on a database other than the target's, for CREATE/DROP DATABASE and server-wide views."""
    from dbtool.errors import DatabaseMissing
    from dbtool.targets.resolve import MAINTENANCE_DATABASES

    last: DatabaseMissing | None = None
    for dbname in MAINTENANCE_DATABASES:
        if dbname == target.dbname:
            continue
        try:
            return open_session(target, dbname=dbname)
        except DatabaseMissing as error:
            last = error
    assert last is not None
    raise last
