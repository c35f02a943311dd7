"""A test-only RDS Data API: the service's rest-json wire protocol, served over a real PostgreSQL.

moto's ``rds-data`` returns canned results and runs no SQL, so this server stands in for AWS. It
behaves as the Data API documents itself (see ``shared/notes/rds-data-api.md``), as far as a test
can tell from outside:

* requests are checked against botocore's service model (operations, required members, unknown
  members) before anything runs;
* one statement per call: the SQL runs through PostgreSQL's extended protocol, which refuses a
  second statement, and that refusal comes back as ``ValidationException: Multistatements aren't
  supported.``;
* SQL text over 65,536 characters and requests over 4 MiB are refused; responses over 1 MiB fail;
* ``:name`` placeholders are bound server-side; a ``stringValue`` arrives as varchar (not an
  untyped literal), a ``typeHint`` gives the parameter its type; array parameters are refused;
* without ``transactionId`` each call autocommits on a pooled connection whose session state is
  discarded afterwards; ``BeginTransaction`` pins a connection of its own, which dies at the first
  error (later calls: "Transaction … isn't found"), expires when idle, and takes one call at a time;
* SQL errors come back as ``DatabaseErrorException`` whose message folds PostgreSQL's fields into one
  string: ``ERROR: <message>; Detail: …; Hint: …; Position: N; SQLState: XXXXX``;
* the secret is read from Secrets Manager (moto) on each call, as AWS does;
* ``fail_next`` queues AWS errors that PostgreSQL cannot produce (a resuming cluster, say).
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import botocore.loaders
import psycopg
from psycopg import pq

MAX_SQL_CHARS = 65_536
MAX_REQUEST_BYTES = 4 << 20
MAX_RESPONSE_BYTES = 1 << 20
# Parameter types by OID: what the Data API binds each Field as.
VARCHAR, INT8, FLOAT8, BOOL, BYTEA = 1043, 20, 701, 16, 17
COPY_REFUSED = "ERROR: COPY commands are only supported using the CopyManager API.; SQLState: 0A000"
EXPIRED = "Transaction may be expired."
UNSUPPORTED = "The result contains the unsupported data type"
Shift = tuple[int, int]  # (end in the rewritten SQL, characters removed up to there)
UNSUPPORTED_RESULT_TYPES = {"interval", "money", "point", "line", "lseg", "box", "path", "polygon", "circle"}
_PLACEHOLDER = re.compile(
    r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|--[^\n]*|/\*.*?\*/|(\$[A-Za-z_]*\$).*?\1|::|:([A-Za-z_][A-Za-z0-9_]*)""", re.S
)


class ApiError(Exception):
    def __init__(self, code: str, message: str, status: int = 400, **members: Any) -> None:
        super().__init__(message)
        self.code, self.message, self.status, self.members = code, message, status, members


@dataclass
class Transaction:
    conn: psycopg.Connection
    database: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    last_used: float = field(default_factory=time.monotonic)


@dataclass
class Calls:
    """What the server was asked, for benchmarks and tests that count calls."""

    by_operation: dict[str, int] = field(default_factory=dict)

    def add(self, operation: str) -> None:
        self.by_operation[operation] = self.by_operation.get(operation, 0) + 1

    @property
    def total(self) -> int:
        return sum(self.by_operation.values())


