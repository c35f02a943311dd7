"""The differential corpus: real SQL nobody here wrote, loaded with psql and with dbtool over both transports.

psql is the reference. Every file psql loads with ``psql -X -1 -f`` must give a byte-identical
``pg_dump --no-owner`` through dbtool, over libpq and over the RDS Data API; every file psql refuses,
dbtool refuses at psql's line with psql's message, leaving the database as it was. Where dbtool is
deliberately stricter than psql (a pg_dump file cut short, which psql loads and commits), the test says
so and checks both sides. The files and their licences are in ``tests/corpus`` (``SOURCES.md``).
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.conftest import DBNAME, REPO, Server, Through
from tests.helpers import dbtool, error_line

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
REFERENCE = "reference"
_PSQL_ERROR = re.compile(r"^psql:(?P<file>.+?):(?P<line>\d+): ERROR:  (?P<message>.*)$", re.M)
_DBTOOL_ERROR = re.compile(r"^error: (?P<file>[^:]+):(?P<line>\d+):(?P<column>\d+): (?P<message>.*)$")


@dataclass(frozen=True)
class Outcome:
    """What loading a list of files did: exit code, the error's line and message, the database's dump."""

    code: int
    line: int | None
    message: str
    dump: str
    output: str = ""  # psql's whole stderr


def psql(server: Server, dbname: str, path: Path) -> subprocess.CompletedProcess[str]:
    """``psql -X -1 -v ON_ERROR_STOP=1 -f`` against ``dbname``; the password travels in the environment."""
    command = [str(server.cluster.bindir / "psql"), "-X", "-q", "-1", "-v", "ON_ERROR_STOP=1", "-f", str(path)]
    return subprocess.run(
        [*command, "--dbname", server.url(dbname, password="")],
        capture_output=True,
        text=True,
        errors="replace",
        env={**os.environ, "PGPASSWORD": server.password},
        check=False,
    )


def fresh(server: Server, dbname: str) -> None:
    """An empty ``dbname``, and the role the corpus's dumps hand their objects to (``OWNER TO postgres``)."""
    server.reset(dbname)
    server.create(dbname)
    with server.admin() as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'postgres'").fetchone():
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier("postgres")))


def with_psql(server: Server, files: list[Path]) -> Outcome:
    fresh(server, REFERENCE)
    for path in files:
        done = psql(server, REFERENCE, path)
        if done.returncode != 0:
            error = _PSQL_ERROR.search(done.stderr)
            assert error is not None, done.stderr
            return Outcome(done.returncode, int(error["line"]), error["message"], server.dump(REFERENCE), done.stderr)
    return Outcome(0, None, "", server.dump(REFERENCE))


def with_dbtool(through: Through, files: list[Path]) -> Outcome:
    fresh(through.server, DBNAME)
    for path in files:
        run = dbtool("schema-load", *through.args, "--file", str(path))
        if run.code != 0:
            error = _DBTOOL_ERROR.match(error_line(run))
            assert error is not None, run.err
            return Outcome(run.code, int(error["line"]), error["message"], through.server.dump(DBNAME))
    return Outcome(0, None, "", through.server.dump(DBNAME))


def empty_dump(server: Server) -> str:
    fresh(server, "empty")
    return server.dump("empty")


# -- the files --------------------------------------------------------------------------------------


def chinook_body(directory: Path) -> Path:
    """chinook.sql after its ``DROP/CREATE DATABASE`` and ``\\c chinook``: what loads into a given database."""
    text = (CORPUS / "chinook.sql").read_bytes()
    body = directory / "chinook-body.sql"
    body.write_bytes(text[text.index(b"\\c chinook;\n") + len(b"\\c chinook;\n") :])
    return body


CORPUS_CASES = {
    "pagila": lambda directory: [CORPUS / "pagila-schema.sql", CORPUS / "pagila-data.sql"],
    "chinook": lambda directory: [chinook_body(directory)],
    "northwind": lambda directory: [CORPUS / "northwind.sql"],
    "danbooru": lambda directory: [CORPUS / "danbooru-structure.sql"],
    "cruddur": lambda directory: [REPO / "db" / "schema.sql"],
}


