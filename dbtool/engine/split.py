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
import shutil
import tempfile
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


_BODY = rb"(?:" + _ATOM + rb"|" + _nested(2) + rb")*+"
_FAST_HEAD = (
    rb"(?:[" + _WS + rb"]++|--[^\n]*+\n)*+"  # leading blanks and -- comments, which psql drops too
    # Not a statement whose first word matters (see _kind and psqlscan.l's CREATE FUNCTION rule), and
    # not one opening with a string such as U&'…' or B'…', after which psql's first word comes later.
    rb"(?P<sql>(?!(?i:create|copy|begin|start|commit|end|rollback|abort|savepoint|release|prepare|set|reset)\b)"
    rb"(?![A-Za-z]&?['\"])[A-Za-z]" + _BODY
)
_FAST_STATEMENT = re.compile(_FAST_HEAD + rb";)")
# The same without its end, and its body alone: how far a statement cut by the buffer's end got, and
# where to go on from once more is read (every position the body stops at is between two of its atoms).
_FAST_PREFIX = re.compile(_FAST_HEAD + rb")")
_FAST_MORE = re.compile(_BODY)
_MORE = object()  # what Scanner._fast returns for "the buffer ends inside a fast-path statement"

# pg_dump opens its output with these lines and closes it with "-- PostgreSQL database dump complete".
DUMP_HEADER_LINE = b"-- PostgreSQL database dump"
DUMP_COMPLETE = b"-- PostgreSQL database dump complete"
_DUMP_HEADER = re.compile(rb"--\r?\n" + re.escape(DUMP_HEADER_LINE) + rb"\r?\n")
_DUMP_FOOTER = re.compile(rb"(?m)^" + re.escape(DUMP_COMPLETE) + rb"\r?$")

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

    def __init__(self, message: str, line: int, column: int, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message, self.line, self.column, self.hint = message, line, column, hint


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

    A statement larger than a chunk is read into the same buffer, grown in place (a ``bytearray``),
    and the buffer is let go as soon as the statement is handed out: loading a 100 MB statement holds
    it about twice (here, then in libpq's send buffer), which ``tests/engine/test_sqlfile.py`` measures.
    """

    def __init__(self, stream: BinaryIO, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.stream, self.chunk_bytes = stream, chunk_bytes
        self.bytes_read = 0
        self._buf = bytearray()
        self._pending = b""
        self._eof = False
        self._first = True  # a byte order mark is dropped from the first read
        # standard_conforming_strings: on by default since PostgreSQL 9.1; a file (a dump of a database
        # with it off) may turn it off, and then '\'' inside a string is a quote, as psql reads it.
        self.standard_strings = True
        self._line = self._column = 1  # line and column (characters) at _buf[_mark]
        self._mark = 0
        self._long: tuple[int, int] | None = None  # a long ordinary statement: (its start, where the fast scan stopped)
        self._shift = 0  # bytes dropped from the buffer's front by the last run handed out whole
        self.statements = 0  # statements handed out so far
        self._dump = False  # the file opens as pg_dump's output does …
        self._complete = False  # … and its closing "dump complete" line has been read

    def __iter__(self) -> Iterator[Item]:
        pos = 0
        bounds: list[tuple[int, int]] = []
        while True:
            # The fast path reads '…' the standard way; with backslash escapes every statement goes slow.
            fast = self._fast(pos) if self.standard_strings else None
            if fast is _MORE:  # an ordinary statement longer than the buffer: read on, resuming the fast scan
                if bounds:
                    yield self._run(bounds)
                    bounds = []
                    pos -= self._rebase()
                pos = self._refill(pos, self.chunk_bytes)
                continue
            if fast is not None:
                if bounds and fast[1] - fast[0] > self.chunk_bytes:  # a statement of megabytes travels alone
                    yield self._run(bounds)
                    bounds = []
                    shift = self._rebase()
                    pos, fast = pos - shift, (fast[0] - shift, fast[1] - shift)
                bounds.append(fast)
                pos = fast[1]
                if len(bounds) < RUN_STATEMENTS and fast[1] - fast[0] <= self.chunk_bytes:
                    continue
                yield self._run(bounds)
                bounds = []
                pos -= self._rebase()
                continue
            try:
                found = _scan_statement(self._buf, pos, self._eof, backslashes=not self.standard_strings)
            except _Unsupported as error:
                raise SplitError(error.message, *self._position(error.offset)) from None
            if found is None:  # the statement goes on past the buffer: hand out what is done, read on
                if bounds:
                    yield self._run(bounds)
                    bounds = []
                    pos -= self._rebase()
                # As much again as is kept (at least half), so a statement larger than a chunk is rescanned
                # O(log n) times rather than once per chunk.
                pos = self._refill(pos, (len(self._buf) - pos) // 2)
                continue
            start, end, meta = found
            if start < 0:  # blanks, comments or a lone ";" up to here: nothing to send
                pos = end
                if end >= len(self._buf) and self._eof:
                    break
                continue
            if self._eof and not meta and self._buf[end - 1] != 0x3B:  # ends with the file, without its ";"
                self._check_complete(f"inside the statement begun at line {self._position(start)[0]}")
            kind = None if meta else _kind(self._buf, start, end)
            if kind is None and not meta and end - start <= self.chunk_bytes:
                bounds.append((start, end))
                pos = end
                continue
            if kind is None and not meta:  # a statement of megabytes travels alone
                if bounds:
                    yield self._run(bounds)
                    shift = self._rebase()
                    pos, start, end = pos - shift, start - shift, end - shift
                bounds = []
                yield self._run([(start, end)])
                pos = end - self._rebase()
                continue
            if bounds:
                yield self._run(bounds)
                bounds = []
                shift = self._rebase()
                pos, start, end = pos - shift, start - shift, end - shift
            if meta:
                yield self._meta(start, end)
                pos = end
                continue
            pos = yield from self._special(kind, start, end)
        if bounds:
            yield self._run(bounds)
        self._check_complete(f"after statement {self.statements}")

    def _fast(self, pos: int) -> tuple[int, int] | object | None:
        """The next statement's bounds by the fast path; ``_MORE`` when it only needs more of the file; else None.

        A statement the fast path covers but the buffer cuts (a multi-row INSERT of megabytes, say) is
        scanned once: where the scan stopped is kept, and it resumes there when more is read. Where it
        stops for a reason more data cannot change, the slow path takes the statement from its start.
        """
        long, self._long = self._long, None
        if long is None:
            match = _FAST_STATEMENT.match(self._buf, pos)
            if match is not None:
                return match.start("sql"), match.end()
            if self._eof or (prefix := _FAST_PREFIX.match(self._buf, pos)) is None:
                return None
            start, stopped = prefix.start("sql"), prefix.end()
        else:
            start, resumed = long
            stopped = _FAST_MORE.match(self._buf, resumed).end()
            if self._buf.startswith(b";", stopped):
                return start, stopped + 1
            if stopped == resumed and len(self._buf) - stopped >= self.chunk_bytes:
                return None  # a chunk more changed nothing: not the fast path's (or one token of megabytes)
        if self._eof or len(self._buf) - stopped >= self.chunk_bytes:
            return None
        self._long = (start, stopped)
        return _MORE

    def _run(self, bounds: list[tuple[int, int]], kind: str | None = None) -> Run:
        first, last = bounds[0][0], bounds[-1][1]
        line, column = self._position(first)
        sql = self._take(first, last)
        if last - first > self.chunk_bytes:  # let the buffer go now: the statement is held once, in the run
            self._position(last)
            self._buf = bytearray(memoryview(self._buf)[last:])
            self._mark, self._shift = 0, last
        shifted = [(start - first, end - first) for start, end in bounds]
        self.statements += len(bounds)
        return Run(sql, line, column, shifted, kind, standard_strings=self.standard_strings)

    def _rebase(self) -> int:
        """How far the last run handed out moved the buffer's offsets back (0 unless it let the buffer go)."""
        shift, self._shift = self._shift, 0
        if shift and self._long is not None:
            self._long = (self._long[0] - shift, self._long[1] - shift)
        return shift

    def _take(self, start: int, end: int) -> bytes:
        with memoryview(self._buf) as view:
            return bytes(view[start:end])

    def _special(self, kind: str, start: int, end: int) -> Generator[Item, None, int]:
        if kind != "copy_in":
            run = self._run([(start, end)], kind)
            if kind == "strings":  # how psql and the server read every '…' after this statement
                self.standard_strings = _standard_strings(run.sql)
            yield run
            return end - self._rebase()
        rest = _LINE_REST.match(self._buf, end)
        if rest is None:
            raise SplitError("text after COPY … FROM stdin; on the same line", *self._position(end))
        run = self._run([(start, end)], kind)
        run.data_line = run.line + run.sql.count(b"\n") + 1
        yield run
        return (yield from self._copy_data(rest.end() - self._rebase(), run.data_line))

    def _copy_data(self, pos: int, data_line: int) -> Generator[Item, None, int]:
        """COPY data lines up to a ``\\.`` line, psql's end marker, or the end of the file."""
        while True:
            end = copy_end(self._buf, pos)
            stop = len(self._buf) if end is None else end[0]
            if end is None and self._eof:  # before the last rows go: a row the cut split would fail first
                self._check_complete(f"inside the COPY data begun at line {data_line}")
            if stop > pos:
                yield CopyData(self._take(pos, stop))
            if end is not None:
                yield CopyEnd()
                return end[1]
            if self._eof:
                yield CopyEnd()
                return len(self._buf)
            pos = self._refill(stop, 0)

    def _meta(self, start: int, end: int) -> MetaCommand:
        line, column = self._position(start)
        text = self._buf[start + 1 : end].decode("utf-8", "replace")
        words = text.split(None, 1) if text[:1].strip() else ["", text]
        name, argument = [*words, ""][:2]
        return MetaCommand(name, argument.strip(), line, column)

    def _check_complete(self, where: str) -> None:
        """A file that opens as a pg_dump and ends without the line pg_dump writes last was cut short.

        psql loads (and with ``-1`` commits) such a file; dbtool refuses it before committing. Files
        without pg_dump's header keep psql's rule that the end of the file ends a statement or COPY data.
        """
        if self._dump and not self._complete:
            raise SplitError(
                f"cut short: this pg_dump file ends {where}, without the line {DUMP_COMPLETE.decode()!r} "
                "pg_dump writes last",
                *self._position(len(self._buf)),
                hint=f"take the dump again; if it was shortened on purpose, delete its {DUMP_HEADER_LINE.decode()!r} "
                "header",
            )

    def _position(self, offset: int) -> tuple[int, int]:
        """Line and column of ``offset``, counting forward from the last position asked for."""
        self._line, self._column = _advance(self._buf, self._mark, offset, self._line, self._column)
        self._mark = offset
        return self._line, self._column

    def _refill(self, keep: int, more: int) -> int:
        """Drop ``_buf[:keep]``, append ``more`` bytes or more (whole lines), and return ``keep``'s new offset."""
        if self._eof:
            raise AssertionError("refill after end of file")  # pragma: no cover - scanner invariant
        self._position(keep)
        del self._buf[:keep]
        self._mark = 0
        if self._long is not None:
            self._long = (self._long[0] - keep, self._long[1] - keep)
        self._read(more)
        return 0

    def _read(self, at_least: int) -> None:
        """Append whole lines to the buffer: what one read gives (a pipe need not fill a chunk), or ``at_least`` bytes.

        Reads go straight into the buffer, a chunk at a time, so a large statement is never copied
        on its way in.
        """
        buf = self._buf
        start = len(buf)
        buf += self._pending
        readinto = getattr(self.stream, "readinto1", None) or getattr(self.stream, "readinto", None)
        size = 0
        while True:
            end = len(buf)
            if readinto is not None:
                buf.extend(bytes(self.chunk_bytes))
                with memoryview(buf) as view:
                    got = readinto(view[end:]) or 0
                del buf[end + got :]
            else:  # pragma: no cover - every stream dbtool opens has readinto
                block = self.stream.read(self.chunk_bytes)
                buf += block
                got = len(block)
            if not got:
                self._eof = True
                break
            size += got
            self.bytes_read += got
            if size >= at_least and buf.find(b"\n", end) != -1:
                break
        if self._first:
            self._first = False
            if buf.startswith(_BOM):
                del buf[:3]
            self._dump = _DUMP_HEADER.match(buf) is not None
        if self._eof:
            self._pending = b""
        else:
            cut = buf.rfind(b"\n") + 1
            self._pending = bytes(buf[cut:])
            del buf[cut:]
        if self._dump and not self._complete:
            self._complete = _DUMP_FOOTER.search(buf, max(0, start - 1)) is not None


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


def first_token(sql: bytes, offset: int) -> int:
    """Where the statement at ``offset`` really begins: past blanks and comments (psql names that line)."""
    return _first_word(sql, offset, len(sql))


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
            return start, _end_of_file(buf, start, length), False
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
            return start, _end_of_file(buf, start, length), False


def _end_of_file(buf: bytes, start: int, length: int) -> int:
    """Where a statement the file's end cuts off ends: before the file's last blanks, as psql sends it."""
    if start < 0:
        return length
    end = length
    while end > start and buf[end - 1] in b" \t\n\r\f\v":
        end -= 1
    return end


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


def look_ahead(scanner: Scanner) -> Iterator[Item]:
    """What ``scanner`` will hand out, read now by a second scanner over its stream, which is put back after.

    ``scanner`` must not have read yet. A stream that cannot seek (a pipe) is first copied to a
    temporary file, which ``scanner`` then reads instead.
    """
    stream = scanner.stream
    if not _seekable(stream):
        spool = tempfile.TemporaryFile()  # noqa: SIM115 - the scanner reads it next; closed with it
        shutil.copyfileobj(stream, spool)
        spool.seek(0)
        scanner.stream = stream = spool
    start = stream.tell()
    try:
        yield from Scanner(stream, scanner.chunk_bytes)
    finally:
        stream.seek(start)


def _seekable(stream: BinaryIO) -> bool:
    try:
        return stream.seekable()
    except (AttributeError, ValueError):
        return False


def statements(data: bytes | BinaryIO) -> Iterator[Statement | MetaCommand]:
    """Every statement and meta-command of a file in order, each with its line and column."""
    stream = io.BytesIO(data) if isinstance(data, bytes) else data
    for item in Scanner(stream):
        if isinstance(item, Run):
            yield from item.statements()
        elif isinstance(item, MetaCommand):
            yield item