class DataApiServer:
    """Serves ``clusters`` (ARN → ``host:port`` of a PostgreSQL server) on 127.0.0.1 until :meth:`close`."""

    def __init__(
        self,
        clusters: dict[str, str],
        secrets: Callable[[str], dict[str, Any]],
        *,
        idle_timeout: float = 180.0,
        statement_timeout: float = 45.0,
        sslmode: str = "prefer",
    ) -> None:
        self.clusters = clusters
        self.secrets = secrets  # secretArn -> the secret's JSON (username, password), or raises ApiError
        self.idle_timeout, self.statement_timeout, self.sslmode = idle_timeout, statement_timeout, sslmode
        self.calls = Calls()
        self.statements: list[str] = []  # every SQL text received, in order
        self.failures: deque[ApiError] = deque()
        self._transactions: dict[str, Transaction] = {}
        self._ended: dict[str, str] = {}  # transaction id -> why it is gone
        self._pool: dict[tuple[str, str, str], list[psycopg.Connection]] = {}
        self._lock = threading.Lock()
        self._model = botocore.loaders.create_loader().load_service_model("rds-data", "service-2")
        self._routes = {op["http"]["requestUri"]: name for name, op in self._model["operations"].items()}
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._http.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._http.server_address[1]}"
        threading.Thread(target=self._http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        with self._lock:
            for conns in self._pool.values():
                for conn in conns:
                    conn.close()
            for tx in self._transactions.values():
                tx.conn.close()
            self._pool.clear()
            self._transactions.clear()

    def fail_next(self, code: str, message: str = "", status: int = 400, count: int = 1) -> None:
        """The next ``count`` calls fail with this AWS error before reaching the database."""
        for _ in range(count):
            self.failures.append(ApiError(code, message or code, status))

    def forget_connections(self) -> None:
        """Close the pooled connections (a test is about to drop their database)."""
        with self._lock:
            pools, self._pool = self._pool, {}
        for conns in pools.values():
            for conn in conns:
                conn.close()

    def reset_counts(self) -> None:
        self.calls = Calls()
        self.statements.clear()

    @property
    def open_transactions(self) -> int:
        return len(self._transactions)

    # -- HTTP ---------------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms stalls

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status, payload, code = server._dispatch(self.path, body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
                if code:
                    self.send_header(
                        "x-amzn-ErrorType", f"{code}:http://internal.amazon.com/coral/com.amazon.rdsdataservice/"
                    )
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    def _dispatch(self, path: str, body: bytes) -> tuple[int, dict[str, Any], str | None]:
        try:
            operation = self._routes.get(path)
            if operation is None:
                raise ApiError("UnknownOperationException", f"no operation at {path}", 404)
            if len(body) > MAX_REQUEST_BYTES:
                raise ApiError("BadRequestException", "Request size exceeded the 4 MiB limit", 400)
            request = json.loads(body or b"{}")
            self._validate(operation, request)
            self.calls.add(operation)
            if self.failures:
                raise self.failures.popleft()
            result = getattr(self, f"_op_{operation}")(request)
            if len(json.dumps(result)) > MAX_RESPONSE_BYTES:
                raise ApiError("UnsupportedResultException", "Database response exceeded size limit")
            return 200, result, None
        except ApiError as error:
            return error.status, {"message": error.message, **error.members}, error.code

    def _validate(self, operation: str, request: dict[str, Any]) -> None:
        """The request against botocore's model: required members, known members, string bounds."""
        shape = self._model["shapes"][self._model["operations"][operation]["input"]["shape"]]
        members = shape["members"]
        unknown = set(request) - set(members)
        if unknown:
            raise ApiError("ValidationException", f"unknown members {sorted(unknown)}")
        missing = [name for name in shape.get("required", []) if name not in request]
        if missing:
            raise ApiError("ValidationException", f"missing required members {missing}")
        if "schema" in request:
            raise ApiError("ValidationException", "The schema parameter isn't supported")
        if len(request.get("sql", "")) > MAX_SQL_CHARS:
            raise ApiError("ValidationException", f"SQL statement exceeds {MAX_SQL_CHARS} characters")
        if len(request.get("database", "")) > 64:
            raise ApiError("ValidationException", "database name longer than 64 characters")

    # -- operations ---------------------------------------------------------------------------------

    def _op_BeginTransaction(self, request: dict[str, Any]) -> dict[str, Any]:
        database = request.get("database") or "postgres"
        conn = self._connect(request, database)
        conn.pgconn.exec_(b"BEGIN")
        tx_id = base64.b64encode(uuid.uuid4().bytes * 3).decode()
        with self._lock:
            self._transactions[tx_id] = Transaction(conn, database)
        return {"transactionId": tx_id}

    def _op_CommitTransaction(self, request: dict[str, Any]) -> dict[str, Any]:
        tx = self._take(request["transactionId"], ending=True)
        with tx.lock:
            result = tx.conn.pgconn.exec_(b"COMMIT")
            tx.conn.close()
        if result.status == pq.ExecStatus.FATAL_ERROR:  # a deferred constraint, say
            raise _database_error(result, [], 0)
        return {"transactionStatus": "Transaction Committed"}

    def _op_RollbackTransaction(self, request: dict[str, Any]) -> dict[str, Any]:
        tx = self._take(request["transactionId"], ending=True)
        with tx.lock:
            tx.conn.close()  # the server rolls back what the connection had not committed
        return {"transactionStatus": "Rollback Complete"}

    def _op_ExecuteStatement(self, request: dict[str, Any]) -> dict[str, Any]:
        parameters = request.get("parameters", [])
        return self._run(request, lambda conn: self._execute(conn, request["sql"], parameters, request))

    def _op_BatchExecuteStatement(self, request: dict[str, Any]) -> dict[str, Any]:
        def run(conn: psycopg.Connection) -> dict[str, Any]:
            sets = request.get("parameterSets") or [[]]
            for parameters in sets:
                self._execute(conn, request["sql"], parameters, {})
            return {"updateResults": [{"generatedFields": []} for _ in sets]}

        return self._run(request, run)

    def _op_ExecuteSql(self, request: dict[str, Any]) -> dict[str, Any]:
        raise ApiError("BadRequestException", "ExecuteSql isn't supported for this cluster")

    # -- running SQL --------------------------------------------------------------------------------

    def _run(self, request: dict[str, Any], work: Callable[[psycopg.Connection], dict[str, Any]]) -> dict[str, Any]:
        self.statements.append(request["sql"])
        tx_id = request.get("transactionId")
        if tx_id is None:
            database = request.get("database") or "postgres"
            conn = self._pooled(request, database)
            try:
                return work(conn)
            finally:
                self._release(request, database, conn)
        tx = self._take(tx_id, ending=False)
        if not tx.lock.acquire(blocking=False):
            raise ApiError("DatabaseErrorException", "Transaction is still running a query")
        try:
            return work(tx.conn)
        except ApiError as error:
            if error.code in ("DatabaseErrorException", "StatementTimeoutException", "UnsupportedResultException"):
                self._end(tx_id, "Transaction has been aborted due to an error from a previous call.")
            raise
        finally:
            tx.last_used = time.monotonic()
            tx.lock.release()

    def _execute(
        self, conn: psycopg.Connection, sql: str, parameters: list[dict[str, Any]], request: dict[str, Any]
    ) -> dict[str, Any]:
        text, values, types, shifts = _bind(sql, parameters)
        pgconn = conn.pgconn
        result = pgconn.exec_params(text.encode(), values, types)
        if result.status in (pq.ExecStatus.COPY_IN, pq.ExecStatus.COPY_OUT):
            _abandon_copy(pgconn, result.status)
            raise ApiError(
                "DatabaseErrorException",
                COPY_REFUSED,
            )
        if result.status == pq.ExecStatus.FATAL_ERROR:
            raise _database_error(result, shifts, pgconn.backend_pid)
        return self._records(conn, result, request)

    def _records(self, conn: psycopg.Connection, result: pq.PGresult, request: dict[str, Any]) -> dict[str, Any]:
        status = (result.command_status or b"").decode()
        updated = result.command_tuples if status.split(" ")[0] in ("INSERT", "UPDATE", "DELETE", "MERGE") else 0
        output: dict[str, Any] = {"numberOfRecordsUpdated": updated or 0, "generatedFields": []}
        if result.status != pq.ExecStatus.TUPLES_OK:
            return output
        names = [self._type_name(conn, result.ftype(col)) for col in range(result.nfields)]
        for name in names:
            if name in UNSUPPORTED_RESULT_TYPES:
                raise ApiError("UnsupportedResultException", f"{UNSUPPORTED} {name}.")
        output["records"] = [
            [_field(result.get_value(row, col), names[col]) for col in range(result.nfields)]
            for row in range(result.ntuples)
        ]
        if request.get("includeResultMetadata"):
            output["columnMetadata"] = [
                {
                    "name": (result.fname(col) or b"").decode(),
                    "label": (result.fname(col) or b"").decode(),
                    "typeName": names[col],
                    "type": 0,
                }
                for col in range(result.nfields)
            ]
        return output

    def _type_name(self, conn: psycopg.Connection, oid: int) -> str:
        name = _TYPE_NAMES.get(oid)
        if name is None:
            found = conn.pgconn.exec_params(b"SELECT typname FROM pg_type WHERE oid = $1", [str(oid).encode()], [26])
            name = found.get_value(0, 0).decode() if found.ntuples else "unknown"
            _TYPE_NAMES[oid] = name
        return name

    # -- connections and transactions --------------------------------------------------------------

    def _conninfo(self, request: dict[str, Any], database: str) -> str:
        address = self.clusters.get(request["resourceArn"])
        if address is None:
            raise ApiError(
                "HttpEndpointNotEnabledException", f"HTTP endpoint is not enabled for {request['resourceArn']}"
            )
        secret = self.secrets(request["secretArn"])
        host, port = address.rsplit(":", 1)
        return psycopg.conninfo.make_conninfo(
            host=host,
            port=port,
            user=secret["username"],
            password=secret["password"],
            dbname=database,
            sslmode=self.sslmode,
            options=f"-c TimeZone=UTC -c statement_timeout={int(self.statement_timeout * 1000)}",
        )

    def _connect(self, request: dict[str, Any], database: str) -> psycopg.Connection:
        try:
            return psycopg.connect(self._conninfo(request, database), autocommit=True)
        except psycopg.OperationalError as error:
            text = str(error).strip().splitlines()[-1].split("FATAL:")[-1].strip()
            sqlstate = "3D000" if "does not exist" in text else "28P01" if "authentication" in text else "08006"
            raise ApiError("DatabaseErrorException", f"FATAL: {text}; SQLState: {sqlstate}") from None

    def _pooled(self, request: dict[str, Any], database: str) -> psycopg.Connection:
        key = (request["resourceArn"], request["secretArn"], database)
        self._conninfo(request, database)  # the endpoint and the secret are checked on every call
        while True:
            with self._lock:
                idle = self._pool.get(key)
                conn = idle.pop() if idle else None
            if conn is None:
                return self._connect(request, database)
            if conn.pgconn.exec_(b"").status == pq.ExecStatus.EMPTY_QUERY:
                return conn
            conn.close()  # its backend was terminated (DROP DATABASE … WITH (FORCE), say)

    def _release(self, request: dict[str, Any], database: str, conn: psycopg.Connection) -> None:
        """Back to the pool with no session state left: nothing carries over between calls."""
        pgconn = conn.pgconn
        if pgconn.transaction_status != pq.TransactionStatus.IDLE:
            pgconn.exec_(b"ROLLBACK")
        if pgconn.exec_(b"DISCARD ALL").status != pq.ExecStatus.COMMAND_OK:
            conn.close()
            return
        with self._lock:
            self._pool.setdefault((request["resourceArn"], request["secretArn"], database), []).append(conn)

    def _take(self, tx_id: str, *, ending: bool) -> Transaction:
        with self._lock:
            if tx_id in self._ended:
                raise ApiError(
                    "TransactionNotFoundException", f"Transaction {tx_id} isn't found. {self._ended[tx_id]}", 404
                )
            tx = self._transactions.get(tx_id)
            if tx is None:
                raise ApiError("TransactionNotFoundException", f"Transaction {tx_id} isn't found.", 404)
            if time.monotonic() - tx.last_used > self.idle_timeout:
                self._transactions.pop(tx_id)
                self._ended[tx_id] = EXPIRED
                tx.conn.close()
                raise ApiError("TransactionNotFoundException", f"Transaction {tx_id} isn't found. {EXPIRED}", 404)
            if ending:
                self._transactions.pop(tx_id)
                self._ended[tx_id] = "One previous call resulted in a termination of your transaction."
            return tx

    def _end(self, tx_id: str, reason: str) -> None:
        with self._lock:
            tx = self._transactions.pop(tx_id, None)
            self._ended[tx_id] = reason
        if tx is not None:
            tx.conn.close()


_TYPE_NAMES: dict[int, str] = {16: "bool", 17: "bytea", 20: "int8", 21: "int2", 23: "int4", 25: "text", 1043: "varchar"}
_ARRAY_ELEMENTS = {
    "_bool": "bool",
    "_int2": "int2",
    "_int4": "int4",
    "_int8": "int8",
    "_float4": "float4",
    "_float8": "float8",
}


def _bind(sql: str, parameters: list[dict[str, Any]]) -> tuple[str, list[bytes | None], list[int], list[Shift]]:
    """``:name`` placeholders as ``$n`` with their values and types; ``shifts`` maps positions back."""
    given = {parameter["name"]: parameter for parameter in parameters}
    numbers: dict[str, int] = {}
    values: list[bytes | None] = []
    types: list[int] = []
    shifts: list[tuple[int, int]] = []  # (end in the new text, characters removed up to there)
    out, last, removed = [], 0, 0
    for match in _PLACEHOLDER.finditer(sql):
        name = match.group(2)
        if name is None:
            continue
        if name not in given:
            raise ApiError("BadRequestException", f"No value specified for parameter: {name}")
        if name not in numbers:
            value, oid = _parameter(given[name])
            values.append(value)
            types.append(oid)
            numbers[name] = len(values)
        token = f"${numbers[name]}"
        out.append(sql[last : match.start()] + token)
        removed += len(match.group()) - len(token)
        last = match.end()
        shifts.append((sum(map(len, out)), removed))
    out.append(sql[last:])
    return "".join(out), values, types, shifts


def _parameter(parameter: dict[str, Any]) -> tuple[bytes | None, int]:
    value = parameter["value"]
    hint = parameter.get("typeHint")
    hinted = _HINT_OIDS.get(hint, 0) if hint else 0
    if len(value) != 1:
        raise ApiError("ValidationException", "exactly one member of Field must be set")
    ((kind, data),) = value.items()
    if kind == "isNull":
        return None, hinted
    if kind == "stringValue":
        return data.encode(), hinted or VARCHAR
    if kind == "longValue":
        return str(data).encode(), INT8
    if kind == "doubleValue":
        return repr(float(data)).encode(), FLOAT8
    if kind == "booleanValue":
        return (b"t" if data else b"f"), BOOL
    if kind == "blobValue":
        return b"\\x" + base64.b64decode(data).hex().encode(), BYTEA
    raise ApiError("ValidationException", "Array parameters are not supported.")


_HINT_OIDS = {"JSON": 114, "UUID": 2950, "TIMESTAMP": 1114, "DATE": 1082, "TIME": 1083, "DECIMAL": 1700}


def _field(value: bytes | None, type_name: str) -> dict[str, Any]:
    """A text-format value as the Data API's Field."""
    if value is None:
        return {"isNull": True}
    text = value.decode()
    if type_name == "bool":
        return {"booleanValue": text == "t"}
    if type_name in ("int2", "int4", "int8", "oid"):
        return {"longValue": int(text)}
    if type_name in ("float4", "float8"):
        return {"doubleValue": float(text)}
    if type_name == "bytea":
        return {"blobValue": base64.b64encode(bytes.fromhex(text[2:])).decode()}
    if type_name == "timestamptz":
        return {"stringValue": text.removesuffix("+00")}
    if type_name in _ARRAY_ELEMENTS or (type_name.startswith("_") and type_name[1:] in ("text", "varchar", "name")):
        return {"arrayValue": _array(text, _ARRAY_ELEMENTS.get(type_name, "text"))}
    return {"stringValue": text}


def _array(text: str, element: str) -> dict[str, Any]:
    """A one-dimensional array's text form as an ArrayValue."""
    if text.startswith("{{"):
        raise ApiError("UnsupportedResultException", f"{UNSUPPORTED} multidimensional array.")
    items = [
        None if raw == "NULL" else re.sub(r"\\(.)", r"\1", raw[1:-1]) if raw.startswith('"') else raw
        for raw in re.findall(r'"(?:[^"\\]|\\.)*"|[^,{}]+', text)
    ]
    if element == "bool":
        return {"booleanValues": [None if item is None else item == "t" for item in items]}
    if element.startswith("int"):
        return {"longValues": [None if item is None else int(item) for item in items]}
    if element.startswith("float"):
        return {"doubleValues": [None if item is None else float(item) for item in items]}
    return {"stringValues": items}


def _database_error(result: pq.PGresult, shifts: list[tuple[int, int]], backend_pid: int) -> ApiError:
    """PostgreSQL's error folded into the Data API's one string."""

    def field(code: pq.DiagnosticField) -> str | None:
        value = result.error_field(code)
        return value.decode() if value else None

    sqlstate = field(pq.DiagnosticField.SQLSTATE) or "XX000"
    primary = field(pq.DiagnosticField.MESSAGE_PRIMARY) or ""
    if sqlstate == "42601" and "multiple commands" in primary:
        return ApiError("ValidationException", "Multistatements aren't supported.")
    if sqlstate == "57014" and "statement timeout" in primary:
        return ApiError("StatementTimeoutException", "The statement timed out.", dbConnectionId=backend_pid)
    parts = [f"ERROR: {primary}"]
    if (detail := field(pq.DiagnosticField.MESSAGE_DETAIL)) is not None:
        parts.append(f"Detail: {detail}")
    if (hint := field(pq.DiagnosticField.MESSAGE_HINT)) is not None:
        parts.append(f"Hint: {hint}")
    if (position := field(pq.DiagnosticField.STATEMENT_POSITION)) is not None:
        parts.append(f"Position: {_original_position(int(position), shifts)}")
    parts.append(f"SQLState: {sqlstate}")
    return ApiError("DatabaseErrorException", "; ".join(parts))


def _original_position(position: int, shifts: list[tuple[int, int]]) -> int:
    removed = 0
    for end, total in shifts:
        if position > end:
            removed = total
    return position + removed


def _abandon_copy(pgconn: pq.PGconn, status: pq.ExecStatus) -> None:
    """End a COPY the Data API cannot carry, leaving the connection usable (or its transaction failed)."""
    if status == pq.ExecStatus.COPY_IN:
        pgconn.put_copy_end(b"COPY is not supported by the Data API")
    else:
        while pgconn.get_copy_data(0)[0] >= 0:
            pass
    while pgconn.get_result() is not None:
        pass


def moto_secrets(secretsmanager: Any) -> Callable[[str], dict[str, Any]]:
    """Read each call's secret from Secrets Manager (moto), as the Data API does."""

    def read(secret_arn: str) -> dict[str, Any]:
        try:
            value = secretsmanager.get_secret_value(SecretId=secret_arn)
        except secretsmanager.exceptions.ResourceNotFoundException:
            raise ApiError(
                "SecretsErrorException", f"Secrets Manager can't find the specified secret: {secret_arn}"
            ) from None
        return json.loads(value["SecretString"])

    return read
