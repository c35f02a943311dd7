"""`dbtool doctor`: every step of connecting reported, against real servers and real broken ones."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.conftest import DBNAME, LOCAL_PASSWORD, LOCAL_USER, PROD_PASSWORD, PROD_USER, Server
from tests.helpers import REPO, Run, dbtool, script
from tests.services import BannerPort, BlackholePort, SilentPort, closed_port_url
from tests.targets.test_prod_credentials import SECRET_ID, console_secret, store_secret

STEPS = ["configuration", "dns", "tcp", "ssl", "authentication", "database", "server", "psql"]
LINE = re.compile(r"^(ok|FAIL|skip)\s+(\S+)\s+(.*)$")


def report(run: Run) -> dict[str, tuple[str, str]]:
    """Step → (status, detail) from doctor's output, which must list every step once, in order."""
    assert "Traceback" not in run.all, run.all
    lines = run.out.splitlines()
    steps = [LINE.match(line) for line in lines[:-1]]
    assert all(steps), run.out
    assert [match.group(2) for match in steps if match] == STEPS, run.out
    return {match.group(2): (match.group(1), match.group(3)) for match in steps if match}


def summary(run: Run) -> str:
    return run.out.splitlines()[-1]


def never_shows(run: Run, password: str) -> None:
    for form in {password, quote(password, safe=""), quote(password)}:
        assert form not in run.all


def test_a_healthy_local_server_passes_every_step(local):
    local.create()
    run = dbtool("doctor")
    steps = report(run)
    port = local.cluster.port
    assert steps["configuration"] == (
        "ok",
        f"{LOCAL_USER}@127.0.0.1:{port}/{DBNAME} via CONNECTION_URL from environment",
    )
    assert steps["dns"] == ("ok", "127.0.0.1 is an address, no lookup")
    assert re.fullmatch(rf"127\.0\.0\.1:{port} accepts TCP, PostgreSQL answers \(\d+ ms\)", steps["tcp"][1])
    assert steps["ssl"] == ("ok", "not encrypted (sslmode=prefer, the server offers no SSL)")
    assert steps["authentication"] == (
        "ok",
        f"logged in as {LOCAL_USER} with the password in CONNECTION_URL from environment",
    )
    assert steps["database"] == ("ok", f"{DBNAME} exists")
    assert steps["server"][0] == "ok" and steps["server"][1].startswith("PostgreSQL 15.")
    assert steps["psql"][0] == "ok" and steps["psql"][1].endswith("the server's major version")
    assert (run.code, summary(run)) == (0, "all checks passed")
    never_shows(run, LOCAL_PASSWORD)


def test_the_bin_script_and_a_host_name_that_needs_a_lookup(local, monkeypatch):
    local.create()
    monkeypatch.setenv("CONNECTION_URL", local.url().replace("127.0.0.1", "localhost"))
    run = script("db-doctor")
    steps = report(run)
    assert run.code == 0, run.out
    assert steps["dns"][0] == "ok" and steps["dns"][1].startswith("localhost → ")
    assert "127.0.0.1" in steps["dns"][1]
    assert steps["tcp"][1].startswith(f"127.0.0.1:{local.cluster.port} accepts TCP")


def test_a_closed_port_fails_at_tcp_and_skips_the_rest(project, monkeypatch):
    url = closed_port_url()
    port = int(url.rsplit(":", 1)[1].strip("/"))
    monkeypatch.setenv("CONNECTION_URL", f"postgresql://{LOCAL_USER}:{LOCAL_PASSWORD}@127.0.0.1:{port}/{DBNAME}")
    run = dbtool("doctor")
    steps = report(run)
    assert steps["dns"][0] == "ok"
    assert steps["tcp"] == (
        "FAIL",
        f"127.0.0.1:{port} refused the connection: nothing listens there "
        "(is the server running and listening there? check CONNECTION_URL)",
    )
    for step in ("ssl", "authentication", "database", "server"):
        assert steps[step] == ("skip", "needs a TCP connection")
    assert steps["psql"][0] == "ok"  # checked even when the server is not reachable
    assert (run.code, summary(run)) == (1, "1 failed: tcp")
    never_shows(run, LOCAL_PASSWORD)


