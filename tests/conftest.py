"""Test fixtures: two real PostgreSQL servers started for the session, and a clean environment.

``local`` is a plain server with scram passwords; ``prod`` is "prod-like": SSL required,
scram-sha-256, a superuser named like an RDS master (``cruddurroot``, containing the database
name that the old scripts' sed mangled) whose password is full of URL-hostile characters.
A missing PostgreSQL is an error, never a skip: CI must not go green without a server.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from dbtool.local.cluster import Cluster, find_bindir, free_port, service_user
from tests.dataapi_server import DataApiServer, moto_secrets
from tests.iam_verifier import IamTokenVerifier
from tests.services import IpService, closed_port_url

REPO = Path(__file__).resolve().parent.parent
LOCAL_USER, LOCAL_PASSWORD = "postgres", "local-Secret-42"
PROD_USER, PROD_PASSWORD = "cruddurroot", "p@ss:w/o?r#d%!'\" $x\\y&=+"
IAM_USER = "cruddur_iam"  # on the prod server, authenticated by an RDS IAM token (see iam_verifier)
AWS_SECRET_KEY, AWS_REGION = "testing", "us-east-1"
DBNAME = "cruddur"


@dataclass(frozen=True)
class Server:
    """A running test server and a superuser on it."""

    cluster: Cluster
    user: str
    password: str
    ssl: bool
    ca_file: Path | None = None  # the CA that signed the server's certificate (for sslmode=verify-full)

    def url(self, dbname: str = DBNAME, *, password: str | None = None, user: str | None = None) -> str:
        query = {"sslmode": "require"} if self.ssl else {}
        return self.cluster.url(user or self.user, self.password if password is None else password, dbname, **query)

    def admin(self, dbname: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(self.url(dbname), autocommit=True)

    def reset(self, dbname: str = DBNAME) -> None:
        """Drop ``dbname`` and every template setup kept, so each test starts from nothing."""
        with self.admin() as conn:
            for name in [dbname, *self.templates()]:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def templates(self) -> list[str]:
        """The databases setup keeps as templates (commented ``dbtool template …``), by name."""
        query = (
            "SELECT d.datname FROM pg_database d JOIN pg_shdescription s ON s.objoid = d.oid"
            " AND s.classoid = 'pg_database'::regclass WHERE s.description LIKE 'dbtool template %' ORDER BY 1"
        )
        with self.admin() as conn:
            return [row[0] for row in conn.execute(query)]

    def create(self, dbname: str = DBNAME) -> None:
        with self.admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))

    def exists(self, dbname: str = DBNAME) -> bool:
        with self.admin() as conn:
            row = conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", [dbname]).fetchone()
            return bool(row and row[0])

    def dump(self, dbname: str = DBNAME, *flags: str) -> str:
        """pg_dump of schema and data: 'exactly as before' is compared on this."""
        env = {**os.environ, "PGPASSWORD": self.password}
        result = subprocess.run(
            [str(self.cluster.bindir / "pg_dump"), "--no-owner", *flags, "--dbname", self.url(dbname, password="")],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        # \restrict lines carry a random key per run (pg_dump 15.14+); everything else must match.
        return "\n".join(
            line for line in result.stdout.splitlines() if not line.startswith(("\\restrict", "\\unrestrict"))
        )


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    # Readable by the unprivileged server user when the tests run as root.
    path = Path(tempfile.mkdtemp(prefix="dbtool-tests-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def start_server(
    workdir: Path, name: str, user: str, password: str, *, ssl: bool, hba_first: tuple[str, ...] = ()
) -> Cluster:
    cluster = Cluster(workdir / name, free_port(), find_bindir(), service_user())
    settings: dict[str, str | int] = {
        "fsync": "off",
        "full_page_writes": "off",
        "synchronous_commit": "off",
        "password_encryption": "scram-sha-256",
        "max_connections": 50,
    }
    files: dict[str, str] = {}
    hba = ["host all all 127.0.0.1/32 scram-sha-256"]
    if ssl:
        files = {name: (workdir / "pki" / name).read_text() for name in ("server.key", "server.crt")}
        settings |= {"ssl": "on", "ssl_cert_file": "server.crt", "ssl_key_file": "server.key"}
        hba = [*hba_first, "hostssl all all 127.0.0.1/32 scram-sha-256", "hostnossl all all 0.0.0.0/0 reject"]
    cluster.init(user, password, settings=settings, hba=hba, files=files)
    cluster.start()
    return cluster


@pytest.fixture(scope="session")
def pki(workdir: Path) -> Path:
    """A test CA, a server certificate it signed for 127.0.0.1 and localhost, and an unrelated CA."""
    directory = workdir / "pki"
    directory.mkdir()

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory)

    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "other-ca"):
        openssl(
            "req",
            "-x509",
            *key,
            "-days",
            "2",
            "-subj",
            f"/CN=dbtool test {ca}",
            "-keyout",
            f"{ca}.key",
            "-out",
            f"{ca}.crt",
        )
    openssl("req", "-new", *key, "-subj", "/CN=localhost", "-keyout", "server.key", "-out", "server.csr")
    (directory / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-extfile", "san.ext", "-out", "server.crt",
    )  # fmt: skip
    return directory


@pytest.fixture(scope="session")
def iam_verifier() -> Iterator[IamTokenVerifier]:
    verifier = IamTokenVerifier(AWS_SECRET_KEY, AWS_REGION)
    yield verifier
    verifier.close()


@pytest.fixture(scope="session")
def local_server(workdir: Path) -> Iterator[Server]:
    cluster = start_server(workdir, "local", LOCAL_USER, LOCAL_PASSWORD, ssl=False)
    yield Server(cluster, LOCAL_USER, LOCAL_PASSWORD, ssl=False)
    cluster.stop()


@pytest.fixture(scope="session")
def prod_server(workdir: Path, pki: Path, iam_verifier: IamTokenVerifier) -> Iterator[Server]:
    iam = (iam_verifier.hba_line(IAM_USER),)
    cluster = start_server(workdir, "prod", PROD_USER, PROD_PASSWORD, ssl=True, hba_first=iam)
    iam_verifier.endpoint = f"127.0.0.1:{cluster.port}"
    server = Server(cluster, PROD_USER, PROD_PASSWORD, ssl=True, ca_file=pki / "ca.crt")
    with server.admin() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(IAM_USER)))
    yield server
    cluster.stop()


ISOLATED_PREFIXES = ("PG", "AWS_", "DBTOOL_", "PROD_DB_", "DB_SG_", "GITPOD_")
ISOLATED_NAMES = ("CONNECTION_URL", "PROD_CONNECTION_URL", "GITHUB_USER", "CODESPACE_NAME")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No developer shell variable may leak into a test; every test runs in its own empty project.

    AWS is cut off from the machine too: no shared config or credentials files, and no instance
    metadata service (which botocore would otherwise look for off loopback when keys are missing),
    and AWS and IP detection go to closed loopback ports unless a test starts moto or its own service.
    """
    for name in list(os.environ):
        if name.startswith(ISOLATED_PREFIXES) or name in ISOLATED_NAMES:
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("DBTOOL_LOCAL_SERVER", "off")  # no initdb behind a test's back; test_localserver turns it on
    monkeypatch.setenv("DBTOOL_IP_SERVICES", closed_port_url())  # never the real IP services
    monkeypatch.setenv("AWS_ENDPOINT_URL", closed_port_url().rstrip("/"))  # nor real AWS: the aws fixture sets moto
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project directory holding the real db/schema.sql and db/seed.sql, as the current directory."""
    shutil.copytree(REPO / "db", tmp_path / "db")
    return tmp_path


@pytest.fixture
def local(local_server: Server, project: Path, monkeypatch: pytest.MonkeyPatch) -> Server:
    """The local target configured through CONNECTION_URL, with no database yet."""
    local_server.reset()
    monkeypatch.setenv("CONNECTION_URL", local_server.url())
    return local_server


@pytest.fixture
def prod(prod_server: Server, project: Path, monkeypatch: pytest.MonkeyPatch) -> Server:
    """The prod target configured through PROD_CONNECTION_URL, with no database yet."""
    prod_server.reset()
    monkeypatch.setenv("PROD_CONNECTION_URL", prod_server.url())
    return prod_server


@dataclass(frozen=True)
class Aws:
    """moto as a real HTTP server, reset for each test, with the variables a workspace would have."""

    endpoint: str
    region: str = "us-east-1"

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id="testing",
            aws_secret_access_key=AWS_SECRET_KEY,
        )


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no request log in the test output
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Aws:
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST")).close()
    for name, value in {
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET_KEY,
        "AWS_DEFAULT_REGION": AWS_REGION,
    }.items():
        monkeypatch.setenv(name, value)
    return Aws(moto_endpoint)


CLUSTER_ARN = "arn:aws:rds:us-east-1:123456789012:cluster:cruddur-aurora"
SECRET_NAME = "cruddur/aurora"


@pytest.fixture(scope="session")
def data_api_server(prod_server: Server, moto_endpoint: str) -> Iterator[DataApiServer]:
    """The test-only RDS Data API over the prod-like server; secrets come from moto, as on AWS."""
    secrets = Aws(moto_endpoint).client("secretsmanager")
    clusters = {CLUSTER_ARN: f"127.0.0.1:{prod_server.cluster.port}"}
    server = DataApiServer(clusters, moto_secrets(secrets), sslmode="require")
    yield server
    server.close()


@dataclass(frozen=True)
class DataApi:
    """The prod target configured for the RDS Data API: cluster ARN and secret, no connection URL."""

    server: DataApiServer
    db: Server
    secret_arn: str


@pytest.fixture
def data_api(data_api_server: DataApiServer, aws: Aws, prod_server: Server, project: Path, monkeypatch) -> DataApi:
    data_api_server.forget_connections()
    prod_server.reset()
    secret = aws.client("secretsmanager").create_secret(
        Name=SECRET_NAME,
        SecretString=json.dumps(
            {"engine": "postgres", "username": PROD_USER, "password": PROD_PASSWORD, "dbname": DBNAME}
        ),
    )
    monkeypatch.setenv("PROD_DATA_API_CLUSTER_ARN", CLUSTER_ARN)
    monkeypatch.setenv("PROD_DB_SECRET_ID", SECRET_NAME)
    monkeypatch.setenv("AWS_ENDPOINT_URL_RDS_DATA", data_api_server.endpoint)
    data_api_server.reset_counts()
    return DataApi(data_api_server, prod_server, secret["ARN"])


@pytest.fixture
def ip_service(monkeypatch: pytest.MonkeyPatch) -> Iterator[IpService]:
    """The only IP-detection service dbtool may ask; each test sets its answer."""
    service = IpService()
    monkeypatch.setenv("DBTOOL_IP_SERVICES", service.url)
    yield service
    service.close()


@dataclass(frozen=True)
class Through:
    """A target for the loader suites: the local server over libpq, or the prod-like one over the Data API."""

    server: Server
    args: tuple[str, ...]  # what selects it on the command line
    transport: str


@pytest.fixture(params=["libpq", "data-api"])
def through(request, project) -> Through:
    if request.param == "libpq":
        return Through(request.getfixturevalue("local"), (), "libpq")
    return Through(request.getfixturevalue("data_api").db, ("prod", "--yes"), "data-api")
