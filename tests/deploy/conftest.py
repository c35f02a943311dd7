"""Fixtures of the deploy-time tests: the reply receiver, a secret naming the suite's server, and ministack with
the PostgreSQL that stands in for its clusters."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import DBNAME, LOCAL_PASSWORD, LOCAL_USER, Server, start_server
from tests.deploy.events import Receiver
from tests.deploy.ministack import Ministack, running

AURORA_USER = "postgres"  # the master username CDK gives an Aurora PostgreSQL cluster


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


@pytest.fixture
def secret(aws, local: Server, project: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A secret in the console shape (the port a string), and the project as the Lambda's task root."""
    monkeypatch.setenv("DBTOOL_PROJECT_ROOT", str(project))
    monkeypatch.delenv("CONNECTION_URL", raising=False)
    value = {
        "engine": "postgres",
        "username": LOCAL_USER,
        "password": LOCAL_PASSWORD,
        "host": "127.0.0.1",
        "port": str(local.cluster.port),
        "dbname": DBNAME,
    }
    return aws.client("secretsmanager").create_secret(Name="cruddur/db", SecretString=json.dumps(value))["ARN"]


@pytest.fixture(scope="session")
def aurora(workdir: Path, pki: Path) -> Iterator[Server]:
    """The PostgreSQL behind ministack's clusters. SSL only; ministack generates the master password at deploy
    time, where no test can read it before the Lambda uses it, so this server trusts loopback over SSL."""
    trust = ("hostssl all all 127.0.0.1/32 trust",)
    cluster = start_server(workdir, "aurora", AURORA_USER, "unused", ssl=True, hba_first=trust)
    yield Server(cluster, AURORA_USER, "unused", ssl=True, ca_file=pki / "ca.crt")
    cluster.stop()


@pytest.fixture(scope="session")
def ministack(workdir: Path, aurora: Server) -> Iterator[Ministack]:
    with running(workdir, f"127.0.0.1:{aurora.cluster.port}") as found:
        yield found
