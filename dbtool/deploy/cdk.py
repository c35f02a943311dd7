"""``DatabaseInitializer``: a CDK construct that runs ``dbtool up`` on a stack's database whenever its SQL changes.

Needs the ``dbtool[cdk]`` extra (aws-cdk-lib v2). It creates the function from the zip ``dbtool deploy
package`` writes, a raw custom resource (the handler answers CloudFormation itself, always, before its
own timeout) whose ``Fingerprint`` property is computed at synth time from the project's database
files, so changing any of them is an Update, and the permissions and network access it needs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import CustomResource, Duration
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from dbtool.deploy.fingerprint import fingerprint

RESOURCE_TYPE = "Custom::DbtoolUp"
LAMBDA_TIMEOUT = Duration.minutes(10)
SERVICE_TIMEOUT = Duration.minutes(15)  # CloudFormation's own wait: well under its default hour


class DatabaseInitializer(Construct):
    """Brings the database of ``instance`` or ``cluster`` to what the project declares, forward only.

    ``secret`` holds the user and password. With ``use_data_api`` (a ``cluster`` only) the function
    reaches the database through the RDS Data API and needs no VPC; otherwise it runs in ``vpc`` and is
    let through the database's security group. ``package`` is the zip from ``dbtool deploy package``
    (default: ``<project_dir>/dbtool-lambda.zip``).
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
    ) -> None:
        super().__init__(scope, construct_id)
        if (instance is None) == (cluster is None):
            raise ValueError("give exactly one of instance or cluster")
        if use_data_api and cluster is None:
            raise ValueError("use_data_api needs a cluster (the RDS Data API serves Aurora only)")
        # Absolute: jsii resolves asset paths in its own process, whose directory need not be ours.
        project = Path(project_dir).resolve()
        zip_path = Path(package).resolve() if package is not None else project / "dbtool-lambda.zip"
        if not zip_path.is_file():
            raise ValueError(f"{zip_path} not found: build it with dbtool deploy package")
        database = instance or cluster
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=lambda_.Runtime.PYTHON_3_12,
            handler="dbtool.deploy.handler",
            code=lambda_.Code.from_asset(str(zip_path)),
            timeout=LAMBDA_TIMEOUT,
            memory_size=512,
            vpc=None if use_data_api else vpc,
            vpc_subnets=None if use_data_api else vpc_subnets,
        )
        secret.grant_read(self.function)
        properties: dict[str, str] = {
            "SecretArn": secret.secret_arn,
            "Fingerprint": fingerprint(project),
            "OnDelete": on_delete,
            "Seed": "true" if seed else "false",
        }
        if database_name:
            properties["DatabaseName"] = database_name
        if use_data_api:
            cluster.grant_data_api_access(self.function)
            properties["ClusterArn"] = cluster.cluster_arn
        else:
            database.connections.allow_default_port_from(self.function, "dbtool up at deploy time")
        self.resource = CustomResource(
            self,
            "Resource",
            service_token=self.function.function_arn,
            resource_type=RESOURCE_TYPE,
            properties=properties,
            service_timeout=SERVICE_TIMEOUT,
        )