@pytest.mark.parametrize("case", sorted(CORPUS_CASES))
def test_each_real_file_loads_exactly_as_psql_loads_it(through: Through, case: str, tmp_path: Path) -> None:
    files = CORPUS_CASES[case](tmp_path)
    reference = with_psql(through.server, files)
    assert reference.code == 0, reference
    loaded = with_dbtool(through, files)
    assert loaded.code == 0, loaded.message
    assert loaded.dump == reference.dump


def test_chinook_whole_is_refused_at_psqls_line_with_psqls_message(through: Through) -> None:
    files = [CORPUS / "chinook.sql"]
    reference, refused = with_psql(through.server, files), with_dbtool(through, files)
    assert reference.line == refused.line == 19  # the DROP DATABASE, not the /* banner */ before it
    assert refused.message.startswith(reference.message), refused.message
    assert refused.dump == empty_dump(through.server)


# -- the defects this corpus found, as cases ----------------------------------------------------------

LOADS = {
    # 1. each row's subquery sees the rows before it: combining them into one INSERT made every parent NULL
    "subquery-sees-earlier-rows": """
        CREATE TABLE category (id serial PRIMARY KEY, cat_name text, parent_category_id int);
        INSERT INTO category (cat_name, parent_category_id) VALUES ('a', NULL);
        INSERT INTO category (cat_name, parent_category_id) VALUES ('b', (SELECT id FROM category
            WHERE cat_name = 'a'));
        INSERT INTO category (cat_name, parent_category_id) VALUES ('c', (SELECT id FROM category
            WHERE cat_name = 'b'));
        INSERT INTO category (cat_name, parent_category_id) VALUES ('d', (SELECT max(id) FROM category));
        """,
    # 1. a volatile default that reads the table sees the rows inserted before it
    "volatile-default-reads-the-table": """
        CREATE TABLE queue (id int, position int);
        CREATE FUNCTION next_position() RETURNS int LANGUAGE sql VOLATILE
            AS 'SELECT coalesce(max(position), 0) + 1 FROM queue';
        ALTER TABLE queue ALTER COLUMN position SET DEFAULT next_position();
        INSERT INTO queue (id) VALUES (1);
        INSERT INTO queue (id) VALUES (2);
        INSERT INTO queue (id) VALUES (3);
        """,
    # 1. an AFTER ROW trigger that reads the table sees only the rows before it, statement by statement
    "after-row-trigger-counts": """
        CREATE TABLE item (id int, seen bigint);
        CREATE TABLE tally (id int, rows_seen bigint);
        CREATE FUNCTION count_items() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN INSERT INTO tally VALUES (NEW.id, (SELECT count(*) FROM item)); RETURN NULL; END $$;
        CREATE TRIGGER item_count AFTER INSERT ON item FOR EACH ROW EXECUTE FUNCTION count_items();
        INSERT INTO item (id) VALUES (1);
        INSERT INTO item (id) VALUES (2);
        INSERT INTO item (id) VALUES (3);
        """,
    # 4. rows of different lengths without a column list: each INSERT fills what it names
    "ragged-values": """
        CREATE TABLE t (a text, b text, c text);
        INSERT INTO t VALUES ('a', 'b');
        INSERT INTO t VALUES ('c', 'd', 'e');
        INSERT INTO t VALUES ('f');
        INSERT INTO t VALUES ('g', 'h');
        """,
    # 5. COPY ignores rules: a DO INSTEAD NOTHING rule must not swallow COPY's rows
    "copy-ignores-rules": """
        CREATE TABLE audited (id int, note text);
        CREATE TABLE audit_log (id int);
        CREATE RULE audited_log AS ON INSERT TO audited DO ALSO INSERT INTO audit_log VALUES (NEW.id);
        COPY audited (id, note) FROM stdin;
        1\tone
        2\ttwo
        \\.
        INSERT INTO audited VALUES (3, 'three');
        """,
    "copy-ignores-instead-nothing": """
        CREATE TABLE quiet (id int);
        CREATE RULE quiet_nothing AS ON INSERT TO quiet DO INSTEAD NOTHING;
        COPY quiet (id) FROM stdin;
        1
        2
        \\.
        """,
    # 5. a statement trigger with a transition table sees the COPY's rows once, all together
    "copy-statement-trigger": """
        CREATE TABLE reading (id int, value numeric);
        CREATE TABLE batches (rows_in_batch bigint);
        CREATE FUNCTION count_batch() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN INSERT INTO batches SELECT count(*) FROM fresh; RETURN NULL; END $$;
        CREATE TRIGGER reading_batch AFTER INSERT ON reading REFERENCING NEW TABLE AS fresh
            FOR EACH STATEMENT EXECUTE FUNCTION count_batch();
        COPY reading (id, value) FROM stdin;
        1\t1.5
        2\t2.5
        3\t3.5
        \\.
        """,
    # 2. COPY checks each value against the column's length, precision and bit width (these fit)
    "copy-typmods-that-fit": """
        CREATE DOMAIN code3 AS varchar(3);
        CREATE TABLE sized (v varchar(3), c char(3), b bit(4), n numeric(5, 2), d code3, a varchar(3)[],
                            t timestamp(0), vb varbit(3));
        COPY sized (v, c, b, n, d, a, t, vb) FROM stdin;
        ABC\tAB\t1010\t123.456\txyz\t{ab,cd}\t2024-01-01 10:00:00.7\t101
        A  \tA\t0000\t-1.5\tQ\t{}\t2024-01-01 00:00:00\t1
        \\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N
        \\.
        """,
}

