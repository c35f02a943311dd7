"""dbtool.toml's extensions, `dbtool extensions`, `dbtool up` and setup's extensions step, on real servers.

The Debian PostgreSQL ships citext 1.4 to 1.6, hstore 1.4 to 1.8, pgcrypto 1.3, and earthdistance, which is
untrusted and requires cube.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from dbtool.local.cluster import Cluster, find_bindir, free_port, service_user
from tests.conftest import DBNAME, LOCAL_PASSWORD, LOCAL_USER, Server
from tests.helpers import dbtool, error_line

APP_USER, APP_PASSWORD = "app_owner", "app-Secret-7"


def declare(project: Path, text: str) -> None:
    (project / "dbtool.toml").write_text(textwrap.dedent(text))


def installed(server: Server) -> dict[str, str]:
    with psycopg.connect(server.url()) as conn:
        return dict(conn.execute("SELECT extname, extversion FROM pg_extension WHERE extname <> 'plpgsql'").fetchall())


def step_lines(out: str) -> list[list[str]]:
    return [line.split()[:2] for line in out.splitlines() if line.startswith("  ")]


@pytest.fixture
def db(local: Server) -> Server:
    local.create()
    return local


@pytest.fixture
def plain(db: Server, project: Path) -> Server:
    """The database, and a schema that installs no extension of its own (the Cruddur one installs uuid-ossp)."""
    (project / "db" / "schema.sql").write_text("CREATE TABLE things (id int PRIMARY KEY);\n")
    return db


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[extensions\n", "dbtool.toml is not valid TOML: "),
        (
            "[extension]\ncitext = '1.6'\n",
            "dbtool.toml: unknown section or key 'extension' (dbtool.toml knows [extensions], [migrations], [targets])",
        ),
        ("[extensions]\ncitext = 1.6\n", "dbtool.toml: extensions.citext must be a version string, not 1.6"),
        ("[extensions]\ncitext = ''\n", "dbtool.toml: extensions.citext must be a version string, not ''"),
        ("[extensions]\n'Bad Name' = '1'\n", "dbtool.toml: extensions.Bad Name is not an extension name"),
        ("extensions = 3\n", "dbtool.toml: extensions must be a table"),
    ],
)
def test_a_malformed_dbtool_toml_is_one_line_naming_file_and_key(plain, project, text, expected):
    (project / "dbtool.toml").write_text(text)
    line = error_line(dbtool("up"))
    assert line.startswith(f"error: {project / 'dbtool.toml'}"), line
    assert expected.removeprefix("dbtool.toml") in line
    assert installed(plain) == {}


def test_up_installs_pinned_versions_then_updates_when_the_pin_moves(plain, project):
    declare(project, '[extensions]\ncitext = "1.4"\nhstore = "1.4"\n')
    run = dbtool("up")
    assert run.code == 0, run.all
    assert installed(plain) == {"citext": "1.4", "hstore": "1.4"}  # not the defaults, 1.6 and 1.8
    assert "  extensions   ok" in run.out and "create citext 1.4; create hstore 1.4" in run.out
    check = dbtool("extensions", "--check")
    assert check.code == 0, check.all
    assert [line.split()[:4] for line in check.out.splitlines()[1:3]] == [
        ["citext", "1.4", "1.4", "ok"],
        ["hstore", "1.4", "1.4", "ok"],
    ]
    declare(project, '[extensions]\ncitext = "1.6"\nhstore = "1.4"\n')
    assert dbtool("extensions", "--check").code == 1
    run = dbtool("up")
    assert run.code == 0, run.all
    assert "update citext 1.4 → 1.6" in run.out
    assert installed(plain) == {"citext": "1.6", "hstore": "1.4"}
    listed = json.loads(dbtool("extensions", "--json").out)
    assert listed[0] == {
        "name": "citext",
        "declared": "1.6",
        "installed": "1.6",
        "available": ["1.4", "1.5", "1.6"],
        "state": "ok",
    }


def test_never_a_downgrade_and_never_an_unavailable_version(plain, project):
    declare(project, '[extensions]\ncitext = "1.6"\n')
    assert dbtool("up").code == 0
    declare(project, '[extensions]\ncitext = "1.5"\n')
    assert error_line(dbtool("up")) == (
        "error: extension citext is installed at 1.6 and dbtool.toml pins 1.5: dbtool never downgrades "
        "(pin 1.6 (or newer) in dbtool.toml; a downgrade is a decision to make by hand)"
    )
    declare(project, '[extensions]\nhstore = "1.8"\ncitext = "9.9"\n')
    assert error_line(dbtool("up")) == (
        "error: extension citext 9.9 is not available on this server (available: 1.4, 1.5, 1.6) "
        "(pin one of those in dbtool.toml)"
    )
    declare(project, '[extensions]\nno_such_thing = "1.0"\n')
    assert error_line(dbtool("up")).startswith("error: extension no_such_thing is not available on this server")
    assert installed(plain) == {"citext": "1.6"}  # hstore was checked out with citext: nothing of those runs


@pytest.fixture
def as_app_owner(plain: Server, monkeypatch: pytest.MonkeyPatch) -> Server:
    """The local target as a role that owns the database but is not a superuser (an RDS master user's lot)."""
    with plain.admin() as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(APP_USER)))
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(APP_USER), sql.Literal(APP_PASSWORD))
        )
        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(DBNAME), sql.Identifier(APP_USER)))
    monkeypatch.setenv("CONNECTION_URL", plain.url(user=APP_USER, password=APP_PASSWORD))
    yield plain
    plain.reset()
    with plain.admin() as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(APP_USER)))


