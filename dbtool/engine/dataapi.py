"""The RDS Data API transport: a :class:`~dbtool.engine.session.Session` over HTTPS calls to ``rds-data``.

Aurora reached with no network route: each statement is one ``ExecuteStatement`` call signed with
IAM, and the facts of that API (``shared/notes/rds-data-api.md``) shape everything here:

* **one statement per call**: the splitter has already cut the file where psql would;
* **atomic only inside an API transaction** (BeginTransaction … CommitTransaction), which AWS ends
  at the first error and after 3 minutes without a call: the loader never waits inside one;
* **few calls**: a call costs tens of milliseconds, so consecutive single-row INSERTs into the same
  table and columns travel as one multi-row INSERT (PostgreSQL coerces each VALUES row to the
  target columns on its own, so the rows mean what they meant alone), up to 65,536 characters;
* **COPY … FROM stdin** has no Data API form: its rows become INSERT … SELECT from one JSON
  parameter per call, each column cast to its real type (:mod:`dbtool.engine.copyrows`);
* **errors** arrive as one string (``ERROR: …; Detail: …; Hint: …; Position: N; SQLState: …``),
  parsed back into PostgreSQL's fields so the loader can name ``file:line:column``;
* **retries**: botocore's own are off (a 504 on a write may have run); a paused Serverless v2
  cluster (DatabaseResumingException: nothing ran) is waited for, bounded, and said so.
"""

from __future__ import annotations

import contextlib
import datetime
import decimal
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from dbtool.engine import inserts
from dbtool.engine.session import Params, Result, SqlError
from dbtool.targets.dataapi import CLUSTER_VARIABLE, DataApiAddress

if TYPE_CHECKING:
    from dbtool.engine.split import Run
    from dbtool.targets.resolve import Target

MAX_SQL_CHARS = 65_536
NETWORK_HINT = "load this file over a network connection (PROD_CONNECTION_URL)"
ROWS_FUNCTION = "SELECT pg_temp.dbtool_rows(:statement, :rows, :rows_are_sql, :probes)"
DROP_ROWS_FUNCTION = "DROP FUNCTION pg_temp.dbtool_rows(text, json, boolean, json)"
# Rows sent through the rows function travel as a JSON parameter: about a megabyte of them per call,
# as COPY's rows do (a request carries 4 MiB; JSON escapes each quote twice on the way).
FUNCTION_ROWS_CHARS = 1 << 20
INVALID_CATALOG_NAME = "3D000"  # a login to a database that does not exist
LOGIN_REFUSED = ("28P01", "28000")  # invalid_password, invalid_authorization_specification
CREATE_HINT = "create it with ./bin/db-create prod"
NOT_UTF8 = "this statement is not UTF-8 text, and the RDS Data API carries only UTF-8"
OTHER_ENCODING = "the file sets a client_encoding other than UTF-8, and the RDS Data API carries only UTF-8"
CONVERT_HINT = "convert the file to UTF-8 (iconv -f LATIN1 -t UTF-8, say) and drop its SET client_encoding"
SETTING_LOST = "a session setting does not last past its own call through the RDS Data API"
SETTING_HINT = "load without --no-transaction: inside the load's one Data API transaction it lasts to the end"
_UTF8_SETTING = re.compile(r"(?i)'?\butf-?8\b'?\s*;?\s*$")
# SET, RESET and set_config(…, false) last for the session, which Data API calls outside a transaction do not share.
_SESSION_SETTING = re.compile(
    r"(?is)\s*(?:set\s+(?!local\b|transaction\b|constraints\b|session\s+characteristics\b)|reset\b"
    r"|select\s+(?:pg_catalog\s*\.\s*)?set_config\s*\(.*,\s*false\s*\)\s*;?\s*$)"
)
RESUME_TIMEOUT = 120.0  # a paused cluster wakes in 10-30 s
# A call may run up to the service's 45 s; a client that gives up sooner would leave it running, and a
# retry would run it twice (AWS: "an SDK timeout under 45 s can duplicate work").
STATEMENT_SECONDS = 45
READ_TIMEOUT = STATEMENT_SECONDS + 25.0
QUERY_CANCELED = "57014"
TIMED_OUT = f"this statement ran longer than the RDS Data API's {STATEMENT_SECONDS} s limit and was cancelled"
TIMED_OUT_HINT = (
    "make it faster, or run it over a network connection (PROD_CONNECTION_URL), where no such limit applies"
)
# Waited for where nothing can have run: a paused Serverless v2 cluster; a cluster with no writer yet (404),
# outside a transaction (inside one, the transaction is gone with it); a writer not available (a 504, which
# may come after a write ran, so only before a transaction begins: never a statement sent twice).
WAITING = {
    "DatabaseResumingException": "is resuming from a pause",
    "DatabaseUnavailableException": "has no writer available yet",
    "DatabaseNotFoundException": "has no writer available yet",
}
RESUME_POLL = (1.0, 2.0, 4.0, 8.0)
# A psycopg-style placeholder in our own queries: %(name)s, %s, or a literal %%.
_PERCENT = re.compile(r"%\((\w+)\)s|%s|%%")
_ERROR_TAIL = re.compile(r"; SQLState: (?P<sqlstate>\w{5})\s*$")
_POSITION_TAIL = re.compile(r"; Position: (?P<position>\d+)\s*$")
_TIMESTAMP_TYPES = {"timestamp", "timestamptz"}


