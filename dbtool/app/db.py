"""Connections and a pool for application code, resolved exactly as the CLI resolves them.

This replaces the backend's ``lib/db.py``, whose known faults each have an answer here:

* its pool opened at import time and was never closed (``couldn't stop thread 'pool-1-worker-0'``
  at exit, sessions dropped without a goodbye): a :class:`Db` opens when asked (``open()`` or
  ``with``), and an open one closes itself at interpreter exit;
* ``query_commit`` looked for ``RETURNING`` with a regex and swallowed errors: here the cursor says
  whether rows came back, and every error propagates as psycopg raised it, with PostgreSQL's
  SQLSTATE, message, detail and hint in ``error.sqlstate`` and ``error.diag``;
* ``query_object_json`` crashed on no rows and ``query_value`` on no rows: both return ``None``;
* every SQL parameter was printed: statements are logged to the ``dbtool.sql`` logger at DEBUG, with
  parameter names only unless ``log_parameters=True``.

The JSON helpers let the server build the JSON (``json_agg``/``row_to_json``), as the old ones did,
so timestamps, UUIDs and numerics come out in PostgreSQL's JSON forms, unchanged for the frontend.
Pool connections run in autocommit: a helper is one statement and one round trip, with no
``BEGIN``/``COMMIT`` around it. Use ``with db.connection() as conn, conn.transaction():`` for more.
"""

from __future__ import annotations

import atexit
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from dbtool.errors import DbtoolError
from dbtool.targets.resolve import Target, resolve_target

if TYPE_CHECKING:
    import psycopg
    from psycopg.sql import Composed
    from psycopg_pool import ConnectionPool

Params = Mapping[str, Any] | Sequence[Any] | None

logger = logging.getLogger("dbtool.sql")

# The user's statement goes on its own lines, so a trailing "-- comment" cannot swallow the ")".
ARRAY_JSON = "SELECT coalesce(json_agg(array_row), '[]'::json) FROM (\n{query}\n) AS array_row"
OBJECT_JSON = "SELECT row_to_json(object_row) FROM (\n{query}\n) AS object_row"
NOT_OPEN_HINT = "use 'with dbtool.pool() as db:', or call db.open() first"


class PoolNotOpen(DbtoolError):
    """A query was made on a :class:`Db` that is not open (never opened, or closed)."""


class QueryShapeError(DbtoolError):
    """A JSON helper was given something other than exactly one SQL statement."""


def connect(target: str | Target = "local", *, autocommit: bool = False) -> psycopg.Connection:
    """One psycopg connection to ``target`` (``local``: CONNECTION_URL; ``prod``: PROD_CONNECTION_URL and friends).

    Connection failures raise :class:`dbtool.ConnectionFailed` (or its ``AuthenticationFailed`` /
    ``DatabaseMissing`` subclasses) with a hint, as the CLI reports them.
    """
    from dbtool.engine import connection

    resolved = _libpq_target(target)
    return connection.connect(resolved, autocommit=autocommit)


def _libpq_target(target: str | Target) -> Target:
    """The resolved target, which must be reachable by libpq: the pool holds psycopg connections."""
    resolved = target if isinstance(target, Target) else resolve_target(target)
    if not resolved.transport.psql_route:
        raise DbtoolError(
            f"dbtool.connect and dbtool.pool need a network connection, and {resolved.display} has none",
            "the target goes through the RDS Data API (PROD_DATA_API_CLUSTER_ARN); in the application, use "
            "the rds-data client, or set PROD_CONNECTION_URL where there is a route",
        )
    return resolved


def pool(target: str | Target = "local", **options: Any) -> Db:
    """A :class:`Db` for ``target``, not yet open: ``with dbtool.pool() as db:`` or ``db.open()``."""
    return Db(target, **options)


