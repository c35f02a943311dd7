"""Split an SQL file into statements where psql would, without running it.

A regex finds the next character that can change the lexer's state (quote, comment, dollar quote,
parenthesis, semicolon, backslash); plain text between them is skipped in C, which keeps splitting
a 100,000-statement seed far below the time the server spends on it. Statements are returned as
offsets into the text, so a batch sent to the server is an exact slice of the file and the
server's error position maps straight back to a file line and column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NEXT = re.compile(r"--|/\*|[';\"$()\\]")
_COMMENT_EDGE = re.compile(r"/\*|\*/")
_E_STRING_BODY = re.compile(r"(?:[^'\\]|\\.|'')*'", re.DOTALL)
_DOLLAR_TAG = re.compile(r"\$(?:[^\W\d]\w*)?\$")
_TRANSACTION_CONTROL = re.compile(
    r"(?:\s|--[^\n]*(?:\n|$)|/\*.*?\*/)*"
    r"(BEGIN|START\s+TRANSACTION|COMMIT|END|ROLLBACK|ABORT|SAVEPOINT|RELEASE|PREPARE\s+TRANSACTION)\b",
    re.IGNORECASE | re.DOTALL,
)
_LEADING_NOISE = re.compile(r"(?:\s|--[^\n]*(?:\n|$)|/\*.*?\*/)*", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Statement:
    """A statement as the half-open span ``text[start:end]`` (``end`` is after its ``;``)."""

    start: int
    end: int


class SplitError(Exception):
    """Something in the file this splitter will not pass to the server; ``offset`` is where."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


def split(text: str) -> list[Statement]:
    """Statements of ``text`` in order; blank or comment-only stretches are not statements."""
    statements: list[Statement] = []
    start = pos = depth = 0
    content = False
    length = len(text)
    while (match := _NEXT.search(text, pos)) is not None:
        at, token = match.start(), match.group()
        content = content or (at > pos and not text[pos:at].isspace())
        if token == ";":
            pos = at + 1
            if depth == 0:
                if content:
                    statements.append(Statement(start, pos))
                start, content = pos, False
            continue
        if token == "\\":
            end = text.find("\n", at)
            command = text[at : end if end != -1 else length].split(None, 1)[0]
            raise SplitError(f"psql meta-command {command} is not supported", at)
        if token == "--":
            end = text.find("\n", at)
            pos = length if end == -1 else end + 1
            continue
        if token == "/*":
            pos = _skip_block_comment(text, at)
            continue
        content = True
        if token == "(":
            depth, pos = depth + 1, at + 1
        elif token == ")":
            depth, pos = max(0, depth - 1), at + 1
        elif token == "'":
            pos = _skip_string(text, at)
        elif token == '"':
            pos = _skip_quoted(text, at, '"')
        else:
            pos = _skip_dollar(text, at)
    if content or (pos < length and not text[pos:].isspace()):
        statements.append(Statement(start, length))
    return statements


def _skip_block_comment(text: str, at: int) -> int:
    """End of a ``/* */`` comment, which nests in PostgreSQL (unlike C)."""
    depth, pos = 0, at
    while (edge := _COMMENT_EDGE.search(text, pos)) is not None:
        depth += 1 if edge.group() == "/*" else -1
        pos = edge.end()
        if depth == 0:
            return pos
    return len(text)


def _skip_string(text: str, at: int) -> int:
    before = text[at - 1] if at else ""
    if before in "eE" and not (at > 1 and _is_identifier_char(text[at - 2])):
        body = _E_STRING_BODY.match(text, at + 1)
        return body.end() if body else len(text)
    return _skip_quoted(text, at, "'")


def _skip_quoted(text: str, at: int, quote: str) -> int:
    """End of a quoted string or identifier, where a doubled quote stands for itself."""
    pos = at + 1
    while (end := text.find(quote, pos)) != -1:
        if text.startswith(quote, end + 1):
            pos = end + 2
            continue
        return end + 1
    return len(text)


def _skip_dollar(text: str, at: int) -> int:
    if at and _is_identifier_char(text[at - 1]):
        return at + 1  # "$" inside an identifier such as a$b
    tag = _DOLLAR_TAG.match(text, at)
    if tag is None:
        return at + 1  # a parameter such as $1
    end = text.find(tag.group(), tag.end())
    return len(text) if end == -1 else end + len(tag.group())


def _is_identifier_char(char: str) -> bool:
    return char.isalnum() or char in "_$"


def transaction_control(text: str, statement: Statement) -> str | None:
    """The transaction-control keyword a statement starts with (BEGIN, COMMIT…), if any."""
    match = _TRANSACTION_CONTROL.match(text, statement.start, statement.end)
    return match.group(1).upper() if match else None


def first_token_offset(text: str, statement: Statement) -> int:
    """Offset of a statement's first character after leading blanks and comments."""
    return _LEADING_NOISE.match(text, statement.start, statement.end).end()  # type: ignore[union-attr]


def line_and_column(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column of ``offset``; counts only when an error needs it."""
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1
