"""Every failure is one line on stderr, exit 1 (2 for usage), and never shows a password."""

from __future__ import annotations

import socket
import time
from urllib.parse import quote

import pytest

from dbtool.local.cluster import free_port
from tests.conftest import PROD_PASSWORD
from tests.helpers import dbtool, error_line

SECRET = "Zq9!x@y/z#w%v"


def assert_no_secret(run, secret=SECRET):
    # The leading characters too: a quoted conninfo would escape the password's quotes and backslashes.
    for form in {secret, quote(secret, safe=""), quote(secret), secret[:6]}:
        assert form not in run.all, run.all


def test_variable_not_set():
    run = dbtool("create")
    assert run.code == 1
    assert error_line(run).startswith("error: CONNECTION_URL is not set (set it in the environment or in ")
    assert "see .env.example" not in run.err  # there is none here (test_first_hour: when there is one)


def test_prod_variable_not_set(monkeypatch):
    monkeypatch.setenv("CONNECTION_URL", "postgresql://u@127.0.0.1/db")
    assert "PROD_CONNECTION_URL is not set" in error_line(dbtool("sessions", "prod"))


def test_malformed_url_mentions_percent_encoding(monkeypatch):
    monkeypatch.setenv("CONNECTION_URL", f"postgresql://cruddurroot:{SECRET}@db.example.com:5432/cruddur")
    run = dbtool("create")
    assert run.code == 1
    assert "percent-encode special characters in the password" in error_line(run)
    assert_no_secret(run)


def test_connection_refused_local(project, monkeypatch):
    port = free_port()
    monkeypatch.setenv("CONNECTION_URL", f"postgresql://postgres:{quote(SECRET, safe='')}@127.0.0.1:{port}/cruddur")
    run = dbtool("schema-load")
    assert run.code == 1
    assert error_line(run) == (
        f"error: connection to postgres@127.0.0.1:{port}/cruddur refused "
        "(is the server running and listening there? check CONNECTION_URL)"
    )
    assert_no_secret(run)


def test_connection_refused_prod_points_at_the_security_group(monkeypatch):
    port = free_port()
    monkeypatch.setenv("PROD_CONNECTION_URL", f"postgresql://root:{quote(SECRET, safe='')}@127.0.0.1:{port}/cruddur")
    run = dbtool("sessions", "prod")
    assert "security group" in error_line(run) and "./bin/rds-update-sg-rule" in run.err
    assert_no_secret(run)


def test_connection_timeout_is_bounded(monkeypatch):
    # A listener that accepts and never answers: what a black-holed RDS endpoint looks like to libpq.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        url = f"postgresql://root:{quote(SECRET, safe='')}@127.0.0.1:{port}/cruddur"
        monkeypatch.setenv("PROD_CONNECTION_URL", url)
        started = time.monotonic()
        run = dbtool("--connect-timeout", "2", "sessions", "prod")
        elapsed = time.monotonic() - started
    assert run.code == 1
    assert error_line(run).startswith(f"error: connection to root@127.0.0.1:{port}/cruddur timed out (")
    assert "rds-update-sg-rule" in run.err
    assert elapsed < 10
    assert_no_secret(run)


def test_wrong_password(local, monkeypatch):
    monkeypatch.setenv("CONNECTION_URL", local.url(password=SECRET))
    run = dbtool("create")
    assert run.code == 1
    assert error_line(run).startswith(
        f"error: authentication failed for postgres@127.0.0.1:{local.cluster.port}/cruddur (database postgres) "
        "(check the user and password in CONNECTION_URL"
    )
    assert_no_secret(run)


def test_wrong_password_prod(prod, monkeypatch):
    wrong = PROD_PASSWORD + "x"
    monkeypatch.setenv("PROD_CONNECTION_URL", prod.url(password=wrong))
    run = dbtool("sessions", "prod")
    assert "authentication failed for cruddurroot@127.0.0.1" in error_line(run)
    assert_no_secret(run, wrong)


def test_database_does_not_exist(local):
    run = dbtool("schema-load")
    assert run.code == 1
    assert error_line(run) == (
        f'error: database "cruddur" does not exist on postgres@127.0.0.1:{local.cluster.port}/cruddur '
        "(create it with ./bin/db-create)"
    )


def test_database_does_not_exist_prod_hint(prod):
    assert "(create it with ./bin/db-create prod)" in error_line(dbtool("seed", "prod", "--yes"))


def test_usage_errors_exit_2_in_one_line():
    run = dbtool("create", "staging")
    assert run.code == 2
    assert error_line(run) == (
        "error: Invalid value for '[local|prod]': unknown target 'staging' (known: local, prod)"
        " (see 'dbtool create --help')"
    )
    unknown = dbtool("frobnicate")
    assert unknown.code == 2 and "No such command 'frobnicate'" in error_line(unknown)


def test_debug_shows_the_traceback():
    with pytest.raises(Exception, match="CONNECTION_URL is not set"):
        dbtool("--debug", "create")


def test_password_never_in_any_output_of_a_whole_session(prod):
    runs = [
        dbtool("setup", "prod", "--yes"),
        dbtool("sessions", "prod"),
        dbtool("sessions", "prod", "--json"),
        dbtool("create", "prod", "--yes"),
        dbtool("drop", "prod", "--yes"),
    ]
    assert [run.code for run in runs] == [0, 0, 0, 0, 0]
    for run in runs:
        assert_no_secret(run, PROD_PASSWORD)


def test_a_short_password_is_hidden_where_it_stands_not_wherever_its_letters_are(monkeypatch):
    # A one-letter password once turned the message into "u@127.0.0.1:1/a********db (database ****ostgres)".
    port = free_port()
    monkeypatch.setenv("CONNECTION_URL", f"postgresql://u:p@127.0.0.1:{port}/appdb")
    line = error_line(dbtool("create"))
    assert f"u@127.0.0.1:{port}/appdb" in line, line
    assert "****" not in line, line


def test_redaction_hides_the_password_in_urls_and_conninfo_only():
    from dbtool.targets.resolve import redact_password

    text = (
        "postgres failed: postgresql://u:p@db:5432/app and host=db password=p dbname=app, "
        "password = 'p q\\'r' user=u; and postgresql://v:other%40x@h/d"
    )
    assert redact_password("postgresql://u:a@b@h/d", "a@b") == "postgresql://u:****@h/d"  # to the last @
    assert redact_password(text, "p") == (
        "postgres failed: postgresql://u:****@db:5432/app and host=db password=**** dbname=app, "
        "password = **** user=u; and postgresql://v:****@h/d"
    )


def test_a_missing_sql_file_offers_file_only_to_commands_that_take_it(local, project):
    (project / "db" / "schema.sql").unlink()
    schema_load = error_line(dbtool("schema-load"))
    assert "schema.sql not found" in schema_load and "pass --file" in schema_load, schema_load
    setup = error_line(dbtool("setup"))
    assert "schema.sql not found" in setup and "--file" not in setup, setup