REFUSED = {
    # 2. COPY raises 'value too long' where an explicit cast would truncate to 'ABC'
    "copy-value-too-long": """
        CREATE TABLE code (id int, v varchar(3));
        COPY code (id, v) FROM stdin;
        1\tAB
        2\tABCD
        \\.
        """,
    "copy-bit-too-short": """
        CREATE TABLE flags (b bit(4));
        COPY flags (b) FROM stdin;
        1010
        101
        \\.
        """,
    "copy-numeric-overflow": """
        CREATE TABLE money (n numeric(5, 2));
        COPY money (n) FROM stdin;
        999.99
        1000
        \\.
        """,
    "copy-domain-too-long": """
        CREATE DOMAIN code3 AS varchar(3);
        CREATE TABLE coded (c code3);
        COPY coded (c) FROM stdin;
        abc
        abcd
        \\.
        """,
    # 3. a bad value in a table of a type the file itself creates: psql's message, at the row's line
    "copy-bad-value-beside-the-files-own-type": """
        CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
        CREATE TABLE person (name text, current_mood mood, age integer);
        COPY person (name, current_mood, age) FROM stdin;
        moe\thappy\t40
        larry\tsad\t4x
        curly\tok\t50
        \\.
        """,
    "copy-bad-value-of-the-files-own-type": """
        CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
        CREATE TABLE person (name text, current_mood mood);
        COPY person (name, current_mood) FROM stdin;
        moe\thappy
        larry\tgrumpy
        \\.
        """,
    "copy-duplicate-key": """
        CREATE TABLE keyed (id int PRIMARY KEY, note text);
        COPY keyed (id, note) FROM stdin;
        1\tone
        2\ttwo
        1\tagain
        \\.
        """,
    "copy-not-null": """
        CREATE TABLE required (id int, note text NOT NULL);
        COPY required (id, note) FROM stdin;
        1\tone
        2\t\\N
        \\.
        """,
    # 8. no position from the server: the statement's first token, not the comment before it
    "error-after-a-comment": """
        CREATE TABLE t (id int PRIMARY KEY);
        /*******************************************************************************
           Populate
        ********************************************************************************/
        INSERT INTO t VALUES (1);
        /* again */
        INSERT INTO t VALUES (1);
        """,
    # 9. no SQL of dbtool's own in a message: psql's words at the end of the file
    "unterminated-string-at-the-end": """
        CREATE TABLE t (id int);
        SELECT 'abc""",
    "incomplete-statement-at-the-end": """
        CREATE TABLE t (id int);
        SELECT 1 +""",
    "unterminated-dollar-quote-at-the-end": """
        CREATE TABLE t (id int);
        CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $body$ SELECT 1""",
}


