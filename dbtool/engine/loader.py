"""Load a psql-style SQL file into a target: streamed, batched, in one transaction, or not at all.

The old scripts ran ``psql $URL < file``: one round trip per statement, no transaction and no
``ON_ERROR_STOP``, so a failing statement left a half-loaded schema and exit 0. Here the file is
read a chunk at a time (:mod:`dbtool.engine.split`), consecutive statements go to the server together
as one simple-protocol query, ``COPY … FROM stdin`` data is streamed with psycopg's copy support,
and everything runs in one transaction unless ``transaction=False``.

The loader speaks only to a :class:`~dbtool.engine.session.Session`: how a batch of statements or
COPY data travels is the transport's business (:mod:`dbtool.engine.libpq`), and errors come back as
:class:`~dbtool.engine.session.SqlError` with the offset of the failing statement, which the loader
turns into ``file:line:column``.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import stat
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from dbtool.engine.readahead import read_ahead
from dbtool.engine.session import Session, SqlError
from dbtool.engine.split import CopyEnd, MetaCommand, Run, Scanner, SplitError, first_token, look_ahead
from dbtool.errors import SqlFileError, join_hints

if TYPE_CHECKING:
    pass

STDIN = "-"
FILE_OPTION = "file-option"  # remedy: give the command another file (the CLI's --file)

ROLLED_BACK = "nothing was changed: the whole file was rolled back"
COMMITTED_BEFORE = "statements before this one were committed"
NO_TRANSACTION_HINT = "it cannot run inside a transaction; load the file with --no-transaction"
IGNORED_META_COMMANDS = ("restrict", "unrestrict")
SUPPORTED_META_HINT = (
    "dbtool understands the meta-commands pg_dump writes: \\connect to the same database, "
    "\\restrict, \\unrestrict and \\set ON_ERROR_STOP"
)
UNSUPPORTED_IN_TRANSACTION = {
    "rollback": "ROLLBACK",
    "savepoint": "a savepoint command",
    "twophase": "two-phase commit",
}
CREATE_DATABASE_HINT = "the file creates its own database (pg_dump --create); dump without -C and use dbtool create"
_CREATE_DATABASE = re.compile(rb"(?i)create\s+database\b")
# SQLSTATE 25001 active_sql_transaction: CREATE DATABASE, CREATE INDEX CONCURRENTLY, VACUUM…
ACTIVE_SQL_TRANSACTION = "25001"

ProgressCallback = Callable[[int, int], None]


# (the statement, its located error, the attempt that failed): whether to run it again
Retry = Callable[[bytes, SqlFileError, int], bool]
# (the statement, its line, a function that runs it): called around each statement, which then travel one by one
Watch = Callable[[bytes, int, Callable[[], None]], None]


@dataclass(frozen=True)
class LoadResult:
    name: str
    statements: int
    bytes: int
    seconds: float

    @property
    def summary(self) -> str:
        """``db/schema.sql: 12 statements`` (``1 statement``)."""
        return f"{self.name}: {self.statements} statement{'' if self.statements == 1 else 's'}"


def load_file(
    session: Session,
    path: Path | str,
    *,
    transaction: bool = True,
    on_progress: ProgressCallback | None = None,
) -> LoadResult:
    """Run every statement of ``path`` (``-`` for standard input) in the caller's session.

    With ``transaction`` (the default) the whole file runs in one transaction (the caller's, if it
    has begun one, which it then commits): it all commits or none of it does. Without, each statement
    commits on its own, as with ``psql -f``, and the file's own BEGIN/COMMIT are run as written; the
    load still stops at the first error.
    """
    with open_sql(path) as stream:
        return load_stream(session, stream, display_path(path), transaction=transaction, on_progress=on_progress)


def load_stream(
    session: Session,
    stream: BinaryIO,
    name: str,
    *,
    transaction: bool = True,
    on_progress: ProgressCallback | None = None,
) -> LoadResult:
    """:func:`load_file` on a file the caller opened (with :func:`open_sql`: a missing file fails before a
    connection is tried); ``name`` is how errors call it."""
    started = time.perf_counter()
    scanner = Scanner(stream)
    statements = run_sql(session, scanner, name, transaction=transaction, on_progress=on_progress)
    return LoadResult(name, statements, scanner.bytes_read, time.perf_counter() - started)


def run_sql(
    session: Session,
    scanner: Scanner,
    name: str,
    *,
    transaction: bool,
    commit: bool = True,
    on_progress: ProgressCallback | None = None,
    no_transaction_hint: str = NO_TRANSACTION_HINT,
    retry: Retry | None = None,
    watch: Watch | None = None,
) -> int:
    """Run the scanned statements in an open session; the number run.

    ``transaction`` runs them in one transaction (begun here unless the caller has begun one), and
    leaves it open for the caller when ``commit`` is off (a migration commits its own row with it).
    Without a transaction, a statement that failed on its own (outside the file's own BEGIN) is run again
    while ``retry(statement, error, attempt)`` says so: it had no effect, so running it again is safe.
    ``watch(statement, line, run)`` is called for each ordinary statement, which it runs by calling ``run()``
    (``migrate check`` looks at the locks each takes); statements then travel one at a time.
    """
    loader = _Loader(
        session,
        name,
        transaction,
        on_progress,
        commit=commit,
        no_transaction_hint=no_transaction_hint,
        retry=retry,
        watch=watch,
    )
    loader.load(scanner)
    return loader.statements


@contextlib.contextmanager
def open_sql(path: Path | str) -> Iterator[BinaryIO]:
    """The file opened for reading bytes (standard input for ``-``), or an error naming it."""
    # Unbuffered: a buffered reader's close() waits for a read blocked in the read-ahead thread
    # (a pipe whose writer is idle), which would hang Ctrl-C; one read() is one system call here.
    if str(path) == STDIN:
        if sys.stdin is None:  # started with descriptor 0 closed
            raise SqlFileError("standard input is closed", "pipe the SQL in, or pass --file PATH")
        yield _Checked(getattr(sys.stdin.buffer, "raw", sys.stdin.buffer), "standard input")  # type: ignore[misc]
        return
    try:
        stream = open(path, "rb", buffering=0)  # noqa: SIM115 - closed below, after the load
    except FileNotFoundError:
        raise SqlFileError(f"SQL file {path} not found", "check the path", remedy=FILE_OPTION) from None
    except OSError as error:
        raise SqlFileError(f"cannot read SQL file {path}: {error.strerror}") from None
    with stream:
        yield _Checked(stream, f"SQL file {path}")  # type: ignore[misc]


class _Checked:
    """A stream whose read errors (an I/O error part way, standard input that is a directory) are one error
    naming it; the load they interrupt rolls back as for any error."""

    def __init__(self, raw: BinaryIO, name: str) -> None:
        self._raw, self._name = raw, name

    def readinto(self, buffer: Any) -> int | None:
        try:
            return self._raw.readinto(buffer)  # type: ignore[attr-defined,no-any-return]
        except OSError as error:
            raise SqlFileError(f"cannot read {self._name}: {error.strerror or error}") from None

    readinto1 = readinto

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


def source_size(path: Path | str) -> int | None:
    """Size of a regular file, for a progress bar; None for standard input, pipes and the missing."""
    if str(path) == STDIN:
        return None
    try:
        status = Path(path).stat()
    except OSError:
        return None
    return status.st_size if stat.S_ISREG(status.st_mode) else None


class _Loader:
    """Sends what the scanner finds; ``statements`` counts those done, for the report."""

    def __init__(
        self,
        session: Session,
        name: str,
        transaction: bool,
        on_progress: ProgressCallback | None,
        *,
        commit: bool = True,
        no_transaction_hint: str = NO_TRANSACTION_HINT,
        retry: Retry | None = None,
        watch: Watch | None = None,
    ) -> None:
        self.session = session
        self.watch = watch
        self.retry = retry  # a statement run alone that failed: run it again? (see run_sql)
        self.name, self.transaction, self.commit = name, transaction, commit
        self.on_progress = on_progress
        self.statements = 0
        self.last_run = Run(b"", 1, 1, [])  # the latest run sent, for errors that surface after it
        self.began_at: int | None = None  # without a transaction: line of the file's open BEGIN
        self.no_transaction_hint = no_transaction_hint  # what to do about CREATE INDEX CONCURRENTLY & co

    def load(self, scanner: Scanner) -> None:
        try:
            if self.session.statement_limit is not None:
                self._check_sizes(scanner)
            self._load(scanner)
        except SplitError as error:
            raise self._file_error(error.line, error.column, error.message, error.hint) from None

    def _load(self, scanner: Scanner) -> None:
        if self.transaction and not self.session.in_transaction:
            self.session.begin()
        self.session.start_file()
        with read_ahead(scanner) as items:
            for item in items:
                if isinstance(item, MetaCommand):
                    self._meta(item)
                    continue
                if not isinstance(item, Run):  # pragma: no cover - COPY data is taken by _copy
                    raise AssertionError(f"unexpected {item!r}")
                if item.kind in (None, "encoding", "strings"):
                    self._ordinary(item)
                elif item.kind == "copy_in":
                    self._copy(item, items, scanner)
                else:
                    self._transaction_control(item)
                self.statements += len(item)
                self.last_run = item
                if self.on_progress is not None:
                    self.on_progress(scanner.bytes_read, self.statements)
                self._check_transaction(item)
        self._finish()

    def _check_sizes(self, scanner: Scanner) -> None:
        """Read the file once before sending any of it, for a statement the transport cannot take (too long)."""
        limit = self.session.statement_limit
        assert limit is not None
        for item in look_ahead(scanner):
            if not isinstance(item, Run):
                continue
            for start, end in item.bounds:
                if end - start <= limit:
                    continue
                sql = item.sql[start:end]
                refused = self.session.refuses(sql, standard_strings=item.standard_strings)
                if refused is not None and len(sql.decode("utf-8", "replace")) > limit:
                    raise self._file_error(*item.locate(first_token(item.sql, start)), *refused)

    def _ordinary(self, run: Run) -> None:
        if not self.transaction or self.watch is not None:
            for start, end in run.bounds:
                self._one(run, start, end)
            return
        try:
            self.session.execute_batch(run)
        except SqlError as error:
            raise self._sql_error(error, run, 0) from None

    def _one(self, run: Run, start: int, end: int) -> None:
        if self.watch is not None:
            sql = run.sql[start:end]
            self.watch(sql, run.locate(first_token(run.sql, start))[0], lambda: self._run_one(run, start, end))
            return
        self._run_one(run, start, end)

    def _run_one(self, run: Run, start: int, end: int) -> None:
        attempt = 0
        while True:
            try:
                self.session.execute_statement(run.sql[start:end], run.kind)
                return
            except SqlError as error:
                found = self._sql_error(error, run, start)
            attempt += 1
            alone = not self.session.in_transaction  # committed or failed on its own, not in the file's BEGIN
            if self.retry is None or not alone or not self.retry(run.sql[start:end], found, attempt):
                raise found

    def _copy(self, run: Run, items: Iterator[object], scanner: Scanner) -> None:
        def data() -> Iterator[bytes]:
            for piece in items:
                if isinstance(piece, CopyEnd):
                    return
                yield piece.data  # type: ignore[attr-defined]
                if self.on_progress is not None:
                    self.on_progress(scanner.bytes_read, self.statements)

        try:
            self.session.copy_in(run.sql, data())
        except SqlError as error:
            if error.copy_line is None:
                raise self._sql_error(error, run, 0) from None
            line = run.data_line + error.copy_line - 1
            context = f" ({error.context.splitlines()[0]})" if error.context else ""
            raise self._file_error(line, 1, f"{error.describe()}{context}", error.hint) from None

    def _transaction_control(self, run: Run) -> None:
        if run.kind == "copy_out":
            raise self._located(run, "COPY … TO STDOUT in a file to load", "run it with dbtool connect instead")
        if not self.transaction:
            self._one(run, *run.bounds[0])
            return
        if run.kind in ("begin", "commit"):
            return  # the whole file is one transaction already; the file's own are folded into it
        raise self._located(
            run,
            f"{UNSUPPORTED_IN_TRANSACTION[run.kind or '']} in the file",
            "dbtool runs the whole file in one transaction and cannot honour the file's own "
            "ROLLBACK, savepoints or two-phase commit; load it with --no-transaction",
        )

    def _meta(self, meta: MetaCommand) -> None:
        if meta.name in IGNORED_META_COMMANDS:
            return  # pg_dump's guard against meta-commands in data; dbtool never runs data as commands
        if meta.name == "set" and meta.argument.split()[:1] == ["ON_ERROR_STOP"]:
            return  # dbtool always stops at the first error
        if meta.name in ("c", "connect"):
            self._connect(meta)
            return
        what = "\\. outside COPY data" if meta.name == "." else f"psql meta-command \\{meta.name} is not supported"
        raise self._file_error(meta.line, meta.column, what, SUPPORTED_META_HINT)

    def _connect(self, meta: MetaCommand) -> None:
        """``\\connect`` to the database being loaded is a no-op; anywhere else is refused."""
        try:
            words = [word for word in shlex.split(meta.argument) if not word.startswith("-reuse-previous")]
        except ValueError:
            words = [meta.argument]
        dbname = _connect_dbname(words[0]) if words else None
        if dbname in (None, "-", self.session.dbname) and all(word == "-" for word in words[1:]):
            return
        raise self._file_error(
            meta.line,
            meta.column,
            f"\\connect {meta.argument} would leave the target database {self.session.dbname}",
            "dbtool loads a file into one database; dump without --create (-C) or remove the \\connect",
        )

    def _check_transaction(self, run: Run) -> None:
        in_transaction = self.session.in_transaction
        if not self.transaction:
            if not in_transaction:
                self.began_at = None
            elif self.began_at is None:
                self.began_at = run.line
            return
        if not in_transaction:  # a statement the splitter did not recognise ended it
            raise self._located(run, "a statement here ended dbtool's transaction", "remove it from the file")

    def _finish(self) -> None:
        try:
            self.session.flush()  # statements the transport held back fail here, if they fail
        except SqlError as error:
            raise self._sql_error(error, self.last_run, 0) from None
        if self.transaction:
            if self.commit:
                try:
                    self.session.commit()
                except SqlError as error:  # a deferred constraint, say: it belongs to the whole file
                    raise self._file_error(self.last_run.line, 1, error.describe(), error.hint) from None
        elif self.began_at is not None:
            self.session.rollback()
            raise SqlFileError(
                f"{self.name}: the file ended inside the transaction it began at line {self.began_at}",
                "that transaction was rolled back; add its COMMIT",
            )

    def _sql_error(self, error: SqlError, run: Run, start: int) -> SqlFileError:
        """A statement's error at its place in the file: ``start`` plus its offset in ``run``, or wherever
        the transport says it belongs (statements it held back from an earlier run)."""
        if error.run is not None:
            run, start = error.run, 0
        return self._error(run, start + (error.offset or 0), error)

    def _error(self, run: Run, offset: int, error: SqlError) -> SqlFileError:
        if error.position is None:  # the statement's own first word, not a comment before it (chinook's banners)
            offset = first_token(run.sql, offset)
        line, column = run.locate(offset)
        hint = error.hint
        if error.sqlstate == ACTIVE_SQL_TRANSACTION and _CREATE_DATABASE.match(run.sql, offset):
            hint = CREATE_DATABASE_HINT
        elif error.sqlstate == ACTIVE_SQL_TRANSACTION and self.transaction:
            hint = self.no_transaction_hint
        found = self._file_error(line, column, error.describe(), hint)
        found.sqlstate = error.sqlstate
        return found

    def _located(self, run: Run, message: str, hint: str) -> SqlFileError:
        return self._file_error(*run.locate(first_token(run.sql, 0)), message, hint)

    def _file_error(self, line: int, column: int, message: str, hint: str | None) -> SqlFileError:
        if self.transaction:
            outcome = ROLLED_BACK
        elif self.began_at is None:
            outcome = COMMITTED_BEFORE
        else:
            outcome = f"{COMMITTED_BEFORE}, except the file's transaction from line {self.began_at}: rolled back"
        return SqlFileError(f"{self.name}:{line}:{column}: {message}", join_hints(hint, outcome))


def _connect_dbname(word: str) -> str | None:
    if "=" in word or word.startswith(("postgres://", "postgresql://")):
        from psycopg.conninfo import conninfo_to_dict

        try:
            return conninfo_to_dict(word).get("dbname")  # type: ignore[return-value]
        except Exception:
            return word
    return word


def display_path(path: Path | str) -> str:
    """A path relative to the current directory when it is below it, else as given."""
    if str(path) == STDIN:
        return "<stdin>"
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
