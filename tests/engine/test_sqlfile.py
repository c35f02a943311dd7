"""Loading psql-style files into a real server: dumps, COPY, meta-commands, transactions, Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from tests.helpers import REPO, dbtool, error_line, in_terminal, script

SOURCE_SCHEMA = r"""
CREATE SCHEMA app;
CREATE TYPE app.mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN app.handle AS text CHECK (VALUE ~ '^[a-z0-9_;]+$');
CREATE TABLE app.users (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    handle app.handle NOT NULL UNIQUE,
    bio text,
    mood app.mood,
    avatar bytea,
    tags text[],
    prefs jsonb,
    balance numeric(12, 2),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE app."Odd Name; really" (id serial PRIMARY KEY, user_id int REFERENCES app.users (id), "note$" text);
CREATE INDEX users_bio ON app.users (lower(bio));
CREATE VIEW app.happy AS SELECT id, handle FROM app.users WHERE mood = 'happy';
CREATE FUNCTION app.touch() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.bio := coalesce(NEW.bio, 'none; yet');  -- a semicolon in a dollar-quoted body
    RETURN NEW;
END;
$fn$;
CREATE TRIGGER users_touch BEFORE INSERT ON app.users FOR EACH ROW EXECUTE FUNCTION app.touch();
CREATE FUNCTION app.double_it(x int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT x * 2; SELECT x + x; END;
COMMENT ON TABLE app.users IS 'it''s; "quoted"';
INSERT INTO app.users (handle, bio, mood, avatar, tags, prefs, balance)
SELECT 'user_' || i,
       CASE i % 5 WHEN 0 THEN NULL WHEN 1 THEN E'tab\there\nnewline \\ backslash' WHEN 2 THEN 'ünïcødé ✓'
                  WHEN 3 THEN '' ELSE '\.' END,
       (ARRAY['sad', 'ok', 'happy'])[1 + i % 3]::app.mood,
       decode(md5(i::text), 'hex'),
       ARRAY['a', NULL, 'c;d', E'e\tf'],
       jsonb_build_object('n', i, 's', E'x"y\\z'),
       i * 1.25
FROM generate_series(1, 5000) AS i;
INSERT INTO app."Odd Name; really" (user_id, "note$") SELECT id, '$$' || id FROM app.users WHERE id % 7 = 0;
"""


def relation(server, name: str) -> str | None:
    """The relation's name if it exists in the target database, else None."""
    with psycopg.connect(server.url()) as conn:
        return conn.execute("SELECT to_regclass(%s)::text", [name]).fetchone()[0]


def table_contents(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        names = conn.execute(
            "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables"
            " WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
        ).fetchall()
        return {
            name: conn.execute(f"SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {name} AS t").fetchone()[0]
            for (name,) in names
        }


def pg_dump(server, dbname: str, *args: str) -> str:
    return subprocess.run(
        [str(server.cluster.bindir / "pg_dump"), *args, "--dbname", server.url(dbname, password="")],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PGPASSWORD": server.password},
    ).stdout


@pytest.fixture
def source(local):
    """A database 'source' full of what dumps contain, and the empty target database."""
    local.reset("source")
    local.create("source")
    with psycopg.connect(local.url("source"), autocommit=True) as conn:
        conn.execute(SOURCE_SCHEMA)
    local.create()
    yield local
    local.reset("source")


def test_pg_dump_round_trip(source, project):
    (project / "dump.sql").write_text(pg_dump(source, "source"))
    assert "\\restrict" in (project / "dump.sql").read_text()  # pg_dump's meta-commands are in the file
    run = dbtool("schema-load", "--file", "dump.sql")
    assert run.code == 0, run.all
    expected = table_contents(source.url("source"))
    assert len(expected) == 2 and all(expected.values())
    assert table_contents(source.url()) == expected
    assert source.dump() == source.dump("source")
    with psycopg.connect(source.url()) as conn:
        assert conn.execute("SELECT app.double_it(21)").fetchone() == (42,)
        assert conn.execute("SELECT count(*) FROM app.users WHERE bio = '\\.'").fetchone() == (1000,)


def test_pg_dump_with_windows_line_endings_and_a_bom_loads(source, project):
    # COPY data escapes its newlines, so turning every \n into \r\n changes no row.
    dump = pg_dump(source, "source").replace("\n", "\r\n")
    (project / "dump.sql").write_bytes(b"\xef\xbb\xbf" + dump.encode())
    run = dbtool("schema-load", "--file", "dump.sql")
    assert run.code == 0, run.all
    assert table_contents(source.url()) == table_contents(source.url("source"))


def test_pg_dump_as_inserts_loads(source, project):
    (project / "dump.sql").write_text(pg_dump(source, "source", "--inserts", "--rows-per-insert=3"))
    run = dbtool("schema-load", "--file", "dump.sql")
    assert run.code == 0, run.all
    assert table_contents(source.url()) == table_contents(source.url("source"))


def test_pg_dump_create_is_explained(source, project):
    (project / "dump.sql").write_text(pg_dump(source, "source", "--create", "--schema-only"))
    line = error_line(dbtool("schema-load", "--file", "dump.sql"))
    assert line.endswith(
        ": CREATE DATABASE cannot run inside a transaction block (the file creates its own database "
        "(pg_dump --create); dump without -C and use dbtool create; "
        "nothing was changed: the whole file was rolled back)"
    )


def test_copy_data_streams_in(local, project):
    local.create()
    null = "\\N"
    rows = "".join(f"{i}\tname {i}\t{null if i % 3 else 'x;y'}\n" for i in range(20_000))
    (project / "copy.sql").write_text(
        f"CREATE TABLE t (id int PRIMARY KEY, name text, extra text);\nCOPY t FROM stdin;\n{rows}\\.\n"
        'SELECT 1;\nCOPY t (id, name) FROM STDIN WITH (FORMAT csv);\n-1,"multi\nline"\n\\.\n'
    )
    run = dbtool("seed", "--file", "copy.sql")
    assert run.code == 0, run.all
    assert "copy.sql: 4 statements" in run.out
    with psycopg.connect(local.url()) as conn:
        assert conn.execute("SELECT count(*), count(extra) FROM t").fetchone() == (20_001, 6667)
        assert conn.execute("SELECT name FROM t WHERE id = -1").fetchone() == ("multi\nline",)


def test_copy_data_error_names_its_file_line(through, project):
    through.server.create()
    rows = "".join(f"{i}\n" for i in range(5000))
    (project / "copy.sql").write_text(f"CREATE TABLE t (id int);\n\nCOPY t FROM stdin;\n{rows}12x\n7\n\\.\n")
    line = error_line(dbtool("seed", *through.args, "--file", "copy.sql"))
    assert line == (
        'error: copy.sql:5004:1: invalid input syntax for type integer: "12x" '
        '(COPY t, line 5001, column id: "12x") (nothing was changed: the whole file was rolled back)'
    )
    assert relation(through.server, "t") is None


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ("2\ttwo\textra", 'extra data after last expected column (COPY t, line 2: "2\ttwo\textra")'),
        ("2", 'missing data for column "s" (COPY t, line 2: "2")'),
        ("2\t\\N", None),
        ("x\ttwo", 'invalid input syntax for type integer: "x" (COPY t, line 2, column n: "x")'),
        (
            "99999999999\ttwo",
            'value "99999999999" is out of range for type integer (COPY t, line 2, column n: "99999999999")',
        ),
    ],
)
def test_bad_copy_rows_are_named_as_postgresql_names_them(through, project, row, expected):
    through.server.create()
    (project / "copy.sql").write_text(
        f"CREATE TABLE t (n int, s text);\nCOPY t (n, s) FROM stdin;\n1\tone\n{row}\n\\.\n"
    )
    run = dbtool("schema-load", *through.args, "--file", "copy.sql")
    if expected is None:
        assert run.code == 0, run.all
        return
    assert error_line(run) == f"error: copy.sql:4:1: {expected} (nothing was changed: the whole file was rolled back)"


def test_error_after_a_copy_is_replayed_with_the_copy_in_place(through, project):
    # Replaying a failed batch must start from just after the COPY, or the duplicate would vanish.
    through.server.create()
    (project / "dup.sql").write_text(
        "CREATE TABLE t (id int PRIMARY KEY);\nCOPY t FROM stdin;\n1\n\\.\n"
        "INSERT INTO t VALUES (2);\nINSERT INTO t VALUES (1);\n"
    )
    line = error_line(dbtool("seed", *through.args, "--file", "dup.sql"))
    # The Data API sends the two INSERTs as one, and still names the row that fails alone.
    assert line.startswith('error: dup.sql:6:1: duplicate key value violates unique constraint "t_pkey"')


def test_copy_into_a_missing_table_names_the_copy(through, project):
    through.server.create()
    (project / "copy.sql").write_text("SELECT 1;\n  COPY nope FROM stdin;\n1\n\\.\n")
    line = error_line(dbtool("seed", *through.args, "--file", "copy.sql"))
    assert line.startswith('error: copy.sql:2:3: relation "nope" does not exist (')


def test_syntax_error_deep_in_a_large_file(through, project):
    through.server.create()
    lines = ["CREATE TABLE t (id int, name text);"] + [f"INSERT INTO t VALUES ({i}, 'n{i}');" for i in range(150_000)]
    lines[123_456] = "INSERT INTO t VALUES (1, 'ok'), (2,);"
    (project / "big.sql").write_text("\n".join(lines) + "\n")
    line = error_line(dbtool("seed", *through.args, "--file", "big.sql"))
    assert line == (
        'error: big.sql:123457:36: syntax error at or near ")" (nothing was changed: the whole file was rolled back)'
    )
    assert relation(through.server, "t") is None


def test_pg_dump_meta_commands_are_understood(through, project):
    through.server.create()
    (project / "meta.sql").write_text(
        "\\restrict abc123\n\\set ON_ERROR_STOP on\n\\connect cruddur\nCREATE TABLE a (id int);\n"
        "\\c -reuse-previous=on \"dbname='cruddur'\"\n\\unrestrict abc123\n"
    )
    run = dbtool("seed", *through.args, "--file", "meta.sql")
    assert run.code == 0, run.all
    assert relation(through.server, "a") == "a"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("CREATE TABLE a (id int);\n\\i other.sql\n", r"meta.sql:2:1: psql meta-command \i is not supported"),
        ("CREATE TABLE a (id int);\n\\set x 1\n", r"meta.sql:2:1: psql meta-command \set is not supported"),
        ("CREATE TABLE a (id int);\n\\.\n", r"meta.sql:2:1: \. outside COPY data"),
        ("CREATE TABLE a (id int);\n\\connect postgres\n", r"meta.sql:2:1: \connect postgres would leave the"),
        ("CREATE TABLE a (id int);\n\\c cruddur other_user\n", r"meta.sql:2:1: \connect cruddur other_user would"),
        ("CREATE TABLE a (id int)\n\\g\n", "meta.sql:2:1: psql meta-command inside a statement"),
    ],
)
def test_other_meta_commands_are_refused_with_their_line(through, project, text, expected):
    through.server.create()
    (project / "meta.sql").write_text(text)
    line = error_line(dbtool("seed", *through.args, "--file", "meta.sql"))
    assert line.startswith(f"error: {expected}")
    assert line.endswith("nothing was changed: the whole file was rolled back)")
    assert relation(through.server, "a") is None