def test_an_untrusted_extension_as_a_non_superuser_installs_nothing(as_app_owner, project):
    declare(project, '[extensions]\ncitext = "1.6"\nearthdistance = "1.1"\n')
    assert error_line(dbtool("up")) == (
        f"error: extension earthdistance is not trusted: only a superuser may create it, and {APP_USER} is not one "
        "(have a superuser create it, or connect as one)"
    )
    assert installed(as_app_owner) == {}  # citext, trusted and first, was not created either
    declare(project, '[extensions]\ncitext = "1.6"\n')
    assert dbtool("up").code == 0 and installed(as_app_owner) == {"citext": "1.6"}


def test_a_failure_during_the_ddl_leaves_no_extension_of_the_run(plain, project):
    with psycopg.connect(plain.url(), autocommit=True) as conn:
        conn.execute("CREATE TYPE hstore AS (x int)")  # CREATE EXTENSION hstore will collide with it
    declare(project, '[extensions]\ncitext = "1.6"\nhstore = "1.8"\n')
    line = error_line(dbtool("up"))
    assert line == (
        'error: cannot create hstore 1.8: type "hstore" already exists (no extension of this run was installed)'
    )
    assert installed(plain) == {}


def test_cascade_and_undeclared_extensions_are_reported(plain, project):
    with psycopg.connect(plain.url(), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION pgcrypto")
    declare(project, '[extensions]\nearthdistance = "1.1"\n')
    run = dbtool("up")
    assert run.code == 0, run.all
    assert "create earthdistance 1.1; CASCADE brought in cube 1.5; not declared, left alone: pgcrypto 1.3" in run.out
    assert installed(plain) == {"cube": "1.5", "earthdistance": "1.1", "pgcrypto": "1.3"}
    listed = dbtool("extensions")
    assert [line.split()[:4] for line in listed.out.splitlines()[1:]] == [
        ["earthdistance", "1.1", "1.1", "ok"],
        ["cube", "-", "1.5", "undeclared"],
        ["pgcrypto", "-", "1.3", "undeclared"],
    ]


def test_up_twice_changes_nothing_the_second_time(local, project):
    (project / "db" / "migrations").mkdir()
    (project / "db" / "migrations" / "20260101000000_bio.sql").write_text(
        "-- migrate:up\nALTER TABLE users ADD COLUMN bio text;\n-- migrate:down\nALTER TABLE users DROP COLUMN bio;\n"
    )
    declare(project, '[extensions]\ncitext = "1.6"\n')
    first = dbtool("up", "--seed")
    assert first.code == 0, first.all
    assert step_lines(first.out) == [
        ["create", "ok"],
        ["extensions", "ok"],
        ["schema-load", "ok"],
        ["migrate", "ok"],
        ["seed", "ok"],
    ]
    assert "applied 1 of 1" in first.out and "seed.sql: 2 statements" in first.out
    with psycopg.connect(local.url(), autocommit=True) as conn:
        conn.execute("UPDATE users SET bio = 'kept' WHERE handle = 'andrewbrown'")
    second = dbtool("up", "--seed")
    assert second.code == 0, second.all
    assert second.out == f"{LOCAL_USER}@127.0.0.1:{local.cluster.port}/{DBNAME} is up to date: nothing to do\n"
    with psycopg.connect(local.url()) as conn:
        assert conn.execute("SELECT bio FROM users WHERE handle = 'andrewbrown'").fetchone() == ("kept",)
        assert conn.execute("SELECT count(*) FROM activities").fetchone() == (3,)  # not seeded twice


def test_up_on_an_existing_empty_database_loads_the_schema(db, project):
    run = dbtool("up")
    assert run.code == 0, run.all
    assert "  create       ok" in run.out and "exists" in run.out
    assert "schema.sql:" in run.out
    with psycopg.connect(db.url()) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (0,)  # no --seed: no seed
    with psycopg.connect(db.url(), autocommit=True) as conn:
        conn.execute("DROP TABLE activities")  # a database that is not new is never loaded again
    assert dbtool("up").out.endswith("is up to date: nothing to do\n")


def test_up_on_prod_asks_and_lists_what_it_would_do(prod, project):
    declare(project, '[extensions]\ncitext = "1.6"\n')
    refused = dbtool("up", "prod")
    assert error_line_last(refused).startswith("error: refusing to change PRODUCTION ")
    assert refused.err.splitlines()[:3] == [
        "  create database cruddur",
        "  create extension citext 1.6",
        "  load db/schema.sql",
    ]
    assert not prod.exists()
    assert dbtool("up", "prod", "--yes").code == 0
    assert dbtool("up", "prod").out.endswith("is up to date: nothing to do\n")  # nothing to do: nothing to ask


def error_line_last(run) -> str:
    lines = [line for line in run.err.splitlines() if line.strip()]
    assert run.code == 1 and "Traceback" not in run.all, run.all
    return lines[-1]


def test_setup_reconciles_extensions_after_create_before_the_schema(local, project):
    declare(project, '[extensions]\ncitext = "1.5"\n')
    (project / "db" / "schema.sql").write_text(
        (project / "db" / "schema.sql").read_text() + "\nCREATE TABLE tags (name citext PRIMARY KEY);\n"
    )
    run = dbtool("setup")
    assert run.code == 0, run.all
    steps = [name for name, _ in step_lines(run.out)]
    assert steps == ["aside", "create", "extensions", "schema-load", "seed", "drop-old", "template"]
    assert installed(local) == {"citext": "1.5", "uuid-ossp": "1.1"}  # the schema's own, undeclared


def test_up_through_the_data_api(data_api, project):
    declare(project, '[extensions]\ncitext = "1.4"\n')
    run = dbtool("up", "prod", "--yes", "--seed")
    assert run.code == 0, run.all
    assert installed(data_api.db) == {"citext": "1.4", "uuid-ossp": "1.1"}
    declare(project, '[extensions]\ncitext = "1.6"\n')
    assert "update citext 1.4 → 1.6" in dbtool("up", "prod", "--yes").out
    assert dbtool("extensions", "prod", "--check").code == 0
    assert dbtool("up", "prod").out == "cruddur-aurora/cruddur (RDS Data API) is up to date: nothing to do\n"


@pytest.fixture(scope="module")
def rds_like(workdir: Path) -> Iterator[Server]:
    """A server with rds.allowed_extensions set, as RDS's parameter group sets it."""
    cluster = Cluster(workdir / "rds-like", free_port(), find_bindir(), service_user())
    cluster.init(
        LOCAL_USER,
        LOCAL_PASSWORD,
        settings={"fsync": "off", "rds.allowed_extensions": "citext,pgcrypto"},
        hba=("host all all 127.0.0.1/32 scram-sha-256",),
    )
    cluster.start()
    yield Server(cluster, LOCAL_USER, LOCAL_PASSWORD, ssl=False)
    cluster.stop()


def test_rds_allowed_extensions_is_checked_before_any_ddl(rds_like, project, monkeypatch):
    rds_like.reset()
    rds_like.create()
    monkeypatch.setenv("CONNECTION_URL", rds_like.url())
    declare(project, '[extensions]\ncitext = "1.6"\nhstore = "1.8"\n')
    assert error_line(dbtool("up")) == (
        "error: extension hstore is not in rds.allowed_extensions (citext,pgcrypto) "
        "(add it to rds.allowed_extensions in the DB parameter group, then reboot if needed)"
    )
    assert installed(rds_like) == {}
    declare(project, '[extensions]\ncitext = "1.6"\n')
    assert dbtool("up").code == 0 and installed(rds_like) == {"citext": "1.6", "uuid-ossp": "1.1"}
