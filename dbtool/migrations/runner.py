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
* **Lock timeouts** (:mod:`dbtool.migrations.timeouts`): each statement waits for a lock only so long; a
  migration that timed out is rolled back and tried again after a backoff, a bounded number of times.
* **Hazards**: on a protected target (production, and so at deploy time) the pending migrations are read
  first (:mod:`dbtool.migrations.hazards`), and one with a hazard nobody acknowledged stops ``migrate``
  before anything is applied.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from dbtool import queries
from dbtool.errors import SqlFileError
from dbtool.migrations.files import DIRECTORY, Migration, MigrationError, Section, read_migrations
from dbtool.migrations.timeouts import LOCK_NOT_AVAILABLE, LockRetries, Timeouts, timeouts_for

if TYPE_CHECKING:
    from dbtool.engine.loader import Retry
    from dbtool.engine.session import Session
    from dbtool.targets.resolve import Target

LOCK_KEY = int.from_bytes(hashlib.sha256(b"dbtool schema_migrations").digest()[:8], "big", signed=True)
LOCK_POLL_SECONDS = 0.05
DEFAULT_LOCK_WAIT = 60.0  # for another migrate's advisory lock
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
        self.retries = LockRetries(self.timeouts, self.report, self.before)
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
                retry = self.retries.for_statements(conn, migration)
                self._run(conn, section, migration, record=record, retry=retry)
                return True
            except SqlFileError as error:
                with contextlib.suppress(SqlError):  # over the Data API the error already ended the transaction
                    if conn.in_transaction:
                        conn.rollback()
                if error.sqlstate != LOCK_NOT_AVAILABLE:
                    raise
                if not section.transaction:  # retried statement by statement already (for_statements)
                    raise
                attempt += 1
                self.retries.again(error, attempt, migration)

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
            self.retries.set_limits(conn, local=True)
        elif conn.session_locks:  # a session of its own: the limits hold for its statements, then go
            self.retries.set_limits(conn, local=False)
            self.retries.drop_invalid_indexes(conn, section.sql)
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


def _after(error: SqlFileError, done: list[object], verb: str = "applied") -> SqlFileError:
    """A failed migration's error, saying what this run had already finished (those stay)."""
    if not done:
        return error
    stay = f"the {len(done)} before it in this run stay {verb}"
    found = SqlFileError(error.message, f"{error.hint}; {stay}" if error.hint else stay)
    found.sqlstate = error.sqlstate
    return found
