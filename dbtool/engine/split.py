"""Split a psql-style SQL file into statements where psql would, streaming, on bytes.

The file is read in chunks that end at a line boundary and scanned as bytes: UTF-8 never puts an
ASCII byte inside a multi-byte character, so quotes, semicolons and backslashes are found without
decoding, and statements reach the server byte for byte as written (as psql sends them).

Two scanners share the work. ``_FAST_STATEMENT`` is one regular expression that matches a whole
ordinary statement (words, numbers, plain strings and quoted names, up to three levels of parentheses) in C, which
is what a seed of 100,000 INSERTs consists of. Anything it does not cover (comments inside a
statement, dollar quotes, ``E''`` strings, ``CREATE FUNCTION …
BEGIN ATOMIC``, meta-commands) falls to ``_scan_statement``, a transcription of the rules in
PostgreSQL's ``src/fe_utils/psqlscan.l`` that decide where psql ends a statement. Both produce
the same boundaries; tests check that against psql itself.

Consecutive ordinary statements come out as one :class:`Run` (a contiguous slice of the file), so
the loader can send many per round trip and still map a server error position back to a line.
``COPY … FROM stdin`` data comes out as :class:`CopyData` chunks, never as statements.
"""

from __future__ import annotations

import io
import re
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import BinaryIO

# Batches of up to 2,000 statements or 256 kB: on 100,000 single-row INSERTs this loaded about 5%
# faster than 10,000 / 1 MB (and than the whole file as one query), while 50 round trips cost
# little even at RDS latencies. bench/sql_load.py measures it.
CHUNK_BYTES = 256 << 10
RUN_STATEMENTS = 2_000

_WS = rb" \t\n\r\f\v"
_BOM = b"\xef\xbb\xbf"

# -- Fast path: a whole ordinary statement, or nothing. Possessive quantifiers keep it linear.
_PLAIN = rb"[^;'\"$\\/()\-]"
_ATOM = rb"(?:" + _PLAIN + rb"++|(?<![eE])'[^']*+'|\"[^\"]*+\"|/(?!\*)|-(?!-))"


def _nested(depth: int) -> bytes:
    inner = _ATOM if depth == 0 else rb"(?:" + _ATOM + rb"|" + _nested(depth - 1) + rb")"
    return rb"\((?:" + inner + rb")*+\)"


_FAST_STATEMENT = re.compile(
    rb"(?:[" + _WS + rb"]++|--[^\n]*+\n)*+"  # leading blanks and -- comments, which psql drops too
    # Not a statement whose first word matters (see _kind and psqlscan.l's CREATE FUNCTION rule), and
    # not one opening with a string such as U&'…' or B'…', after which psql's first word comes later.
    rb"(?P<sql>(?!(?i:create|copy|begin|start|commit|end|rollback|abort|savepoint|release|prepare|set|reset)\b)"
    rb"(?![A-Za-z]&?['\"])[A-Za-z](?:" + _ATOM + rb"|" + _nested(2) + rb")*+;)"
)

# -- Slow path: the tokens that change psqlscan.l's state; everything between them is skipped in C.
_NEXT = re.compile(rb"--|/\*|[';\"$()\\]")
_NEXT_OR_WORD = re.compile(rb"--|/\*|[';\"$()\\]|[A-Za-z_\x80-\xff][A-Za-z0-9_$\x80-\xff]*+")
_CONTENT = re.compile(rb"[^" + _WS + rb"]")
_COMMENT_EDGE = re.compile(rb"/\*|\*/")
_E_STRING_BODY = re.compile(rb"(?:[^'\\]|\\.|'')*+'", re.DOTALL)
_DOLLAR_TAG = re.compile(rb"\$(?:[A-Za-z_\x80-\xff][A-Za-z0-9_\x80-\xff]*)?\$")
_IDENTIFIER_BYTE = re.compile(rb"[A-Za-z0-9_$\x80-\xff]")
_COPY_END_LINE = b"\n\\."  # a line that starts with \. (then only an optional \r before its end)
_LEADING_NOISE = re.compile(rb"(?:[" + _WS + rb"]++|--[^\n]*+\n?)++")
_LINE_REST = re.compile(rb"[ \t\r\f\v]*+(?:--[^\n]*+)?(?:\n|\Z)")