def sql_file(directory: Path, name: str, text: str) -> Path:
    import textwrap

    path = directory / f"{name}.sql"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


# COPY ignores rules; through the Data API a COPY's rows are INSERTs, which rules rewrite: refused, never loaded
# otherwise.
REFUSED_BY_THE_DATA_API = {
    "copy-ignores-rules": "rule audited_log",
    "copy-ignores-instead-nothing": "rule quiet_nothing",
}


@pytest.mark.parametrize("case", sorted(LOADS))
def test_defect_cases_load_as_psql_loads_them(through: Through, case: str, tmp_path: Path) -> None:
    files = [sql_file(tmp_path, case, LOADS[case])]
    reference = with_psql(through.server, files)
    assert reference.code == 0, reference
    loaded = with_dbtool(through, files)
    if through.transport == "data-api" and case in REFUSED_BY_THE_DATA_API:
        assert loaded.code == 1 and loaded.message.startswith("COPY ignores rules"), loaded.message
        assert REFUSED_BY_THE_DATA_API[case] in loaded.message
        assert loaded.dump == empty_dump(through.server)
        return
    assert loaded.code == 0, loaded.message
    assert loaded.dump == reference.dump


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_defect_cases_fail_where_psql_fails_with_its_message(through: Through, case: str, tmp_path: Path) -> None:
    files = [sql_file(tmp_path, case, REFUSED[case])]
    reference = with_psql(through.server, files)
    assert reference.code != 0, reference
    refused = with_dbtool(through, files)
    assert refused.code == 1
    assert refused.message.startswith(reference.message), (refused.message, reference.message)
    assert "dbtool" not in refused.message and "SAVEPOINT" not in refused.message
    assert refused.line == reference_line(files[0], reference)
    assert refused.dump == empty_dump(through.server)


def reference_line(path: Path, reference: Outcome) -> int:
    """The file line psql's error belongs to.

    psql reports a COPY's error at the end of its data, and the row in its CONTEXT by its line within
    the data: the row's file line is the COPY statement's line plus that.
    """
    assert reference.line is not None
    row = re.search(r"^CONTEXT:  COPY [^,]+, line (\d+)", reference.output, re.M)
    if row is None:
        return reference.line
    lines = path.read_bytes().split(b"\n")[: reference.line]
    copy = max(number for number, text in enumerate(lines, 1) if text.startswith(b"COPY "))
    return copy + int(row[1])


# -- cut short, and other hostile variants ------------------------------------------------------------


def line_start(data: bytes, line: int) -> int:
    """Byte offset where 1-based ``line`` starts."""
    offset = 0
    for _ in range(line - 1):
        offset = data.index(b"\n", offset) + 1
    return offset


PAGILA_DATA = CORPUS / "pagila-data.sql"
PAGILA_SCHEMA = CORPUS / "pagila-schema.sql"
PAYMENT_COPY = 34453  # the line of COPY public.payment_p2022_02 … FROM stdin in pagila-data.sql


def cut_short(directory: Path, source: Path, at: int) -> Path:
    path = directory / f"cut-{source.name}"
    path.write_bytes(source.read_bytes()[:at])
    return path


def loaded_schema(through: Through) -> str:
    """The target with pagila's schema loaded, and its dump: what a refused data file must leave."""
    fresh(through.server, DBNAME)
    assert dbtool("schema-load", *through.args, "--file", str(PAGILA_SCHEMA)).code == 0
    return through.server.dump(DBNAME)


def refuse_cut(through: Through, path: Path) -> str:
    before = through.server.dump(DBNAME)
    run = dbtool("schema-load", *through.args, "--file", str(path))
    assert run.code == 1, run.all
    line = error_line(run)
    assert "cut short" in line and "-- PostgreSQL database dump complete" in line, line
    assert through.server.dump(DBNAME) == before
    return line