@pytest.fixture
def blackhole() -> Iterator[BlackholePort]:
    port = BlackholePort()
    yield port
    port.close()


def test_a_prod_timeout_points_at_the_security_group(project, blackhole, monkeypatch):
    monkeypatch.setenv("PROD_CONNECTION_URL", f"postgresql://{PROD_USER}@127.0.0.1:{blackhole.port}/{DBNAME}")
    started = time.monotonic()
    run = dbtool("--connect-timeout", "2", "doctor", "prod")
    elapsed = time.monotonic() - started
    steps = report(run)
    assert steps["configuration"][1].startswith(f"PRODUCTION {PROD_USER}@127.0.0.1:{blackhole.port}/{DBNAME}")
    assert steps["tcp"] == (
        "FAIL",
        f"no answer from 127.0.0.1:{blackhole.port} within 2 s (likely cause: the RDS security group does not allow "
        "this workspace's IP; fix it with ./bin/rds-update-sg-rule)",
    )
    assert run.code == 1 and summary(run) == "1 failed: tcp"
    assert 1.5 < elapsed < 10


NOT_POSTGRES = "(is this the PostgreSQL port? something else listens there; check the port)"


@pytest.mark.parametrize(
    ("service", "expected"),
    [
        (BlackholePort, "no answer from {where} within 2 s (a firewall drops the packets, or the host is down)"),
        (SilentPort, "{where} accepted the connection but did not answer like PostgreSQL within 2 s " + NOT_POSTGRES),
        (BannerPort, "{where} answered, but not like PostgreSQL " + NOT_POSTGRES),  # its greeting starts with "S"
    ],
    ids=["dropped", "silent", "ssh"],
)
def test_a_local_port_without_a_working_postgresql(project, monkeypatch, service, expected):
    port = service()
    try:
        monkeypatch.setenv("CONNECTION_URL", f"postgresql://{LOCAL_USER}@127.0.0.1:{port.port}/{DBNAME}")
        run = dbtool("--connect-timeout", "2", "doctor")
    finally:
        port.close()
    assert report(run)["tcp"] == ("FAIL", expected.format(where=f"127.0.0.1:{port.port}"))
    assert run.code == 1


def test_a_wrong_password_fails_authentication_only(local, monkeypatch):
    local.create()
    monkeypatch.setenv("CONNECTION_URL", local.url(password="Wrong-Horse-77"))
    run = dbtool("doctor")
    steps = report(run)
    for step in ("configuration", "dns", "tcp", "ssl", "psql"):
        assert steps[step][0] == "ok", step
    assert steps["authentication"] == (
        "FAIL",
        f"authentication failed for {LOCAL_USER}@127.0.0.1:{local.cluster.port}/{DBNAME} (check the user and "
        "password in CONNECTION_URL; special characters must be percent-encoded)",
    )
    assert steps["database"] == ("skip", "needs a login") and steps["server"] == ("skip", "needs a login")
    assert (run.code, summary(run)) == (1, "1 failed: authentication")
    never_shows(run, "Wrong-Horse-77")


def test_a_missing_database_still_reports_the_server(local):
    assert not local.exists()
    run = dbtool("doctor")
    steps = report(run)
    assert steps["authentication"][0] == "ok"
    assert steps["database"] == (
        "FAIL",
        f'database "{DBNAME}" does not exist on {LOCAL_USER}@127.0.0.1:{local.cluster.port}/{DBNAME} '
        "(create it with ./bin/db-create)",
    )
    assert steps["server"][0] == "ok" and steps["server"][1].startswith("PostgreSQL 15.")
    assert steps["psql"][1].endswith("the server's major version")  # compared with the server all the same
    assert (run.code, summary(run)) == (1, "1 failed: database")


