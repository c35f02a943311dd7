"""The libpq transport: a :class:`~dbtool.engine.session.Session` over one psycopg connection.

The connection is in autocommit; :meth:`LibpqSession.begin` and :meth:`commit` send ``BEGIN`` and
``COMMIT`` themselves, which costs the same round trips psycopg's own transactions cost.

A file's statements travel many per query (the simple protocol). Each batch runs under a savepoint
so that, when the server's error carries no position (a constraint violation, say), the batch can
be replayed statement by statement to name the one that failed. The savepoint is moved at the end
of each batch's own query, costing no round trip.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from dbtool.engine.session import Params, Result, SqlError

if TYPE_CHECKING:
    import psycopg

    from dbtool.engine.split import Run
    from dbtool.targets.resolve import Target

SET_CLIENT_ENCODING = b"SET client_encoding = 'UTF8'"
SAVEPOINT = b"SAVEPOINT dbtool_batch"
# After a batch, in the same query: if the server rejects a batch's message whole (an encoding
# error) or fails inside it, the savepoint in place is still the one from just before the batch.
MOVE_SAVEPOINT = b"RELEASE SAVEPOINT dbtool_batch; SAVEPOINT dbtool_batch"
ROLLBACK_TO_SAVEPOINT = b"ROLLBACK TO SAVEPOINT dbtool_batch"
INLINE_SAVEPOINT_BYTES = 1 << 20
SPLIT_BYTES = 8 << 20  # an INSERT larger than this goes in parts of PART_BYTES, when that is the same thing
PART_BYTES = 1 << 20
_COPY_CONTEXT = re.compile(r"COPY [^,]*, line (\d+)")


class LibpqSession:
    """A psycopg connection in autocommit behind the session interface."""

    transport = "libpq"
    session_locks = True
    lingering_sessions = False
    statement_limit = None

    def __init__(self, conn: psycopg.Connection, dbname: str) -> None:
        self.conn, self.cursor, self.dbname = conn, conn.cursor(), dbname
        self._savepoint = False  # SAVEPOINT dbtool_batch is in place in this transaction

    @property
    def server_version(self) -> int:
        return self.conn.info.server_version

    @property
    def in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus

        return self.conn.info.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR)

    def execute(self, query: Any, params: Params = None) -> Result:
        import psycopg

        try:
            cursor = self.cursor.execute(query, params)
            rows = cursor.fetchall() if cursor.description else []
        except psycopg.Error as error:
            raise sql_error(error) from None
        columns = [column.name for column in cursor.description or ()]
        return Result(rows, columns, cursor.rowcount)

    def execute_batch(self, run: Run) -> None:
        import psycopg

        sql, bounds = run.sql, run.bounds
        if not self._savepoint:
            self._run(SAVEPOINT)
            self._savepoint = True
        if len(sql) > SPLIT_BYTES and len(bounds) == 1 and run.standard_strings and self._in_parts(run):
            self._run(MOVE_SAVEPOINT)
            return
        # The savepoint moves in the batch's own query when it fits behind it: not behind a statement the
        # file's end left open (the server would read our SQL as its rest, and say so in its error), nor
        # behind megabytes (the query would be a second copy of them).
        inline = sql.endswith(b";") and len(sql) <= INLINE_SAVEPOINT_BYTES
        query = sql + MOVE_SAVEPOINT if inline else sql
        try:
            self.cursor.execute(query)
        except psycopg.Error as error:
            if error.diag.statement_position or not error.sqlstate:
                raise sql_error(error, query, fallback=bounds[0][0]) from None
            first = sql_error(error, fallback=bounds[0][0])
        else:
            if not inline:
                self._run(MOVE_SAVEPOINT)
            return
        self._run(ROLLBACK_TO_SAVEPOINT)
        for start, end in bounds:  # replay one by one so the error names its own statement
            try:
                self.execute_statement(sql[start:end])
            except SqlError as failed:
                failed.offset = start + (failed.offset or 0)
                raise
        raise first

    def _in_parts(self, run: Run) -> bool:
        """Send a multi-row INSERT of megabytes as INSERTs of about a megabyte each, when that is the same thing.

        libpq holds a query twice while sending it (its send buffer and its copy of the text), so a 100 MB
        INSERT sent whole costs 300 MB with the file's own copy; in parts it costs the file's copy.
        Whether the parts mean what the whole means is :mod:`dbtool.engine.inserts`' question (constant
        rows) and the table's (no trigger that sees statements, no rule, no volatile default).
        """
        import psycopg

        from dbtool import queries
        from dbtool.engine import inserts

        sql = run.sql
        cut = inserts.parts(sql, PART_BYTES)
        if cut is None:
            return False
        if any(self.execute(queries.get(inserts.TABLE_CHECK), {"table": cut.table}).rows[0][:3]):
            return False
        for start, end in cut.ranges:
            part = cut.head + sql[start:end]
            try:
                self.cursor.execute(part)
            except psycopg.Error as error:
                failed = sql_error(error, part, fallback=0)
                offset = failed.offset or 0
                failed.offset = cut.start if offset < len(cut.head) else start + offset - len(cut.head)
                raise failed from None
        return True

    def execute_statement(self, sql: bytes, kind: str | None = None) -> None:
        import psycopg

        try:
            self.cursor.execute(sql)
        except psycopg.Error as error:
            raise sql_error(error, sql, fallback=0) from None

    def refuses(self, sql: bytes, *, standard_strings: bool = True) -> tuple[str, str] | None:
        return None  # libpq takes a statement of any size

    def copy_in(self, statement: bytes, data: Iterator[bytes]) -> None:
        import psycopg

        try:
            with self.cursor.copy(statement) as copy:
                for chunk in data:
                    copy.write(chunk)
            if self._savepoint:  # a failure after this must not roll the COPY back
                self.cursor.execute(MOVE_SAVEPOINT)
        except psycopg.Error as error:
            failed = sql_error(error)
            context = _COPY_CONTEXT.search(failed.context or "")
            failed.copy_line = int(context.group(1)) if context else None
            raise failed from None

    def start_file(self) -> None:
        self._run(SET_CLIENT_ENCODING)  # the file's bytes are sent as they are

    def flush(self) -> None:
        """Nothing is held back: each batch is sent when it is given."""

    def begin(self) -> None:
        self._run(b"BEGIN")
        self._savepoint = False

    def commit(self) -> None:
        self._run(b"COMMIT")
        self._savepoint = False

    def rollback(self) -> None:
        self._run(b"ROLLBACK")
        self._savepoint = False

    def add_notice_handler(self, handler: Callable[[str], None]) -> None:
        self.conn.add_notice_handler(lambda diag: handler(f"{diag.severity.lower()}: {diag.message_primary}"))

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> LibpqSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, query: bytes) -> None:
        import psycopg

        try:
            self.cursor.execute(query)
        except psycopg.Error as error:
            raise sql_error(error) from None


def open_libpq(target: Target, *, dbname: str | None = None, connect_timeout: float | None = None) -> LibpqSession:
    """A session on the target's database (or ``dbname`` on the same server)."""
    from dbtool.engine.connection import connect

    conn = connect(target, dbname=dbname, autocommit=True, connect_timeout=connect_timeout)
    return LibpqSession(conn, dbname or target.dbname)


def sql_error(error: psycopg.Error, query: bytes | None = None, *, fallback: int | None = None) -> SqlError:
    """psycopg's error as a :class:`SqlError`, located in ``query`` by its position (else at ``fallback``)."""
    diag = error.diag
    position = int(diag.statement_position) if diag.statement_position else None
    offset = fallback
    if position is not None and query is not None:
        offset = byte_offset(query, position)
    return SqlError(
        diag.message_primary or str(error).strip() or type(error).__name__,
        sqlstate=error.sqlstate,
        detail=diag.message_detail,
        hint=diag.message_hint,
        context=diag.context,
        position=position,
        offset=offset,
    )


def byte_offset(query: bytes, position: int) -> int:
    """Byte offset of the server's 1-based character ``position`` in ``query``."""
    try:
        return len(query.decode("utf-8")[: position - 1].encode("utf-8"))
    except UnicodeDecodeError:  # a file in a one-byte encoding, declared by its own SET client_encoding
        return position - 1
