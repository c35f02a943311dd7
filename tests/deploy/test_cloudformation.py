"""The deploy-time handler as CloudFormation runs it: stacks on ministack (a local AWS emulator that runs Python
Lambdas as subprocesses, no Docker), the function built by ``dbtool deploy package`` and uploaded to its S3, the
secret in its Secrets Manager, the real PostgreSQL the suite starts. CloudFormation itself sends Create, Update,
the rollback Update after a failed one, and Delete, and reads the replies the function PUTs back.

ministack pins botocore exactly, so it lives in its own virtual environment (``.cache/ministack``, made by
``bin/run-tests``) and runs as a server process on loopback; the Lambda runs under its Python, with its botocore,
as Lambda's runtime provides boto3 and botocore beside the package.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from dbtool.deploy.fingerprint import fingerprint
from dbtool.local.cluster import free_port
from tests.conftest import DBNAME, LOCAL_PASSWORD, LOCAL_USER, REPO, Server
from tests.helpers import dbtool
from tests.migrations.test_migrations import V1, V2, applied, tables
from tests.migrations.test_migrations import write as migration

MINISTACK = REPO / ".cache" / "ministack" / "bin" / "python"  # made by bin/run-tests
WHEELS = REPO / ".cache" / "lambda-wheels"  # fetched by bin/run-tests
ROLE = "arn:aws:iam::123456789012:role/dbtool-up"
FINAL = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "ROLLBACK_COMPLETE", "DELETE_COMPLETE"}
FINAL |= {"CREATE_FAILED", "ROLLBACK_FAILED", "UPDATE_ROLLBACK_FAILED", "DELETE_FAILED"}


@pytest.fixture(scope="session")
def ministack(workdir: Path) -> Iterator[tuple[str, str]]:
    """ministack's endpoint, and its Python's version, which the Lambdas run under."""
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
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    log = (home / "ministack.log").open("wb")
    process = subprocess.Popen([str(MINISTACK), "-m", "ministack"], cwd=home, env=env, stdout=log, stderr=log)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/_ministack/health", timeout=2).close()
            break
        except OSError as error:
            if process.poll() is not None or time.monotonic() > deadline:
                log_text = (home / "ministack.log").read_text()[-3000:]
                raise RuntimeError(f"ministack did not start:\n{log_text}") from error
            time.sleep(0.2)
    yield endpoint, version
    process.terminate()
    process.wait(timeout=10)
    log.close()


class Cloud:
    """boto3 clients on ministack, and a bucket for the function's packages."""

    def __init__(self, endpoint: str, python: str) -> None:
        self.python = python
        import boto3

        session = boto3.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
        self.cloudformation = session.client("cloudformation", endpoint_url=endpoint)
        self.s3 = session.client("s3", endpoint_url=endpoint)
        self.secrets = session.client("secretsmanager", endpoint_url=endpoint)
        self.cloudwatch = session.client("logs", endpoint_url=endpoint)
        self.bucket = f"assets-{time.monotonic_ns()}"
        self.s3.create_bucket(Bucket=self.bucket)

    def publish(self, project: Path, tmp_path: Path) -> str:
        """``dbtool deploy package`` of the project as it is now, uploaded under its fingerprint (as CDK does)."""
        key = f"{fingerprint(project)}.zip"
        out = tmp_path / key
        # The Lambda runs under ministack's Python: the wheels must be built for it.
        run = dbtool("deploy", "package", "--out", str(out), "--python", self.python, "--find-links", str(WHEELS))
        assert run.code == 0, run.all
        self.s3.upload_file(str(out), self.bucket, key)
        return key

    def template(self, key: str, properties: dict[str, str]) -> str:
        return json.dumps(
            {
                "Resources": {
                    "Up": {
                        "Type": "AWS::Lambda::Function",
                        "Properties": {
                            "Runtime": f"python{self.python}",
                            "Handler": "dbtool.deploy.handler",
                            "Code": {"S3Bucket": self.bucket, "S3Key": key},
                            "Role": ROLE,
                            "Timeout": 120,
                        },
                    },
                    "Database": {
                        "Type": "Custom::DbtoolUp",
                        "Properties": {"ServiceToken": {"Fn::GetAtt": ["Up", "Arn"]}, **properties},
                    },
                },
                "Outputs": {
                    "Id": {"Value": {"Ref": "Database"}},
                    "SchemaVersion": {"Value": {"Fn::GetAtt": ["Database", "SchemaVersion"]}},
                    "MigrationsApplied": {"Value": {"Fn::GetAtt": ["Database", "MigrationsApplied"]}},
                },
            }
        )

    def settle(self, stack: str) -> str:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status = self.cloudformation.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"]
            if status in FINAL:
                return status
            time.sleep(0.2)
        raise AssertionError(f"{stack} did not settle")

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

    def events(self, stack: str) -> list[tuple[str, str, str]]:
        """(resource, status, reason) for the custom resource, oldest first."""
        found = self.cloudformation.describe_stack_events(StackName=stack)["StackEvents"]
        return [
            (event["LogicalResourceId"], event["ResourceStatus"], event.get("ResourceStatusReason", ""))
            for event in reversed(found)
            if event["LogicalResourceId"] == "Database"
        ]


