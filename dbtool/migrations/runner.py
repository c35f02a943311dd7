"""Apply and roll back migrations: never skipped, never half-applied, never two runs at once.

* **State** is dbmate's ``schema_migrations (version varchar(128) primary key)`` plus ``applied_at``,
  ``checksum`` and ``name`` columns that dbmate's own INSERT leaves to their defaults, so a database
  can move between the tools. A migration and its row commit in one transaction.
* **Order**: pending migrations apply by version (as numbers); rollback undoes in reverse order of
  *application* (``applied_at``), not the highest version as dbmate does.
* **One run at a time**: a session-level advisory lock, taken before the applied versions are read.
  It is polled with ``pg_try_advisory_lock`` rather than waited on: a session blocked inside
  ``pg_advisory_lock`` holds a snapshot, and the holder's ``CREATE INDEX CONCURRENTLY`` waits for
  every such snapshot, which would deadlock the two. Through the RDS Data API, whose calls share
  pooled connections, a session lock means nothing: each migration instead takes a
  transaction-scoped lock inside its own transaction and reads the applied versions again under it
  (``transaction:false`` sections run without one).
* **Trust**: an applied migration whose up section changed since stops ``migrate`` (both checksums
  shown) unless allowed; a pending migration older than the newest applied one is applied with a
  warning, or refused with ``strict``.
* **Hazards**: on a protected target (production, and so at deploy time) the pending migrations are read
  first (:mod:`dbtool.migrations.hazards`), and one with a hazard nobody acknowledged stops ``migrate``
  before anything is applied.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from dbtool import queries
from dbtool.errors import SqlFileError
from dbtool.migrations.files import DIRECTORY, Migration, MigrationError, Section, read_migrations

if TYPE_CHECKING:
    from dbtool.engine.loader import Retry
    from dbtool.engine.session import Session
    from dbtool.targets.resolve import Target

LOCK_KEY = int.from_bytes(hashlib.sha256(b"dbtool schema_migrations").digest()[:8], "big", signed=True)
LOCK_POLL_SECONDS = 0.05
DEFAULT_LOCK_WAIT = 60.0  # for another migrate's advisory lock
PROTECTED_LOCK_TIMEOUT = 2.0  # PostgreSQL's lock_timeout for each statement, on protected targets and at deploy
DEFAULT_LOCK_RETRIES = 5
RETRY_BASE_SECONDS, RETRY_MAX_SECONDS = 0.25, 8.0
LOCK_NOT_AVAILABLE = "55P03"
DROP_INDEX = "DROP INDEX CONCURRENTLY IF EXISTS {}"
CONCURRENT_INDEX = re.compile(
    rb"(?is)(?<![a-z0-9_])create\s+(?:unique\s+)?index\s+concurrently\s+(?:if\s+not\s+exists\s+)?"
    rb'(?P<name>"(?:[^"]|"")+"|[a-z_][a-z0-9_$]*)\s+on\b'
)
OUTSIDE_TRANSACTION_HINT = (
    "it cannot run inside a transaction: mark its section '-- migrate:up transaction:false', "
    "whose statements run one by one, each committed"
)

Report = Callable[[str], None]


@dataclass(frozen=True)
class Applied:
    """A row of ``schema_migrations``; ``checksum`` and ``name`` are None for rows dbmate wrote."""

    version: str
    applied_at: datetime | None
    checksum: str | None
    name: str | None


@dataclass(frozen=True)
class Entry:
    """One line of ``migrate status``: ``applied``, ``pending``, ``changed`` or ``missing-file``."""

    version: str
    name: str
    state: str
    applied_at: datetime | None = None
    detail: str = ""


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


class Migrations:
    """The migrations of one project against one target."""

    def __init__(
        self,
        target: Target,
        *,
        directory: str = DIRECTORY,
        lock_wait: float = DEFAULT_LOCK_WAIT,
        timeouts: Timeouts | None = None,
        report: Report | None = None,
        before: Callable[[Migration], None] | None = None,
        hazards: bool | None = None,
    ) -> None:
        self.target = target
        self.hazards = target.protected if hazards is None else hazards  # refuse unacknowledged hazards
        self.lock_timeout = lock_wait
        self.timeouts = timeouts if timeouts is not None else timeouts_for(target)
        self.report = report or (lambda message: None)
        self.before = before or (lambda migration: None)  # asked before each one is applied; raising stops
        self.files = read_migrations(target.root, directory, warn=lambda line: self.report(f"warning: {line}"))

    # -- reading (no lock, no writes) -----------------------------------------------------------

    def status(self) -> list[Entry]:
        with self._connection() as conn:
            applied = _read_applied(conn)
        return entries(self.files, applied)

    def plan(
        self, *, allow_changed: bool = False, strict: bool = False, hazards: bool | None = None
    ) -> list[Migration]:
        """What ``migrate`` would apply, checked as it will check it (changed files, order, hazards); writes
        nothing."""
        with self._connection() as conn:
            applied = _read_applied(conn)
            self._check_changed(applied, allow_changed, warn=False)
            pending = self._pending_in_order(applied, strict, warn=False)
            self._refuse_hazards(conn, pending, hazards)
        return pending

    def to_roll_back(self, *, steps: int | None = None, to: str | None = None) -> list[Applied]:
        with self._connection() as conn:
            return _choose_rollback(_read_applied(conn), steps, to)

    # -- writing (under the lock) -----------------------------------------------------------------

    def migrate(
        self,
        *,
        allow_changed: bool = False,
        strict: bool = False,
        only: set[str] | None = None,
        hazards: bool | None = None,
    ) -> list[Migration]:
        """Apply every pending migration in version order (``only``: those of these versions); the ones applied.

        ``hazards`` (default: as the target says) refuses, before anything is applied, a pending migration with
        a hazard nobody acknowledged; a database this run has just built has nothing live to harm.
        """
        done: list[Migration] = []
        with self._connection() as conn, self._locked(conn):
            applied = self._prepare_table(conn)  # read under the lock: another run may have just finished
            self._check_changed(applied, allow_changed)
            pending = [m for m in self._pending_in_order(applied, strict) if only is None or m.version in only]
            self._refuse_hazards(conn, pending, self.hazards if hazards is None else hazards)
            for migration in pending:
                self.before(migration)
                try:
                    if not self._apply(conn, migration.up, migration, record=True):
                        continue  # another run applied it since this one read the table
                except SqlFileError as error:
                    raise _after(error, done) from None
                done.append(migration)
                self.report(f"applied {migration.version} {migration.name}")
        return done

    def rollback(self, *, steps: int | None = None, to: str | None = None) -> list[Applied]:
        """Undo applied migrations, latest applied first; the ones undone."""
        done: list[Applied] = []
        with self._connection() as conn, self._locked(conn):
            chosen = _choose_rollback(self._prepare_table(conn), steps, to)
            by_version = {migration.version: migration for migration in self.files}
            plans = [(row, self._down_of(row, by_version)) for row in chosen]  # all checked before any runs
            for row, (migration, down) in plans:
                try:
                    if not self._apply(conn, down, migration, record=False):
                        continue  # another run rolled it back since this one read the table
                except SqlFileError as error:
                    raise _after(error, done, verb="rolled back") from None
                done.append(row)
                self.report(f"rolled back {row.version} {migration.name}")
        return done

    # -- internals -------------------------------------------------------------------------------

    @contextmanager
    def _connection(self) -> Iterator[Session]:
        from dbtool.engine.session import open_session

        with open_session(self.target) as session:
            yield session

    @contextmanager
    def _locked(self, conn: Session) -> Iterator[None]:
        if not conn.session_locks:  # each migration locks inside its own transaction (_claim)
            yield
            return
        self._wait_for_lock(conn, "migration_lock")
        try:
            yield
        finally:
            from dbtool.engine.session import SqlError

            with contextlib.suppress(SqlError):  # a broken connection took the lock with it
                if conn.in_transaction:  # a failure left one open
                    conn.rollback()
                conn.execute(queries.get("migration_unlock"), {"key": LOCK_KEY})

    def _wait_for_lock(self, conn: Session, query: str) -> None:
        """Poll the advisory lock ``query`` takes until it is ours, naming who holds it meanwhile."""
        deadline = time.monotonic() + self.lock_timeout
        told = False
        while not conn.execute(queries.get(query), {"key": LOCK_KEY}).scalar():
            holder = _holder(conn)
            if time.monotonic() >= deadline:
                raise MigrationError(
                    f"timed out after {self.lock_timeout:g} s waiting for the migration lock held by {holder}",
                    "another migrate or rollback is running on this database; "
                    "wait for it, or raise --migration-lock-wait",
                )
            if not told:
                self.report(f"waiting for the migration lock held by {holder}")
                told = True
            time.sleep(LOCK_POLL_SECONDS * (1 + random.random()))

    def _prepare_table(self, conn: Session) -> list[Applied]:
        """Create the table, or add dbtool's columns to dbmate's, when needed; then its rows.

        With session locks the caller holds the migration lock already. Without them (the Data API)
        the DDL runs in a transaction under the transaction-level lock, re-checked there: two runs that
        both found no table would otherwise race on CREATE TABLE, and one fail on pg_type's index.
        """
        table = conn.execute(queries.get("migrations_table")).one()
        if table is not None and table[2]:
            return _applied_rows(conn, extended=True)
        if conn.session_locks:
            _create_table(conn, table)
            return _applied_rows(conn, extended=True)
        conn.begin()
        try:
            self._wait_for_lock(conn, "xact_lock")
            _create_table(conn, conn.execute(queries.get("migrations_table")).one())
            conn.commit()
        except BaseException:
            if conn.in_transaction:
                conn.rollback()
            raise
        return _applied_rows(conn, extended=True)

    def _claim(self, conn: Session, version: str, *, applied: bool, transaction: bool) -> bool:
        """Without session locks (the Data API): begin the section's transaction, take the lock inside it,
        and check that ``version`` is still ``applied`` (or not) as planned; False, with nothing begun, if not."""
        if conn.session_locks:
            return True
        if transaction:
            conn.begin()
            self._wait_for_lock(conn, "xact_lock")
        if (version in {row.version for row in _applied_rows(conn, extended=True)}) == applied:
            return True
        if conn.in_transaction:
            conn.rollback()
        return False

    def _check_changed(self, applied: list[Applied], allow_changed: bool, *, warn: bool = True) -> None:
        by_version = {migration.version: migration for migration in self.files}
        for row in applied:
            migration = by_version.get(row.version)
            if migration is None or not _changed(row, migration):
                continue
            message = (
                f"{migration.display} changed after it was applied: checksum applied {row.checksum}, "
                f"file now {migration.checksum}"
            )
            if not allow_changed:
                raise MigrationError(
                    message, "restore the file and add a new migration for the change, or pass --allow-changed"
                )
            if warn:
                self.report(f"warning: {message} (allowed; the change is not applied)")

    def _pending_in_order(self, applied: list[Applied], strict: bool, *, warn: bool = True) -> list[Migration]:
        versions = {row.version for row in applied}
        newest = max((int(row.version) for row in applied), default=None)
        pending = [migration for migration in self.files if migration.version not in versions]
        late = [migration for migration in pending if newest is not None and migration.number < newest]
        if late and strict:
            names = ", ".join(migration.display for migration in late)
            raise MigrationError(
                f"out of order: {names} older than the newest applied migration ({newest})",
                "nothing was applied; give it a newer version, or run without --strict to apply it anyway",
            )
        for migration in late if warn else ():
            self.report(f"warning: applying {migration.display} out of order (older than applied {newest})")
        return pending

    def _refuse_hazards(self, conn: Session, pending: list[Migration], refuse: bool | None = None) -> None:
        if not (self.hazards if refuse is None else refuse) or not pending:
            return
        from dbtool.migrations.hazards import analyse, refusal

        refused = refusal(analyse(conn, pending))
        if refused is not None:
            raise refused

    def _down_of(self, row: Applied, by_version: dict[str, Migration]) -> tuple[Migration, Section]:
        migration = by_version.get(row.version)
        if migration is None:
            raise MigrationError(
                f"cannot roll back {row.version}: its file is missing from {DIRECTORY}",
                "nothing was rolled back; restore the file",
            )
        if migration.down is None or migration.down.empty:
            raise MigrationError(
                f"cannot roll back {migration.display}: it has no '-- migrate:down' statements",
                "nothing was rolled back; write its down section",
            )
        return migration, migration.down

    def _apply(self, conn: Session, section: Section, migration: Migration, *, record: bool) -> bool:
        """Run one section (claimed first); a lock timeout rolls it back and tries again after a jittered
        backoff, up to ``timeouts.retries`` times. False when another run did it first."""
        from dbtool.engine.session import SqlError

        attempt = 0
        while True:
            if not self._claim(conn, migration.version, applied=not record, transaction=section.transaction):
                return False
            try:
                self._run(conn, section, migration, record=record, retry=self._statement_retry(conn, migration))
                return True
            except SqlFileError as error:
                with contextlib.suppress(SqlError):  # over the Data API the error already ended the transaction
                    if conn.in_transaction:
                        conn.rollback()
                if error.sqlstate != LOCK_NOT_AVAILABLE:
                    raise
                if not section.transaction:  # retried statement by statement already (_statement_retry)
                    raise
                attempt += 1
                if attempt > self.timeouts.retries:
                    raise self._gave_up(error, attempt) from None
                self._wait_to_retry(error, attempt, migration)

    def _wait_to_retry(self, error: SqlFileError, attempt: int, migration: Migration) -> None:
        """Say so, then sleep a jittered, doubling backoff."""
        delay = min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** (attempt - 1)) * (0.5 + random.random())
        self.report(
            f"lock timeout after {_seconds(self.timeouts.lock)} s at {error.message}; "
            f"retry {attempt} of {self.timeouts.retries} in {delay:.1f} s"
        )
        time.sleep(delay)
        self.before(migration)  # at deploy time: stops here once the Lambda's timer has answered

    def _statement_retry(self, conn: Session, migration: Migration) -> Callable[[bytes, SqlFileError, int], bool]:
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
                    left = self._invalid_indexes(conn, statement)
                    raise self._gave_up(error, timeouts, leftover=", ".join(shown for *_, shown in left) or None)
                self._wait_to_retry(error, timeouts, migration)
                try:
                    self._drop_invalid_index(conn, statement)
                    return True
                except SqlError as failed:  # the drop waits for the same session: one more attempt spent
                    if failed.sqlstate != LOCK_NOT_AVAILABLE:
                        raise

        return retry

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

    def _drop_invalid_indexes(self, conn: Session, sql: bytes) -> None:
        """Before a ``transaction:false`` section: the INVALID indexes an earlier run's builds left."""
        for found in CONCURRENT_INDEX.finditer(sql):
            self._drop_invalid_index(conn, found.group(0))

    def _gave_up(self, error: SqlFileError, attempts: int, leftover: str | None = None) -> SqlFileError:
        tried = f"lock_timeout {_seconds(self.timeouts.lock)} s, gave up after {attempts} attempt{'s' * (attempts > 1)}"
        why = f"{tried}: another session holds a lock this statement needs (see dbtool sessions)"
        if leftover is not None:
            why += f"; the build left the INVALID index {leftover}, which the next migrate drops first"
        found = SqlFileError(error.message, f"{why}; {error.hint}" if error.hint else why)
        found.sqlstate = error.sqlstate
        return found

    def _limits(self, conn: Session, *, local: bool) -> None:
        """Set the statement limits: for the transaction (``local``), else for the session."""
        for name, seconds in (("lock_timeout", self.timeouts.lock), ("statement_timeout", self.timeouts.statement)):
            if seconds is not None:
                value = f"{max(1, round(seconds * 1000))}ms"
                conn.execute(queries.get("set_setting"), {"name": name, "value": value, "local": local})

    def _run(
        self, conn: Session, section: Section, migration: Migration, *, record: bool, retry: Retry | None = None
    ) -> None:
        """One section and its row: in one transaction, or statement by statement with the row after."""
        import io

        from dbtool.engine.loader import run_sql
        from dbtool.engine.split import Scanner

        row_query = queries.get("migration_record" if record else "migration_forget")
        row = {"version": migration.version, "checksum": migration.checksum, "name": migration.name}
        scanner = Scanner(io.BytesIO(section.sql))
        if section.transaction:
            if not conn.in_transaction:
                conn.begin()
            self._limits(conn, local=True)
        elif conn.session_locks:  # a session of its own: the limits hold for its statements, then go
            self._limits(conn, local=False)
            self._drop_invalid_indexes(conn, section.sql)
        try:
            run_sql(
                conn,
                scanner,
                migration.display,
                transaction=section.transaction,
                commit=False,
                no_transaction_hint=OUTSIDE_TRANSACTION_HINT,
                retry=retry,
            )
        finally:
            if not section.transaction and conn.session_locks and not conn.in_transaction:
                conn.execute(queries.get("reset_limits"))
        conn.execute(row_query, row)
        if section.transaction:
            conn.commit()


