"""connect hands over to the real psql, with the password in its environment and never in argv."""

from __future__ import annotations

from urllib.parse import quote

from tests.conftest import PROD_PASSWORD
from tests.helpers import dbtool, error_line, script

SHOW_OWN_ARGV = r"\! tr '\0' ' ' < /proc/$PPID/cmdline"


def test_connect_local_runs_psql(local):
    local.create()
    run = script(
        "db-connect", "-At", "-c", "select current_user, current_database(), current_setting('application_name')"
    )
    assert (run.code, run.out.strip()) == (0, "postgres|cruddur|dbtool")


def test_connect_prod_with_special_password_over_ssl_keeps_it_out_of_argv(prod):
    prod.create()
    run = script(
        "db-connect",
        "prod",
        "-At",
        "-c",
        "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
        "-c",
        SHOW_OWN_ARGV,
    )
    assert run.code == 0, run.all
    ssl, argv = run.out.strip().splitlines()
    assert ssl == "t"
    assert "psql --dbname user=cruddurroot " in argv  # Debian's wrapper may re-exec a versioned psql
    assert "password" not in argv  # in a conninfo string the password would appear quoted and escaped
    for form in (PROD_PASSWORD, quote(PROD_PASSWORD, safe=""), "p@ss:w"):
        assert form not in argv and form not in run.all


def test_connect_sql_error_exit_code_is_psqls(local):
    local.create()
    run = script("db-connect", "-v", "ON_ERROR_STOP=1", "-c", "select nonsense")
    assert run.code != 0 and "nonsense" in run.err


def test_connect_without_psql(local, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    run = dbtool("connect")
    assert run.code == 1
    assert error_line(run) == (
        "error: psql is not installed (install the PostgreSQL client: apt-get install postgresql-client, "
        "or brew install libpq)"
    )


def test_connect_uses_the_targets_password_over_a_stale_pgpassword(local):
    local.create()
    run = script("db-connect", "-At", "-c", "select 1", env={"PGPASSWORD": "stale-wrong-password"})
    assert (run.code, run.out.strip()) == (0, "1")