@pytest.fixture
def cloud(ministack: tuple[str, str], local: Server) -> Cloud:
    return Cloud(*ministack)


@pytest.fixture
def secret(cloud: Cloud, local: Server) -> str:
    value = {
        "engine": "postgres",
        "username": LOCAL_USER,
        "password": LOCAL_PASSWORD,
        "host": "127.0.0.1",
        "port": local.cluster.port,  # a number, as RDS writes it
        "dbname": DBNAME,
    }
    name = f"cruddur/db-{time.monotonic_ns()}"
    return cloud.secrets.create_secret(Name=name, SecretString=json.dumps(value))["ARN"]


def test_a_stack_from_create_to_delete(cloud, secret, local, project, tmp_path):
    migration(project, V1, "bio", "ALTER TABLE users ADD COLUMN bio text;", "ALTER TABLE users DROP COLUMN bio;")
    properties = {"SecretArn": secret, "Fingerprint": fingerprint(project), "Seed": "true"}
    cf = cloud.cloudformation
    # By id, which still names the stack after it is deleted, as on AWS.
    stack = cf.create_stack(StackName="app", TemplateBody=cloud.template(cloud.publish(project, tmp_path), properties))
    stack = stack["StackId"]
    assert cloud.settle(stack) == "CREATE_COMPLETE", cloud.events(stack)
    physical = f"dbtool:127.0.0.1:{local.cluster.port}/{DBNAME}"
    assert cloud.outputs(stack) == {"Id": physical, "SchemaVersion": V1, "MigrationsApplied": "1"}
    assert applied(local) == [V1]
    with psycopg.connect(local.url()) as conn:
        assert conn.execute("SELECT count(*) FROM activities").fetchone() == (3,)  # seeded on Create

    # A new migration: a new package and fingerprint, so CloudFormation sends an Update; the id stays.
    migration(project, V2, "posts", "CREATE TABLE posts (id int);", "DROP TABLE posts;")
    second = {**properties, "Fingerprint": fingerprint(project)}
    second_key = cloud.publish(project, tmp_path)
    cf.update_stack(StackName=stack, TemplateBody=cloud.template(second_key, second))
    assert cloud.settle(stack) == "UPDATE_COMPLETE", cloud.events(stack)
    assert cloud.outputs(stack) == {"Id": physical, "SchemaVersion": V2, "MigrationsApplied": "1"}
    assert "posts" in tables(local)

    # A migration that fails: the update fails with the file and line, CloudFormation rolls back (the old
    # package, the old properties), the rollback Update touches nothing, and the stack is as it was.
    bad = migration(project, "20260103000000", "bad", "CREATE TABLE likes (id int);\nSELEC oops;")
    third = {**properties, "Fingerprint": fingerprint(project)}
    cf.update_stack(StackName=stack, TemplateBody=cloud.template(cloud.publish(project, tmp_path), third))
    assert cloud.settle(stack) == "UPDATE_ROLLBACK_COMPLETE", cloud.events(stack)
    reasons = [reason for _, status, reason in cloud.events(stack) if status == "UPDATE_FAILED"]
    assert any('db/migrations/20260103000000_bad.sql:3:1: syntax error at or near "SELEC"' in r for r in reasons)
    statuses = [status for _, status, _ in cloud.events(stack)]
    assert statuses[-3:] == ["UPDATE_FAILED", "UPDATE_IN_PROGRESS", "UPDATE_COMPLETE"], cloud.events(stack)
    # The function's own log: the rollback Update ran the old package (V1 and V2 on disk), applying nothing.
    logs = cloud.logs()
    replies = [line.split()[1] for line in logs.splitlines() if line.startswith("INFO:dbtool.deploy:reply ")]
    assert replies == ["SUCCESS", "SUCCESS", "FAILED", "SUCCESS"], logs
    assert "migrate      ok" in logs.split("reply FAILED")[1] and "applied 0 of 2" in logs.split("reply FAILED")[1]
    assert "botocore" not in logs  # only dbtool's lines at INFO
    assert applied(local) == [V1, V2] and "likes" not in tables(local)
    assert cloud.outputs(stack)["SchemaVersion"] == V2
    bad.unlink()

    # Deleting the stack keeps the database (OnDelete retain, the default).
    cf.delete_stack(StackName=stack)
    assert cloud.settle(stack) == "DELETE_COMPLETE"
    assert local.exists() and applied(local) == [V1, V2]
    assert any(status == "DELETE_COMPLETE" for _, status, _ in cloud.events(stack))

    # A stack that says OnDelete drop takes its database with it; the one that kept it is adopted as it is.
    dropping = {**second, "OnDelete": "drop"}
    dropper = cf.create_stack(StackName="dropping", TemplateBody=cloud.template(second_key, dropping))["StackId"]
    assert cloud.settle(dropper) == "CREATE_COMPLETE", cloud.events(dropper)
    assert cloud.outputs(dropper) == {"Id": physical, "SchemaVersion": V2, "MigrationsApplied": "0"}
    cf.delete_stack(StackName=dropper)
    assert cloud.settle(dropper) == "DELETE_COMPLETE", cloud.events(dropper)
    assert not local.exists()
    assert LOCAL_PASSWORD not in json.dumps(cloud.events(stack) + cloud.events(dropper)) + cloud.logs()