class DataApiSession:
    """One database on an Aurora cluster, through the RDS Data API."""

    transport = "data-api"
    session_locks = False  # each call may land on another pooled backend
    lingering_sessions = True  # the API's pooled connections stay on the database
    statement_limit = MAX_SQL_CHARS

    def __init__(self, client: Any, address: DataApiAddress, dbname: str, report: Callable[[str], None]) -> None:
        self.client, self.address, self.dbname, self.report = client, address, dbname, report
        self._transaction: str | None = None
        self._failed = False
        self._version: int | None = None
        self._tables: dict[str, tuple[str | None, ...]] = {}  # table -> its trigger, rule, volatile default
        self._function_possible: bool | None = None  # whether this transaction may make its rows function
        self._function: bool | None = None  # whether it was made in this transaction
        self._pending: inserts.RowGroup | None = None  # INSERT rows held back to travel together

    # -- the session interface ----------------------------------------------------------------------

    @property
    def server_version(self) -> int:
        if self._version is None:
            self._version = int(self.execute("SHOW server_version_num").scalar())
        return self._version

    @property
    def in_transaction(self) -> bool:
        return self._transaction is not None

    def execute(self, query: Any, params: Params = None) -> Result:
        self._flush()
        sql, parameters = _render(query, params)
        response = self._statement(sql, parameters, metadata=True)
        return _result(response)

    def execute_batch(self, run: Run) -> None:
        for start, end in run.bounds:
            # Rows are read the standard way; with backslash escapes on, each statement goes alone.
            insert = inserts.parse(run.sql, start, end) if run.standard_strings else None
            if insert is not None:
                reason = self._batching_reason(insert.table)
                if reason is None:
                    self._hold(run, insert)
                    continue
                if end - start > MAX_SQL_CHARS and len(run.sql[start:end].decode("utf-8")) > MAX_SQL_CHARS:
                    raise SqlError(
                        f"this INSERT is over the Data API's {MAX_SQL_CHARS:,} characters, and sent in parts it "
                        f"would not do what it does whole: {reason} on {insert.table}",
                        hint=NETWORK_HINT,
                        offset=start,
                        run=run,
                    )
            self._flush()
            self._tables.clear()  # this statement may create a trigger or a rule
            self._one(run, start, end)

    def execute_statement(self, sql: bytes, kind: str | None = None) -> None:
        self._flush()
        if kind == "begin":
            self.begin()
        elif kind == "commit":
            self.commit()
        elif kind == "rollback":
            self.rollback()
        else:
            self._file_statement(sql, sql, 0, kind)

    def refuses(self, sql: bytes, *, standard_strings: bool = True) -> tuple[str, str] | None:
        """Only an INSERT … VALUES of constants splits (each row within one call); anything else over the limit is
        refused before the file's first statement is sent."""
        insert = inserts.parse(sql) if standard_strings else None
        if insert is not None and all(
            len(insert.row(sql, index)) < FUNCTION_ROWS_CHARS for index in range(len(insert.rows))
        ):
            return None
        size = len(sql.decode("utf-8", "replace"))
        return (
            f"this statement is {size:,} characters; the RDS Data API takes at most {MAX_SQL_CHARS:,} in one call, "
            "and only an INSERT … VALUES of constants can be sent in parts",
            NETWORK_HINT,
        )

    def copy_in(self, statement: bytes, data: Iterator[bytes]) -> None:
        from dbtool.engine.copyrows import copy_as_inserts

        self._flush()
        copy_as_inserts(self, statement, data)

    def start_file(self) -> None:
        self._tables.clear()

    def flush(self) -> None:
        self._flush()

    def begin(self) -> None:
        self._flush()
        response = self._call("begin_transaction", database=self.dbname)
        self._transaction, self._failed = response["transactionId"], False
        self._function = None

    def commit(self) -> None:
        self._flush()
        if self._function:  # a temporary object must not outlive the load in a pooled connection
            self._statement(DROP_ROWS_FUNCTION, [], metadata=False)
        self._function = None
        transaction, self._transaction = self._transaction, None
        if transaction is not None:
            self._call("commit_transaction", transactionId=transaction)

    def rollback(self) -> None:
        self._pending = None
        self._function = None
        transaction, self._transaction = self._transaction, None
        if transaction is not None and not self._failed:
            self._call("rollback_transaction", transactionId=transaction)
        self._failed = False

    def add_notice_handler(self, handler: Callable[[str], None]) -> None:
        """The Data API returns no notices."""

    def close(self) -> None:
        if self._transaction is not None:  # an error on the way out: AWS would roll it back in 3 minutes
            from dbtool.errors import DbtoolError

            with contextlib.suppress(SqlError, DbtoolError):  # closing after another error; AWS expires it anyway
                self.rollback()

    def __enter__(self) -> DataApiSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- statements -----------------------------------------------------------------------------------

    def statement(self, sql: str, parameters: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """One statement with Data API parameters, in the current transaction if any (for copyrows)."""
        return self._statement(sql, parameters or [], metadata=False)

    def _one(self, run: Run, start: int, end: int) -> None:
        self._file_statement(run.sql[start:end], run, start, run.kind)

    def _file_statement(self, sql: bytes, where: Run | bytes, start: int, kind: str | None) -> None:
        """A statement of a file, unless it is one the Data API would run differently from psql."""
        run = None if isinstance(where, bytes) else where
        try:
            text = sql.decode("utf-8")
        except UnicodeDecodeError:
            raise SqlError(NOT_UTF8, hint=CONVERT_HINT, offset=start, run=run) from None
        if kind == "encoding":
            if _UTF8_SETTING.search(text):
                return  # the JSON transport is UTF-8 already; the setting must not change under the API
            raise SqlError(OTHER_ENCODING, hint=CONVERT_HINT, offset=start, run=run)
        if self._transaction is None and _SESSION_SETTING.match(text):
            raise SqlError(SETTING_LOST, hint=SETTING_HINT, offset=start, run=run)
        self._send(text, where, start)

    def _send(self, text: str, where: Run | bytes, start: int) -> None:
        """One statement of a file; an error points at ``start`` (plus its position) in ``where``."""
        try:
            self._statement(text, [], metadata=False)
        except SqlError as error:
            error.offset = start + _byte_offset(text, error.position) if error.position else start
            error.run = where if not isinstance(where, bytes) else None
            raise

    def insert_facts(self, table: str) -> tuple[str | None, ...]:
        """What in the table makes INSERT rows behave unlike the statements written: a trigger, a rule, a volatile
        default (queries/insert_batching.sql), each named or None; read once until a statement may change them."""
        from dbtool import queries

        if table not in self._tables:
            self._flush()
            trigger, rule, default, possible = self.execute(queries.get(inserts.TABLE_CHECK), {"table": table}).rows[0]
            self._tables[table] = (trigger, rule, default)
            if self._function_possible is None:  # asked here to save a call
                self._function_possible = bool(possible)
        return self._tables[table]

    def _batching_reason(self, table: str) -> str | None:
        """What stops the table's INSERT rows combining or splitting, if anything."""
        return next((fact for fact in self.insert_facts(table) if fact), None)

    def rows_function(self) -> bool:
        """Whether ``pg_temp.dbtool_rows`` (queries/rows_function.sql) is there in this transaction.

        Made on first use, where the user may (TEMP, PL/pgSQL), and dropped before the transaction
        commits; a failed transaction takes it with it.
        """
        from dbtool import queries

        if self._transaction is None:
            return False
        if self._function_possible is None:
            self._function_possible = bool(self.execute(queries.get("rows_function_possible")).scalar())
        if self._function_possible and not self._function:
            self._statement(queries.get("rows_function"), [], metadata=False)
            self._function = True
        return self._function_possible

    def send_rows(self, statement: str, rows: str, *, rows_are_sql: bool, probes: str = "[]") -> dict[str, Any] | None:
        """Rows through the rows function (``rows`` a JSON array); None, or the failing row it found."""
        parameters = [
            {"name": "statement", "value": {"stringValue": statement}},
            {"name": "rows", "value": {"stringValue": rows}, "typeHint": "JSON"},
            {"name": "rows_are_sql", "value": {"booleanValue": rows_are_sql}},
            {"name": "probes", "value": {"stringValue": probes}, "typeHint": "JSON"},
        ]
        field = (self._statement(ROWS_FUNCTION, parameters, metadata=False).get("records") or [[{"isNull": True}]])[0][
            0
        ]
        return None if field.get("isNull") else json.loads(field["stringValue"])

    def _hold(self, run: Run, insert: inserts.ValuesInsert) -> None:
        for index, (start, _) in enumerate(insert.rows):
            text = insert.row(run.sql, index)
            pending = self._pending
            if pending is not None and (pending.key != insert.key or not pending.fits(text)):
                self._flush()
                pending = None
            if pending is None:
                # Through the rows function, a group's SQL is a parameter: not held to a statement's 65,536 characters.
                limit = FUNCTION_ROWS_CHARS if self.rows_function() else MAX_SQL_CHARS
                pending = self._pending = inserts.RowGroup(insert.key, insert.head, limit)
            pending.add(run, start, text, insert.start if index == 0 else start)

    def _flush(self) -> None:
        """Send the held rows as one INSERT: as SQL when it is one row or fits, else through the rows function."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        sql = pending.sql()
        if (len(pending.rows) == 1 and len(sql) <= MAX_SQL_CHARS) or not self.rows_function():
            try:
                self._statement(sql, [], metadata=False)
            except SqlError as error:
                pending.locate(error)
                raise
            return
        rows = json.dumps([text for _, _, text, _ in pending.rows], ensure_ascii=False)
        failed = self.send_rows(pending.head, rows, rows_are_sql=True)
        if failed is not None:
            error = failed_row(failed)
            pending.locate(error, failed["row"])
            raise error

    def _statement(self, sql: str, parameters: list[dict[str, Any]], *, metadata: bool) -> dict[str, Any]:
        if len(sql) > MAX_SQL_CHARS:
            raise SqlError(
                f"this statement is {len(sql):,} characters; the Data API takes at most {MAX_SQL_CHARS:,} in one call",
                hint=f"split it, or {NETWORK_HINT}",
            )
        request: dict[str, Any] = {"database": self.dbname, "sql": sql}
        if parameters:
            request["parameters"] = parameters
        if metadata:
            request["includeResultMetadata"] = True
        if self._transaction is not None:
            request["transactionId"] = self._transaction
        try:
            return self._call("execute_statement", **request)
        except SqlError as error:
            if self._transaction is not None and error.sqlstate != QUERY_CANCELED:
                self._failed = True  # AWS has ended the transaction (after a timeout, it is rolled back to be sure)
            raise

    def _call(self, operation: str, **request: Any) -> dict[str, Any]:
        """One API call, waiting out a resuming cluster; AWS failures become SqlError or AwsError."""
        import botocore.exceptions

        from dbtool.aws.clients import aws_errors

        deadline = time.monotonic() + RESUME_TIMEOUT
        waits = iter(RESUME_POLL)
        told = False
        while True:
            try:
                return getattr(self.client, operation)(
                    resourceArn=self.address.cluster_arn, secretArn=self.address.secret_arn, **request
                )
            except botocore.exceptions.ClientError as error:
                code = error.response.get("Error", {}).get("Code", "")
                message = error.response.get("Error", {}).get("Message", "")
                if code == "DatabaseErrorException":
                    raise self._database_error(message) from None
                if code == "StatementTimeoutException":
                    raise SqlError(TIMED_OUT, sqlstate=QUERY_CANCELED, hint=TIMED_OUT_HINT) from None
                waiting = code in WAITING and (
                    code == "DatabaseResumingException"
                    or (code == "DatabaseNotFoundException" and "transactionId" not in request)
                    or operation == "begin_transaction"
                )
                if waiting and time.monotonic() < deadline:
                    if not told:
                        self.report(f"the Aurora cluster {self.address.cluster} {WAITING[code]}; waiting")
                        told = True
                    time.sleep(next(waits, RESUME_POLL[-1]))
                    continue
                with aws_errors(actions=DATA_API_ACTIONS, not_found=self._known_errors(code, message)):
                    raise

    def _database_error(self, message: str) -> Exception:
        """The server's error; a login that failed is the same error libpq's would be."""
        from dbtool.errors import AuthenticationFailed, DatabaseMissing

        error = parse_database_error(message)
        where = f"{self.address.cluster}/{self.dbname} (RDS Data API)"
        if error.sqlstate == INVALID_CATALOG_NAME:
            return DatabaseMissing(f'database "{self.dbname}" does not exist on {where}', CREATE_HINT)
        if error.sqlstate in LOGIN_REFUSED:
            hint = f"check the username and password in Secrets Manager secret {self.address.secret_arn}"
            return AuthenticationFailed(f"authentication failed for {where}: {error.message}", hint)
        return error

    def _known_errors(self, code: str, message: str) -> dict[str, str]:
        cluster = self.address.cluster_arn
        return {
            "HttpEndpointNotEnabledException": f"the RDS Data API is not enabled for {cluster} (or no such cluster); "
            f"enable it (aws rds enable-http-endpoint --resource-arn {cluster}) or check {CLUSTER_VARIABLE}",
            "DatabaseResumingException": f"the Aurora cluster {self.address.cluster} did not resume within "
            f"{RESUME_TIMEOUT:g} s; try again in a minute",
            "SecretsErrorException": f"the Data API could not use secret {self.address.secret_arn}: {message}",
            "TransactionNotFoundException": f"the Data API transaction ended early: {message} "
            "(nothing of it was committed)",
            "UnsupportedResultException": f"the Data API cannot return this result: {message}",
            "BadRequestException": f"the Data API refused the request: {message}",
            "ValidationException": f"the Data API refused the request: {message}",
        }


DATA_API_ACTIONS = (
    "rds-data:ExecuteStatement, rds-data:BatchExecuteStatement, rds-data:BeginTransaction, "
    "rds-data:CommitTransaction, rds-data:RollbackTransaction on the cluster",
    "secretsmanager:GetSecretValue on the secret",
)


def open_data_api(target: Target, *, dbname: str | None = None) -> DataApiSession:
    """A session on the target's database (or ``dbname`` in the same cluster); no call is made yet."""
    assert target.data_api is not None
    # No botocore retries: a 5xx after a write may mean it ran, and replaying it would run it twice.
    rds_data = target.context.aws_client("rds-data", attempts=1, read_timeout=READ_TIMEOUT)
    return DataApiSession(rds_data, target.data_api, dbname or target.dbname, target.report or _silent)


def _silent(message: str) -> None:
    """Where a target with nobody to tell reports that it waits."""


def failed_row(failed: dict[str, Any]) -> SqlError:
    """The error the rows function returned for the row that failed alone."""
    return SqlError(failed["message"], sqlstate=failed["sqlstate"], detail=failed["detail"], hint=failed["hint"])


def parse_database_error(message: str) -> SqlError:
    """``ERROR: <message>; Detail: …; Hint: …; Position: N; SQLState: XXXXX``, read from the right."""
    text = message.strip()
    sqlstate = position = detail = hint = None
    if (tail := _ERROR_TAIL.search(text)) is not None:
        sqlstate, text = tail["sqlstate"], text[: tail.start()]
    if (tail := _POSITION_TAIL.search(text)) is not None:
        position, text = int(tail["position"]), text[: tail.start()]
    if (at := text.rfind("; Hint: ")) != -1:
        hint, text = text[at + 8 :].rstrip(";"), text[:at]
    if (at := text.rfind("; Detail: ")) != -1:
        detail, text = text[at + 10 :].rstrip(";"), text[:at]
    text = re.sub(r"^(?:ERROR|FATAL):\s*", "", text)
    return SqlError(text, sqlstate=sqlstate, detail=detail, hint=hint, position=position)


def _render(query: Any, params: Params) -> tuple[str, list[dict[str, Any]]]:
    """Our psycopg-style query and parameters as Data API SQL with ``:name`` placeholders."""
    if isinstance(query, bytes):
        sql = query.decode("utf-8")
    elif isinstance(query, str):
        sql = query
    else:
        sql = query.as_string(None)  # a psycopg.sql composition: identifiers quoted without a connection
    if params is None:
        return sql, []
    names = iter(range(1, 1 << 30))
    values: dict[str, Any] = {}
    positional = iter(params) if not isinstance(params, Mapping) else None

    def placeholder(match: re.Match[str]) -> str:
        if match.group() == "%%":
            return "%"
        if match.group(1) is not None:
            values[match.group(1)] = params[match.group(1)]  # type: ignore[index,call-overload]
            return f":{match.group(1)}"
        name = f"p{next(names)}"
        values[name] = next(positional)  # type: ignore[arg-type]
        return f":{name}"

    sql = _PERCENT.sub(placeholder, sql)
    return sql, [sql_parameter(name, value) for name, value in values.items()]


def sql_parameter(name: str, value: Any) -> dict[str, Any]:
    """A Python value as a Data API SqlParameter (strings arrive as varchar; hints give other types)."""
    field: dict[str, Any]
    hint = None
    if value is None:
        field = {"isNull": True}
    elif isinstance(value, bool):
        field = {"booleanValue": value}
    elif isinstance(value, int):
        field = {"longValue": value}
    elif isinstance(value, float):
        field = {"doubleValue": value}
    elif isinstance(value, bytes):
        field = {"blobValue": value}
    elif isinstance(value, decimal.Decimal):
        field, hint = {"stringValue": str(value)}, "DECIMAL"
    elif isinstance(value, datetime.datetime):
        field, hint = {"stringValue": value.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")}, "TIMESTAMP"
    elif isinstance(value, datetime.date):
        field, hint = {"stringValue": value.isoformat()}, "DATE"
    elif isinstance(value, uuid.UUID):
        field, hint = {"stringValue": str(value)}, "UUID"
    elif isinstance(value, dict | list):
        field, hint = {"stringValue": json.dumps(value)}, "JSON"
    else:
        field = {"stringValue": str(value)}
    parameter: dict[str, Any] = {"name": name, "value": field}
    if hint is not None:
        parameter["typeHint"] = hint
    return parameter


def _result(response: dict[str, Any]) -> Result:
    metadata = response.get("columnMetadata") or []
    types = [column.get("typeName", "") for column in metadata]
    rows = [
        tuple(_value(field, types[index] if index < len(types) else "") for index, field in enumerate(record))
        for record in response.get("records") or []
    ]
    return Result(rows, [column.get("name", "") for column in metadata], response.get("numberOfRecordsUpdated", -1))


def _value(field: dict[str, Any], type_name: str) -> Any:
    """A Field as the Python value psycopg would have given."""
    if field.get("isNull"):
        return None
    (kind, value), *_ = field.items()
    if kind == "arrayValue":
        return _array(value)
    if kind != "stringValue":
        return value
    if type_name in _TIMESTAMP_TYPES:
        parsed = datetime.datetime.fromisoformat(value)
        return parsed.replace(tzinfo=datetime.UTC) if type_name == "timestamptz" else parsed
    if type_name == "date":
        return datetime.date.fromisoformat(value)
    if type_name == "numeric":
        return decimal.Decimal(value)
    return value


def _array(value: dict[str, Any]) -> list[Any]:
    (kind, items), *_ = value.items()
    return [_array(item) for item in items] if kind == "arrayValues" else list(items)


def _byte_offset(text: str, position: int) -> int:
    return len(text[: position - 1].encode("utf-8"))
