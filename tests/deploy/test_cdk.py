"""The CDK construct, synthesized: the function, the custom resource with its fingerprint, permissions, network."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from dbtool.deploy.fingerprint import fingerprint

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")


def write_package(path: Path, manifest: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("dbtool/__init__.py", "")
        if manifest is not None:
            archive.writestr("dbtool-package.json", json.dumps(manifest))
    return path


@pytest.fixture
def package(project: Path) -> Path:
    return write_package(project / "dbtool-lambda.zip", {"python": "3.12", "architecture": "x86_64"})


def synth(project: Path, *, data_api: bool, stack_out: list | None = None, **options: object) -> object:
    from aws_cdk import App, Stack
    from aws_cdk import aws_ec2 as ec2
    from aws_cdk import aws_rds as rds
    from aws_cdk.assertions import Template

    from dbtool.cdk import DatabaseInitializer

    app = App()
    stack = Stack(app, "App")
    vpc = ec2.Vpc(stack, "Vpc", max_azs=2)
    engine = rds.DatabaseClusterEngine.aurora_postgres(version=rds.AuroraPostgresEngineVersion.VER_17_7)
    cluster = rds.DatabaseCluster(
        stack,
        "Db",
        engine=engine,
        vpc=vpc,
        writer=rds.ClusterInstance.serverless_v2("Writer"),
        enable_data_api=data_api,
    )
    arguments: dict[str, object] = {"vpc": vpc, "seed": True, **options}
    if callable(arguments.get("vpc_subnets")):
        arguments["vpc_subnets"] = arguments["vpc_subnets"](ec2)  # type: ignore[operator]
    DatabaseInitializer(
        stack, "Init", secret=cluster.secret, cluster=cluster, use_data_api=data_api, project_dir=project, **arguments
    )
    if stack_out is not None:
        stack_out.append(stack)
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
    # Not a finding in the whole stack: the README's engine version is current (W3690 flagged 16.4).
    assert lint(template, project / "readme-template.json", everything=True) == ([], [])


def test_the_database_name_is_always_passed_and_host_and_port_in_direct_mode(project, package):
    from aws_cdk.assertions import Match

    from dbtool.targets.project import database_name_from

    template = synth(project, data_api=False)
    template.has_resource_properties(
        "Custom::DbtoolUp",
        {
            "DatabaseName": database_name_from(project),
            "Host": {"Fn::GetAtt": [Match.string_like_regexp("^Db"), "Endpoint.Address"]},
            "Port": {"Fn::GetAtt": [Match.string_like_regexp("^Db"), "Endpoint.Port"]},
        },
    )
    named = synth(project, data_api=True, database_name="cruddur")
    named.has_resource_properties("Custom::DbtoolUp", {"DatabaseName": "cruddur", "Host": Match.absent()})


def test_the_resource_waits_for_the_writer_and_the_rule_that_lets_the_function_in(project, package):
    template = synth(project, data_api=False).to_json()  # type: ignore[attr-defined]
    resources = template["Resources"]
    [custom] = [r for r in resources.values() if r["Type"] == "Custom::DbtoolUp"]
    writers = [name for name, r in resources.items() if r["Type"] == "AWS::RDS::DBInstance"]
    ingress = [
        name
        for name, r in resources.items()
        if r["Type"] == "AWS::EC2::SecurityGroupIngress"
        and r["Properties"].get("Description") == "dbtool up at deploy time"
    ]
    assert writers and ingress
    assert set(writers + ingress) <= set(custom["DependsOn"]), custom["DependsOn"]


def test_the_function_may_send_only_to_https_and_the_database_port_and_its_logs_expire(project, package):
    template = synth(project, data_api=False).to_json()  # type: ignore[attr-defined]
    resources = template["Resources"]
    [group] = [
        r
        for r in resources.values()
        if r["Type"] == "AWS::EC2::SecurityGroup" and r["Properties"]["GroupDescription"] == "dbtool up at deploy time"
    ]
    inline = group["Properties"]["SecurityGroupEgress"]
    separate = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::EC2::SecurityGroupEgress"]
    ports = sorted({json.dumps([rule["FromPort"], rule["ToPort"]]) for rule in inline + separate})
    assert ports[0] == "[443, 443]" and len(ports) == 2, ports  # HTTPS and the cluster's port (a token)
    assert all(rule.get("IpProtocol") == "tcp" for rule in inline + separate)
    [log_group] = [r for r in resources.values() if r["Type"] == "AWS::Logs::LogGroup"]
    assert log_group["Properties"]["RetentionInDays"] == 30


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"vpc": None}, "vpc is required to reach the database directly"),
        ({"on_delete": "destroy"}, "on_delete must be retain or drop, not 'destroy'"),
    ],
)
def test_options_that_would_fail_late_fail_at_synth(project, package, options, message):
    with pytest.raises(ValueError, match=message):
        synth(project, data_api=False, **options)


def test_isolated_subnets_are_a_warning_at_synth(project, package):
    from aws_cdk import App, Stack
    from aws_cdk import aws_ec2 as ec2
    from aws_cdk import aws_rds as rds
    from aws_cdk.assertions import Annotations, Match

    from dbtool.cdk import DatabaseInitializer

    stack = Stack(App(), "Isolated")
    subnets = [ec2.SubnetConfiguration(name="db", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)]
    vpc = ec2.Vpc(stack, "Vpc", max_azs=2, subnet_configuration=subnets, nat_gateways=0)
    instance = rds.DatabaseInstance(
        stack,
        "Db",
        engine=rds.DatabaseInstanceEngine.postgres(version=rds.PostgresEngineVersion.VER_17_7),
        vpc=vpc,
        vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
    )
    DatabaseInitializer(
        stack,
        "Init",
        secret=instance.secret,
        instance=instance,
        project_dir=project,
        vpc=vpc,
        vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
    )
    Annotations.from_stack(stack).has_warning("/Isolated/Init", Match.string_like_regexp("isolated subnets"))


def test_the_runtime_and_architecture_come_from_the_package(project):
    write_package(project / "dbtool-lambda.zip", {"python": "3.13", "architecture": "arm64"})
    template = synth(project, data_api=True)
    template.has_resource_properties(  # type: ignore[attr-defined]
        "AWS::Lambda::Function",
        {"Handler": "dbtool.deploy.handler", "Runtime": "python3.13", "Architectures": ["arm64"]},
    )
    write_package(project / "dbtool-lambda.zip")  # an older package, without its manifest
    with pytest.raises(ValueError, match=r"has no dbtool-package.json \(built by an older dbtool\?\)"):
        synth(project, data_api=True)


def lint(template: dict, path: Path, *, everything: bool = False) -> tuple[list, list]:
    """cfn-lint's errors on the whole template, and its findings of any level on dbtool's resources (or,
    with ``everything``, on any resource)."""
    path.write_text(json.dumps(template))
    ours = {name for name in template["Resources"] if name.startswith(("Init", "DbUp"))}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), "--format", "json", str(path)], capture_output=True, text=True
    )
    findings = json.loads(result.stdout or "[]")
    errors = [finding for finding in findings if finding["Level"] == "Error" or everything]
    mine = [finding for finding in findings if set(map(str, finding["Location"]["Path"][:2])) & ours]
    return errors, mine


def test_cfn_lint_finds_nothing_in_the_synthesized_templates(project, package, tmp_path):
    """cfn-lint on both variants: no errors at all, and no finding on dbtool's own resources."""
    for data_api in (False, True):
        template = synth(project, data_api=data_api).to_json()  # type: ignore[attr-defined]
        errors, mine = lint(template, tmp_path / f"template-{data_api}.json")
        assert errors == [] and mine == [], errors + mine
