"""``INSERT … VALUES`` statements whose rows are constants: which may travel together, and how a long one splits.

Sending several single-row INSERTs as one multi-row INSERT (the Data API, where a call costs tens of
milliseconds), or one multi-row INSERT as several (a statement over the Data API's 65,536 characters,
or of megabytes over libpq), is the same thing only when every row means alone what it means with the
others. That holds when each value is a constant: a literal (``'…'``, a number, ``B'…'``), ``NULL``,
``DEFAULT``, ``TRUE``/``FALSE``, or one of these cast (``'…'::type``, ``CAST('…' AS type)``,
``type '…'``). A subquery sees the rows inserted before its statement, not those of its own statement
(one snapshot), so ``VALUES ('b', (SELECT id FROM category WHERE …))`` repeated cannot be combined; a
function call, an operator or anything else ends the group too. Rows combine only with rows of the same
target, the same column list as written and the same number of values (PostgreSQL refuses VALUES lists
of different lengths in one statement). What the table does with a statement as a whole (a trigger, a
rule) is the caller's to check: :data:`TABLE_CHECK` names the query.

Only the standard reading of ``'…'`` is understood here; with ``standard_conforming_strings`` off the
caller sends statements as written.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dbtool.engine.session import SqlError
from dbtool.errors import join_hints

if TYPE_CHECKING:
    from dbtool.engine.split import Run

TABLE_CHECK = "insert_batching"  # queries/insert_batching.sql: what in a table stops rows combining or splitting

_IDENT = rb'(?:"[^"]*+(?:""[^"]*+)*+"|[A-Za-z_\x80-\xff][\w$\x80-\xff]*)'
_WORD = rb"[A-Za-z_][\w$]*"
_STRING = rb"'[^']*+(?:''[^']*+)*+'"  # unrolled: one C loop over megabytes, not an alternation per byte
_LITERAL = (
    rb"(?:"
    + _STRING
    + rb"|[eE]'(?:[^'\\]|\\.|'')*+'|[bBxXnN]"
    + _STRING
    + rb"|[+-]?\s*+(?:\d++(?:\.\d*+)?|\.\d++)(?:[eE][+-]?\d++)?(?![\w$])"
    rb"|(?i:null|default|true|false)(?![\w$]))"
)
# A type as written after :: or AS: possibly qualified, several words (character varying, double
# precision, timestamp(3) with time zone), a length or precision, array brackets.
_TYPE = (
    _IDENT
    + rb"(?:\s*+\.\s*+"
    + _IDENT
    + rb")*+(?:\s*+\(\s*+\d++\s*+(?:,\s*+\d++\s*+)?\)|\s*+\[\s*+\d*+\s*+\]|\s++(?!(?i:as)\b)"
    + _WORD
    + rb")*+"
)
_CONSTANT = re.compile(
    rb"\s*+(?:"
    + _LITERAL
    + rb"|(?i:cast)\s*+\(\s*+"
    + _LITERAL
    + rb"\s++(?i:as)\s++"
    + _TYPE
    + rb"\s*+\)|(?:"
    + _WORD
    + rb"\s++)++"
    + _STRING
    + rb")(?:\s*+::\s*+"
    + _TYPE
    + rb")*+\s*+",
    re.DOTALL,
)
_HEAD = re.compile(
    rb"(?is)\s*+(?P<head>insert\s++into\s++(?P<table>" + _IDENT + rb"(?:\s*+\.\s*+" + _IDENT + rb")*+)"
    rb"\s*+(?:\((?:[^()\"]|\"(?:[^\"]|\"\")*+\")*+\))?\s*+values)\s*+"
)
_SEPARATOR = re.compile(rb"\s*+,\s*+")
_END = re.compile(rb"\s*+;?\s*+")


@dataclass(frozen=True)
class ValuesInsert:
    """``INSERT INTO t [(columns)] VALUES (…)[, (…)]…`` whose every value is a constant, with nothing after."""

    key: str  # the head, its blanks normalised, and the row width: rows with one key go to one table's columns
    head: str  # as written, up to and including VALUES
    table: str  # as written (quoted or not, qualified or not)
    rows: list[tuple[int, int]]  # each row's "(…)", as byte offsets into the statement's SQL
    start: int  # the statement's own start in that SQL

    def row(self, sql: bytes, index: int) -> str:
        start, end = self.rows[index]
        return sql[start:end].decode("utf-8")


def parse(sql: bytes, start: int = 0, end: int | None = None) -> ValuesInsert | None:
    """The statement ``sql[start:end]`` as a :class:`ValuesInsert`, or None when it is anything else.

    None too when it is not UTF-8 (it is then sent as written, to be refused with its line).
    """
    end = len(sql) if end is None else end
    head = _HEAD.match(sql, start, end)
    if head is None:
        return None
    rows: list[tuple[int, int]] = []
    width = 0
    pos = head.end()
    while True:
        row_end, values = _row(sql, pos, end)
        if row_end < 0 or (width and values != width):
            return None
        rows.append((pos, row_end))
        width = values
        separator = _SEPARATOR.match(sql, row_end, end)
        if separator is None:
            break
        pos = separator.end()
    if _END.fullmatch(sql, row_end, end) is None:
        return None
    try:
        text = head.group("head").decode("utf-8")
        table = head.group("table").decode("utf-8")
        sql[rows[0][0] : rows[-1][1]].decode("utf-8")
    except UnicodeDecodeError:
        return None
    # Case kept: "Users" and users are two tables.
    return ValuesInsert(f"{' '.join(text.split())} /{width}", text, table, rows, start)


def _row(sql: bytes, pos: int, end: int) -> tuple[int, int]:
    """The end of a row of constants at ``pos`` and its number of values, or (-1, 0)."""
    if sql[pos : pos + 1] != b"(":
        return -1, 0
    pos += 1
    values = 0
    while True:
        constant = _CONSTANT.match(sql, pos, end)
        if constant is None:
            return -1, 0
        values += 1
        pos = constant.end()
        if sql[pos : pos + 1] == b")":
            return pos + 1, values
        if sql[pos : pos + 1] != b",":
            return -1, 0
        pos += 1


def groups(insert: ValuesInsert, sql: bytes, limit: int) -> list[tuple[int, int]] | None:
    """The rows in consecutive groups (first, last + 1) whose INSERTs each stay within ``limit`` characters.

    None when one row alone (with the head) is over the limit: such a statement cannot be split.
    """
    size = len(insert.head) + 1
    found: list[tuple[int, int]] = []
    first = 0
    total = size
    for index, (start, end) in enumerate(insert.rows):
        row = _characters(sql, start, end)
        if size + row > limit:
            return None
        if index > first and total + 2 + row > limit:
            found.append((first, index))
            first, total = index, size
        total += row + (2 if index > first else 0)
    found.append((first, len(insert.rows)))
    return found


@dataclass(frozen=True)
class Parts:
    """A long multi-row INSERT of constants as parts: its head, and each part's rows as a byte range."""

    start: int  # the statement's start
    head: bytes  # up to and including VALUES, and a blank
    table: str  # as written
    ranges: Iterator[tuple[int, int]]


