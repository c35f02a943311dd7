"""``COPY … FROM stdin`` over the RDS Data API, which carries no COPY protocol: the rows become INSERTs.

Each call sends about a megabyte of rows as one JSON parameter (an array of arrays of strings and
nulls) and inserts them with every value read by its column's type input, as COPY reads it::

    INSERT INTO t (a, b) OVERRIDING SYSTEM VALUE
    SELECT CAST(r.v->>0 AS pg_catalog."varchar"), CAST(r.v->>1 AS pg_catalog.bytea)
    FROM pg_catalog.json_array_elements(:rows) WITH ORDINALITY AS r(v, n) ORDER BY r.n

Each value is cast to its column's base type *without* its length or precision (``varchar``, not
``varchar(3)``; a domain's base type, not the domain): an explicit cast to ``varchar(3)`` would cut
``'ABCD'`` to ``'ABC'``, where COPY raises ``value too long``. The INSERT's own assignment to the
column then checks the length, precision, bit width and domain constraints exactly as COPY's input
does, with PostgreSQL's own messages. Rows keep their order, and an identity column takes the file's
values as COPY's would. The text format's escapes (``\\N``, ``\\t``, ``\\\\``, octal, hex) are undone here.

Where COPY's semantics and an INSERT's differ, the COPY is refused rather than loaded differently:
COPY ignores rules (an INSERT applies them), and fires statement-level triggers, transition tables
and AFTER ROW triggers once for all its rows (INSERTs fire them once per call): such a table takes its
rows only when they fit in one call.

A failing row is named as COPY names it (``COPY t, line 5, column n: "12x"``), for any error (a value,
a duplicate key, a NOT NULL), inside the load's own transaction: the rows travel through a temporary
PL/pgSQL function (``queries/copy_rows_function.sql``) that runs the INSERT in a subtransaction and,
when it fails, replays the rows one by one to find the first that fails alone, then returns it
instead of failing (the Data API ends a transaction at its first error). Without the TEMP privilege
or PL/pgSQL, the INSERT goes alone and its error names the lines of the rows sent together.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dbtool import queries
from dbtool.engine.dataapi import NETWORK_HINT, failed_row
from dbtool.engine.session import SqlError
from dbtool.errors import join_hints

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
SHOWN_BYTES = 100
INSERT = (
    "INSERT INTO {table} ({columns}) OVERRIDING SYSTEM VALUE SELECT {casts} "
    "FROM pg_catalog.json_array_elements({rows}) WITH ORDINALITY AS r(v, n) ORDER BY r.n"
)
# What finds the column of a value the server refused: its type's input with the column's length and
# domain, as COPY reads it (json_populate_record keeps a json value as text, so those are cast).
PROBE = "SELECT pg_catalog.json_populate_record(NULL::{table}, pg_catalog.json_build_object({name}, $1->>{index}))"
JSON_PROBE = "SELECT CAST($1->>{index} AS {type})"
RULE = "COPY ignores rules, but through the RDS Data API its rows are INSERTs, which {rule} on {table} would rewrite"
TRIGGER = (
    "this COPY's rows take more than one RDS Data API call, and {trigger} on {table} would fire once per call "
    "where COPY fires it once"
)


@dataclass(frozen=True)
class _Target:
    session: DataApiSession
    table: str
    names: list[str]
    context: str  # "COPY t", as PostgreSQL begins a COPY error's context
    direct: str  # the INSERT with a :rows parameter, sent alone
    through: str  # the INSERT with $1, for the function that names a failing row
    probes: str  # a JSON array of one probe per column
    trigger: str | None  # a trigger that must not see the rows in more than one call


def copy_as_inserts(session: DataApiSession, statement: bytes, data: Iterator[bytes]) -> None:
    """Insert ``data`` (COPY text format, whole lines) the way ``statement`` would have copied it."""
    target = _target(session, statement)
    batch: list[str] = []
    size = first = last = 0
    for line, fields in _rows(data, target.names, target.context):
        row = json.dumps(fields, ensure_ascii=False)
        row_size = len(row.encode("utf-8")) + 1
        if row_size > ROWS_BYTES and len(json.dumps(json.dumps(row))) > ROW_LIMIT:
            raise SqlError(
                f"this row is {row_size:,} bytes: more than one RDS Data API request (4 MiB) can carry",
                context=f"{target.context}, line {line}",
                copy_line=line,
                hint=NETWORK_HINT,
            )
        if batch and size + row_size > ROWS_BYTES:
            if target.trigger is not None:
                raise SqlError(TRIGGER.format(trigger=target.trigger, table=_unquoted(target.table)), hint=NETWORK_HINT)
            _send(target, batch, first, last)
            batch, size = [], 0
        if not batch:
            first = line
        batch.append(row)
        size += row_size
        last = line
    if batch:
        _send(target, batch, first, last)


def _target(session: DataApiSession, statement: bytes) -> _Target:
    match = _COPY.fullmatch(statement.decode("utf-8", "replace"))
    if match is None or not _TEXT_FORMAT.fullmatch(match["options"]):
        raise SqlError(
            "this COPY cannot be sent through the RDS Data API",
            hint="only COPY … FROM stdin in the text format (as pg_dump writes it) is turned into INSERTs; "
            + NETWORK_HINT,
        )
    table = match["table"]
    trigger, rule, _ = session.insert_facts(table)
    if rule is not None:
        raise SqlError(RULE.format(rule=rule, table=_unquoted(table)), hint=NETWORK_HINT)
    written, names, types, json_types = _columns(session, table, match["columns"])
    casts = ", ".join(f"CAST(r.v->>{index} AS {type_})" for index, type_ in enumerate(types))
    insert = INSERT.format(table=table, columns=", ".join(written), casts=casts, rows="{rows}")
    probes = [
        JSON_PROBE.format(index=index, type=type_)
        if is_json
        else PROBE.format(table=table, name=_literal(name), index=index)
        for index, (name, type_, is_json) in enumerate(zip(names, types, json_types, strict=True))
    ]
    return _Target(
        session,
        table,
        names,
        f"COPY {_unquoted(table)}",
        insert.format(rows=":rows"),
        insert.format(rows="$1"),
        json.dumps(probes),
        trigger,
    )


def _columns(
    session: DataApiSession, table: str, listed: str | None
) -> tuple[list[str], list[str], list[str], list[bool]]:
    """The COPY's columns as written (or every column COPY fills), their names, base types and json-ness."""
    rows = session.execute(queries.get("copy_columns"), {"table": table}).rows
    facts = {name: (type_, is_json) for name, type_, _, is_json in rows}
    if listed is None:
        names = [name for name, _, generated, _ in rows if not generated]
        written = [_quote(name) for name in names]
    else:
        written = _COLUMN.findall(listed)
        names = [_identifier(column) for column in written]
        missing = [name for name in names if name not in facts]
        if missing:
            raise SqlError(f'column "{missing[0]}" of relation "{_unquoted(table)}" does not exist', sqlstate="42703")
    return written, names, [facts[name][0] for name in names], [bool(facts[name][1]) for name in names]


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


