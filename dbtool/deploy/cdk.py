"""``DatabaseInitializer``: a CDK construct that runs ``dbtool up`` on a stack's database whenever its SQL changes.

Needs the ``dbtool[cdk]`` extra (aws-cdk-lib v2). It creates the function from the zip ``dbtool deploy
package`` writes (its Python and architecture read from the zip's manifest), a raw custom resource (the
handler answers CloudFormation itself, always, before its own timeout) whose ``Fingerprint`` property is
computed at synth time from the project's database files, so changing any of them is an Update, and the
permissions and network access it needs. Everything it can check is checked at synth, as one clear error
(or a warning where the stack may still work).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from aws_cdk import Annotations, CfnResource, CustomResource, Duration, RemovalPolicy, Token
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from constructs import Construct

from dbtool.deploy.cloudformation import ON_DELETE
from dbtool.deploy.fingerprint import fingerprint
from dbtool.deploy.package import MANIFEST
from dbtool.targets.project import database_name_from

RESOURCE_TYPE = "Custom::DbtoolUp"
LAMBDA_TIMEOUT = Duration.minutes(10)
SERVICE_TIMEOUT = Duration.minutes(15)  # CloudFormation's own wait: well under its default hour
HTTPS = 443  # Secrets Manager, and the presigned S3 URL the reply goes to
ARCHITECTURES = {"x86_64": lambda_.Architecture.X86_64, "arm64": lambda_.Architecture.ARM_64}


class DatabaseInitializer(Construct):
    """Brings the database of ``instance`` or ``cluster`` to what the project declares, forward only.

    ``secret`` holds the user and password. With ``use_data_api`` (a ``cluster`` only) the function
    reaches the database through the RDS Data API and needs no VPC; otherwise it runs in ``vpc`` (subnets
    with a route out: it must reach Secrets Manager and the reply URL), may send only to HTTPS and the
    database's port, and is let through the database's security group. ``package`` is the zip from
    ``dbtool deploy package`` (default: ``<project_dir>/dbtool-lambda.zip``). ``database_name`` defaults to
    the project directory's name. The custom resource waits for the database's instances and the rule
    that lets the function in.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        secret: Any,
        instance: Any = None,
        cluster: Any = None,
        database_name: str | None = None,
        use_data_api: bool = False,
        project_dir: str | Path = ".",
        package: str | Path | None = None,
        vpc: Any = None,
        vpc_subnets: Any = None,
        on_delete: str = "retain",
        seed: bool = False,
        allow_drift: bool = False,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
    ) -> None:
        super().__init__(scope, construct_id)
        if (instance is None) == (cluster is None):
            raise ValueError("DatabaseInitializer: give exactly one of instance or cluster")
        if use_data_api and cluster is None:
            raise ValueError("DatabaseInitializer: use_data_api needs a cluster (the RDS Data API serves Aurora only)")
        if not use_data_api and vpc is None:
            raise ValueError(
                "DatabaseInitializer: vpc is required to reach the database directly "
                "(pass the database's vpc, or use_data_api=True with an Aurora cluster)"
            )
        if on_delete not in ON_DELETE:
            raise ValueError(f"DatabaseInitializer: on_delete must be retain or drop, not {on_delete!r}")
        # Absolute: jsii resolves asset paths in its own process, whose directory need not be ours.
        project = Path(project_dir).resolve()
        zip_path = Path(package).resolve() if package is not None else project / "dbtool-lambda.zip"
        runtime, architecture = _runtime_of(zip_path)
        database = instance or cluster
        name = database_name or database_name_from(project)
        log_group = logs.LogGroup(self, "Logs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY)
        security_group = None
        if not use_data_api:
            security_group = ec2.SecurityGroup(
                self, "SecurityGroup", vpc=vpc, allow_all_outbound=False, description="dbtool up at deploy time"
            )
            security_group.add_egress_rule(
                ec2.Peer.any_ipv4(), ec2.Port.tcp(HTTPS), "Secrets Manager and CloudFormation's reply URL"
            )
            _warn_if_isolated(self, vpc, vpc_subnets)
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=runtime,
            architecture=architecture,
            handler="dbtool.deploy.handler",
            code=lambda_.Code.from_asset(str(zip_path)),
            timeout=LAMBDA_TIMEOUT,
            memory_size=512,
            log_group=log_group,
            vpc=None if use_data_api else vpc,
            vpc_subnets=None if use_data_api else vpc_subnets,
            security_groups=[security_group] if security_group is not None else None,
        )
        secret.grant_read(self.function)
        properties: dict[str, str] = {
            "SecretArn": secret.secret_arn,
            "DatabaseName": name,
            "Fingerprint": fingerprint(project),
            "OnDelete": on_delete,
            "Seed": "true" if seed else "false",
        }
        if allow_drift:
            properties["AllowDrift"] = "true"
        if use_data_api:
            cluster.grant_data_api_access(self.function)
            properties["ClusterArn"] = cluster.cluster_arn
        else:
            # The ingress on the database's group and the egress on the function's, for the database port.
            database.connections.allow_default_port_from(self.function, "dbtool up at deploy time")
            # An RDS-managed secret has no host, and the function may not describe the database: pass them.
            if instance is not None:
                properties["Host"] = instance.db_instance_endpoint_address
                properties["Port"] = instance.db_instance_endpoint_port
            else:
                properties["Host"] = cluster.cluster_endpoint.hostname
                properties["Port"] = Token.as_string(cluster.cluster_endpoint.port)
        self.resource = CustomResource(
            self,
            "Resource",
            service_token=self.function.function_arn,
            resource_type=RESOURCE_TYPE,
            properties=properties,
            service_timeout=SERVICE_TIMEOUT,
        )
        # Not before the writer exists and the function is let in: the database's instances (a cluster's
        # writer; an instance is already referenced) and the security group rules on either side.
        kinds: tuple[type, ...] = (ec2.CfnSecurityGroupIngress, ec2.CfnSecurityGroupEgress)
        if cluster is not None:
            kinds += (rds.CfnDBInstance,)
        for scope_ in (database, self):
            for child in scope_.node.find_all():
                if isinstance(child, kinds):
                    self.resource.node.add_dependency(child)
        _quiet_implied_dependency(self.function)