def test_ssl_required_by_the_url_but_not_offered(local, monkeypatch):
    local.create()
    monkeypatch.setenv("CONNECTION_URL", local.url() + "?sslmode=require")
    run = dbtool("doctor")
    steps = report(run)
    assert steps["tcp"][0] == "ok"
    assert steps["ssl"][0] == "FAIL"
    assert steps["ssl"][1].startswith(f"{LOCAL_USER}@127.0.0.1:{local.cluster.port}/{DBNAME} does not accept SSL")
    assert "sslmode=require" in steps["ssl"][1]
    assert steps["authentication"] == ("skip", "needs SSL to work")
    assert run.code == 1


@pytest.fixture
def ssl_prod(prod: Server, monkeypatch: pytest.MonkeyPatch) -> Server:
    prod.create()
    monkeypatch.setenv("HOME", str(Path.cwd()))  # no ~/.postgresql/root.crt to fall back on
    return prod


def test_an_ssl_server_without_verification_says_so(ssl_prod):
    run = dbtool("doctor", "prod")
    steps = report(run)
    assert steps["ssl"] == (
        "ok",
        "encrypted with TLSv1.3 (sslmode=require): certificate not verified: anyone on the path could pose as the "
        "server (set PROD_DB_SSLROOTCERT to the RDS CA bundle to verify it)",
    )
    assert steps["authentication"] == (
        "ok",
        f"logged in as {PROD_USER} with the password in PROD_CONNECTION_URL from environment",
    )
    assert run.code == 0, run.out
    never_shows(run, PROD_PASSWORD)


def test_an_ssl_server_verified_against_its_ca(ssl_prod, monkeypatch):
    monkeypatch.setenv(
        "PROD_CONNECTION_URL", ssl_prod.url().replace("?sslmode=require", "").replace("127.0.0.1", "localhost")
    )
    monkeypatch.setenv("PROD_DB_SSLROOTCERT", str(ssl_prod.ca_file))
    run = dbtool("doctor", "prod")
    steps = report(run)
    assert steps["ssl"] == (
        "ok",
        f"encrypted with TLSv1.3 (sslmode=verify-full): certificate verified against {ssl_prod.ca_file}, "
        "host name matches",
    )
    assert run.code == 0, run.out
    never_shows(run, PROD_PASSWORD)


def test_an_ssl_certificate_from_another_ca_fails_ssl(ssl_prod, monkeypatch):
    monkeypatch.setenv("PROD_CONNECTION_URL", ssl_prod.url().replace("?sslmode=require", ""))
    monkeypatch.setenv("PROD_DB_SSLROOTCERT", str(ssl_prod.ca_file.with_name("other-ca.crt")))
    run = dbtool("doctor", "prod")
    steps = report(run)
    assert steps["tcp"][0] == "ok"
    assert steps["ssl"][0] == "FAIL"
    assert steps["ssl"][1].startswith(f"the server certificate of {PROD_USER}@127.0.0.1:")
    assert "(sslmode=verify-full)" in steps["ssl"][1] and "global-bundle.pem" in steps["ssl"][1]
    assert [steps[step] for step in ("authentication", "database", "server")] == [("skip", "needs SSL to work")] * 3
    assert (run.code, summary(run)) == (1, "1 failed: ssl")
    never_shows(run, PROD_PASSWORD)


def test_credentials_from_secrets_manager_are_named_not_shown(prod, aws, monkeypatch):
    prod.create()
    monkeypatch.delenv("PROD_CONNECTION_URL")
    monkeypatch.setenv("PROD_DB_SECRET_ID", SECRET_ID)
    store_secret(aws, console_secret(prod))
    run = script("db-doctor", "prod")
    steps = report(run)
    assert steps["configuration"] == (
        "ok",
        f"PRODUCTION {PROD_USER}@127.0.0.1:{prod.cluster.port}/{DBNAME} via Secrets Manager secret {SECRET_ID} "
        f"(PROD_CONNECTION_URL is not set); credentials: Secrets Manager secret {SECRET_ID}",
    )
    assert steps["authentication"] == ("ok", f"logged in as {PROD_USER} with Secrets Manager secret {SECRET_ID}")
    assert run.code == 0, run.out
    never_shows(run, PROD_PASSWORD)