def test_a_dump_cut_at_a_copy_line_end_is_refused_where_psql_commits_it(through: Through, tmp_path: Path) -> None:
    data = PAGILA_DATA.read_bytes()
    path = cut_short(tmp_path, PAGILA_DATA, line_start(data, PAYMENT_COPY + 100))
    fresh(through.server, REFERENCE)
    assert psql(through.server, REFERENCE, PAGILA_SCHEMA).returncode == 0
    assert psql(through.server, REFERENCE, path).returncode == 0  # psql -1 commits 99 of the month's rows
    with psycopg.connect(through.server.url(REFERENCE)) as conn:
        assert conn.execute("SELECT count(*) FROM public.payment_p2022_02").fetchone() == (99,)
    loaded_schema(through)
    line = refuse_cut(through, path)
    assert f"ends inside the COPY data begun at line {PAYMENT_COPY + 1}" in line, line
    assert line.endswith("nothing was changed: the whole file was rolled back)"), line


def test_a_dump_cut_mid_copy_row_is_refused(through: Through, tmp_path: Path) -> None:
    data = PAGILA_DATA.read_bytes()
    path = cut_short(tmp_path, PAGILA_DATA, line_start(data, PAYMENT_COPY + 100) + 7)
    loaded_schema(through)
    assert f"ends inside the COPY data begun at line {PAYMENT_COPY + 1}" in refuse_cut(through, path)


def test_a_dump_cut_between_statements_is_refused(through: Through, tmp_path: Path) -> None:
    data = PAGILA_SCHEMA.read_bytes()
    path = cut_short(tmp_path, PAGILA_SCHEMA, line_start(data, 382))  # just before CREATE TABLE public.actor
    fresh(through.server, DBNAME)
    line = refuse_cut(through, path)
    assert re.search(
        r"^error: cut-pagila-schema.sql:382:1: cut short: this pg_dump file ends after statement 45,", line
    )


@pytest.mark.parametrize(("name", "line", "extra"), [("dollar-quote", 68, 30), ("statement", 382, 40)])
def test_a_dump_cut_inside_a_statement_is_refused(through: Through, tmp_path: Path, name, line, extra) -> None:
    data = PAGILA_SCHEMA.read_bytes()
    path = cut_short(tmp_path, PAGILA_SCHEMA, line_start(data, line) + extra)
    assert psql(through.server, DBNAME, path).returncode != 0  # psql fails too, on the statement's syntax
    fresh(through.server, DBNAME)
    assert re.search(r"ends inside the statement begun at line \d+", refuse_cut(through, path))


def test_hand_written_files_keep_psqls_rule_that_the_end_of_file_ends_copy_data(through: Through, tmp_path) -> None:
    files = [sql_file(tmp_path, "open-copy", "CREATE TABLE t (id int, s text);\nCOPY t FROM stdin;\n1\tone\n2\ttwo\n")]
    reference = with_psql(through.server, files)
    assert reference.code == 0
    loaded = with_dbtool(through, files)
    assert (loaded.code, loaded.dump) == (0, reference.dump)


def variant(directory: Path, source: Path, name: str, change) -> Path:
    path = directory / f"{name}-{source.name}"
    path.write_bytes(change(source.read_bytes()))
    return path


@pytest.mark.parametrize("name", ["crlf-northwind", "crlf-pagila", "bom-pagila-schema", "latin1-declared-northwind"])
def test_hostile_variants_load_as_psql_loads_them(through: Through, name: str, tmp_path: Path) -> None:
    crlf = lambda data: data.replace(b"\n", b"\r\n")  # noqa: E731
    files = {
        "crlf-northwind": lambda: [variant(tmp_path, CORPUS / "northwind.sql", "crlf", crlf)],
        "crlf-pagila": lambda: [
            variant(tmp_path, PAGILA_SCHEMA, "crlf", crlf),
            variant(tmp_path, PAGILA_DATA, "crlf", crlf),
        ],
        "bom-pagila-schema": lambda: [variant(tmp_path, PAGILA_SCHEMA, "bom", lambda data: b"\xef\xbb\xbf" + data)],
        "latin1-declared-northwind": lambda: [variant(tmp_path, CORPUS / "northwind.sql", "latin1", to_latin1)],
    }[name]()
    reference = with_psql(through.server, files)
    assert reference.code == 0, reference
    loaded = with_dbtool(through, files)
    if through.transport == "data-api" and name.startswith("latin1"):
        assert loaded.code == 1 and "carries only UTF-8" in loaded.message, loaded.message
        assert loaded.dump == empty_dump(through.server)
        return
    assert loaded.code == 0, loaded.message
    assert loaded.dump == reference.dump