def _quiet_implied_dependency(function: lambda_.Function) -> None:
    """CDK's Function depends on its role at the construct level, which its Role property already implies:
    harmless, but cfn-lint warns (W3005) and CDK offers no way to drop a construct-level dependency."""
    resource = function.node.default_child
    if isinstance(resource, CfnResource):
        resource.add_metadata("cfn-lint", {"config": {"ignore_checks": ["W3005"]}})


def _runtime_of(zip_path: Path) -> tuple[lambda_.Runtime, lambda_.Architecture]:
    """The Python and architecture the package was built for, from its manifest."""
    if not zip_path.is_file():
        raise ValueError(f"DatabaseInitializer: {zip_path} not found: build it with dbtool deploy package")
    try:
        with zipfile.ZipFile(zip_path) as archive:
            manifest = json.loads(archive.read(MANIFEST))
        python, arch = str(manifest["python"]), str(manifest["architecture"])
    except (KeyError, ValueError, zipfile.BadZipFile):
        raise ValueError(
            f"DatabaseInitializer: {zip_path} has no {MANIFEST} (built by an older dbtool?): "
            "build it again with dbtool deploy package"
        ) from None
    runtime = getattr(lambda_.Runtime, "PYTHON_" + python.replace(".", "_"), None)
    if runtime is None or arch not in ARCHITECTURES:
        raise ValueError(f"DatabaseInitializer: {zip_path} is for Python {python} on {arch}, which Lambda lacks")
    return runtime, ARCHITECTURES[arch]


def _warn_if_isolated(scope: Construct, vpc: Any, vpc_subnets: Any) -> None:
    """Isolated subnets have no route out: the function could reach neither Secrets Manager nor its reply URL."""
    try:
        chosen = vpc.select_subnets(**vpc_subnets._values) if vpc_subnets is not None else None
    except Exception:  # a selection CDK itself will refuse, with its own message
        return
    isolated = {subnet.subnet_id for subnet in vpc.isolated_subnets}
    if chosen is not None and chosen.subnets and all(subnet.subnet_id in isolated for subnet in chosen.subnets):
        Annotations.of(scope).add_warning_v2(
            "dbtool:isolated-subnets",
            "DatabaseInitializer: the function is in isolated subnets, where it can reach neither Secrets Manager "
            "nor CloudFormation's reply URL, so the stack would wait out its timeout; choose subnets with egress "
            "(ec2.SubnetType.PRIVATE_WITH_EGRESS), or use_data_api=True",
        )