def test_a_failed_create_rolls_back_and_leaves_no_database(cloud, secret, local, project, tmp_path):
    (project / "db" / "schema.sql").write_text("CREATE TABLE a (id int);\nSELECT nope;\n")
    properties = {"SecretArn": secret, "Fingerprint": fingerprint(project)}
    cloud.cloudformation.create_stack(
        StackName="broken", TemplateBody=cloud.template(cloud.publish(project, tmp_path), properties)
    )
    assert cloud.settle("broken") == "ROLLBACK_COMPLETE", cloud.events("broken")
    reasons = [reason for _, status, reason in cloud.events("broken") if status == "CREATE_FAILED"]
    assert any(reason.startswith('db/schema.sql:2:8: column "nope" does not exist') for reason in reasons), reasons
    assert tables(local) == []  # the schema's transaction rolled back; the database it created stays, empty

    # The next deploy, with the schema fixed, loads it into that empty database.
    (project / "db" / "schema.sql").write_text("CREATE TABLE a (id int);\n")
    properties = {"SecretArn": secret, "Fingerprint": fingerprint(project)}
    cloud.cloudformation.create_stack(
        StackName="fixed", TemplateBody=cloud.template(cloud.publish(project, tmp_path), properties)
    )
    assert cloud.settle("fixed") == "CREATE_COMPLETE", cloud.events("fixed")
    assert tables(local) == ["a"]
