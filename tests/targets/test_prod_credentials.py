"""Production credentials from AWS (Secrets Manager, RDS IAM tokens) and TLS that verifies, for real.

Secrets live in moto; the connections go to the prod-like test server. IAM tokens are checked by
``iam_verifier`` (through PostgreSQL's LDAP auth), which recomputes each token's SigV4 signature.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import psycopg
import pytest

from dbtool.engine.connection import connect
from dbtool.targets.prodauth import _region_of
from dbtool.targets.resolve import resolve_target
from tests.conftest import DBNAME, IAM_USER, PROD_PASSWORD, PROD_USER, Aws, Server
from tests.helpers import dbtool, error_line, script
from tests.targets.test_connect import SHOW_OWN_ARGV

SECRET_ID = "prod/cruddur/db"


def console_secret(server: Server, *, port_as: type = str) -> dict:
    """The shape the RDS console and rotation functions write."""
    return {
        "engine": "postgres",
        "host": "127.0.0.1",
        "port": port_as(server.cluster.port),
        "username": PROD_USER,
        "password": PROD_PASSWORD,
        "dbname": DBNAME,
        "dbInstanceIdentifier": "cruddur-db-instance",
    }


def store_secret(aws: Aws, value: dict | str, name: str = SECRET_ID) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return aws.client("secretsmanager").create_secret(Name=name, SecretString=text)["ARN"]


@pytest.fixture
def secret_only(prod: Server, aws: Aws, monkeypatch: pytest.MonkeyPatch) -> Server:
    """Production known only through PROD_DB_SECRET_ID: no URL, no password anywhere on disk."""
    monkeypatch.delenv("PROD_CONNECTION_URL")
    monkeypatch.setenv("PROD_DB_SECRET_ID", SECRET_ID)
    return prod


@pytest.mark.parametrize("port_as", [str, int], ids=["port-string", "port-number"])
def test_console_shaped_secret_connects_for_real(secret_only, aws, port_as):
    store_secret(aws, console_secret(secret_only, port_as=port_as))
    created = script("db-create", "prod", "--yes")
    assert created.code == 0, created.err
    assert secret_only.exists()
    run = script(
        "db-connect", "prod", "-At", "-c", "select current_user || '@' || current_database()", "-c", SHOW_OWN_ARGV
    )
    assert run.code == 0, run.err
    who, argv = run.out.strip().splitlines()
    assert who == f"{PROD_USER}@{DBNAME}"
    assert "password" not in argv and "p@ss:w" not in argv
    assert PROD_PASSWORD not in created.all + run.all


def test_rds_managed_secret_with_host_from_the_url(prod, aws, monkeypatch):
    store_secret(aws, {"username": PROD_USER, "password": PROD_PASSWORD})
    monkeypatch.setenv("PROD_DB_SECRET_ID", SECRET_ID)
    monkeypatch.setenv("PROD_CONNECTION_URL", f"postgresql://127.0.0.1:{prod.cluster.port}/{DBNAME}?sslmode=require")
    prod.create()
    target = resolve_target("prod")
    with connect(target) as conn:
        assert conn.execute("select current_user").fetchone() == (PROD_USER,)
    assert target.sources["password"] == f"Secrets Manager secret {SECRET_ID}"
    assert PROD_PASSWORD not in repr(target) and PROD_PASSWORD not in target.display


def test_secret_user_and_password_win_over_the_url(prod, aws, monkeypatch):
    store_secret(aws, {"username": PROD_USER, "password": PROD_PASSWORD})
    monkeypatch.setenv("PROD_DB_SECRET_ID", SECRET_ID)
    monkeypatch.setenv("PROD_CONNECTION_URL", prod.url(password="stale-password", user="someone"))
    prod.create()
    with connect(resolve_target("prod")) as conn:
        assert conn.execute("select current_user").fetchone() == (PROD_USER,)


def test_rds_managed_secret_finds_its_instance(prod, aws, monkeypatch):
    """No host anywhere: the instance whose MasterUserSecret is this secret supplies it."""
    rds = aws.client("rds")
    instance = rds.create_db_instance(
        DBInstanceIdentifier="cruddur-db-instance",
        Engine="postgres",
        DBInstanceClass="db.t3.micro",
        MasterUsername=PROD_USER,
        ManageMasterUserPassword=True,
        DBName=DBNAME,
        AllocatedStorage=20,
    )["DBInstance"]
    arn = instance["MasterUserSecret"]["SecretArn"]
    aws.client("secretsmanager").put_secret_value(
        SecretId=arn, SecretString=json.dumps({"username": PROD_USER, "password": PROD_PASSWORD})
    )
    monkeypatch.delenv("PROD_CONNECTION_URL")
    monkeypatch.setenv("PROD_DB_SECRET_ID", arn)
    target = resolve_target("prod")
    endpoint = instance["Endpoint"]
    assert target.display == f"{PROD_USER}@{endpoint['Address']}:{endpoint['Port']}/{DBNAME}"
    assert target.sources["host"] == "RDS instance cruddur-db-instance"
    assert target.params["sslmode"] == "require"  # a remote production host
    assert target.password == PROD_PASSWORD


def test_instance_named_by_variable(prod, aws, monkeypatch):
    rds = aws.client("rds")
    for name in ("other-db", "cruddur-db-instance"):
        rds.create_db_instance(
            DBInstanceIdentifier=name,
            Engine="postgres",
            DBInstanceClass="db.t3.micro",
            MasterUsername="root",
            MasterUserPassword="unused-password",
            DBName=DBNAME,
            AllocatedStorage=20,
        )
    store_secret(aws, {"username": PROD_USER, "password": PROD_PASSWORD})
    monkeypatch.delenv("PROD_CONNECTION_URL")
    monkeypatch.setenv("PROD_DB_SECRET_ID", SECRET_ID)
    monkeypatch.setenv("PROD_DB_INSTANCE_ID", "cruddur-db-instance")
    assert resolve_target("prod").display.startswith(f"{PROD_USER}@cruddur-db-instance.")


@pytest.mark.parametrize(
    ("stored", "message"),
    [
        (
            None,
            f"error: secret {SECRET_ID} not found in region us-east-1 (check PROD_DB_SECRET_ID and AWS_DEFAULT_REGION)",
        ),
        ("hunter2", f"error: secret {SECRET_ID} is not a JSON object"),
        ({"username": PROD_USER}, f"error: secret {SECRET_ID} has no password"),
        ({"password": PROD_PASSWORD, "host": "h"}, f"error: secret {SECRET_ID} has no username"),
        ({"username": "u", "password": PROD_PASSWORD, "host": "h", "port": "54x32", "dbname": "d"}, "port in Secrets"),
        (
            {"username": PROD_USER, "password": PROD_PASSWORD},
            "error: cannot tell which RDS instance the secret's credentials are for (set PROD_DB_INSTANCE_ID",
        ),
    ],
    ids=["missing", "not-json", "no-password", "no-username", "bad-port", "no-host"],
)
def test_bad_secrets_are_one_line_without_the_password(secret_only, aws, stored, message):
    if stored is not None:
        store_secret(aws, stored)
    run = dbtool("sessions", "prod")
    line = error_line(run)
    assert run.code == 1 and message in line
    assert PROD_PASSWORD not in run.all and "hunter2" not in run.all


def test_wrong_password_in_the_secret_names_the_secret(secret_only, aws):
    store_secret(aws, console_secret(secret_only) | {"password": "not-the-password"})
    line = error_line(dbtool("sessions", "prod"))
    assert line.startswith(f"error: authentication failed for {PROD_USER}@127.0.0.1:")
    assert f"check the username and password in the Secrets Manager secret {SECRET_ID}" in line
    assert "not-the-password" not in line


def test_secret_and_iam_together_are_refused(secret_only, aws, monkeypatch):
    monkeypatch.setenv("PROD_DB_IAM_AUTH", "1")
    line = error_line(dbtool("sessions", "prod"))
    assert line == "error: both PROD_DB_SECRET_ID and PROD_DB_IAM_AUTH are set (use one way to authenticate)"


@pytest.fixture
def iam(prod: Server, aws: Aws, monkeypatch: pytest.MonkeyPatch, iam_verifier) -> Server:
    """Production through an RDS IAM token: the URL names the user and no password."""
    monkeypatch.setenv("PROD_CONNECTION_URL", f"postgresql://{IAM_USER}@127.0.0.1:{prod.cluster.port}/{DBNAME}")
    monkeypatch.setenv("PROD_DB_IAM_AUTH", "1")
    prod.create()
    iam_verifier.tokens.clear()
    iam_verifier.refusals.clear()
    return prod


def test_iam_token_connects_through_psql_without_showing_it(iam, iam_verifier):
    run = script(
        "db-connect", "prod", "-At", "-c", "select current_user, ssl from pg_stat_ssl where pid = pg_backend_pid()"
    )
    assert run.code == 0, run.err + str(iam_verifier.refusals)
    assert run.out.strip() == f"{IAM_USER}|t"
    [token] = iam_verifier.tokens
    assert token not in run.all and "X-Amz-Signature" not in run.all


def test_each_connection_gets_a_fresh_token(iam, iam_verifier):
    target = resolve_target("prod")
    for _ in range(2):
        with connect(target) as conn:
            assert conn.execute("select current_user").fetchone() == (IAM_USER,)
        time.sleep(1.1)  # tokens are signed to the second
    first, second = iam_verifier.tokens
    assert first != second and iam_verifier.refusals == []
    assert target.sources["password"] == "RDS IAM token, new for each connection (PROD_DB_IAM_AUTH)"
    assert target.params["sslmode"] == "require"  # forced even for 127.0.0.1: RDS only takes tokens over SSL


def test_iam_commands_work_end_to_end(iam, iam_verifier):
    run = dbtool("sessions", "prod", "--json")
    assert run.code == 0, run.err
    assert any(row["user"] == IAM_USER and row["is_self"] for row in json.loads(run.out))


def test_token_signed_with_the_wrong_key_is_refused_with_the_iam_hint(iam, iam_verifier, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-key")
    line = error_line(dbtool("sessions", "prod"))
    assert line.startswith(f"error: authentication failed for {IAM_USER}@127.0.0.1:")
    assert "rds-db:connect" in line and "GRANT rds_iam" in line
    assert iam_verifier.refusals == ["bad signature"] and iam_verifier.tokens == []


def test_iam_without_credentials(iam, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    assert error_line(dbtool("sessions", "prod")).startswith("error: no AWS credentials found to make an RDS IAM token")


def test_iam_refuses_plaintext(iam, monkeypatch):
    monkeypatch.setenv(
        "PROD_CONNECTION_URL", f"postgresql://{IAM_USER}@127.0.0.1:{iam.cluster.port}/{DBNAME}?sslmode=disable"
    )
    assert "PROD_DB_IAM_AUTH needs SSL, but the URL says sslmode=disable" in error_line(dbtool("sessions", "prod"))


def test_iam_needs_a_user(iam, monkeypatch):
    monkeypatch.setenv("PROD_CONNECTION_URL", f"postgresql://127.0.0.1:{iam.cluster.port}/{DBNAME}")
    assert "PROD_DB_IAM_AUTH needs the database user in PROD_CONNECTION_URL" in error_line(dbtool("sessions", "prod"))


@pytest.mark.parametrize(
    ("host", "region"),
    [
        ("cruddur-db-instance.c8abc.us-east-1.rds.amazonaws.com", "us-east-1"),
        ("db.c8abc.eu-west-3.rds.amazonaws.com", "eu-west-3"),
        ("db.c8abc.cn-north-1.rds.amazonaws.com.cn", "cn-north-1"),
        ("127.0.0.1", None),
        ("db.example.com", None),
    ],
)
def test_token_region_comes_from_the_rds_host_name(host, region):
    assert _region_of(host) == region


@pytest.fixture
def verified(prod: Server, monkeypatch: pytest.MonkeyPatch) -> Server:
    prod.create()
    monkeypatch.setenv("HOME", str(Path.cwd()))  # no ~/.postgresql/root.crt to fall back on
    return prod


def _verify_full_url(server: Server, host: str = "127.0.0.1") -> str:
    return (
        server.url(password=PROD_PASSWORD).replace("sslmode=require", "sslmode=verify-full").replace("127.0.0.1", host)
    )


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_verify_full_against_the_test_ca(verified, monkeypatch, host):
    monkeypatch.setenv("PROD_CONNECTION_URL", _verify_full_url(verified, host))
    monkeypatch.setenv("PROD_DB_SSLROOTCERT", str(verified.ca_file))
    target = resolve_target("prod")
    with connect(target) as conn:
        assert conn.pgconn.ssl_in_use
    assert target.params["sslmode"] == "verify-full"


def test_bundle_alone_turns_on_verify_full(verified, monkeypatch, project):
    monkeypatch.setenv("PROD_CONNECTION_URL", verified.url().replace("?sslmode=require", ""))
    (project / "certs").mkdir()
    (project / "certs" / "global-bundle.pem").write_bytes(verified.ca_file.read_bytes())
    (project / ".env").write_text("PROD_DB_SSLROOTCERT=certs/global-bundle.pem\n")  # relative to the project
    target = resolve_target("prod")
    assert target.params["sslmode"] == "verify-full"
    assert target.params["sslrootcert"] == str(project / "certs" / "global-bundle.pem")
    with connect(target) as conn:
        assert conn.pgconn.ssl_in_use


def test_a_certificate_from_another_ca_is_refused(verified, monkeypatch):
    monkeypatch.setenv("PROD_CONNECTION_URL", _verify_full_url(verified))
    monkeypatch.setenv("PROD_DB_SSLROOTCERT", str(verified.ca_file.with_name("other-ca.crt")))
    line = error_line(dbtool("sessions", "prod"))
    assert line.startswith(f"error: the server certificate of {PROD_USER}@127.0.0.1:")
    assert "global-bundle.pem" in line and PROD_PASSWORD not in line


def test_verify_full_without_a_bundle_says_how_to_get_one(verified, monkeypatch):
    monkeypatch.setenv("PROD_CONNECTION_URL", _verify_full_url(verified))
    line = error_line(dbtool("sessions", "prod"))
    assert line.startswith("error: sslmode=verify-full needs a CA bundle to verify the server with, and none is set")
    assert "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem" in line
    assert "PROD_DB_SSLROOTCERT" in line


def test_missing_bundle_file(verified, monkeypatch):
    monkeypatch.setenv("PROD_DB_SSLROOTCERT", "/nonexistent/global-bundle.pem")
    line = error_line(dbtool("sessions", "prod"))
    assert line.startswith("error: the CA bundle /nonexistent/global-bundle.pem does not exist (download")


def test_libpq_itself_refuses_the_other_ca(verified):
    """The other-CA refusal above is libpq's own, not ours: check libpq really refuses it."""
    url = _verify_full_url(verified) + f"&sslrootcert={verified.ca_file.with_name('other-ca.crt')}"
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        psycopg.connect(url).close()
