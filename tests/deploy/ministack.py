"""CloudFormation on ministack (a local AWS emulator that runs Python Lambdas as subprocesses, no Docker).

ministack pins botocore exactly, so it lives in its own virtual environment (``.cache/ministack``, made by
``bin/run-tests``) and runs as a server process on loopback; the Lambdas run under its Python, with its botocore,
as Lambda's runtime provides boto3 and botocore beside the package. Without Docker ministack runs no database:
its RDS clusters and instances are metadata whose endpoint is 127.0.0.1 and the cluster's ``Port``, and its RDS
Data API answers from a stub. So the stacks' Lambdas see, through ministack's own environment (which each Lambda
inherits), the suite's test-only Data API (``tests/dataapi_server.py``) over a real PostgreSQL that stands in for
Aurora; the Data API there serves exactly the clusters ministack knows.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dbtool.local.cluster import free_port
from tests.conftest import REPO
from tests.dataapi_server import ApiError, DataApiServer, moto_secrets

MINISTACK = REPO / ".cache" / "ministack" / "bin" / "python"  # made by bin/run-tests
WHEELS = REPO / ".cache" / "lambda-wheels"  # fetched by bin/run-tests
ACCOUNT, REGION = "000000000000", "us-east-1"  # ministack's
FINAL = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "ROLLBACK_COMPLETE", "DELETE_COMPLETE"}
FINAL |= {"CREATE_FAILED", "ROLLBACK_FAILED", "UPDATE_ROLLBACK_FAILED", "DELETE_FAILED"}


@dataclass(frozen=True)
class Ministack:
    endpoint: str
    python: str  # the version the Lambdas run under
    data_api: DataApiServer


def client(endpoint: str, service: str) -> Any:
    import boto3

    session = boto3.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name=REGION)
    return session.client(service, endpoint_url=endpoint)


class KnownClusters:
    """The Data API's clusters: those ministack has (an unknown ARN is refused as AWS refuses it), each served by
    the stand-in PostgreSQL."""

    def __init__(self, rds: Any, address: str) -> None:
        self.rds, self.address = rds, address

    def get(self, arn: str) -> str | None:
        clusters = self.rds.describe_db_clusters()["DBClusters"]
        return self.address if any(cluster["DBClusterArn"] == arn for cluster in clusters) else None


@contextmanager
def running(workdir: Path, standin: str) -> Iterator[Ministack]:
    """ministack on a free loopback port, its Lambdas' ``rds-data`` calls sent to a Data API over ``standin``
    (``host:port`` of the PostgreSQL that plays Aurora)."""
    assert MINISTACK.exists(), "run ./bin/run-tests: it installs ministack, which these tests run stacks on"
    version = subprocess.run(
        [str(MINISTACK), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert version in ("3.11", "3.12"), (
        f"ministack runs on Python {version}; bin/run-tests fetches Lambda wheels for 3.11 and 3.12"
    )
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    secrets = client(endpoint, "secretsmanager")
    data_api = DataApiServer(KnownClusters(client(endpoint, "rds"), standin), _secrets(secrets), sslmode="require")
    home = workdir / "ministack"
    home.mkdir()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "GATEWAY_PORT": str(port),
        "BIND_HOST": "127.0.0.1",
        "MINISTACK_HOST": "127.0.0.1",  # the ResponseURL's host
        "LAMBDA_EXECUTOR": "local",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL_RDS_DATA": data_api.endpoint,  # botocore prefers it to ministack's AWS_ENDPOINT_URL
    }
    log = (home / "ministack.log").open("wb")
    process = subprocess.Popen([str(MINISTACK), "-m", "ministack"], cwd=home, env=env, stdout=log, stderr=log)
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/_ministack/health", timeout=2).close()
                break
            except OSError as error:
                if process.poll() is not None or time.monotonic() > deadline:
                    log_text = (home / "ministack.log").read_text()[-3000:]
                    raise RuntimeError(f"ministack did not start:\n{log_text}") from error
                time.sleep(0.2)
        yield Ministack(endpoint, version, data_api)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # a Lambda still running
            process.kill()
            process.wait()
        log.close()
        data_api.close()


def _secrets(secretsmanager: Any) -> Any:
    read = moto_secrets(secretsmanager)  # the same calls and errors on ministack

    def checked(arn: str) -> dict[str, Any]:
        value = read(arn)
        if "username" not in value or "password" not in value:
            raise ApiError("BadRequestException", "The secret doesn't contain the expected keys")
        return value

    return checked


class Cloud:
    """boto3 clients on ministack, and what tests read back from a stack."""

    def __init__(self, ministack: Ministack) -> None:
        self.python = ministack.python
        self.cloudformation = client(ministack.endpoint, "cloudformation")
        self.s3 = client(ministack.endpoint, "s3")
        self.secrets = client(ministack.endpoint, "secretsmanager")
        self.cloudwatch = client(ministack.endpoint, "logs")
        self.ssm = client(ministack.endpoint, "ssm")
        self.rds = client(ministack.endpoint, "rds")

    def settle(self, stack: str, wait: float = 180) -> str:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            status = self.cloudformation.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"]
            if status in FINAL:
                return status
            time.sleep(0.2)
        last = "\n".join(self.logs().splitlines()[-20:])
        raise AssertionError(f"{stack} did not settle; the functions' last log lines:\n{last}")

    def outputs(self, stack: str) -> dict[str, str]:
        found = self.cloudformation.describe_stacks(StackName=stack)["Stacks"][0].get("Outputs", [])
        return {output["OutputKey"]: output["OutputValue"] for output in found}

    def logs(self) -> str:
        """Everything the functions logged, in order."""
        lines = []
        for group in self.cloudwatch.describe_log_groups(logGroupNamePrefix="/aws/lambda/")["logGroups"]:
            found = self.cloudwatch.filter_log_events(logGroupName=group["logGroupName"])["events"]
            lines += [(event["timestamp"], event["message"].rstrip("\n")) for event in found]
        return "\n".join(message for _, message in sorted(lines, key=lambda line: line[0]))

    def events(self, stack: str, resource: str) -> list[tuple[str, str, str]]:
        """(resource, status, reason) for ``resource`` (a logical id, or its start), oldest first."""
        found = self.cloudformation.describe_stack_events(StackName=stack)["StackEvents"]
        return [
            (event["LogicalResourceId"], event["ResourceStatus"], event.get("ResourceStatusReason", ""))
            for event in reversed(found)
            if event["LogicalResourceId"].startswith(resource)
        ]

    def reasons(self, stack: str, resource: str, status: str) -> list[str]:
        return [reason for _, found, reason in self.events(stack, resource) if found == status]
