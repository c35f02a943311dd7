"""Migrations on a live database (issue 23, part 1): every migration statement runs under a short lock_timeout, and
a migration that times out waiting for a lock is rolled back and retried with jittered backoff, bounded."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from tests.conftest import Server
from tests.helpers import dbtool, error_line
from tests.migrations.test_migrations import V1, applied, rows
from tests.migrations.test_migrations import write as migration

ADD_BIO = "ALTER TABLE busy ADD COLUMN bio text;"


@pytest.fixture(autouse=True)
def scripts_use_the_project(project, monkeypatch):
    monkeypatch.setenv("DBTOOL_PROJECT_ROOT", str(project))


@contextmanager
def holding(server: Server, statement: str, seconds: float | None) -> Iterator[None]:
    """A session that runs ``statement`` in a transaction and ends it after ``seconds`` (None: when the block
    ends)."""
    conn = psycopg.connect(server.url())
    conn.execute(statement)
    timer = threading.Timer(seconds, conn.rollback) if seconds is not None else None
    if timer is not None:
        timer.start()
    try:
        yield
    finally:
        if timer is not None:
            timer.join()
        conn.close()


def long_transaction(server: Server, seconds: float | None) -> Any:
    """A reader of ``busy`` in a transaction: it holds ACCESS SHARE, which ALTER TABLE must wait for."""
    return holding(server, "SELECT count(*) FROM busy", seconds)


@pytest.fixture
def busy(local: Server) -> Server:
    local.create()
    with psycopg.connect(local.url()) as conn:
        conn.execute("CREATE TABLE busy (id int PRIMARY KEY)")
    return local


def retries(run) -> list[str]:
    return [line for line in run.err.splitlines() if line.startswith("lock timeout ")]


def test_a_migration_behind_a_long_transaction_times_out_retries_and_applies(busy, project):
    migration(project, V1, "bio", ADD_BIO)
    with long_transaction(busy, 2.0):
        started = time.monotonic()
        run = dbtool("migrate", "--lock-timeout", "0.3", "--lock-retries", "10")
    assert run.code == 0, run.all
    assert applied(busy) == [V1]
    lines = retries(run)
    assert lines and all(f"db/migrations/{V1}_bio.sql:2:1" in line for line in lines), run.err
    assert lines[0].startswith("lock timeout after 0.3 s at ") and "retry 1 of 10 in " in lines[0]
    assert time.monotonic() - started < 15


def test_retries_are_bounded_and_nothing_is_applied(busy, project):
    migration(project, V1, "bio", ADD_BIO)
    with long_transaction(busy, None):
        run = dbtool("migrate", "--lock-timeout", "0.2", "--lock-retries", "2")
    assert run.code == 1
    assert len(retries(run)) == 2, run.err
    line = error_line_of(run)
    assert line.startswith(f"error: db/migrations/{V1}_bio.sql:2:1: canceling statement due to lock timeout")
    assert "gave up after 3 attempts" in line
    assert applied(busy) == []
    assert rows(busy, "SELECT count(*) FROM information_schema.columns WHERE column_name = 'bio'") == [(0,)]


def error_line_of(run) -> str:
    return [line for line in run.err.splitlines() if line.startswith("error: ")][-1]


def test_without_a_lock_timeout_a_local_migration_waits_as_before(busy, project):
    migration(project, V1, "bio", ADD_BIO)
    with long_transaction(busy, 1.0):
        run = dbtool("migrate")
    assert run.code == 0 and retries(run) == [], run.all


def test_protected_targets_get_a_two_second_lock_timeout(prod, project):
    prod.create()
    with psycopg.connect(prod.url()) as conn:
        conn.execute("CREATE TABLE busy (id int PRIMARY KEY)")
    (project / "dbtool.toml").write_text("[migrations]\nlock_retries = 0\n")
    migration(project, V1, "bio", ADD_BIO)
    with long_transaction(prod, None):
        run = dbtool("migrate", "prod", "--yes")
    assert run.code == 1
    assert "canceling statement due to lock timeout" in error_line_of(run)
    assert "(lock_timeout 2 s, gave up after 1 attempt" in error_line_of(run)


def test_dbtool_toml_sets_the_timeouts(busy, project):
    (project / "dbtool.toml").write_text("[migrations]\nlock_timeout = 0.2\nlock_retries = 1\n")
    migration(project, V1, "bio", ADD_BIO)
    with long_transaction(busy, None):
        run = dbtool("migrate")
    assert run.code == 1 and len(retries(run)) == 1, run.all
    migration(project, V1, "bio", "SELECT pg_sleep(2);")
    (project / "dbtool.toml").write_text("[migrations]\nstatement_timeout = 0.5\n")
    run = dbtool("migrate")
    assert run.code == 1 and "canceling statement due to statement timeout" in error_line_of(run)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[migrations]\nlock_timeout = -1\n", "migrations.lock_timeout must be a number of seconds (0: none)"),
        ("[migrations]\nlock_retries = 1.5\n", "migrations.lock_retries must be a whole number"),
        ("[migrations]\nlock_timout = 2\n", "migrations: unknown key 'lock_timout'"),
    ],
)
def test_a_malformed_migrations_section_is_one_line(project, local, text, message):
    (project / "dbtool.toml").write_text(text)
    assert message in error_line(dbtool("migrate", "status"))


def test_over_the_data_api_the_same(data_api, project, monkeypatch):
    data_api.db.create()
    with psycopg.connect(data_api.db.url()) as conn:
        conn.execute("CREATE TABLE busy (id int PRIMARY KEY)")
    migration(project, V1, "bio", ADD_BIO)
    with long_transaction(data_api.db, 2.0):
        run = dbtool("migrate", "prod", "--yes", "--lock-timeout", "0.3", "--lock-retries", "10")
    assert run.code == 0, run.all
    assert retries(run), run.err
    assert applied(data_api.db) == [V1]


def writer(server: Server, seconds: float | None) -> Any:
    """A transaction holding ROW EXCLUSIVE on ``busy`` (a writer): CREATE INDEX CONCURRENTLY, having entered the
    index in the catalog, waits for it, and a lock timeout then leaves an INVALID index behind."""
    return holding(server, "LOCK TABLE busy IN ROW EXCLUSIVE MODE", seconds)


CONCURRENT = "CREATE INDEX CONCURRENTLY busy_id_desc ON busy (id DESC);"


def index_state(server: Server) -> list[tuple]:
    query = "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('busy_id_desc')"
    return rows(server, query)


def test_a_concurrent_index_retries_statement_by_statement_dropping_the_invalid_index_first(busy, project):
    migration(project, V1, "index", CONCURRENT, up_opts="transaction:false")
    with writer(busy, 2.0):
        run = dbtool("migrate", "--lock-timeout", "0.3", "--lock-retries", "10")
    assert run.code == 0, run.all
    assert retries(run), run.err
    assert "dropped the INVALID index busy_id_desc left by the failed build" in run.err
    assert index_state(busy) == [(True,)] and applied(busy) == [V1]


def test_a_concurrent_index_that_gives_up_says_what_it_left_and_the_next_run_rebuilds_it(busy, project):
    migration(
        project,
        V1,
        "index",
        CONCURRENT.replace("INDEX CONCURRENTLY", "INDEX CONCURRENTLY IF NOT EXISTS"),
        up_opts="transaction:false",
    )
    with writer(busy, None):
        run = dbtool("migrate", "--lock-timeout", "0.2", "--lock-retries", "1")
    assert run.code == 1 and len(retries(run)) == 1, run.all
    line = error_line_of(run)
    assert "gave up after 2 attempts" in line
    assert "the build left the INVALID index busy_id_desc, which the next migrate drops first" in line
    assert index_state(busy) == [(False,)] and applied(busy) == []
    run = dbtool("migrate", "--lock-timeout", "0.2")  # IF NOT EXISTS would keep the broken one: it is dropped
    assert run.code == 0, run.all
    assert "dropped the INVALID index busy_id_desc left by the failed build" in run.err
    assert index_state(busy) == [(True,)] and applied(busy) == [V1]


# -- drift ------------------------------------------------------------------------------------------------------


def test_no_drift_after_setup_and_migrate(local, project):
    migration(project, V1, "bio", "ALTER TABLE users ADD COLUMN bio text;")
    assert dbtool("setup").code == 0
    run = dbtool("drift")
    assert run.code == 0, run.all
    assert run.out.startswith("no drift: ")
    with local.admin() as conn:  # the throwaway database is gone
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname LIKE '%dbtool_drift%'").fetchone() == (0,)


def test_a_change_made_by_hand_is_drift_with_a_readable_diff(local, project):
    assert dbtool("setup").code == 0
    with psycopg.connect(local.url()) as conn:
        conn.execute("ALTER TABLE users ADD COLUMN nickname text")
        conn.execute("CREATE INDEX users_nickname ON users (nickname)")
    run = dbtool("drift")
    assert run.code == 1
    assert "    nickname text" in [line[1:] for line in run.out.splitlines() if line.startswith("+")]
    assert any(line.startswith("+CREATE INDEX users_nickname ON public.users") for line in run.out.splitlines())
    assert run.err.strip().startswith("drift: ")


def test_column_order_is_not_drift(local, project):
    (project / "db" / "schema.sql").write_text("CREATE TABLE t (a int, b text);\n")
    (project / "db" / "seed.sql").write_text("")
    assert dbtool("setup").code == 0
    (project / "db" / "schema.sql").write_text("CREATE TABLE t (b text, a int);\n")
    assert dbtool("drift").code == 0
    (project / "db" / "schema.sql").write_text("CREATE TABLE t (b text, a bigint);\n")
    run = dbtool("drift")
    assert run.code == 1 and "-    a bigint" in run.out and "+    a integer" in run.out


def test_drift_of_prod_is_built_on_the_local_server(local, prod, project):
    prod.create()
    migration(project, V1, "bio", "ALTER TABLE users ADD COLUMN bio text;")
    assert dbtool("schema-load", "prod", "--yes").code == 0
    assert dbtool("migrate", "prod", "--yes").code == 0
    run = dbtool("drift", "prod")
    assert run.code == 0, run.all
    with psycopg.connect(prod.url()) as conn:
        conn.execute("ALTER TABLE users DROP COLUMN bio")
    run = dbtool("drift", "prod")
    assert run.code == 1 and "-    bio text" in run.out
    assert not prod.templates()  # nothing written on prod


def test_drift_over_the_data_api(data_api, local, project):
    """No pg_dump there: both sides are described from the catalog, the target through the Data API."""
    local.create()
    migration(project, V1, "bio", "ALTER TABLE users ADD COLUMN bio text;")
    assert dbtool("up", "prod", "--yes").code == 0
    run = dbtool("drift", "prod")
    assert run.code == 0, run.all
    with psycopg.connect(data_api.db.url()) as conn:
        conn.execute("CREATE INDEX users_bio ON users (bio)")
    run = dbtool("drift", "prod")
    assert run.code == 1, run.all
    assert "+CREATE INDEX users_bio ON public.users USING btree (bio);" in run.out.splitlines()


def test_drift_against_a_schema_dumped_after_migrations_the_target_lacks_says_so(local, prod, project):
    prod.create()
    migration(project, V1, "bio", "ALTER TABLE users ADD COLUMN bio text;")
    assert dbtool("schema-load", "prod", "--yes").code == 0
    assert dbtool("migrate", "prod", "--yes").code == 0
    migration(project, "20260102000000", "nick", "ALTER TABLE users ADD COLUMN nick text;")
    assert dbtool("setup").code == 0 and dbtool("schema", "dump").code == 0  # the usual: migrate here, dump
    line = error_line(dbtool("drift", "prod"))
    assert line.startswith("error: db/schema.sql marks 1 migration applied that "), line
    assert "has not applied (20260102000000)" in line and "dbtool migrate, then dbtool drift" in line
    assert dbtool("migrate", "prod", "--yes").code == 0
    run = dbtool("drift", "prod")
    assert run.code == 0, run.all
