"""Load an SQL file into a target: one transaction, batched, errors pointing at file:line:column.

The old scripts ran ``psql $URL < file``: one round trip per statement, no transaction and no
``ON_ERROR_STOP``, so a failing statement left a half-loaded schema and exit 0. Here the whole file
runs in one transaction and consecutive statements go to the server together, as one simple-protocol
query per batch. Each batch sits under a savepoint so that, when the server's error carries no
position, the batch can be replayed statement by statement to name the one that failed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from dbtool.connection import connect
from dbtool.errors import SqlFileError
from dbtool.sqlsplit import SplitError, Statement, first_token_offset, line_and_column, split, transaction_control
from dbtool.targets import Target

BATCH_BYTES = 1 << 20
BATCH_STATEMENTS = 5000
SAVEPOINT = "SAVEPOINT dbtool_batch"
ROLLBACK_TO_SAVEPOINT = "ROLLBACK TO SAVEPOINT dbtool_batch"
RELEASE_SAVEPOINT = "RELEASE SAVEPOINT dbtool_batch"
ROLLED_BACK = "nothing was changed: the whole file was rolled back"


@dataclass(frozen=True)
class LoadResult:
    path: Path
    statements: int
    seconds: float


def load_file(target: Target, path: Path, *, on_notice: Callable[[str], None] | None = None) -> LoadResult:
    """Run every statement of ``path`` against the target in one transaction, or none of them."""
    started = time.perf_counter()
    text = read_sql(path)
    try:
        statements = split(text)
    except SplitError as error:
        raise _located(path, text, error.offset, str(error), "load this file with psql instead") from None
    for statement in statements:
        if keyword := transaction_control(text, statement):
            offset = first_token_offset(text, statement)
            raise _located(
                path,
                text,
                offset,
                f"{keyword} in the file",
                "dbtool runs the whole file in one transaction; remove the file's own transaction control",
            )
    with connect(target) as conn:
        if on_notice is not None:
            conn.add_notice_handler(lambda diag: on_notice(f"{diag.severity.lower()}: {diag.message_primary}"))
        with conn.cursor() as cursor:
            for batch in _batches(statements):
                _run_batch(cursor, text, batch, path)
        conn.commit()
    return LoadResult(path, len(statements), time.perf_counter() - started)


def read_sql(path: Path) -> str:
    """The file's text (UTF-8, an initial BOM dropped), or an error naming the file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SqlFileError(f"SQL file {path} not found", "check the path, or pass --file") from None
    except OSError as error:
        raise SqlFileError(f"cannot read SQL file {path}: {error.strerror}") from None
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise SqlFileError(f"{path}:{line}: the file is not valid UTF-8", "save it as UTF-8") from None


def _batches(statements: list[Statement]) -> Iterator[list[Statement]]:
    batch: list[Statement] = []
    size = 0
    for statement in statements:
        batch.append(statement)
        size += statement.end - statement.start
        if size >= BATCH_BYTES or len(batch) >= BATCH_STATEMENTS:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _run_batch(cursor: object, text: str, batch: list[Statement], path: Path) -> None:
    import psycopg

    start, end = batch[0].start, batch[-1].end
    cursor.execute(SAVEPOINT)  # type: ignore[attr-defined]
    try:
        # Newline and ";" close a last statement that ends in a comment or has no semicolon.
        cursor.execute(text[start:end] + "\n;")  # type: ignore[attr-defined]
    except psycopg.Error as error:
        position = error.diag.statement_position
        if position:
            raise _sql_error(path, text, start + int(position) - 1, error) from None
        cursor.execute(ROLLBACK_TO_SAVEPOINT)  # type: ignore[attr-defined]
        _replay(cursor, text, batch, path)
        raise _sql_error(path, text, start, error) from None  # replay succeeded: report the batch
    cursor.execute(RELEASE_SAVEPOINT)  # type: ignore[attr-defined]


def _replay(cursor: object, text: str, batch: list[Statement], path: Path) -> None:
    """Run a failed batch one statement at a time so the error names its own statement."""
    import psycopg

    for statement in batch:
        try:
            cursor.execute(text[statement.start : statement.end] + "\n;")  # type: ignore[attr-defined]
        except psycopg.Error as error:
            position = error.diag.statement_position
            offset = statement.start + int(position) - 1 if position else first_token_offset(text, statement)
            raise _sql_error(path, text, offset, error) from None


def _sql_error(path: Path, text: str, offset: int, error: Exception) -> SqlFileError:
    diag = error.diag  # type: ignore[attr-defined]
    message = diag.message_primary or str(error).strip()
    if diag.message_detail:
        message += f" ({diag.message_detail.rstrip('.')})"
    hint = f"{diag.message_hint.rstrip('.')}; {ROLLED_BACK}" if diag.message_hint else ROLLED_BACK
    return _located(path, text, offset, message, hint)


def _located(path: Path, text: str, offset: int, message: str, hint: str) -> SqlFileError:
    line, column = line_and_column(text, offset)
    return SqlFileError(f"{display_path(path)}:{line}:{column}: {message}", hint)


def display_path(path: Path) -> str:
    """A path relative to the current directory when it is below it, else as given."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
