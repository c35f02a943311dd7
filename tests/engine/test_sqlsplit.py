"""The splitter cuts where psql cuts, on every quoting form, whatever the chunk size.

psql itself is the oracle: run with ``--single-step`` it prints each statement it would send and
then reads "x" from stdin to cancel it, so nothing runs while the tests learn psql's boundaries.
"""

from __future__ import annotations

import io
import os
import random
import re
import subprocess

import pytest

from dbtool.engine.split import CopyData, CopyEnd, MetaCommand, Run, Scanner, SplitError, Statement, statements

BANNER = "***(Single step mode: verify command)*******************************************"
PROMPT = "***(press return to proceed or enter x and return to cancel)********************"


def pieces(text: str, chunk: int | None = None) -> list[str]:
    stream = io.BytesIO(text.encode())
    items = Scanner(stream, chunk_bytes=chunk) if chunk else Scanner(stream)
    found: list[str] = []
    for item in items:
        if isinstance(item, Run):
            found += [s.text.strip() for s in item.statements()]
        elif isinstance(item, MetaCommand):
            found.append(f"\\{item.name} {item.argument}".strip())
    return found


def psql_pieces(server, text: str, tmp_path) -> list[str]:
    """The statements psql sends for ``text``, in order (each cancelled before it is sent)."""
    path = tmp_path / "oracle.sql"
    path.write_bytes(text.encode())
    result = subprocess.run(
        [str(server.cluster.bindir / "psql"), "-X", "-s", "-d", server.url("postgres", password=""), "-f", str(path)],
        input=b"x\n" * 1000,
        capture_output=True,
        env={**os.environ, "PGPASSWORD": server.password},
        timeout=30,
    )
    found, current = [], None
    for line in result.stdout.decode().split("\n"):  # not text=True: that would turn \r\n into \n
        if line == BANNER:
            current = []
        elif line == PROMPT:
            statement = "\n".join(current).strip()
            if statement != ";":  # psql sends a lone ";" too; there is nothing in it to run
                found.append(statement)
            current = None
        elif current is not None:
            current.append(line)
    return found


TRICKY = [
    ("select 1; select 2", ["select 1;", "select 2"]),
    ("select ';' ; select 'it''s;'", ["select ';' ;", "select 'it''s;'"]),
    (r"select E'\';' ; select 2;", [r"select E'\';' ;", "select 2;"]),
    ("select e'a\\\\'; select 3;", ["select e'a\\\\';", "select 3;"]),
    (r"select xe'\'; select 3;", [r"select xe'\';", "select 3;"]),
    ('select "a;""b"; x;', ['select "a;""b";', "x;"]),
    ("select $$a;b$$; select $f$ $$ ; $f$;", ["select $$a;b$$;", "select $f$ $$ ; $f$;"]),
    ("select $a$ $b$ ; $a$, $_1$;$_1$;", ["select $a$ $b$ ; $a$, $_1$;$_1$;"]),
    ("select a$b; select $1;", ["select a$b;", "select $1;"]),
    ("select 1$q$;$q$; select 2;", ["select 1$q$;$q$;", "select 2;"]),
    ("/* a /* ; */ ; */ select 1;", ["/* a /* ; */ ; */ select 1;"]),
    ("select 1 /* ; */ + 2; select 3 -- ;\n;", ["select 1 /* ; */ + 2;", "select 3 -- ;\n;"]),
    ("-- c;\n;;  \n-- only comments", []),
    ("select 1; -- trailing; comment", ["select 1;"]),
    ("select 1-- x;\n; select 2;", ["select 1-- x;\n;", "select 2;"]),
    ("select 2 */* c; */ 3;", ["select 2 */* c; */ 3;"]),
    (
        "create rule r as on insert to t do (insert into a values(1); insert into b values(2));",
        ["create rule r as on insert to t do (insert into a values(1); insert into b values(2));"],
    ),
    ("select (1)); select 2;", ["select (1));", "select 2;"]),
    (
        "create function f() returns int begin atomic select 1; select 2; end; select 3;",
        ["create function f() returns int begin atomic select 1; select 2; end;", "select 3;"],
    ),
    (
        "CREATE OR REPLACE PROCEDURE p() BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; END; SELECT 3;",
        ["CREATE OR REPLACE PROCEDURE p() BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; END;", "SELECT 3;"],
    ),
    ("create table begin_t (a int); begin; end;", ["create table begin_t (a int);", "begin;", "end;"]),
    (
        "create function g() returns int language sql as $$ select 1; $$; select 4;",
        ["create function g() returns int language sql as $$ select 1; $$;", "select 4;"],
    ),
    ("select U&'d\\0061t;' ; select B'1;'", ["select U&'d\\0061t;' ;", "select B'1;'"]),
    ("select 'multi\nline;' ; select 2;", ["select 'multi\nline;' ;", "select 2;"]),
    ("select 'unterminated;", ["select 'unterminated;"]),
    ("select 1; select $x$ never closed ;", ["select 1;", "select $x$ never closed ;"]),
    ("select 1; /* never closed ;", ["select 1;", "/* never closed ;"]),
    ("select 1;\r\nselect 2;\r\n", ["select 1;", "select 2;"]),
    ("select 'é;'; select \"ü;\";", ["select 'é;';", 'select "ü;";']),
]


