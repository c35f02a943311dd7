"""The CDK construct, synthesized: the function, the custom resource with its fingerprint, permissions, network."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest

from dbtool.deploy.fingerprint import fingerprint

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")


@pytest.fixture
def package(project: Path) -> Path:
    path = project / "dbtool-lambda.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("dbtool/__init__.py", "")
    return path


def synth(project: Path, *, data_api: bool) -> object:
    from aws_cdk import App, Stack
    from aws_cdk import aws_ec2 as ec2
    from aws_cdk import aws_rds as rds
    from aws_cdk.assertions import Template

    from dbtool.cdk import DatabaseInitializer

    app = App()
    stack = Stack(app, "App")
    vpc = ec2.Vpc(stack, "Vpc", max_azs=2)
    engine = rds.DatabaseClusterEngine.aurora_postgres(version=rds.AuroraPostgresEngineVersion.VER_16_4)
    cluster = rds.DatabaseCluster(
        stack,
        "Db",
        engine=engine,
        vpc=vpc,
        writer=rds.ClusterInstance.serverless_v2("Writer"),
        enable_data_api=data_api,
    )
    DatabaseInitializer(
        stack,
        "Init",
        secret=cluster.secret,
        cluster=cluster,
        use_data_api=data_api,
        project_dir=project,
        vpc=vpc,
        seed=True,
    )
    return Template.from_stack(stack)


def test_the_construct_runs_up_from_the_package_whenever_the_sql_changes(project, package):
    from aws_cdk.assertions import Match

    template = synth(project, data_api=False)
    template.has_resource_properties(
        "AWS::Lambda::Function", {"Handler": "dbtool.deploy.handler", "Runtime": "python3.12", "Timeout": 600}
    )
    template.has_resource_properties(
        "Custom::DbtoolUp",
        {
            "Fingerprint": fingerprint(project),
            "OnDelete": "retain",
            "Seed": "true",
            "SecretArn": Match.any_value(),
            "ServiceTimeout": "900",  # CloudFormation's wait for the reply: 15 minutes, not an hour
        },
    )
    template.has_resource_properties(
        "AWS::IAM::Policy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [Match.object_like({"Action": Match.array_with(["secretsmanager:GetSecretValue"])})]
                )
            }
        },
    )
    template.has_resource_properties(  # the function may reach the database's port
        "AWS::EC2::SecurityGroupIngress", {"Description": "dbtool up at deploy time", "FromPort": Match.any_value()}
    )


def test_the_data_api_variant_needs_no_vpc_and_gets_rds_data(project, package):
    from aws_cdk.assertions import Match

    template = synth(project, data_api=True)
    template.has_resource_properties("Custom::DbtoolUp", {"ClusterArn": Match.any_value()})
    functions = template.find_resources("AWS::Lambda::Function", {"Properties": {"Handler": "dbtool.deploy.handler"}})
    assert len(functions) == 1 and "VpcConfig" not in next(iter(functions.values()))["Properties"]
    template.has_resource_properties(
        "AWS::IAM::Policy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [Match.object_like({"Action": Match.array_with(["rds-data:ExecuteStatement"])})]
                )
            }
        },
    )


def test_a_missing_package_says_how_to_build_it(project):
    with pytest.raises(ValueError, match=r"dbtool-lambda.zip not found: build it with dbtool deploy package"):
        synth(project, data_api=False)


def test_the_readme_stack_synthesizes_as_written(project, package):
    import re

    from tests.helpers import REPO

    readme = (REPO / "README.md").read_text()
    example = re.search(r"```python\n(# stack.py \(a CDK app\), after `dbtool deploy package`.*?)```", readme, re.S)
    assert example is not None
    namespace: dict[str, object] = {}
    exec(compile(example.group(1), "README.md", "exec"), namespace)  # the README's own example
    template = namespace["app"].synth().get_stack_by_name("Cruddur").template  # type: ignore[attr-defined]
    [resource] = [r for r in template["Resources"].values() if r["Type"] == "Custom::DbtoolUp"]
    assert resource["Properties"]["Fingerprint"] == fingerprint(project)
    assert "ClusterArn" in resource["Properties"]