def entries(files: list[Migration], applied: list[Applied]) -> list[Entry]:
    """Status lines: applied and changed in application order, missing files among them, then pending."""
    by_version = {migration.version: migration for migration in files}
    lines: list[Entry] = []
    for row in applied:
        migration = by_version.get(row.version)
        if migration is None:
            lines.append(Entry(row.version, row.name or "?", "missing-file", row.applied_at))
        elif _changed(row, migration):
            detail = f"applied {row.checksum[:12]}, file now {migration.checksum[:12]}"
            lines.append(Entry(row.version, migration.name, "changed", row.applied_at, detail))
        else:
            lines.append(Entry(row.version, migration.name, "applied", row.applied_at))
    done = {row.version for row in applied}
    lines += [Entry(m.version, m.name, "pending") for m in files if m.version not in done]
    return lines


def _changed(row: Applied, migration: Migration) -> bool:
    """The file's up section differs from what was applied (rows dbmate wrote have no checksum to compare)."""
    return row.checksum is not None and row.checksum != migration.checksum


def _read_applied(conn: Session) -> list[Applied]:
    """Applied migrations, without writing: a table dbmate made is read as it is."""
    table = conn.execute(queries.get("migrations_table")).one()
    return _applied_rows(conn, extended=table[2]) if table is not None else []