@pytest.mark.parametrize(("text", "expected"), TRICKY)
def test_split(text, expected):
    assert pieces(text) == expected


@pytest.mark.parametrize(("text", "expected"), TRICKY)
def test_split_matches_psql(local_server, tmp_path, text, expected):
    assert psql_pieces(local_server, text, tmp_path) == expected


FRAGMENTS = [
    "select", "1", "x", "a$b", "$1", "1$q$", "(", ")", ";", ";", ";", "'a;b'", "'it''s'", "E'\\';'", "e'\\\\'",
    "\"q;\"\"x\"", "$$ ; $$", "$f$ $$ ; $f$", "/* c ; /* n */ */", "-- c ;\n", "U&'d\\0061t'", "'multi\nline'",
    "create", "function", "procedure", "or", "replace", "begin", "atomic", "end", "case", "when", "then", "::int",
    "create function f() returns int begin atomic select 1; end;", "insert into t values (1, 'a', now());",
    "é", "\"ü\"", "''", "$", "*/", "/", "-",
]  # fmt: skip


def random_file(rng: random.Random) -> str:
    words = [rng.choice(FRAGMENTS) for _ in range(rng.randint(3, 40))]
    return "".join(word + rng.choice([" ", " ", "\n", "\r\n", "\t"]) for word in words)


def without_blank_lines(found: list[str]) -> list[str]:
    """psql skips empty input lines outside quotes (MainLoop); they change no boundary."""
    return [re.sub(r"\n\n+", "\n", statement) for statement in found]


def test_random_files_split_like_psql(local_server, tmp_path):
    rng = random.Random(20261123)
    for _ in range(150):
        text = random_file(rng)
        ours = without_blank_lines(pieces(text))
        assert ours == without_blank_lines(psql_pieces(local_server, text, tmp_path)), text


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64])
def test_chunk_boundaries_change_nothing(chunk):
    rng = random.Random(chunk)
    for text, expected in TRICKY:
        assert pieces(text, chunk) == expected, text
    for _ in range(30):
        text = random_file(rng)
        assert pieces(text, chunk) == pieces(text), text


def test_statements_know_their_line_and_column():
    text = "select 1;\n  select\n 'é';  select 3; -- x\n\n/* c */ select 4"
    found = list(statements(text.encode()))
    assert [(s.line, s.column) for s in found] == [(1, 1), (2, 3), (3, 8), (5, 1)]
    assert found[3] == Statement(b"/* c */ select 4", 5, 1)


def test_byte_order_mark_is_dropped_and_not_counted():
    found = list(statements("\ufeffselect 1;\nselect 2;".encode()))
    assert [(s.sql, s.line, s.column) for s in found] == [(b"select 1;", 1, 1), (b"select 2;", 2, 1)]


def test_meta_commands_come_out_between_statements():
    found = list(statements(b"select 1;\n\\connect -reuse-previous=on \"dbname='x'\"\r\n\\.\nselect 2;\n"))
    assert found[1] == MetaCommand("connect", "-reuse-previous=on \"dbname='x'\"", 2, 1)
    assert found[2] == MetaCommand(".", "", 3, 1)
    assert found[3].sql == b"select 2;"


def test_backslash_inside_quotes_is_not_a_meta_command():
    assert pieces("select '\\x'; select $$\\d$$; select \"\\\";") == [
        "select '\\x';",
        "select $$\\d$$;",
        'select "\\";',
    ]


@pytest.mark.parametrize(
    ("text", "message", "where"),
    [
        ("select 1\n  \\g\n", "psql meta-command inside a statement (end the statement with ; first)", (2, 3)),
        ("select 1 \\; select 2;", "psql's \\; is not supported (write the SQL out)", (1, 10)),
    ],
)
def test_meta_command_inside_a_statement_is_refused(text, message, where):
    with pytest.raises(SplitError) as caught:
        list(statements(text.encode()))
    assert (caught.value.message, (caught.value.line, caught.value.column)) == (message, where)


def kinds(text: str) -> list[str | None]:
    return [s.kind for s in statements(text.encode()) if isinstance(s, Statement)]


def test_statement_kinds():
    text = (
        "begin; start transaction; /* x */ COMMIT; end; rollback; abort; savepoint a; release a;"
        " rollback to a; rollback work to savepoint a; prepare transaction 'x'; commit prepared 'x';"
        " copy t to stdout; copy t (a) to '/tmp/x'; select 1; endless; prepare q as select 1;"
    )
    assert kinds(text) == [
        "begin", "begin", "commit", "commit", "rollback", "rollback", "savepoint", "savepoint", "savepoint",
        "savepoint", "twophase", "twophase", "copy_out", None, None, None, None,
    ]  # fmt: skip