def test_nothing_configured_fails_configuration_and_still_checks_psql(project):
    run = dbtool("doctor", "prod")
    steps = report(run)
    assert steps["configuration"][0] == "FAIL"
    assert steps["configuration"][1].startswith("PROD_CONNECTION_URL is not set (set it (or PROD_DB_SECRET_ID)")
    assert all(steps[step] == ("skip", "needs a configuration") for step in STEPS[1:-1])
    assert steps["psql"][0] == "ok"
    assert run.code == 1


def test_an_impossible_host_name_fails_dns(project, monkeypatch):
    # Over-long labels are refused before any query leaves the machine: the tests stay on loopback.
    host = "a" * 64 + ".example.com"
    monkeypatch.setenv("CONNECTION_URL", f"postgresql://{LOCAL_USER}@{host}:5432/{DBNAME}")
    run = dbtool("doctor")
    steps = report(run)
    assert steps["dns"] == (
        "FAIL",
        f"{host} is not a host name: a part between dots is empty or over 63 characters "
        "(check the host name in CONNECTION_URL)",
    )
    assert steps["tcp"] == ("skip", "needs the host's address")
    assert run.code == 1


def test_a_missing_unix_socket(project, monkeypatch):
    monkeypatch.setenv("CONNECTION_URL", f"postgresql://{LOCAL_USER}@/{DBNAME}?host=/nonexistent-dir&port=5")
    steps = report(dbtool("doctor"))
    assert steps["dns"] == ("skip", "Unix socket /nonexistent-dir/.s.PGSQL.5, no lookup")
    assert steps["tcp"][0] == "FAIL"
    assert steps["tcp"][1].startswith("no server socket at /nonexistent-dir/.s.PGSQL.5 (is the server running")


def _fake_psql(directory: Path, version: str) -> Path:
    directory.mkdir()
    fake = directory / "psql"
    fake.write_text(f"#!/bin/sh\necho 'psql (PostgreSQL) {version}'\n")
    fake.chmod(0o755)
    return directory


def test_a_psql_older_than_the_server_fails(local, monkeypatch, tmp_path):
    local.create()
    monkeypatch.setenv("PATH", str(_fake_psql(tmp_path / "old", "13.4")))
    run = dbtool("doctor")
    steps = report(run)
    assert steps["psql"] == (
        "FAIL",
        f"psql 13.4 ({tmp_path / 'old' / 'psql'}) is older than the server's PostgreSQL 15: \\d and other "
        "meta-commands may fail (install the version 15 client: apt-get install postgresql-client-15, "
        "or brew install libpq)",
    )
    assert (run.code, summary(run)) == (1, "1 failed: psql")


def test_a_newer_psql_is_fine(local, monkeypatch, tmp_path):
    local.create()
    monkeypatch.setenv("PATH", str(_fake_psql(tmp_path / "new", "17.2")))
    run = dbtool("doctor")
    assert report(run)["psql"] == ("ok", f"psql 17.2 ({tmp_path / 'new' / 'psql'}), newer than the server's 15")
    assert run.code == 0


def test_no_psql_fails_with_the_package_to_install(local, monkeypatch, tmp_path):
    local.create()
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    run = dbtool("doctor")
    assert report(run)["psql"] == (
        "FAIL",
        "psql is not installed (dbtool connect needs it) (install the PostgreSQL client: apt-get install "
        "postgresql-client, or brew install libpq)",
    )
    assert run.code == 1


def test_doctor_is_documented():
    readme = (REPO / "README.md").read_text()
    assert "dbtool doctor" in readme and "db-doctor" in readme