def test_files_own_begin_and_commit_fold_into_one_transaction(through, project):
    through.server.create()
    (project / "txn.sql").write_text(
        "BEGIN;\nCREATE TABLE a (id int);\n/* done */ COMMIT;\nSTART TRANSACTION;\nINSERT INTO a VALUES (1);\n"
        "END;\nSELECT 1/0;\n"
    )
    line = error_line(dbtool("seed", *through.args, "--file", "txn.sql"))
    assert line == "error: txn.sql:7:1: division by zero (nothing was changed: the whole file was rolled back)"
    assert relation(through.server, "a") is None
    (project / "txn.sql").write_text("BEGIN;\nCREATE TABLE a (id int);\nCOMMIT;\n")
    assert dbtool("seed", *through.args, "--file", "txn.sql").code == 0


@pytest.mark.parametrize(
    ("statement", "what"),
    [("ROLLBACK;", "ROLLBACK"), ("SAVEPOINT s;", "a savepoint command"), ("PREPARE TRANSACTION 'x';", "two-phase")],
)
def test_rollback_and_savepoints_need_no_transaction_mode(through, project, statement, what):
    through.server.create()
    (project / "txn.sql").write_text(f"BEGIN;\nCREATE TABLE a (id int);\n  {statement}\n")
    line = error_line(dbtool("seed", *through.args, "--file", "txn.sql"))
    assert line.startswith(f"error: txn.sql:3:3: {what}")
    assert "load it with --no-transaction" in line


