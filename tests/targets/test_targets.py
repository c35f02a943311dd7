"""Target resolution: libpq parses, the environment wins over .env, defaults are applied once."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from dbtool.engine.connection import connect
from dbtool.errors import MalformedUrl, TargetNotConfigured
from dbtool.targets.project import Config, find_root
from dbtool.targets.resolve import resolve_target


def resolve(name: str = "local", env: dict[str, str] | None = None, root: Path | None = None, **kwargs):
    return resolve_target(name, config=Config(root or Path.cwd(), environ=env or {}), **kwargs)


def test_rds_style_user_containing_the_database_name_is_kept_whole():
    # The old sed 's/\/cruddur//g' turned this user into "root" and fell back to a local socket.
    target = resolve(env={"CONNECTION_URL": "postgresql://cruddurroot:pw@db.example.com:5432/cruddur"})
    params = target.params
    assert (params["user"], params["host"], params["port"], target.dbname) == (
        "cruddurroot",
        "db.example.com",
        "5432",
        "cruddur",
    )
    maintenance = psycopg.conninfo.conninfo_to_dict(target.conninfo_for("postgres"))
    assert maintenance == {**params, "dbname": "postgres"}


def test_key_value_conninfo_is_accepted():
    target = resolve(env={"CONNECTION_URL": "host=127.0.0.1 port=6543 dbname='my db' user=app password='a b'"})
    assert (target.dbname, target.params["port"], target.password) == ("my db", "6543", "a b")


def test_percent_encoded_password_is_decoded_by_libpq():
    target = resolve(env={"CONNECTION_URL": "postgresql://u:p%40ss%2Fw%3F%23%25%21@h/db"})
    assert target.password == "p@ss/w?#%!"


def test_defaults_connect_timeout_and_application_name():
    target = resolve(env={"CONNECTION_URL": "postgresql://u@h/db"})
    assert target.params["connect_timeout"] == "5"
    assert target.params["application_name"] == "dbtool"
    assert target.sources["connect_timeout"] == "default"


@pytest.mark.parametrize(
    ("env", "option", "expected", "source"),
    [
        ({"DBTOOL_CONNECT_TIMEOUT": "12"}, None, "12", "DBTOOL_CONNECT_TIMEOUT from environment"),
        ({"DBTOOL_CONNECT_TIMEOUT": "12"}, 3.0, "3", "option"),
        ({}, 0.5, "2", "option"),  # libpq would read 0 as "wait forever"
    ],
)
def test_connect_timeout_is_configurable(env, option, expected, source):
    target = resolve(env={"CONNECTION_URL": "postgresql://u@h/db", **env}, connect_timeout=option)
    assert (target.params["connect_timeout"], target.sources["connect_timeout"]) == (expected, source)


def test_url_connect_timeout_wins_over_the_variable():
    target = resolve(env={"CONNECTION_URL": "postgresql://u@h/db?connect_timeout=30", "DBTOOL_CONNECT_TIMEOUT": "9"})
    assert target.params["connect_timeout"] == "30"


def test_bad_timeout_variable_is_an_error():
    with pytest.raises(Exception, match="DBTOOL_CONNECT_TIMEOUT must be a positive number"):
        resolve(env={"CONNECTION_URL": "postgresql://u@h/db", "DBTOOL_CONNECT_TIMEOUT": "soon"})


@pytest.mark.parametrize(
    ("url", "sslmode"),
    [
        ("postgresql://u@db.example.com/db", "require"),
        ("postgresql://u@db.example.com/db?sslmode=verify-ca&sslrootcert=/etc/hostname", "verify-ca"),
        ("postgresql://u@127.0.0.1/db", None),
        ("postgresql://u@localhost/db", None),
        ("postgresql://u@[::1]/db", None),
        ("host=/var/run/postgresql dbname=db", None),
    ],
)
def test_remote_prod_defaults_to_ssl(url, sslmode):
    assert resolve("prod", env={"PROD_CONNECTION_URL": url}).params.get("sslmode") == sslmode


def test_local_target_never_forces_ssl():
    assert "sslmode" not in resolve(env={"CONNECTION_URL": "postgresql://u@db.example.com/db"}).params


def test_pgsslmode_in_the_environment_is_respected_for_prod():
    target = resolve("prod", env={"PROD_CONNECTION_URL": "postgresql://u@db.example.com/db", "PGSSLMODE": "prefer"})
    assert "sslmode" not in target.params


def test_dotenv_is_read_and_environment_wins(tmp_path):
    (tmp_path / ".env").write_text(
        "CONNECTION_URL=postgresql://fromfile@h/filedb\nPROD_CONNECTION_URL='postgresql://u:pa$word${HOME}@h/proddb'\n"
    )
    local = resolve(env={}, root=tmp_path)
    assert (local.dbname, local.sources["url"]) == ("filedb", f"CONNECTION_URL from {tmp_path / '.env'}")
    overridden = resolve(env={"CONNECTION_URL": "postgresql://u@h/envdb"}, root=tmp_path)
    assert (overridden.dbname, overridden.sources["url"]) == ("envdb", "CONNECTION_URL from environment")
    assert resolve("prod", env={}, root=tmp_path).password == "pa$word${HOME}"  # no interpolation


def test_dotenv_does_not_change_the_process_environment(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("CONNECTION_URL=postgresql://u@h/db\n")
    monkeypatch.chdir(tmp_path)
    resolve_target("local")
    import os

    assert "CONNECTION_URL" not in os.environ


def test_project_root_is_found_from_a_subdirectory(tmp_path):
    (tmp_path / "db").mkdir()
    deep = tmp_path / "backend" / "lib"
    deep.mkdir(parents=True)
    assert find_root(deep, environ={}) == tmp_path
    assert find_root(deep, environ={"DBTOOL_PROJECT_ROOT": str(deep)}) == deep


def test_unset_variable_names_itself_and_the_example(tmp_path):
    (tmp_path / ".env.example").write_text("# PROD_CONNECTION_URL=...\n")
    with pytest.raises(TargetNotConfigured) as caught:
        resolve("prod", env={"CONNECTION_URL": "postgresql://u@h/db"}, root=tmp_path)
    assert "PROD_CONNECTION_URL is not set" in str(caught.value) and "see .env.example" in str(caught.value)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://cruddurroot:Secret@Pw@db.example.com/cruddur", "unexpected '@' or '/' in its host"),
        ("postgresql://cruddurroot:Secret/Pw@db.example.com/cruddur", "port that is not a number"),
        ("postgresql://u:SecretPw@[::1/db", "not a valid PostgreSQL URL"),
        ("this is not a url SecretPw", "not a valid PostgreSQL URL"),
        ("postgresql://u:SecretPw@h:port/db", "port that is not a number"),
        ("postgresql://u:SecretPw@h:5432", "names no database"),
    ],
)
def test_malformed_urls_are_refused_without_showing_the_password(url, message):
    with pytest.raises(MalformedUrl) as caught:
        resolve(env={"CONNECTION_URL": url})
    text = str(caught.value)
    assert message in text
    assert "Secret" not in text and "Pw" not in text
    if "database" not in message:
        assert "percent-encode" in text


def test_display_never_contains_the_password():
    target = resolve(env={"CONNECTION_URL": "postgresql://cruddurroot:hunter2@db.example.com:5433/cruddur"})
    assert target.display == "cruddurroot@db.example.com:5433/cruddur"
    assert "hunter2" not in repr(target)


def test_connections_carry_application_name_and_reach_the_database(local):
    from dbtool.engine.session import open_maintenance_session
    from dbtool.ops.admin import create_database

    with open_maintenance_session(resolve_target("local")) as admin:
        assert create_database(admin, "cruddur")
    with connect(resolve_target("local")) as conn:
        row = conn.execute("SELECT current_database(), current_setting('application_name')").fetchone()
    assert row == ("cruddur", "dbtool")


def test_prod_like_server_with_special_password_and_ssl(prod):
    prod.create()
    with connect(resolve_target("prod")) as conn:
        row = conn.execute("SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
    assert row == ("cruddurroot", True)


def test_remote_looking_prod_host_gets_ssl_by_default(prod, local_server, monkeypatch):
    # host= names a remote-looking server (SSL default applies); hostaddr= still dials loopback.
    prod.create()
    remote = f"host=db.example.com hostaddr=127.0.0.1 port={prod.cluster.port} dbname=cruddur user={prod.user}"
    monkeypatch.setenv("PROD_CONNECTION_URL", remote)
    monkeypatch.setenv("PGPASSWORD", prod.password)
    with connect(resolve_target("prod")) as conn:
        assert conn.pgconn.ssl_in_use
    # The same against a server without SSL fails instead of silently sending the password in clear.
    plain = f"host=db.example.com hostaddr=127.0.0.1 port={local_server.cluster.port} dbname=postgres user=postgres"
    monkeypatch.setenv("PROD_CONNECTION_URL", plain)
    with pytest.raises(Exception, match="does not accept SSL"):
        connect(resolve_target("prod"))
