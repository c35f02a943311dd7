"""``COPY … FROM stdin`` over the RDS Data API, which carries no COPY protocol: the rows become INSERTs.

Each call sends about a megabyte of rows as one JSON parameter (an array of arrays of strings and
nulls) and inserts them with every column cast to its real type::

    INSERT INTO t (a, b) OVERRIDING SYSTEM VALUE
    SELECT CAST(r.v->>0 AS integer), CAST(r.v->>1 AS bytea)
    FROM json_array_elements(:rows) WITH ORDINALITY AS r(v, n) ORDER BY r.n

so each value goes through the same type input function COPY uses (bytea's ``\\x`` text, arrays'
``{…}``, enums, jsonb), rows keep their order, and an identity column takes the file's values as
COPY's would. The text format's escapes (``\\N``, ``\\t``, ``\\\\``, octal, hex) are undone here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dbtool import queries
from dbtool.engine.session import SqlError

if TYPE_CHECKING:
    from dbtool.engine.dataapi import DataApiSession

# 4 MiB per request: a row's UTF-8 bytes take at most 3 characters each once JSON-encoded twice, so
# a megabyte of rows always fits; a larger row travels alone if its encoding fits.
ROWS_BYTES = 1 << 20
ROW_LIMIT = (4 << 20) - (64 << 10)  # the request less room for the statement and the envelope
_NAME = r'(?:"(?:[^"]|"")*"|[^\s."(),;]+)'
_COPY = re.compile(
    rf"(?is)\s*copy\s+(?P<table>{_NAME}(?:\s*\.\s*{_NAME})*)\s*(?P<columns>\((?:[^()\"]|\"(?:[^\"]|\"\")*\")*\))?"
    r"\s*from\s+stdin\s*(?P<options>.*?)\s*;?\s*"
)
_TEXT_FORMAT = re.compile(r"(?is)(?:with\s*)?(?:\(\s*format\s+'?text'?\s*\))?")
_COLUMN = re.compile(r'"(?:[^"]|"")*"|[^\s,()]+')
_ESCAPE = re.compile(rb"\\(?:([0-7]{1,3})|x([0-9a-fA-F]{1,2})|(.))", re.S)
_SIMPLE_ESCAPES = {b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"v": b"\v"}
_DELIMITER = re.compile(rb"\\.|\t", re.S)
# Class 22, data exception: a value the column's type refused (invalid input syntax, out of range…).
DATA_EXCEPTION = "22"
SHOWN_BYTES = 100
# num_nulls() is not strict and takes every argument: each cast runs for each row, in no order the
# planner can shortcut (it reorders and short-circuits ROW(…) IS NULL's tests by cost).
PROBE = "SELECT count(*) FROM json_array_elements(:rows) AS r(v) WHERE num_nulls({casts}) < 0"
INSERT = (
    "INSERT INTO {table} ({columns}) OVERRIDING SYSTEM VALUE SELECT {casts} "
    "FROM json_array_elements(:rows) WITH ORDINALITY AS r(v, n) ORDER BY r.n"
)


def copy_as_inserts(session: DataApiSession, statement: bytes, data: Iterator[bytes]) -> None:
    """Insert ``data`` (COPY text format, whole lines) the way ``statement`` would have copied it."""
    match = _COPY.fullmatch(statement.decode("utf-8", "replace"))
    if match is None or not _TEXT_FORMAT.fullmatch(match["options"]):
        raise SqlError(
            "this COPY cannot be sent through the RDS Data API",
            hint="only COPY … FROM stdin in the text format (as pg_dump writes it) is turned into INSERTs; "
            "load this file over a network connection (PROD_CONNECTION_URL)",
        )
    table = match["table"]
    written, names, types = _columns(session, table, match["columns"])
    casts = [f"CAST(r.v->>{index} AS {type_})" for index, type_ in enumerate(types)]
    insert = INSERT.format(table=table, columns=", ".join(written), casts=", ".join(casts))
    target = _Target(session, names, casts, f"COPY {_unquoted(table)}")
    context = target.context
    batch: list[str] = []
    size = 0
    first = 0
    last = 0
    for line, fields in _rows(data, names, context):
        row = json.dumps(fields, ensure_ascii=False)
        row_size = len(row.encode("utf-8")) + 1
        if row_size > ROWS_BYTES and len(json.dumps(json.dumps(row))) > ROW_LIMIT:
            raise SqlError(
                f"this row is {row_size:,} bytes: more than one RDS Data API request (4 MiB) can carry",
                context=f"{context}, line {line}",
                copy_line=line,
                hint="load this file over a network connection (PROD_CONNECTION_URL)",
            )
        if batch and size + row_size > ROWS_BYTES:
            _send(target, insert, batch, first, last)
            batch, size = [], 0
        if not batch:
            first = line
        batch.append(row)
        size += row_size
        last = line
    if batch:
        _send(target, insert, batch, first, last)


def _columns(session: DataApiSession, table: str, listed: str | None) -> tuple[list[str], list[str], list[str]]:
    """The COPY's columns as written (or every column COPY fills), their names, and each one's type."""
    rows = session.execute(queries.get("copy_columns"), {"table": table}).rows
    types = {name: type_ for name, type_, _ in rows}
    if listed is None:
        names = [name for name, _, generated in rows if not generated]
        return [_quote(name) for name in names], names, [types[name] for name in names]
    written = _COLUMN.findall(listed)
    names = [_identifier(column) for column in written]
    missing = [name for name in names if name not in types]
    if missing:
        raise SqlError(f'column "{missing[0]}" of relation "{_unquoted(table)}" does not exist', sqlstate="42703")
    return written, names, [types[name] for name in names]


def _rows(data: Iterator[bytes], names: list[str], context: str) -> Iterator[tuple[int, list[str | None]]]:
    """(line number within the data, fields) for each line of COPY text-format data."""
    number, width = 0, len(names)
    for chunk in data:
        lines = chunk.split(b"\n")
        if lines[-1] == b"":
            lines.pop()
        for raw in lines:
            number += 1
            fields = _fields(raw.removesuffix(b"\r"))
            if len(fields) != width:  # PostgreSQL's own words for it
                message = (
                    "extra data after last expected column"
                    if len(fields) > width
                    else f'missing data for column "{names[len(fields)]}"'
                )
                where = f'{context}, line {number}: "{_shown(raw.decode("utf-8", "replace"))}"'
                raise SqlError(message, sqlstate="22P04", context=where, copy_line=number)
            try:
                yield number, [_value(field) for field in fields]
            except UnicodeDecodeError:
                raise SqlError(
                    'invalid byte sequence for encoding "UTF8"',
                    sqlstate="22021",
                    context=f"{context}, line {number}",
                    copy_line=number,
                ) from None


def _fields(line: bytes) -> list[bytes]:
    if b"\\" not in line:
        return line.split(b"\t")
    fields, start = [], 0
    for match in _DELIMITER.finditer(line):
        if match.group() == b"\t":
            fields.append(line[start : match.start()])
            start = match.end()
    fields.append(line[start:])
    return fields


def _value(field: bytes) -> str | None:
    if field == b"\\N":
        return None
    if b"\\" in field:
        field = _ESCAPE.sub(_unescape, field)
    return field.decode("utf-8")


def _unescape(match: re.Match[bytes]) -> bytes:
    octal, hexadecimal, other = match.groups()
    if octal is not None:
        return bytes([int(octal, 8) & 0xFF])
    if hexadecimal is not None:
        return bytes([int(hexadecimal, 16)])
    return _SIMPLE_ESCAPES.get(other, other)


@dataclass(frozen=True)
class _Target:
    session: DataApiSession
    names: list[str]
    casts: list[str]
    context: str


def _send(target: _Target, insert: str, batch: list[str], first: int, last: int) -> None:
    try:
        target.session.statement(insert, [_rows_parameter(batch)])
    except SqlError as error:
        located = _find_bad_value(target, batch, first, error.sqlstate)
        if located is not None:
            raise located from None
        error.position = None
        error.copy_line = first
        error.context = f"{target.context}, one of lines {first} to {last}, sent together"
        raise


def _rows_parameter(batch: list[str]) -> dict[str, Any]:
    return {"name": "rows", "value": {"stringValue": "[" + ",".join(batch) + "]"}, "typeHint": "JSON"}


def _find_bad_value(target: _Target, batch: list[str], first: int, sqlstate: str | None) -> SqlError | None:
    """The row and column whose value the server refused, found by halving the rows with read-only casts.

    The failed transaction is gone, so these run on their own; they insert nothing. A failure that
    is not a value's (a duplicate key, a type this file had created) is not found: None.
    """
    if sqlstate is None or not sqlstate.startswith(DATA_EXCEPTION) or _probe(target, batch, target.casts) is None:
        return None
    low, high = 0, len(batch)
    while high - low > 1:
        middle = (low + high) // 2
        if _probe(target, batch[low:middle], target.casts) is not None:
            high = middle
        else:
            low = middle
    fields = json.loads(batch[low])
    for index, cast in enumerate(target.casts):
        refused = _probe(target, [batch[low]], [cast])
        if refused is not None:
            value = "null input" if fields[index] is None else f'"{_shown(fields[index])}"'
            refused.context = f"{target.context}, line {first + low}, column {target.names[index]}: {value}"
            refused.copy_line, refused.position = first + low, None
            return refused
    return None


def _probe(target: _Target, rows: list[str], casts: list[str]) -> SqlError | None:
    """The error casting these rows' values raises, if any."""
    sql = PROBE.format(casts=", ".join(casts))
    try:
        target.session.outside(sql, [_rows_parameter(rows)])
    except SqlError as error:
        return error
    return None


def _shown(value: str) -> str:
    """At most 100 bytes of a value, as PostgreSQL quotes COPY data in its errors."""
    data = value.encode("utf-8")
    return value if len(data) <= SHOWN_BYTES else data[:SHOWN_BYTES].decode("utf-8", "ignore") + "..."


def _identifier(written: str) -> str:
    return written[1:-1].replace('""', '"') if written.startswith('"') else written.lower()


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _unquoted(table: str) -> str:
    return ".".join(_identifier(part.strip()) for part in re.findall(_NAME, table))