def test_statements_refused_in_a_transaction_point_to_no_transaction(through, project):
    through.server.create()
    (project / "idx.sql").write_text("CREATE TABLE a (id int);\nCREATE INDEX CONCURRENTLY a_id ON a (id);\n")
    line = error_line(dbtool("schema-load", *through.args, "--file", "idx.sql"))
    assert line == (
        "error: idx.sql:2:1: CREATE INDEX CONCURRENTLY cannot run inside a transaction block (it cannot run inside a "
        "transaction; load the file with --no-transaction; nothing was changed: the whole file was rolled back)"
    )
    run = dbtool("schema-load", *through.args, "--file", "idx.sql", "--no-transaction")
    assert run.code == 0, run.all
    assert relation(through.server, "a_id") == "a_id"


def test_no_transaction_commits_what_came_before_and_says_so(through, project):
    through.server.create()
    (project / "steps.sql").write_text(
        "CREATE TABLE a (id int PRIMARY KEY);\nINSERT INTO a VALUES (1);\n"
        "BEGIN;\nINSERT INTO a VALUES (2);\nINSERT INTO a VALUES (1);\nCOMMIT;\nINSERT INTO a VALUES (3);\n"
    )
    line = error_line(dbtool("seed", *through.args, "--file", "steps.sql", "--no-transaction"))
    assert line == (
        'error: steps.sql:5:1: duplicate key value violates unique constraint "a_pkey" (Key (id)=(1) already exists) '
        "(statements before this one were committed, except the file's transaction from line 3: rolled back)"
    )
    with psycopg.connect(through.server.url()) as conn:
        assert conn.execute("SELECT array_agg(id) FROM a").fetchone() == ([1],)