def parts(sql: bytes, size: int) -> Parts | None:
    """The rows of a long ``INSERT … VALUES`` of constants in ranges of about ``size`` bytes, or None.

    For statements of megabytes: checked whole by one regular expression (every row constant and as wide
    as the first) and cut by another, without a Python step per row.
    """
    head = _HEAD.match(sql)
    if head is None:
        return None
    # The first part first, within its size: a first row of megabytes (one huge value) is not worth more.
    width = _row(sql, head.end(), min(len(sql), head.end() + size))[1]
    if width == 0:
        return None
    row = _wide_row(width)
    rows = re.compile(row + rb"(?:" + _SEPARATOR.pattern + row + rb")*+", re.DOTALL)
    first = rows.match(sql, head.end(), head.end() + size)
    if first is None or _END.fullmatch(sql, first.end()) is not None:
        return None
    if re.compile(row + rb"(?:" + _SEPARATOR.pattern + row + rb")*+" + _END.pattern).fullmatch(sql, head.end()) is None:
        return None

    def ranges() -> Iterator[tuple[int, int]]:
        pos = head.end()
        while (found := rows.match(sql, pos, pos + size) or rows.match(sql, pos)) is not None:
            yield pos, found.end()
            separator = _SEPARATOR.match(sql, found.end())
            if separator is None:
                return
            pos = separator.end()

    text = sql[head.start("head") : head.end("head")] + b" "
    return Parts(head.start("head"), text, head.group("table").decode("utf-8", "replace"), ranges())


def _wide_row(width: int) -> bytes:
    """A row of exactly ``width`` constants."""
    constant = _CONSTANT.pattern
    return rb"\(" + constant + (rb"," + constant) * (width - 1) + rb"\)"


def _characters(sql: bytes, start: int, end: int) -> int:
    piece = sql[start:end]
    return len(piece) if piece.isascii() else len(piece.decode("utf-8"))


@dataclass
class RowGroup:
    """Rows of INSERTs with one key, held back to travel as one multi-row INSERT, and where each came from."""

    key: str
    head: str
    limit: int  # characters the group's SQL may take
    # (run, the row's offset in it, its text, where an error without a position points: its statement's
    # start for a statement's first row)
    rows: list[tuple[Run, int, str, int]] = field(default_factory=list)
    size: int = 0  # characters of the statement so far

    def fits(self, text: str) -> bool:
        return (self.size or len(self.head) + 1) + len(text) + 2 <= self.limit

    def add(self, run: Run, offset: int, text: str, statement: int) -> None:
        self.size = (self.size or len(self.head) + 1) + len(text) + (2 if self.rows else 0)
        self.rows.append((run, offset, text, statement))

    def sql(self) -> str:
        return self.head + " " + ",\n".join(text for _, _, text, _ in self.rows)

    def locate(self, error: SqlError, row: int | None = None) -> None:
        """Point the group's error at the row (and file) it came from: the 1-based ``row`` that failed alone,
        else the one its position falls in; without either, name the group's lines."""
        if row is not None:
            run, _, _, offset = self.rows[row - 1]
            error.run, error.offset, error.position = run, offset, None
            return
        first_run, first_offset, _, statement = self.rows[0]
        error.run, error.offset = first_run, statement
        if error.position is None:
            last_run, last_offset, _, _ = self.rows[-1]
            lines = f"lines {first_run.locate(first_offset)[0]} to {last_run.locate(last_offset)[0]}"
            error.detail = join_hints(error.detail, f"in one of the {len(self.rows)} rows on {lines}, sent together")
            return
        at = error.position - 1 - len(self.head) - 1  # characters into the rows
        for run, offset, text, _ in self.rows:
            if 0 <= at <= len(text):
                error.run, error.offset = run, offset + len(text[:at].encode("utf-8"))
                return
            at -= len(text) + 2