def to_latin1(data: bytes, *, declare: bool = True) -> bytes:
    text = data.decode("utf-8")
    if declare:
        text = text.replace("SET client_encoding = 'UTF8';", "SET client_encoding = 'LATIN1';")
    return text.encode("latin-1", errors="replace")


def test_latin1_bytes_in_a_utf8_file_fail_where_psql_fails(through: Through, tmp_path: Path) -> None:
    files = [variant(tmp_path, CORPUS / "northwind.sql", "latin1", lambda data: to_latin1(data, declare=False))]
    reference = with_psql(through.server, files)
    assert reference.code != 0 and reference.message.startswith('invalid byte sequence for encoding "UTF8"')
    refused = with_dbtool(through, files)
    assert refused.code == 1
    assert refused.dump == empty_dump(through.server)
    if through.transport == "libpq":
        assert (refused.line, refused.message[: len(reference.message)]) == (reference.line, reference.message)
    else:  # the Data API carries UTF-8 only: the statement is refused before it is sent, at the same line
        assert refused.line == reference.line and "is not UTF-8" in refused.message, refused


# -- an error deep in a 20 MB file ----------------------------------------------------------------------

DEEP_ROWS = 200_000
DEEP_BAD = 190_001


@pytest.fixture(scope="module")
def deep_files(tmp_path_factory) -> dict[str, Path]:
    """20 MB of single-row INSERTs (or of COPY data) with one bad row near the end."""
    directory = tmp_path_factory.mktemp("deep")
    padding = "x" * 80
    inserts = ["CREATE TABLE deep (id int PRIMARY KEY, n int, note text);\n"]
    copy = ["CREATE TABLE deep (id int PRIMARY KEY, n int, note text);\n", "COPY deep (id, n, note) FROM stdin;\n"]
    for i in range(1, DEEP_ROWS + 1):
        inserts.append(f"INSERT INTO deep (id, n, note) VALUES ({i}, {i % 97}, 'row {i} {padding}');\n")
        copy.append(f"{i}\t{i % 97}\trow {i} {padding}\n")
    files = {}
    for name, lines, bad in [
        ("cast", inserts, f"INSERT INTO deep (id, n, note) VALUES ({DEEP_BAD}, '12x'::integer, 'bad');\n"),
        ("duplicate", inserts, f"INSERT INTO deep (id, n, note) VALUES ({DEEP_BAD - 5}, 1, 'again');\n"),
        ("copy", copy, f"{DEEP_BAD}\t12x\tbad\n"),
    ]:
        at = DEEP_BAD + len(lines) - DEEP_ROWS - 1  # the bad row replaces row DEEP_BAD
        files[name] = directory / f"deep-{name}.sql"
        files[name].write_text("".join([*lines[:at], bad, *lines[at + 1 :], "\\.\n" if name == "copy" else ""]))
    return files


@pytest.mark.parametrize("name", ["cast", "duplicate", "copy"])
def test_an_error_deep_in_a_20_mb_file_is_named_at_psqls_line(through, deep_files, name) -> None:
    files = [deep_files[name]]
    assert files[0].stat().st_size > 20_000_000
    reference = with_psql(through.server, files)
    refused = with_dbtool(through, files)
    assert refused.code == 1
    assert refused.message.startswith(reference.message), (refused.message, reference.message)
    assert refused.line == reference_line(files[0], reference)
    assert refused.dump == empty_dump(through.server)
