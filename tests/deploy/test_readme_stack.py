"""The README's CDK stack, deployed: its code run as written, synthesized by aws-cdk-lib, its assets published
as ``cdk deploy`` publishes them (to the bucket ``cdk bootstrap`` makes, which the SSM version parameter vouches
for), and the template created, updated and deleted on ministack, which sends the custom resource Create, Update,
the rollback Update and Delete as CloudFormation does.

What ministack lacks, the test leaves out, and only that: ministack 1.5.33 refuses ``AWS::EC2::NatGateway``,
``AWS::EC2::EIP``, ``AWS::EC2::SecurityGroupIngress`` and ``AWS::EC2::SecurityGroupEgress``, so the VPC's NAT
gateways, their Elastic IPs and the private subnets' default routes (which point at those gateways) go, and in
the direct variant the security group rules written as resources of their own (checked at synth and by cfn-lint
in ``test_cdk.py``; ministack enforces no network rule anyway).

ministack's clusters run no database without Docker: the PostgreSQL the suite starts for them stands in (see
``tests/deploy/ministack.py``). The stack as written reaches it through the RDS Data API. The direct variant
(``vpc=vpc`` in place of ``use_data_api=True``) reaches it over libpq at ``Host`` and ``Port``: the test gives the
cluster the stand-in's port, which ministack reports as ``Endpoint.Port``, and sets ``Host`` to 127.0.0.1, since
without Docker ministack's cluster endpoint is an ``….rds.amazonaws.com`` name that nothing resolves.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from dbtool.targets.project import database_name_from
from tests.conftest import REPO, Server
from tests.deploy.ministack import ACCOUNT, REGION, WHEELS, Cloud, Ministack
from tests.helpers import dbtool
from tests.migrations.test_migrations import V1, V2, V3
from tests.migrations.test_migrations import write as migration

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

# Resource types ministack 1.5.33 does not implement (its CreateStack refuses the template).
LACKING = {"AWS::EC2::NatGateway", "AWS::EC2::EIP", "AWS::EC2::SecurityGroupIngress", "AWS::EC2::SecurityGroupEgress"}
BOOTSTRAP_BUCKET = f"cdk-hnb659fds-assets-{ACCOUNT}-{REGION}"
EXAMPLE = re.compile(r"```python\n(# stack.py \(a CDK app\), after `dbtool deploy package`.*?)```", re.S)


class Deployer:
    """``dbtool deploy package``, the README's app, ``cdk deploy``'s publishing, and CloudFormation's calls."""

    def __init__(self, cloud: Cloud, project: Path, standin: Server, mode: str) -> None:
        self.cloud, self.project, self.standin, self.mode = cloud, project, standin, mode
        self.builds = 0
        cloud.ssm.put_parameter(Name="/cdk-bootstrap/hnb659fds/version", Value="21", Type="String", Overwrite=True)
        if BOOTSTRAP_BUCKET not in [bucket["Name"] for bucket in cloud.s3.list_buckets()["Buckets"]]:
            cloud.s3.create_bucket(Bucket=BOOTSTRAP_BUCKET)

    def template(self, **options: object) -> str:
        """The stack as the README writes it (``options`` added to the initializer's arguments), its assets
        uploaded, as ministack can take it."""
        # In the project (the current directory), as the README says; for ministack's Python, which runs the Lambdas.
        package = dbtool("deploy", "package", "--python", self.cloud.python, "--find-links", str(WHEELS))
        assert package.code == 0, package.all
        self.builds += 1
        outdir = self.project.parent / f"cdk.out-{self.project.name}-{self.builds}"
        code = EXAMPLE.search((REPO / "README.md").read_text())
        assert code is not None
        source = code.group(1).replace("app = App()", "app = App(outdir=OUTDIR)")
        assert "seed=True)" in source and "use_data_api=True" in source
        source = source.replace("seed=True)", "seed=True, **OPTIONS)")
        if self.mode == "direct":
            source = source.replace("use_data_api=True", "vpc=vpc")
        exec(compile(source, "README.md", "exec"), {"OUTDIR": str(outdir), "OPTIONS": options})
        assets = json.loads((outdir / "Cruddur.assets.json").read_text())
        for asset in assets["files"].values():
            for destination in asset["destinations"].values():
                assert destination["bucketName"] == "cdk-hnb659fds-assets-${AWS::AccountId}-${AWS::Region}"
                path = outdir / asset["source"]["path"]
                self.cloud.s3.upload_file(str(path), BOOTSTRAP_BUCKET, destination["objectKey"])
        template = json.loads((outdir / "Cruddur.template.json").read_text())
        return json.dumps(self.for_ministack(template))

    def password(self, stack: str) -> str:
        """The master password ministack generated for the stack's cluster."""
        found = self.cloud.cloudformation.describe_stack_resources(StackName=stack)["StackResources"]
        [arn] = [r["PhysicalResourceId"] for r in found if r["ResourceType"] == "AWS::SecretsManager::Secret"]
        return json.loads(self.cloud.secrets.get_secret_value(SecretId=arn)["SecretString"])["password"]

    def for_ministack(self, template: dict[str, Any]) -> dict[str, Any]:
        resources = template["Resources"]
        gone = {name for name, resource in resources.items() if resource["Type"] in LACKING}
        gone |= {
            name
            for name, resource in resources.items()
            if resource["Type"] == "AWS::EC2::Route" and "NatGatewayId" in resource["Properties"]
        }
        kinds = sorted({resources[name]["Type"] for name in gone})
        if self.mode == "direct":  # the rules that let the function reach the database, and limit its egress
            assert kinds == sorted(LACKING | {"AWS::EC2::Route"}), kinds
        else:  # no security group rule at all: the function is outside the VPC
            assert kinds == ["AWS::EC2::EIP", "AWS::EC2::NatGateway", "AWS::EC2::Route"], kinds
        for name in gone:
            del resources[name]
        for resource in resources.values():
            if isinstance(resource.get("DependsOn"), list):
                resource["DependsOn"] = [name for name in resource["DependsOn"] if name not in gone]
            assert not set(re.findall(r'"(?:Ref|Fn::GetAtt)": \["?([A-Za-z0-9]+)', json.dumps(resource))) & gone
        if self.mode == "direct":
            [cluster] = [r for r in resources.values() if r["Type"] == "AWS::RDS::DBCluster"]
            assert cluster["Properties"]["Port"] == 5432  # CDK writes PostgreSQL's default
            cluster["Properties"]["Port"] = self.standin.cluster.port
            [custom] = [r for r in resources.values() if r["Type"] == "Custom::DbtoolUp"]
            assert custom["Properties"]["Host"]["Fn::GetAtt"][1] == "Endpoint.Address"
            custom["Properties"]["Host"] = "127.0.0.1"
        return template