# psqlscan.l tracks CREATE [OR REPLACE] {FUNCTION|PROCEDURE} by the initials of its first four words.
_TRACKED_WORDS = {b"create": "c", b"function": "f", b"procedure": "p", b"or": "o", b"replace": "r"}
_ATOMIC_PREFIXES = ("cf", "cp", "corf", "corp")
_UNDECIDED_PREFIXES = ("", "c", "co", "cor")

_KIND = re.compile(
    rb"(?i)(?P<copy>copy\b)"
    rb"|(?P<twophase>prepare\s+transaction\b|(?:commit|rollback)\s+prepared\b)"
    rb"|(?P<savepoint>savepoint\b|release\b|rollback(?:\s+(?:work|transaction))?\s+to\b)"
    rb"|(?P<begin>begin\b|start\s+transaction\b)"
    rb"|(?P<commit>commit\b|end\b)"
    rb"|(?P<rollback>rollback\b|abort\b)"
    rb"|(?P<encoding>set\s+(?:session\s+)?(?:client_encoding|names)\b)"
    rb"|(?P<strings>(?:set\s+(?:session\s+|local\s+)?|reset\s+)standard_conforming_strings\b|reset\s+all\b)"
)
_STRINGS_VALUE = re.compile(rb"(?i)standard_conforming_strings\s*(?:=|\bto\b)\s*'?(\w+)")
_NAME = rb'(?:"(?:[^"]|"")*"|[^\s("]+)'
_COPY_DIRECTION = re.compile(
    rb"(?is)copy\s+(?:binary\s+)?(?:\(.*\)|" + _NAME + rb"(?:\s*\.\s*" + _NAME + rb")*(?:\s*\([^)]*\))?)"
    rb"\s*(?:(?P<from>from)|to)\s+(?P<std>stdin|stdout)?"
)


class SplitError(Exception):
    """Something in the file that is not passed to the server, at a 1-based line and column."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(message)
        self.message, self.line, self.column = message, line, column


class _Unsupported(Exception):
    def __init__(self, message: str, offset: int) -> None:
        self.message, self.offset = message, offset


@dataclass(slots=True)
class Run:
    """Consecutive statements: ``sql`` is their exact slice of the file, starting at ``line``:``column``.

    ``bounds`` holds each statement's (start, end) offset in ``sql``. ``kind`` is None for ordinary
    statements; a statement with a kind is always alone in its run: ``copy_in``, ``copy_out``,
    the file's own transaction control (``begin``, ``commit``, ``rollback``, ``savepoint``,
    ``twophase``), ``encoding`` (``SET client_encoding``: the server decodes each query message
    whole, so statements after it must travel in a new one) and ``strings`` (``SET
    standard_conforming_strings``: the server parses a message whole before running any of it, so
    statements after it must travel in a new one too).
    """

    sql: bytes
    line: int
    column: int
    bounds: list[tuple[int, int]]
    kind: str | None = None
    data_line: int = 0  # for copy_in: the file line where the data starts
    standard_strings: bool = True  # False after SET standard_conforming_strings = off: '…' strings take \ escapes

    def __len__(self) -> int:
        return len(self.bounds)

    def locate(self, offset: int) -> tuple[int, int]:
        """Line and column (in characters) of a byte offset into ``sql``."""
        return _advance(self.sql, 0, offset, self.line, self.column)

    def statements(self) -> Iterator[Statement]:
        for start, end in self.bounds:
            yield Statement(self.sql[start:end], *self.locate(start), self.kind)


@dataclass(frozen=True, slots=True)
class Statement:
    sql: bytes
    line: int
    column: int
    kind: str | None = None

    @property
    def text(self) -> str:
        return self.sql.decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class MetaCommand:
    """A psql backslash command on its own line, such as ``\\connect db`` (``name`` without the backslash)."""

    name: str
    argument: str
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class CopyData:
    """A piece of ``COPY … FROM stdin`` data, whole lines, sent to the server as it is."""

    data: bytes


@dataclass(frozen=True, slots=True)
class CopyEnd:
    """The end of a COPY's data: its ``\\.`` line, or the end of the file."""


