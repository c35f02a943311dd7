"""How long a migration statement may wait for a lock, and what happens when it waited too long.

Every migration statement runs under PostgreSQL's ``lock_timeout`` (2 s on protected targets, and so at
deploy time; none elsewhere unless set), and optionally ``statement_timeout``: an ``ALTER TABLE`` queued
behind a long transaction would otherwise queue every query on that table behind it. A statement that
times out (SQLSTATE 55P03) is tried again after a jittered, doubling backoff, a bounded number of times:
the whole migration's transaction for an ordinary section (the runner rolls it back), the statement alone
in a ``transaction:false`` one. A ``CREATE INDEX CONCURRENTLY`` that timed out leaves an INVALID index,
which is dropped before the build runs again (``IF NOT EXISTS`` would otherwise keep the broken one).
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dbtool import queries
from dbtool.errors import SqlFileError

if TYPE_CHECKING:
    from dbtool.engine.loader import Retry
    from dbtool.engine.session import Session
    from dbtool.migrations.files import Migration
    from dbtool.targets.resolve import Target

PROTECTED_LOCK_TIMEOUT = 2.0  # PostgreSQL's lock_timeout for each statement, on protected targets and at deploy
DEFAULT_LOCK_RETRIES = 5
RETRY_BASE_SECONDS, RETRY_MAX_SECONDS = 0.25, 8.0
LOCK_NOT_AVAILABLE = "55P03"
DROP_INDEX = "DROP INDEX CONCURRENTLY IF EXISTS {}"
CONCURRENT_INDEX = re.compile(
    rb"(?is)(?<![a-z0-9_])create\s+(?:unique\s+)?index\s+concurrently\s+(?:if\s+not\s+exists\s+)?"
    rb'(?P<name>"(?:[^"]|"")+"|[a-z_][a-z0-9_$]*)\s+on\b'
)


@dataclass(frozen=True)
class Timeouts:
    """How each migration statement may wait: ``lock`` and ``statement`` in seconds (None: no limit), and how
    often a migration that timed out on a lock is rolled back and tried again."""

    lock: float | None = None
    statement: float | None = None
    retries: int = DEFAULT_LOCK_RETRIES


def timeouts_for(
    target: Target, *, lock: float | None = None, statement: float | None = None, retries: int | None = None
) -> Timeouts:
    """The options given, else ``dbtool.toml``'s ``[migrations]``, else the defaults: a 2 s lock_timeout on a
    protected target (production, and so at deploy time), none elsewhere; 5 retries."""
    declared = target.context.declaration.migrations

    def pick(given: float | None, written: float | None, default: float | None) -> float | None:
        value = given if given is not None else written if written is not None else default
        return value or None  # 0 means no limit

    return Timeouts(
        lock=pick(lock, declared.lock_timeout, PROTECTED_LOCK_TIMEOUT if target.protected else None),
        statement=pick(statement, declared.statement_timeout, None),
        retries=next(value for value in (retries, declared.lock_retries, DEFAULT_LOCK_RETRIES) if value is not None),
    )


class LockRetries:
    """The limits a migration runs under, and its retries after a lock timeout: each said in one ``report``
    line; ``before(migration)`` is asked after each backoff (at deploy time it stops a run out of time)."""

    def __init__(self, timeouts: Timeouts, report: Callable[[str], None], before: Callable[[Migration], None]) -> None:
        self.timeouts, self.report, self.before = timeouts, report, before

    def set_limits(self, conn: Session, *, local: bool) -> None:
        """Set the statement limits: for the transaction (``local``), else for the session."""
        for name, seconds in (("lock_timeout", self.timeouts.lock), ("statement_timeout", self.timeouts.statement)):
            if seconds is not None:
                value = f"{max(1, round(seconds * 1000))}ms"
                conn.execute(queries.get("set_setting"), {"name": name, "value": value, "local": local})

    def again(self, error: SqlFileError, attempt: int, migration: Migration) -> None:
        """After the ``attempt``-th lock timeout of a whole migration: give up past the retries, else say so and
        sleep a jittered, doubling backoff."""
        if attempt > self.timeouts.retries:
            raise self._gave_up(error, attempt) from None
        delay = min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** (attempt - 1)) * (0.5 + random.random())
        self.report(
            f"lock timeout after {_seconds(self.timeouts.lock)} s at {error.message}; "
            f"retry {attempt} of {self.timeouts.retries} in {delay:.1f} s"
        )
        time.sleep(delay)
        self.before(migration)  # at deploy time: stops here once the Lambda's timer has answered

    def for_statements(self, conn: Session, migration: Migration) -> Retry:
        """For ``transaction:false`` sections: a statement that timed out on a lock runs again after the backoff
        (a failed CREATE INDEX CONCURRENTLY's INVALID index dropped first), up to the retries."""
        from dbtool.engine.session import SqlError

        timeouts = 0

        def retry(statement: bytes, error: SqlFileError, attempt: int) -> bool:
            nonlocal timeouts
            if error.sqlstate != LOCK_NOT_AVAILABLE:
                return False
            while True:
                timeouts += 1
                if timeouts > self.timeouts.retries:
                    left = ", ".join(shown for *_, shown in self._invalid_indexes(conn, statement)) or None
                    raise self._gave_up(error, timeouts, leftover=left)
                self.again(error, timeouts, migration)
                try:
                    self._drop_invalid_index(conn, statement)
                    return True
                except SqlError as failed:  # the drop waits for the same session: one more attempt spent
                    if failed.sqlstate != LOCK_NOT_AVAILABLE:
                        raise

        return retry

    def drop_invalid_indexes(self, conn: Session, sql: bytes) -> None:
        """Before a ``transaction:false`` section: the INVALID indexes an earlier run's builds left."""
        for found in CONCURRENT_INDEX.finditer(sql):
            self._drop_invalid_index(conn, found.group(0))

    def _invalid_indexes(self, conn: Session, statement: bytes) -> list[tuple[str, str, str]]:
        """The INVALID indexes a failed CREATE INDEX CONCURRENTLY ``statement`` left, as (schema, name, how it is
        shown); none when the statement is not such a build."""
        found = CONCURRENT_INDEX.match(statement)
        if found is None:
            return []
        name = found["name"].decode()
        name = name[1:-1].replace('""', '"') if name.startswith('"') else name.lower()
        return [
            (schema, index, shown)
            for schema, index, shown in conn.execute(queries.get("invalid_index"), {"name": name})
        ]

    def _drop_invalid_index(self, conn: Session, statement: bytes) -> None:
        """Drop it, so that the build runs again (IF NOT EXISTS would otherwise keep the broken one)."""
        from psycopg import sql

        for schema, name, shown in self._invalid_indexes(conn, statement):
            conn.execute(sql.SQL(DROP_INDEX).format(sql.Identifier(schema, name)))
            self.report(f"dropped the INVALID index {shown} left by the failed build")

    def _gave_up(self, error: SqlFileError, attempts: int, leftover: str | None = None) -> SqlFileError:
        tried = f"lock_timeout {_seconds(self.timeouts.lock)} s, gave up after {attempts} attempt{'s' * (attempts > 1)}"
        why = f"{tried}: another session holds a lock this statement needs (see dbtool sessions)"
        if leftover is not None:
            why += f"; the build left the INVALID index {leftover}, which the next migrate drops first"
        found = SqlFileError(error.message, f"{why}; {error.hint}" if error.hint else why)
        found.sqlstate = error.sqlstate
        return found


def _seconds(value: float | None) -> str:
    return f"{value:g}" if value is not None else "no"