def _create_table(conn: Session, table: tuple[object, ...] | None) -> None:
    """What ``migrations_table`` found missing: the table (dbmate's shape), then dbtool's columns."""
    if table is None:
        conn.execute(queries.get("migrations_create"))
    if table is None or not table[2]:
        conn.execute(queries.get("migrations_columns"))


def _applied_rows(conn: Session, *, extended: bool) -> list[Applied]:
    query = queries.get("migrations_applied" if extended else "migrations_applied_versions")
    return [Applied(*row) for row in conn.execute(query)]


def _choose_rollback(applied: list[Applied], steps: int | None, to: str | None) -> list[Applied]:
    latest_first = list(reversed(applied))
    if to is None:
        return latest_first[: steps if steps is not None else 1]
    if to != "0" and to not in {row.version for row in applied}:
        raise MigrationError(f"version {to} is not applied", "see dbtool migrate status; --to 0 rolls back everything")
    return [row for row in latest_first if int(row.version) > int(to)]


def _holder(conn: Session) -> str:
    key = LOCK_KEY & 0xFFFFFFFFFFFFFFFF
    row = conn.execute(queries.get("migration_lock_holder"), {"classid": key >> 32, "objid": key & 0xFFFFFFFF}).one()
    if row is None:
        return "another session (it may have just finished)"
    pid, user, address, application, started = row
    where = address or "a local socket"
    return f"pid {pid} ({user} from {where}, {application or 'no application name'}, since {started:%H:%M:%S})"


def _seconds(value: float | None) -> str:
    return f"{value:g}" if value is not None else "no"


def _after(error: SqlFileError, done: list[object], verb: str = "applied") -> SqlFileError:
    """A failed migration's error, saying what this run had already finished (those stay)."""
    if not done:
        return error
    stay = f"the {len(done)} before it in this run stay {verb}"
    found = SqlFileError(error.message, f"{error.hint}; {stay}" if error.hint else stay)
    found.sqlstate = error.sqlstate
    return found