def test_copy_data_is_passed_through_and_ends_at_its_marker():
    text = (
        b"COPY public.t (a, b) FROM stdin;\n1\tx;y\n2\t\\N\n\\.\nselect 1;\n"
        b'copy "odd ""t""" from STDIN with (format csv); -- data follows\n"a\n\\.",1\n\\.\r\n'
    )
    items = list(Scanner(io.BytesIO(text)))
    assert [type(i).__name__ for i in items] == ["Run", "CopyData", "CopyEnd", "Run", "Run", "CopyData", "CopyEnd"]
    assert (items[0].kind, items[0].data_line) == ("copy_in", 2)
    assert items[1] == CopyData(b"1\tx;y\n2\t\\N\n")
    assert items[3].sql == b"select 1;"
    assert (items[4].kind, items[4].line, items[4].data_line) == ("copy_in", 6, 7)
    assert items[5] == CopyData(b'"a\n\\.",1\n')  # only a line that is exactly \. ends the data


def test_copy_without_end_marker_ends_with_the_file():
    items = list(Scanner(io.BytesIO(b"copy t from stdin;\n1\n2\n")))
    assert items[1:] == [CopyData(b"1\n2\n"), CopyEnd()]


def test_text_after_copy_on_its_line_is_refused():
    with pytest.raises(SplitError) as caught:
        list(Scanner(io.BytesIO(b"\ncopy t from stdin; select 1;\n1\n")))
    assert (caught.value.line, caught.value.column) == (2, 19)


class CountingStream(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.handed_out = 0

    def read1(self, size: int = -1) -> bytes:
        block = super().read1(size)
        self.handed_out += len(block)
        return block


def test_a_large_file_is_read_as_it_is_loaded():
    rows = b"".join(b"%d\tsome text\n" % i for i in range(400_000))
    data = b"create table t (a int, b text);\ncopy t from stdin;\n" + rows + b"\\.\n" + b"select 1;\n" * 100_000
    stream = CountingStream(data)
    items = iter(Scanner(stream, chunk_bytes=64 << 10))
    first = next(items)
    assert isinstance(first, Run) and stream.handed_out <= 64 << 10
    second = next(items)
    assert isinstance(second, Run) and second.kind == "copy_in"
    assert isinstance(next(items), CopyData) and stream.handed_out <= 128 << 10  # not the whole COPY first
    largest = max(
        len(item.sql if isinstance(item, Run) else item.data) for item in items if not isinstance(item, CopyEnd)
    )
    assert largest <= 128 << 10  # nothing like the whole file (6 MB) is ever held


def test_a_statement_larger_than_a_chunk_is_whole():
    value = "x;" * 300_000
    text = f"select 1;\ninsert into t values ('{value}');\nselect 2;\n"
    assert pieces(text, 4096) == ["select 1;", f"insert into t values ('{value}');", "select 2;"]


# The COPY end marker as a regular expression: the definition copy_end() is checked against.
COPY_END_SPEC = re.compile(rb"^\\\.\r?(?:\n|\Z)", re.MULTILINE)


@pytest.mark.parametrize(
    ("data", "pos"),
    [
        (b"1\tx\n\\.\nSELECT 1;\n", 0),
        (b"\\.\n", 0),  # no data at all
        (b"1\n\\.\r\nSELECT 1;\n", 0),  # CRLF file
        (b"1\n\\.", 0),  # the marker is the file's last line, no newline
        (b"1\n\\.\r", 0),
        (b"1\n\\.x\n2\n\\.\n", 0),  # "\.x" is data, not the end
        (b"1\n\\.\rx\n\\.\n", 0),
        (b"a\\.\n\\\\.\n3\n", 0),  # \. inside a line, and an escaped backslash: data
        (b"1\n2\n", 0),  # no marker: all of it is data
        (b"x\\.\n1\n\\.\n", 1),  # pos inside a line: \. there is not at a line start
        (b"COPY t FROM stdin;\n\\.\n", 19),  # pos at the start of a line
    ],
)
def test_copy_end_is_the_line_psql_ends_copy_data_at(data, pos):
    from dbtool.engine.split import copy_end

    spec = COPY_END_SPEC.search(data, pos)
    assert copy_end(data, pos) == (None if spec is None else spec.span())


def test_copy_end_agrees_with_its_definition_on_random_data():
    from dbtool.engine.split import copy_end

    rng = random.Random(20261202)
    for _ in range(3000):
        data = bytes(rng.choice(b"\\.\r\nab") for _ in range(rng.randrange(0, 14)))
        pos = rng.randrange(0, len(data) + 1)
        spec = COPY_END_SPEC.search(data, pos)
        assert copy_end(data, pos) == (None if spec is None else spec.span()), (data, pos)