class Db:
    """A psycopg connection pool with the query helpers of the backend's ``lib/db.py``.

    ``min_size``/``max_size`` size the pool; ``timeout`` is how long a query waits for a free
    connection before ``psycopg_pool.PoolTimeout``; other keyword arguments go to
    :class:`psycopg_pool.ConnectionPool` (``max_idle``, ``max_lifetime``, ``name``, ...). With an RDS
    IAM target every new connection gets a fresh token.
    """

    def __init__(
        self,
        target: str | Target = "local",
        *,
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 30.0,
        log_parameters: bool = False,
        **pool_options: Any,
    ) -> None:
        self.target = _libpq_target(target)
        self.log_parameters = log_parameters
        self._options = {"min_size": min_size, "max_size": max_size, "timeout": timeout, **pool_options}
        self._pool: ConnectionPool | None = None

    def __repr__(self) -> str:
        state = "open" if self._pool is not None else "closed"
        return f"<Db {self.target.name} {self.target.display} {state}>"

    def open(self, *, wait: bool = True, timeout: float | None = None) -> Db:
        """Start the pool; with ``wait``, fail here (with the CLI's error and hint) if the server cannot be used."""
        if self._pool is not None:
            return self
        from psycopg_pool import ConnectionPool, PoolTimeout

        password_source = self.target.password_source
        options = {"name": f"dbtool-{self.target.name}", **self._options}
        pool = ConnectionPool(
            self.target.conninfo_for(with_password=password_source is None),
            # A callable is called for every new connection: a fresh IAM token each time.
            kwargs=(lambda: {"autocommit": True, "password": password_source()})
            if password_source is not None
            else {"autocommit": True},
            open=False,
            **options,
        )
        pool.open()
        if wait:
            try:
                pool.wait(timeout=timeout if timeout is not None else float(self.target.params["connect_timeout"]))
            except PoolTimeout:
                pool.close()
                connect(self.target).close()  # raises the classified error: refused, password, database...
                raise
        self._pool = pool
        # A pool left open must still end its sessions at exit: garbage collection does not reach it while
        # something (a background job's thread) holds it, and the server would count them abandoned.
        atexit.register(self.close)
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Close every connection and stop the pool's threads. Safe to call twice."""
        pool, self._pool = self._pool, None
        if pool is not None:
            atexit.unregister(self.close)
            pool.close(timeout=timeout)

    def __enter__(self) -> Db:
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """Borrow a pool connection (autocommit) for work the helpers do not cover."""
        if self._pool is None:
            raise PoolNotOpen(f"the pool for {self.target.display} is not open", NOT_OPEN_HINT)
        with self._pool.connection() as conn:
            yield conn

    def query_array_json(self, sql: str, params: Params = None) -> list[dict[str, Any]]:
        """Every row of a query as a dict, JSON-typed by the server; ``[]`` when there are none."""
        value = self._first_value(_wrapped(ARRAY_JSON, sql), params, sql)
        return value if value is not None else []

    def query_object_json(self, sql: str, params: Params = None) -> dict[str, Any] | None:
        """The first row of a query as a dict, JSON-typed by the server; ``None`` when there is none."""
        value: dict[str, Any] | None = self._first_value(_wrapped(OBJECT_JSON, sql), params, sql)
        return value

    def query_value(self, sql: str, params: Params = None) -> Any:
        """The first column of the first row; ``None`` when there is no row."""
        return self._first_value(sql, params, sql)

    def query_commit(self, sql: str, params: Params = None) -> Any:
        """Run one statement, committed; the first value it returned (``RETURNING``), else ``None``."""
        return self._first_value(sql, params, sql)

    def _first_value(self, query: str | Composed, params: Params, logged: str) -> Any:
        started = time.perf_counter()
        try:
            with self.connection() as conn:
                cursor = conn.execute(query, params)  # type: ignore[arg-type]
                # The cursor knows whether the statement returned rows; no guessing from the SQL text.
                row = cursor.fetchone() if cursor.description is not None else None
        finally:
            if logger.isEnabledFor(logging.DEBUG):
                self._log(logged, params, time.perf_counter() - started)
        return row[0] if row else None

    def _log(self, sql: str, params: Params, seconds: float) -> None:
        if params is None:
            shown = ""
        elif self.log_parameters:
            shown = f" params={params!r}"
        elif isinstance(params, Mapping):
            shown = f" params: {', '.join(map(str, params))}"
        else:
            shown = f" params: {len(params)} positional"
        logger.debug("%s (%.1f ms)%s", sql.strip(), seconds * 1000, shown)


@lru_cache(maxsize=512)
def _wrapped(wrapper: str, sql: str) -> Composed:
    """``sql`` inside a JSON wrapper: exactly one statement, its trailing ``;`` removed (cached per text)."""
    from psycopg import sql as composed

    from dbtool.engine.split import Statement, statements

    found = list(statements(sql.encode()))
    if len(found) != 1 or not isinstance(found[0], Statement):
        raise QueryShapeError(
            f"expected exactly one SQL statement, found {len(found)}",
            "the JSON helpers wrap a single SELECT; run other statements with query_commit",
        )
    query = composed.SQL(found[0].text.removesuffix(";"))  # type: ignore[arg-type]
    return composed.SQL(wrapper).format(query=query)  # type: ignore[arg-type]