def _send(target: _Target, batch: list[str], first: int, last: int) -> None:
    rows = "[" + ",".join(batch) + "]"
    session = target.session
    if not session.rows_function():
        try:
            session.statement(target.direct, [_json_parameter("rows", rows)])
        except SqlError as error:  # the lines are all there is to say: the transaction is gone
            error.position = None
            error.detail = join_hints(error.detail, f"in one of lines {first} to {last} of its data, sent together")
            raise
        return
    failed = session.send_rows(target.through, rows, rows_are_sql=False, probes=target.probes)
    if failed is not None:
        raise _located(target, failed, batch, first, last)


def _located(target: _Target, failed: dict[str, Any], batch: list[str], first: int, last: int) -> SqlError:
    """The row the function found, as COPY's own error names it."""
    error = failed_row(failed)
    if failed["row"] is None:  # the rows fail together and each passes alone
        error.detail = join_hints(error.detail, f"in lines {first} to {last} of its data, sent together")
        return error
    index = failed["row"] - 1
    error.copy_line = first + index
    error.context = f"{target.context}, line {error.copy_line}"
    if failed["column"] is not None:
        column = failed["column"] - 1
        value = json.loads(batch[index])[column]
        shown = "null input" if value is None else f'"{_shown(value)}"'
        error.context += f", column {target.names[column]}: {shown}"
    return error


def _json_parameter(name: str, value: str) -> dict[str, Any]:
    return {"name": name, "value": {"stringValue": value}, "typeHint": "JSON"}


def _shown(value: str) -> str:
    """At most 100 bytes of a value, as PostgreSQL quotes COPY data in its errors."""
    data = value.encode("utf-8")
    return value if len(data) <= SHOWN_BYTES else data[:SHOWN_BYTES].decode("utf-8", "ignore") + "..."


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _identifier(written: str) -> str:
    return written[1:-1].replace('""', '"') if written.startswith('"') else written.lower()


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _unquoted(table: str) -> str:
    return ".".join(_identifier(part.strip()) for part in re.findall(_NAME, table))