def test_no_transaction_refuses_a_file_that_leaves_its_transaction_open(through, project):
    through.server.create()
    (project / "open.sql").write_text("CREATE TABLE a (id int);\nBEGIN;\nINSERT INTO a VALUES (1);\n")
    line = error_line(dbtool("seed", *through.args, "--file", "open.sql", "--no-transaction"))
    assert line == (
        "error: open.sql: the file ended inside the transaction it began at line 2 "
        "(that transaction was rolled back; add its COMMIT)"
    )
    with psycopg.connect(through.server.url()) as conn:
        assert conn.execute("SELECT count(*) FROM a").fetchone() == (0,)


def test_copy_to_stdout_is_refused(through, project):
    through.server.create()
    (project / "out.sql").write_text("CREATE TABLE a (id int);\nCOPY a TO STDOUT;\n")
    line = error_line(dbtool("seed", *through.args, "--file", "out.sql"))
    assert line.startswith("error: out.sql:2:1: COPY … TO STDOUT in a file to load (run it with dbtool connect")


def test_standard_input(local, project):
    local.create()
    run = dbtool("seed", "--file", "-", input="CREATE TABLE a (id int);\nCOPY a FROM stdin;\n1\n2\n\\.\n")
    assert run.code == 0, run.all
    assert "loaded <stdin>: 2 statements" in run.out
    result = subprocess.run(
        [str(REPO / "bin" / "db-seed"), "--file", "-"],
        input=b"INSERT INTO a VALUES (3);\nSELECT 1/0;\n",
        capture_output=True,
        env={**os.environ},
    )
    assert result.returncode == 1
    assert result.stderr.decode().startswith("error: <stdin>:2:1: division by zero")
    with psycopg.connect(local.url()) as conn:
        assert conn.execute("SELECT array_agg(id ORDER BY id) FROM a").fetchone() == ([1, 2],)


