"""The application API (`dbtool.connect`, `dbtool.pool`, the Db helpers, `sql_template`) on a real server."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg_pool import PoolTimeout

import dbtool
from tests.conftest import DBNAME, IAM_USER, LOCAL_PASSWORD, LOCAL_USER, Server
from tests.helpers import REPO, script
from tests.helpers import dbtool as cli
from tests.targets.test_prod_credentials import iam  # noqa: F401  (a fixture)

HOME = """
SELECT activities.uuid, users.handle, activities.message, activities.created_at, activities.likes_count
FROM public.activities
JOIN public.users ON users.uuid = activities.user_uuid
WHERE %(handle)s::text IS NULL OR users.handle = %(handle)s
ORDER BY users.handle;  -- trailing comment, after the semicolon
"""


@pytest.fixture
def seeded(local: Server) -> Server:
    """The local target with the Cruddur schema and seed loaded by the CLI."""
    assert cli("setup").code == 0
    return local


@pytest.fixture
def db(seeded: Server) -> Iterator[dbtool.Db]:
    with dbtool.pool() as opened:
        yield opened


def pool_threads() -> list[str]:
    return [thread.name for thread in threading.enumerate() if thread.name.startswith("dbtool-")]


def test_query_array_json_returns_server_json_as_dicts(db):
    rows = db.query_array_json(HOME, {"handle": None})
    assert [row["handle"] for row in rows] == ["andrewbrown", "bayko", "londo"]
    first = rows[0]
    assert set(first) == {"uuid", "handle", "message", "created_at", "likes_count"}
    assert uuid.UUID(first["uuid"])  # JSON forms, as the frontend got them from row_to_json
    assert isinstance(first["created_at"], str) and first["created_at"][10] == "T"
    assert first["likes_count"] == 0
    assert db.query_array_json(HOME, {"handle": "nobody"}) == []


def test_query_object_json_one_row_or_none(db):
    row = db.query_object_json(HOME, {"handle": "londo"})
    assert row is not None and row["message"] == "Who do you serve, and who do you trust?"
    assert db.query_object_json(HOME, {"handle": "nobody"}) is None
    assert db.query_object_json("SELECT handle FROM users ORDER BY handle")["handle"] == "andrewbrown"  # first row


def test_query_value_value_null_or_none(db):
    assert db.query_value("SELECT count(*) FROM users;") == 3
    assert db.query_value("SELECT handle FROM users WHERE handle = %(h)s", {"h": "bayko"}) == "bayko"
    assert db.query_value("SELECT NULL::text") is None
    assert db.query_value("SELECT handle FROM users WHERE false") is None


def test_query_commit_returns_returning_and_commits(db, seeded):
    new = db.query_commit(
        "INSERT INTO users (display_name, handle, email, cognito_user_id) "
        "VALUES (%(name)s, %(handle)s, 'g@example.com', 'MOCK') RETURNING uuid;",
        {"name": "G'Kar", "handle": "gkar"},
    )
    assert isinstance(new, uuid.UUID)
    with psycopg.connect(seeded.url()) as other:  # committed: another session sees it
        assert other.execute("SELECT uuid FROM users WHERE handle = 'gkar'").fetchone() == (new,)


def test_query_commit_without_rows_returns_none_whatever_the_text_says(db, seeded):
    # The word RETURNING inside a string made the old regex fetch from a statement with no rows.
    assert db.query_commit("UPDATE users SET display_name = 'RETURNING soon' WHERE handle = 'londo'") is None
    assert db.query_commit("DELETE FROM activities WHERE false RETURNING uuid") is None  # returns rows: none
    with psycopg.connect(seeded.url()) as other:
        assert other.execute("SELECT display_name FROM users WHERE handle = 'londo'").fetchone() == ("RETURNING soon",)


def test_constraint_violations_keep_sqlstate_message_and_detail(db, seeded):
    before = seeded.dump()
    with pytest.raises(psycopg.errors.UniqueViolation) as duplicate:
        db.query_commit(
            "INSERT INTO users (display_name, handle, email, cognito_user_id) VALUES ('X', 'bayko', 'x', 'MOCK')"
        )
    assert duplicate.value.sqlstate == "23505"
    assert duplicate.value.diag.message_primary.startswith("duplicate key value violates unique constraint")
    assert duplicate.value.diag.message_detail == "Key (handle)=(bayko) already exists."
    with pytest.raises(psycopg.errors.NotNullViolation) as missing:  # the old error printer crashed on this one
        db.query_commit("INSERT INTO users (handle) VALUES ('nameless') RETURNING uuid")
    assert missing.value.sqlstate == "23502" and missing.value.diag.column_name == "display_name"
    with pytest.raises(psycopg.errors.InvalidParameterValue) as raised:
        db.query_commit(
            "DO $$ BEGIN RAISE EXCEPTION 'handle too short' USING ERRCODE = '22023', "
            "DETAIL = 'at least 3 characters', HINT = 'pick a longer handle'; END $$"
        )
    assert (raised.value.diag.message_detail, raised.value.diag.message_hint) == (
        "at least 3 characters",
        "pick a longer handle",
    )
    assert seeded.dump() == before  # nothing was half-done
    assert db.query_value("SELECT 1") == 1  # and the pool's connection is still usable


def test_json_helpers_want_exactly_one_statement(db):
    with pytest.raises(dbtool.QueryShapeError, match=r"expected exactly one SQL statement, found 2"):
        db.query_array_json("SELECT 1; SELECT 2")
    with pytest.raises(dbtool.QueryShapeError, match=r"found 0"):
        db.query_object_json("  -- nothing\n")
    assert db.query_array_json("SELECT 1 AS one -- no newline after this comment") == [{"one": 1}]


def test_pool_exhaustion_times_out(seeded):
    with dbtool.pool(min_size=1, max_size=1, timeout=0.5) as db, db.connection():
        started = time.monotonic()
        with pytest.raises(PoolTimeout):
            db.query_value("SELECT 1")
        assert 0.4 < time.monotonic() - started < 5


def test_a_pool_must_be_opened_and_closes_cleanly(seeded):
    db = dbtool.pool(max_size=2)
    with pytest.raises(dbtool.PoolNotOpen) as closed:
        db.query_value("SELECT 1")
    assert str(closed.value) == (
        f"the pool for {db.target.display} is not open (use 'with dbtool.pool() as db:', or call db.open() first)"
    )
    db.open()
    assert db.query_value("SELECT current_user") == LOCAL_USER
    assert pool_threads()
    db.close()
    db.close()  # twice is fine
    assert pool_threads() == []
    with pytest.raises(dbtool.PoolNotOpen):
        db.query_value("SELECT 1")
    with db:  # and it opens again
        assert db.query_value("SELECT 2") == 2
    assert pool_threads() == []


def test_opening_against_a_broken_target_raises_the_cli_error(local, monkeypatch):
    monkeypatch.setenv("CONNECTION_URL", local.url(password="wrong"))
    db = dbtool.pool()
    with pytest.raises(dbtool.AuthenticationFailed) as refused:
        db.open()
    assert str(refused.value).startswith(f"authentication failed for {LOCAL_USER}@127.0.0.1:")
    assert "wrong" not in str(refused.value)
    assert pool_threads() == []  # its workers were stopped, not left retrying


def test_connect_gives_a_plain_connection(seeded):
    with dbtool.connect() as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (3,)
        assert not conn.autocommit


SESSIONS = "SELECT sessions, sessions_abandoned FROM pg_stat_database WHERE datname = current_database()"


@pytest.mark.parametrize("closes", [True, False], ids=["closed", "left-open"])
def test_exit_ends_every_session_cleanly_and_quietly(seeded, closes):
    """A pool left open (the old lib/db.py) dropped its connections at exit: the server counted them abandoned.

    Garbage collection at exit often closes a forgotten pool, but not while something still holds it,
    here a background job's thread; the pool must close itself before that.
    """
    program = (
        "import threading, time\n"
        "import dbtool\n"
        "db = dbtool.pool(min_size=4).open()\n"
        "def job(db=db):\n"
        "    while True:\n"
        "        time.sleep(60)\n"
        "threading.Thread(target=job, daemon=True).start()\n"
        "print(db.query_value('SELECT count(*) FROM users'))\n" + ("db.close()\n" if closes else "")
    )
    with seeded.admin(DBNAME) as watcher:
        sessions, abandoned = watcher.execute(SESSIONS).fetchone()
        started = time.monotonic()
        run = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
        assert (run.returncode, run.stdout, run.stderr) == (0, "3\n", "")
        assert time.monotonic() - started < 5
        deadline = time.monotonic() + 10
        while (now := watcher.execute(SESSIONS).fetchone())[0] < sessions + 4:  # the four have ended
            assert time.monotonic() < deadline, now
            time.sleep(0.05)
        assert now[1] == abandoned  # each said goodbye to the server


def test_importing_loads_neither_click_nor_aws(seeded):
    program = (
        "import sys, dbtool\n"
        "with dbtool.pool() as db:\n"
        "    assert db.query_value('SELECT 1') == 1\n"
        "print(sorted(name for name in ('click', 'boto3', 'botocore', 'rich') if name in sys.modules))\n"
    )
    run = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert (run.stdout, run.stderr) == ("[]\n", "")


def test_cli_and_library_pick_the_same_server(local, project, monkeypatch):
    """Same environment (URL only in .env, plus PG variables libpq reads) → the same server, database and user."""
    local.create()
    monkeypatch.delenv("CONNECTION_URL")
    (project / ".env").write_text(f"CONNECTION_URL='{local.url()}'\n")
    monkeypatch.setenv("DBTOOL_PROJECT_ROOT", str(project))
    monkeypatch.setenv("PGAPPNAME", "ignored-because-dbtool-sets-application_name")
    probe = "SELECT current_setting('port') || ' ' || current_database() || ' ' || current_user"
    via_cli = script("db-connect", "-At", "-c", probe)
    assert via_cli.code == 0, via_cli.err
    with dbtool.connect() as conn:
        via_library = conn.execute(probe).fetchone()[0]
    with dbtool.pool() as db:
        via_pool = db.query_value(probe)
    assert via_cli.out.strip() == via_library == via_pool == f"{local.cluster.port} {DBNAME} {LOCAL_USER}"


def test_an_iam_pool_gets_a_fresh_token_per_connection(iam, iam_verifier):  # noqa: F811
    with dbtool.pool("prod", min_size=1, max_size=2) as db, db.connection() as first:
        time.sleep(1.1)  # tokens are signed to the second: a later connection must carry a later token
        with db.connection() as second:  # the pool has to open a new connection for this one
            users = {conn.execute("SELECT current_user").fetchone()[0] for conn in (first, second)}
    assert users == {IAM_USER}
    assert len(iam_verifier.tokens) == 2 and len(set(iam_verifier.tokens)) == 2
    assert iam_verifier.refusals == []


def test_statements_are_logged_without_parameter_values(db, caplog):
    with caplog.at_level(logging.DEBUG, logger="dbtool.sql"):
        db.query_value("SELECT handle FROM users WHERE email = %(email)s", {"email": "andrew@exampro.co"})
    [record] = caplog.records
    assert record.getMessage().startswith("SELECT handle FROM users WHERE email = %(email)s (")
    assert record.getMessage().endswith(" ms) params: email")
    assert "andrew@exampro.co" not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="dbtool.sql"):
        db.query_value("SELECT 1")
    assert caplog.records == []


def test_parameter_values_are_logged_only_when_asked(seeded, caplog):
    with dbtool.pool(log_parameters=True) as db, caplog.at_level(logging.DEBUG, logger="dbtool.sql"):
        db.query_value("SELECT %s::text", ["visible"])
    assert "params=['visible']" in caplog.text


def test_a_failed_statement_is_logged_too(db, caplog):
    with caplog.at_level(logging.DEBUG, logger="dbtool.sql"), pytest.raises(psycopg.errors.UndefinedTable):
        db.query_value("SELECT * FROM missing_table")
    assert "SELECT * FROM missing_table (" in caplog.text


# -- SQL templates ---------------------------------------------------------------------------------


@pytest.fixture
def templates(project: Path) -> Path:
    directory = project / "db" / "sql" / "activities"
    directory.mkdir(parents=True)
    (directory / "home.sql").write_text(HOME)
    return project / "db" / "sql"


def test_sql_template_reads_from_the_project_and_runs(templates, db):
    assert dbtool.sql_template("activities", "home") == HOME
    assert dbtool.sql_template("activities", "home.sql") == HOME
    rows = db.query_array_json(dbtool.sql_template("activities", "home"), {"handle": "bayko"})
    assert [row["handle"] for row in rows] == ["bayko"]


def test_sql_template_from_a_subdirectory_and_after_an_edit(templates, project, monkeypatch):
    monkeypatch.chdir(templates / "activities")  # the project is found by walking up, as the CLI does
    path = templates / "activities" / "home.sql"
    assert dbtool.sql_template("activities", "home") == HOME
    path.write_text("SELECT 'edited'")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000_000))
    assert dbtool.sql_template("activities", "home") == "SELECT 'edited'"


def test_sql_template_is_read_once_while_unchanged(templates):
    loader = dbtool.SqlTemplates(templates)
    path = templates / "activities" / "home.sql"
    assert loader("activities", "home") == HOME
    stat = path.stat()
    path.write_text(HOME.upper()[: len(HOME)])  # same size; mtime put back: only a re-read would see it
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert loader("activities", "home") == HOME


def test_a_missing_template_says_where_it_looked(templates):
    with pytest.raises(dbtool.TemplateMissing) as missing:
        dbtool.sql_template("activities", "show")
    assert str(missing.value) == (
        f"SQL template activities/show not found: {templates / 'activities' / 'show.sql'} does not exist "
        f"(templates are read from {templates} (set DBTOOL_SQL_DIR to use another directory))"
    )


def test_template_names_cannot_leave_the_directory(templates, project):
    (project / "secret.sql").write_text("SELECT 'secret'")
    for parts in (("..", "..", "secret"), ("/etc", "passwd"), ()):
        with pytest.raises(dbtool.TemplateMissing):
            dbtool.sql_template(*parts)


def test_sql_dir_variable_moves_the_templates(project, monkeypatch):
    (project / "queries").mkdir()
    (project / "queries" / "one.sql").write_text("SELECT 1")
    (project / ".env").write_text("DBTOOL_SQL_DIR=queries\n")
    assert dbtool.sql_template("one") == "SELECT 1"


# -- The README's Flask example, run as written ----------------------------------------------------


def test_readme_flask_example_serves_json(seeded, templates, monkeypatch, tmp_path):
    readme = (REPO / "README.md").read_text()
    example = readme.split("```python\n# app.py")[1].split("```")[0]
    (tmp_path / "readme_app.py").write_text("# app.py" + example)
    monkeypatch.syspath_prepend(str(tmp_path))
    import readme_app

    try:
        client = readme_app.create_app().test_client()
        response = client.get("/api/activities/home")
        assert response.status_code == 200
        assert [row["handle"] for row in response.get_json()] == ["andrewbrown", "bayko", "londo"]
        missing = client.get("/api/profile/nobody")
        assert missing.status_code == 404
        assert client.get("/api/profile/londo").get_json()["handle"] == "londo"
    finally:
        readme_app.db.close()
        sys.modules.pop("readme_app", None)
    assert LOCAL_PASSWORD not in readme
