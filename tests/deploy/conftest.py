"""Fixtures of the deploy-time tests: the reply receiver, and a secret naming the suite's server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import DBNAME, LOCAL_PASSWORD, LOCAL_USER, Server
from tests.deploy.events import Receiver


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