Item = Run | MetaCommand | CopyData | CopyEnd


class Scanner:
    """Iterate over a binary stream's runs, meta-commands and COPY data, holding about one chunk.

    ``bytes_read`` counts the bytes taken from the stream, at most one chunk ahead of what has been
    handed out, for progress reports.
    """

    def __init__(self, stream: BinaryIO, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.stream, self.chunk_bytes = stream, chunk_bytes
        self.bytes_read = 0
        self._buf = self._pending = b""
        self._eof = False
        self._first = True  # a byte order mark is dropped from the first read
        # standard_conforming_strings: on by default since PostgreSQL 9.1; a file (a dump of a database
        # with it off) may turn it off, and then '\'' inside a string is a quote, as psql reads it.
        self.standard_strings = True
        self._line = self._column = 1  # line and column (characters) at _buf[_mark]
        self._mark = 0

    def __iter__(self) -> Iterator[Item]:
        pos = 0
        bounds: list[tuple[int, int]] = []
        while True:
            # The fast path reads '…' the standard way; with backslash escapes every statement goes slow.
            match = _FAST_STATEMENT.match(self._buf, pos) if self.standard_strings else None
            if match is not None:
                bounds.append((match.start("sql"), match.end()))
                pos = match.end()
                if len(bounds) < RUN_STATEMENTS:
                    continue
                yield self._run(bounds)
                bounds = []
                continue
            try:
                found = _scan_statement(self._buf, pos, self._eof, backslashes=not self.standard_strings)
            except _Unsupported as error:
                raise SplitError(error.message, *self._position(error.offset)) from None
            if found is None:  # the statement goes on past the buffer: hand out what is done, read on
                if bounds:
                    yield self._run(bounds)
                    bounds = []
                pos = self._refill(pos)
                continue
            start, end, meta = found
            if start < 0:  # blanks, comments or a lone ";" up to here: nothing to send
                pos = end
                if end >= len(self._buf) and self._eof:
                    break
                continue
            kind = None if meta else _kind(self._buf, start, end)
            if kind is None and not meta:
                bounds.append((start, end))
                pos = end
                continue
            if bounds:
                yield self._run(bounds)
                bounds = []
            if meta:
                yield self._meta(start, end)
                pos = end
                continue
            pos = yield from self._special(kind, start, end)
        if bounds:
            yield self._run(bounds)

    def _run(self, bounds: list[tuple[int, int]], kind: str | None = None) -> Run:
        first, last = bounds[0][0], bounds[-1][1]
        line, column = self._position(first)
        sql = self._buf[first:last]
        shifted = [(start - first, end - first) for start, end in bounds]
        return Run(sql, line, column, shifted, kind, standard_strings=self.standard_strings)

    def _special(self, kind: str, start: int, end: int) -> Generator[Item, None, int]:
        if kind != "copy_in":
            run = self._run([(start, end)], kind)
            if kind == "strings":  # how psql and the server read every '…' after this statement
                self.standard_strings = _standard_strings(self._buf[start:end])
            yield run
            return end
        rest = _LINE_REST.match(self._buf, end)
        if rest is None:
            raise SplitError("text after COPY … FROM stdin; on the same line", *self._position(end))
        run = self._run([(start, end)], kind)
        run.data_line = run.line + run.sql.count(b"\n") + 1
        yield run
        return (yield from self._copy_data(rest.end()))

    def _copy_data(self, pos: int) -> Generator[Item, None, int]:
        """COPY data lines up to a ``\\.`` line, psql's end marker, or the end of the file."""
        while True:
            end = copy_end(self._buf, pos)
            stop = len(self._buf) if end is None else end[0]
            if stop > pos:
                yield CopyData(self._buf[pos:stop])
            if end is not None:
                yield CopyEnd()
                return end[1]
            if self._eof:
                yield CopyEnd()
                return len(self._buf)
            pos = self._refill(stop)

    def _meta(self, start: int, end: int) -> MetaCommand:
        line, column = self._position(start)
        text = self._buf[start + 1 : end].decode("utf-8", "replace")
        words = text.split(None, 1) if text[:1].strip() else ["", text]
        name, argument = [*words, ""][:2]
        return MetaCommand(name, argument.strip(), line, column)

    def _position(self, offset: int) -> tuple[int, int]:
        """Line and column of ``offset``, counting forward from the last position asked for."""
        self._line, self._column = _advance(self._buf, self._mark, offset, self._line, self._column)
        self._mark = offset
        return self._line, self._column

    def _refill(self, keep: int) -> int:
        """Drop ``_buf[:keep]``, append at least one more line, and return ``keep``'s new offset."""
        if self._eof:
            raise AssertionError("refill after end of file")  # pragma: no cover - scanner invariant
        self._position(keep)
        rest = self._buf[keep:]
        # At least as much again as is kept, so that a statement larger than a chunk is rescanned
        # O(log n) times rather than once per chunk.
        self._buf = rest + self._read(len(rest))
        self._mark = 0
        return 0

    def _read(self, at_least: int) -> bytes:
        """Whole lines: what one read gives (a pipe need not fill a chunk), or ``at_least`` bytes."""
        read = getattr(self.stream, "read1", self.stream.read)
        parts = [self._pending]
        size = 0
        while True:
            block = read(max(self.chunk_bytes, at_least - size))
            if not block:
                self._eof = True
                break
            parts.append(block)
            size += len(block)
            self.bytes_read += len(block)
            if size >= at_least and b"\n" in block:
                break
        data = b"".join(parts)
        if self._first:
            self._first = False
            data = data.removeprefix(_BOM)
        if self._eof:
            self._pending = b""
            return data
        cut = data.rfind(b"\n") + 1
        self._pending = data[cut:]
        return data[:cut]


def copy_end(data: bytes, pos: int) -> tuple[int, int] | None:
    """Where the first ``\\.`` line at or after ``pos`` starts and ends (past its newline), if any.

    The line is ``\\.``, an optional ``\\r``, then a newline or the end of ``data``: the regular
    expression ``^\\\\\\.\\r?(?:\\n|\\Z)`` (multiline), found with ``bytes.find`` instead, which is
    about 20 times faster over megabytes of COPY data (a regex tries every position for ``^``).
    """
    size = len(data)
    at = pos if data.startswith(b"\\.", pos) and (pos == 0 or data[pos - 1] == 10) else _next_end_line(data, pos)
    while at != -1:
        end = at + 2
        if end < size and data[end] == 13:  # \r
            end += 1
        if end == size:
            return at, end
        if data[end] == 10:  # \n
            return at, end + 1
        at = _next_end_line(data, at + 1)
    return None


def _next_end_line(data: bytes, pos: int) -> int:
    found = data.find(_COPY_END_LINE, pos)
    return -1 if found == -1 else found + 1


def _advance(data: bytes, start: int, end: int, line: int, column: int) -> tuple[int, int]:
    """Line and column at ``data[end]``, given those at ``data[start]``."""
    newline = data.rfind(b"\n", start, end)
    if newline == -1:
        return line, column + _chars(data[start:end])
    return line + data.count(b"\n", start, end), 1 + _chars(data[newline + 1 : end])


def _chars(data: bytes) -> int:
    return len(data) if data.isascii() else len(data.decode("utf-8", "replace"))


def _standard_strings(statement: bytes) -> bool:
    """The value a ``SET``/``RESET standard_conforming_strings`` (or ``RESET ALL``) statement leaves."""
    value = _STRINGS_VALUE.search(statement)
    return value is None or value.group(1).lower() not in (b"off", b"false", b"no", b"0", b"of", b"f", b"n")


def _kind(buf: bytes, start: int, end: int) -> str | None:
    """What a statement needs beyond being sent: COPY data, or the file's own transaction control."""
    start = _first_word(buf, start, end)
    match = _KIND.match(buf, start, end)
    if match is None:
        return None
    if match.lastgroup != "copy":
        return match.lastgroup
    direction = _COPY_DIRECTION.match(buf, start, end)
    if direction is None or direction.group("std") is None:
        return None  # COPY to or from a server file or program: an ordinary statement
    return "copy_in" if direction.group("from") else "copy_out"


def _first_word(buf: bytes, pos: int, end: int) -> int:
    """Offset of the first word after blanks and comments, so ``/* x */ COMMIT`` is still seen."""
    while (lead := _LEADING_NOISE.match(buf, pos, end)) is not None and lead.end() > pos:
        pos = lead.end()
    if buf.startswith(b"/*", pos):
        after = _skip_block_comment(buf, pos)
        return _first_word(buf, after, end) if after > 0 else pos
    return pos


def _scan_statement(buf: bytes, pos: int, final: bool, *, backslashes: bool = False) -> tuple[int, int, bool] | None:
    """The next statement from ``pos`` as (start of content, end, is-meta-command), as psql splits.

    ``start`` is -1 when only blanks, ``--`` comments or a lone ``;`` came before ``end``. Returns
    None when the buffer ends inside the statement and more of the file is to come.
    """
    length = len(buf)
    start = -1
    depth = begin_depth = 0
    initials = ""
    words = 0  # identifiers seen; psql checks the first four
    atomic = False
    tracking = True
    while True:
        match = (_NEXT_OR_WORD if tracking else _NEXT).search(buf, pos)
        at = length if match is None else match.start()
        if start < 0 and at > pos and (content := _CONTENT.search(buf, pos, at)) is not None:
            start = content.start()
        if match is None:
            if not final:
                return None
            return start, length, False
        byte = buf[at]
        if byte == 0x3B:  # ;
            pos = at + 1
            if depth == 0 and begin_depth == 0:
                return start, pos, False
            start = at if start < 0 else start
            continue
        if byte == 0x5C:  # backslash
            return _backslash(buf, at, start, final)
        if match.end() - at == 2 and buf.startswith(b"--", at):
            newline = buf.find(b"\n", at)
            if newline == -1 and not final:
                return None
            pos = length if newline == -1 else newline + 1
            continue
        start = at if start < 0 else start
        if byte in (0x28, 0x29):  # ( )
            depth = depth + 1 if byte == 0x28 else max(0, depth - 1)
            pos = at + 1
            continue
        if byte == 0x2F:  # /*
            pos = _skip_block_comment(buf, at)
        elif byte == 0x27:  # '
            pos = _skip_string(buf, at, backslashes)
        elif byte == 0x22:  # "
            pos = _skip_quoted(buf, at + 1, b'"')
        elif byte == 0x24:  # $
            pos = _skip_dollar(buf, at)
        else:  # an identifier, while psql's CREATE FUNCTION … BEGIN ATOMIC heuristic needs them
            pos = match.end()
            if _is_prefix_letter(buf, at, pos):
                continue
            word = match.group().lower()
            if not atomic:
                words += 1
                if words <= 4:
                    initials += _TRACKED_WORDS.get(word, "_")
                atomic = initials in _ATOMIC_PREFIXES
                tracking = atomic or initials in _UNDECIDED_PREFIXES
            if atomic and depth == 0:
                if word == b"begin" or (word == b"case" and begin_depth >= 1):
                    begin_depth += 1
                elif word == b"end" and begin_depth > 0:
                    begin_depth -= 1
        if pos < 0:
            if not final:
                return None
            return start, length, False


def _backslash(buf: bytes, at: int, start: int, final: bool) -> tuple[int, int, bool] | None:
    if buf[at + 1 : at + 2] in (b";", b":"):
        raise _Unsupported(f"psql's \\{buf[at + 1 : at + 2].decode()} is not supported (write the SQL out)", at)
    if start >= 0:
        raise _Unsupported("psql meta-command inside a statement (end the statement with ; first)", at)
    newline = buf.find(b"\n", at)
    if newline == -1 and not final:
        return None
    return at, len(buf) if newline == -1 else newline + 1, True


def _is_prefix_letter(buf: bytes, at: int, end: int) -> bool:
    """``E'…'``, ``B'…'``, ``U&'…'`` and friends: a letter that belongs to a string, not a word."""
    if end - at == 1 and buf[end : end + 1] == b"'" and buf[at : at + 1] in b"eEbBxXnN":
        return True
    return buf[at : at + 1] in b"uU" and buf[end : end + 2] in (b"&'", b'&"') and end - at == 1


def _skip_block_comment(buf: bytes, at: int) -> int:
    """End of a ``/* */`` comment, which nests in PostgreSQL (unlike C); -1 when unterminated."""
    depth, pos = 0, at
    while (edge := _COMMENT_EDGE.search(buf, pos)) is not None:
        depth += 1 if edge.group() == b"/*" else -1
        pos = edge.end()
        if depth == 0:
            return pos
    return -1


def _skip_string(buf: bytes, at: int, backslashes: bool = False) -> int:
    """End of a '…' string: E'…' (and every string while standard_conforming_strings is off) takes \\ escapes."""
    if backslashes or (at and buf[at - 1 : at] in (b"e", b"E") and not _continues_word(buf, at - 1)):
        body = _E_STRING_BODY.match(buf, at + 1)
        return body.end() if body else -1
    return _skip_quoted(buf, at + 1, b"'")


def _skip_quoted(buf: bytes, pos: int, quote: bytes) -> int:
    """End of a quoted string or identifier, where a doubled quote stands for itself; -1 if open."""
    while (end := buf.find(quote, pos)) != -1:
        if buf.startswith(quote, end + 1):
            pos = end + 2
            continue
        return end + 1
    return -1


def _skip_dollar(buf: bytes, at: int) -> int:
    if _continues_word(buf, at):
        return at + 1  # "$" inside an identifier such as a$b
    tag = _DOLLAR_TAG.match(buf, at)
    if tag is None:
        return at + 1  # a parameter such as $1, or a lone "$"
    end = buf.find(tag.group(), tag.end())
    return -1 if end == -1 else end + len(tag.group())


def _continues_word(buf: bytes, at: int) -> bool:
    """Whether ``buf[at]`` is inside an identifier (psql's lexer reads ``a$b`` and ``x1e`` whole).

    The bytes before it that could belong to a word are lexed again the way psqlscan.l would: a
    word starts at a letter, a parameter at ``$`` and digits, a number at a digit.
    """
    begin = at
    while begin > 0 and _IDENTIFIER_BYTE.match(buf, begin - 1):
        begin -= 1
    pos = begin
    while pos < at:
        byte = buf[pos]
        if byte == 0x24 or 0x30 <= byte <= 0x39:  # "$" of a parameter, or a digit of a number
            pos += 1
            while pos < at and 0x30 <= buf[pos] <= 0x39:
                pos += 1
            continue
        return True  # a letter or "_": a word runs from here through ``at``
    return False


def statements(data: bytes | BinaryIO) -> Iterator[Statement | MetaCommand]:
    """Every statement and meta-command of a file in order, each with its line and column."""
    stream = io.BytesIO(data) if isinstance(data, bytes) else data
    for item in Scanner(stream):
        if isinstance(item, Run):
            yield from item.statements()
        elif isinstance(item, MetaCommand):
            yield item