def rows(server: Server, database: str, query: str) -> list[tuple]:
    with psycopg.connect(server.url(database)) as conn:
        return conn.execute(query).fetchall()


def exists(server: Server, database: str) -> bool:
    return rows(server, "postgres", f"SELECT 1 FROM pg_database WHERE datname = '{database}'") == [(1,)]


def applied(server: Server, database: str) -> list[str]:
    return [row[0] for row in rows(server, database, "SELECT version FROM schema_migrations ORDER BY version")]


def tables(server: Server, database: str) -> list[str]:
    query = "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations'"
    return sorted(row[0] for row in rows(server, database, query))


@pytest.fixture
def cloud(ministack: Ministack) -> Cloud:
    return Cloud(ministack)


@pytest.fixture
def standin(aurora: Server, project: Path) -> Server:
    name = sql.Identifier(database_name_from(project))
    with aurora.admin() as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
    return aurora


@pytest.mark.parametrize("mode", ["data-api", "direct"])
def test_the_readme_stack_from_create_to_delete(ministack, cloud, standin, project, mode):
    ministack.data_api.reset_counts()
    deploy = Deployer(cloud, project, standin, mode)
    database = database_name_from(project)  # the README passes no database_name: the project directory's
    cf = cloud.cloudformation
    migration(project, V1, "bio", "ALTER TABLE users ADD COLUMN bio text;")
    stack = cf.create_stack(StackName=f"Cruddur-{mode}", TemplateBody=deploy.template())["StackId"]
    assert cloud.settle(stack) == "CREATE_COMPLETE", cloud.events(stack, "DbUp")
    assert applied(standin, database) == [V1]
    assert rows(standin, database, "SELECT count(*) FROM activities") == [(3,)]  # seed=True, on Create
    passwords = [deploy.password(stack)]

    # A migration: a new fingerprint and package, so CloudFormation updates the function and sends an Update.
    migration(project, V2, "posts", "CREATE TABLE posts (id int);")
    cf.update_stack(StackName=stack, TemplateBody=deploy.template())
    assert cloud.settle(stack) == "UPDATE_COMPLETE", cloud.events(stack, "DbUp")
    assert applied(standin, database) == [V1, V2] and "posts" in tables(standin, database)

    # A migration that fails: the reason names its file and line; the rollback Update (old package and
    # properties) applies nothing, and the database is as it was.
    bad = migration(project, V3, "bad", "CREATE TABLE likes (id int);\nSELEC oops;")
    cf.update_stack(StackName=stack, TemplateBody=deploy.template())
    assert cloud.settle(stack) == "UPDATE_ROLLBACK_COMPLETE", cloud.events(stack, "DbUp")
    reasons = cloud.reasons(stack, "DbUp", "UPDATE_FAILED")
    assert any(f'db/migrations/{V3}_bad.sql:3:1: syntax error at or near "SELEC"' in r for r in reasons), reasons
    assert applied(standin, database) == [V1, V2] and "likes" not in tables(standin, database)
    bad.unlink()

    # A rename would be a replacement whose Delete drops the old database: refused, and rolled back.
    cf.update_stack(StackName=stack, TemplateBody=deploy.template(database_name="renamed"))
    assert cloud.settle(stack) == "UPDATE_ROLLBACK_COMPLETE", cloud.events(stack, "DbUp")
    reasons = cloud.reasons(stack, "DbUp", "UPDATE_FAILED")
    assert any(f"DatabaseName cannot change from {database} to renamed" in r for r in reasons), reasons
    assert not exists(standin, "renamed") and applied(standin, database) == [V1, V2]

    # Deleting the stack keeps the database (on_delete retain, the default).
    cf.delete_stack(StackName=stack)
    assert cloud.settle(stack) == "DELETE_COMPLETE", cloud.events(stack, "DbUp")
    assert applied(standin, database) == [V1, V2]

    # A stack that says on_delete="drop" adopts the database as it is, and takes it with it.
    dropping = cf.create_stack(StackName=f"Dropping-{mode}", TemplateBody=deploy.template(on_delete="drop"))
    assert cloud.settle(dropping["StackId"]) == "CREATE_COMPLETE", cloud.events(dropping["StackId"], "DbUp")
    assert applied(standin, database) == [V1, V2]
    passwords.append(deploy.password(dropping["StackId"]))
    cf.delete_stack(StackName=dropping["StackId"])
    assert cloud.settle(dropping["StackId"]) == "DELETE_COMPLETE", cloud.events(dropping["StackId"], "DbUp")
    assert not exists(standin, database)

    # Each variant went its own way: through the Data API, or straight to the cluster's endpoint.
    assert (ministack.data_api.calls.total > 0) == (mode == "data-api"), ministack.data_api.calls

    # The generated master passwords appear in no event and no log line.
    seen = json.dumps(cloud.events(stack, "") + cloud.events(dropping["StackId"], "")) + cloud.logs()
    assert all(len(password) >= 20 and password not in seen for password in passwords)
