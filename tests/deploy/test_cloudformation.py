"""The deploy-time handler as CloudFormation runs it: stacks on ministack (a local AWS emulator that runs Python
Lambdas as subprocesses, no Docker), the function built by ``dbtool deploy package`` and uploaded to its S3, the
secret in its Secrets Manager, the real PostgreSQL the suite starts. CloudFormation itself sends Create, Update,
the rollback Update after a failed one, and Delete, and reads the replies the function PUTs back.

These stacks are hand-written around the function (a secret naming the suite's server); ``test_readme_stack``
deploys the README's CDK stack itself. ministack's setup: ``tests/deploy/ministack.py``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import psycopg
import pytest

from dbtool.deploy.fingerprint import fingerprint
from tests.conftest import DBNAME, LOCAL_PASSWORD, LOCAL_USER, Server
from tests.deploy.ministack import WHEELS, Cloud, Ministack
from tests.helpers import dbtool
from tests.migrations.test_migrations import V1, V2, applied, tables
from tests.migrations.test_migrations import write as migration

ROLE = "arn:aws:iam::123456789012:role/dbtool-up"


class HandWritten(Cloud):
    """A hand-written template around the function, and a bucket for its packages."""

    def __init__(self, ministack: Ministack) -> None:
        super().__init__(ministack)
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

    def events(self, stack: str) -> list[tuple[str, str, str]]:  # type: ignore[override]
        return super().events(stack, "Database")


@pytest.fixture
def cloud(ministack: Ministack, local: Server) -> HandWritten:
    return HandWritten(ministack)


@pytest.fixture
def secret(cloud: HandWritten, local: Server) -> str:
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