def test_library_reports_progress_and_counts(local, project):
    from dbtool.engine.loader import load_file
    from dbtool.engine.session import open_session
    from dbtool.targets.resolve import resolve_target

    local.create()
    path = project / "many.sql"
    big_seed(path, 30_000)
    calls: list[tuple[int, int]] = []
    with open_session(resolve_target("local")) as session:
        result = load_file(session, path, on_progress=lambda done, count: calls.append((done, count)))
    assert (result.name, result.statements, result.bytes) == ("many.sql", 30_001, path.stat().st_size)
    assert len(calls) > 1 and calls == sorted(calls) and calls[-1] == (path.stat().st_size, 30_001)


def test_file_that_is_not_utf8_declared_by_its_encoding_loads(local, project):
    local.create()
    (project / "latin1.sql").write_bytes(
        "SET client_encoding = 'LATIN1';\nCREATE TABLE a (t text);\nINSERT INTO a VALUES ('café');\n".encode("latin-1")
    )
    assert dbtool("seed", "--file", "latin1.sql").code == 0
    with psycopg.connect(local.url()) as conn:
        assert conn.execute("SELECT t FROM a").fetchone() == ("café",)


def test_invalid_utf8_is_reported_with_its_line(local, project):
    local.create()
    (project / "bad.sql").write_bytes(b"CREATE TABLE a (t text);\nINSERT INTO a VALUES ('caf\xe9');\n")
    line = error_line(dbtool("seed", "--file", "bad.sql"))
    assert line.startswith('error: bad.sql:2:1: invalid byte sequence for encoding "UTF8": 0xe9')


def wait_for(condition, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def busy(server, condition: str) -> bool:
    """Whether a dbtool session is active and matches an SQL ``condition`` on pg_stat_activity."""
    with psycopg.connect(server.url("postgres"), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'dbtool' AND state = 'active' AND "
            + condition
        ).fetchone()
        return bool(row[0])


def dbtool_sessions(server) -> int:
    with psycopg.connect(server.url("postgres"), autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'dbtool'").fetchone()[0]


def terminal_sigint() -> None:
    """In the child: Ctrl-C as a terminal delivers it. A suite started as a background job (``cmd &`` without
    job control) ignores SIGINT, and an ignored signal is inherited across exec: the load would never hear it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupted(process: subprocess.Popen) -> tuple[int, str]:
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    return process.returncode, err.decode().strip()  # click starts a new line after the ^C


def test_ctrl_c_during_a_statement_leaves_nothing(local, project):
    local.create()
    rows = "".join(f"INSERT INTO t VALUES ({i});\n" for i in range(1000))
    (project / "slow.sql").write_text(f"CREATE TABLE t (id int);\n{rows}SELECT pg_sleep(60);\n{rows}")
    process = subprocess.Popen(
        [str(REPO / "bin" / "db-seed"), "--file", "slow.sql"], stderr=subprocess.PIPE, preexec_fn=terminal_sigint
    )
    wait_for(lambda: busy(local, "wait_event = 'PgSleep'"), "the load to reach pg_sleep")
    code, err = interrupted(process)
    assert code == 130
    assert err == "error: interrupted (an unfinished SQL load is rolled back, never half-applied)"
    assert relation(local, "t") is None
    wait_for(lambda: dbtool_sessions(local) == 0, "the interrupted session to end")


def test_ctrl_c_during_copy_leaves_nothing(local, project):
    local.create()
    fifo = project / "data.fifo"
    os.mkfifo(fifo)
    process = subprocess.Popen(
        [str(REPO / "bin" / "db-seed"), "--file", str(fifo)], stderr=subprocess.PIPE, preexec_fn=terminal_sigint
    )
    with open(fifo, "wb") as writer:
        writer.write(b"CREATE TABLE t (id int);\nCOPY t FROM stdin;\n" + b"1\n" * 100_000)
        writer.flush()
        wait_for(lambda: busy(local, "query LIKE 'COPY t FROM stdin%'"), "the COPY to start")
        code, err = interrupted(process)
    assert code == 130 and err.startswith("error: interrupted"), err
    assert relation(local, "t") is None


def big_seed(path, rows: int) -> None:
    with path.open("w") as out:
        out.write("CREATE TABLE t (id int, name text);\n")
        out.writelines(f"INSERT INTO t VALUES ({i}, 'a name that pads the line out');\n" for i in range(rows))


def test_progress_bar_on_a_terminal_for_a_big_file(local, project):
    local.create()
    big_seed(project / "big.sql", 90_000)
    code, screen = in_terminal(["db-seed", "--file", str(project / "big.sql")], None, {})
    assert code == 0, screen
    assert "big.sql" in screen and "statements" in screen and "MB" in screen  # rich's bar: bytes, count, rate
    assert "loaded " in screen and ": 90001 statements" in screen


def test_no_progress_bar_without_a_terminal_or_for_a_small_file(local, project):
    local.create()
    big_seed(project / "big.sql", 90_000)
    run = script("db-seed", "--file", str(project / "big.sql"))
    assert run.code == 0 and run.err == "", run.all
    (project / "small.sql").write_text("SELECT 1;\n")
    code, screen = in_terminal(["db-seed", "--file", str(project / "small.sql")], None, {})
    assert code == 0 and "MB" not in screen and "━" not in screen, screen


# A file that turns standard_conforming_strings off: '\'' is a quote inside a string and '\\' one
# backslash, as psql reads it, until the file turns it back on.
STRINGS_OFF = r"""
SET standard_conforming_strings = off;
CREATE TABLE quoted (id int PRIMARY KEY, s text DEFAULT 'tab\there' CHECK (s <> 'back\\slash'), t text);
COMMENT ON TABLE quoted IS 'it\'s a \\ comment';
CREATE VIEW quoted_view AS SELECT 'v\\w' AS v, s FROM quoted;
INSERT INTO quoted (id, t) VALUES (1, 'one\'s; two');
INSERT INTO quoted (id, s, t) VALUES (2, 'x\\y', E'e\\z');
SET standard_conforming_strings = on;
INSERT INTO quoted (id, s, t) VALUES (3, 'a\b', 'c\\d');
"""


def psql_load(server, dbname: str, path) -> None:
    subprocess.run(
        [
            str(server.cluster.bindir / "psql"),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-1",
            "-f",
            str(path),
            "-d",
            server.url(dbname, password=""),
        ],
        capture_output=True,
        check=True,
        env={**os.environ, "PGPASSWORD": server.password},
    )


def loads_as_psql_loads(server, project, name: str, *target: str) -> None:
    """Load ``name`` with psql into a database of its own and with dbtool into the target: same dump."""
    server.reset("by_psql")
    server.create("by_psql")
    psql_load(server, "by_psql", project / name)
    server.create()
    run = dbtool("schema-load", *target, "--file", name)
    assert run.code == 0, run.all
    assert server.dump() == server.dump("by_psql")
    server.reset("by_psql")


def test_standard_conforming_strings_off_loads_what_psql_loads(local, project):
    (project / "off.sql").write_text(STRINGS_OFF)
    loads_as_psql_loads(local, project, "off.sql")
    with psycopg.connect(local.url()) as conn:
        rows = conn.execute("SELECT id, s, t FROM quoted ORDER BY id").fetchall()
        comment = conn.execute("SELECT obj_description('quoted'::regclass)").fetchone()[0]
    assert rows == [(1, "tab\there", "one's; two"), (2, "x\\y", "e\\z"), (3, "a\\b", "c\\\\d")]
    assert comment == "it's a \\ comment"


def test_a_dump_of_a_database_with_standard_conforming_strings_off(local, project):
    local.reset("source")
    local.create("source")
    with psycopg.connect(local.url("source"), autocommit=True) as conn:
        conn.execute("ALTER DATABASE source SET standard_conforming_strings = off")
    with psycopg.connect(local.url("source"), autocommit=True) as conn:
        conn.execute(STRINGS_OFF.replace("SET standard_conforming_strings = on;", ""))
    (project / "dump.sql").write_text(pg_dump(local, "source"))
    loads_as_psql_loads(local, project, "dump.sql")
    assert table_contents(local.url()) == table_contents(local.url("source"))
    local.reset("source")


# -- statements of megabytes ------------------------------------------------------------------------


PEAK = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True);"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)"
)


def peak_memory(*command: str) -> int:
    """The peak resident memory, in bytes, of a command run alone in a fresh process."""
    return int(
        subprocess.run([sys.executable, "-c", PEAK, *command], capture_output=True, text=True, check=True).stdout
    )


def test_peak_memory_is_twice_a_large_insert_and_three_times_a_large_value(local, project):
    local.create()
    dbtool_binary = str(Path(sys.executable).parent / "dbtool")
    small = project / "small.sql"
    small.write_text("CREATE TABLE small (n int);\n")
    rows = project / "rows.sql"  # one INSERT of 40 MB: 400,000 rows of constants
    rows.write_text(
        "CREATE TABLE big (n int, s text);\nINSERT INTO big VALUES\n"
        + ",\n".join(f"({n}, 'row {n} {'x' * 80}')" for n in range(400_000))
        + ";\n"
    )
    value = project / "value.sql"  # one value of 40 MB
    value.write_text("CREATE TABLE one (s text);\nINSERT INTO one VALUES ('" + "abcdefghij" * 4_000_000 + "');\n")
    baseline = peak_memory(dbtool_binary, "schema-load", "--file", str(small))
    for path in (rows, value):
        size = path.stat().st_size
        used = peak_memory(dbtool_binary, "schema-load", "--file", str(path)) - baseline
        # An INSERT of many rows goes in parts of a megabyte: about 2x (the file's statement, read whole, and
        # its copy handed out). One value of 40 MB cannot be cut, and libpq holds a query it sends twice (its
        # send buffer and its copy of the text): 3x with dbtool's own (psql takes 5.8x).
        assert used < (2.5 if path == rows else 3.1) * size, (path.name, used / size)
    with psycopg.connect(local.url()) as conn:
        assert conn.execute("SELECT count(*), sum(n) FROM big").fetchone() == (400_000, sum(range(400_000)))
        assert conn.execute("SELECT length(s) FROM one").fetchone() == (40_000_000,)


def test_an_insert_of_megabytes_goes_in_parts_only_when_that_is_the_same(local, project):
    local.create()
    rows = ",\n".join(f"({n}, 'row {n} {'x' * 80}')" for n in range(120_000))
    (project / "parts.sql").write_text(
        "CREATE TABLE t (n int PRIMARY KEY, s text);\nCREATE TABLE fired (rows_seen bigint);\n"
        "CREATE FUNCTION count_rows() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        "BEGIN INSERT INTO fired SELECT count(*) FROM fresh; RETURN NULL; END $$;\n"
        "CREATE TRIGGER t_rows AFTER INSERT ON t REFERENCING NEW TABLE AS fresh FOR EACH STATEMENT "
        "EXECUTE FUNCTION count_rows();\n"
        f"INSERT INTO t VALUES\n{rows};\n"
    )
    assert (project / "parts.sql").stat().st_size > 8 << 20
    assert dbtool("schema-load", "--file", "parts.sql").code == 0
    with psycopg.connect(local.url()) as conn:  # sent whole: the statement trigger saw every row at once
        assert conn.execute("SELECT array_agg(rows_seen) FROM fired").fetchone() == ([120_000],)
    local.reset()
    local.create()
    bad = rows.replace("(110000, 'row", "('12x', 'row")
    (project / "bad.sql").write_text(f"CREATE TABLE t (n int PRIMARY KEY, s text);\nINSERT INTO t VALUES\n{bad};\n")
    line = error_line(dbtool("schema-load", "--file", "bad.sql"))  # in a later part, named where it stands
    assert line.startswith('error: bad.sql:110003:2: invalid input syntax for type integer: "12x"'), line
