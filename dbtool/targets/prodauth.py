"""Production credentials without a password in a file, and TLS that verifies the server.

Three ways to authenticate to production, in this order of preference for a team:

* ``PROD_DB_IAM_AUTH=1``: an RDS IAM token (a 15-minute SigV4 signature, made locally by botocore)
  is the password, made fresh for each connection, which RDS only accepts over SSL.
* ``PROD_DB_SECRET_ID``: the user and password come from a Secrets Manager secret, in either the
  console/rotation shape ``{engine, host, port, username, password, dbname}`` or the RDS-managed
  shape ``{username, password}``. Host, port and database come from ``PROD_CONNECTION_URL`` when it
  names them, else from the secret, else from the RDS instance (``describe_db_instances``).
* a password in ``PROD_CONNECTION_URL``, as before.

The resolved password only ever lives in the target's conninfo (or is made per connection), and
reaches psql through ``PGPASSWORD``, never argv.
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dbtool.errors import DbtoolError, MalformedUrl

if TYPE_CHECKING:
    from dbtool.targets.project import Config

SECRET_VARIABLE = "PROD_DB_SECRET_ID"
IAM_VARIABLE = "PROD_DB_IAM_AUTH"
INSTANCE_VARIABLE = "PROD_DB_INSTANCE_ID"
ROOTCERT_VARIABLE = "PROD_DB_SSLROOTCERT"
SECRET_ACTIONS = ("secretsmanager:GetSecretValue", "kms:Decrypt (for a customer-managed key)")
INSTANCE_ACTIONS = ("rds:DescribeDBInstances",)
IAM_ACTIONS = ("rds-db:connect on this database user",)
BUNDLE_URL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"
BUNDLE_HINT = f"download the RDS CA bundle: curl -o global-bundle.pem {BUNDLE_URL}, then set {ROOTCERT_VARIABLE}"
VERIFYING_MODES = ("verify-ca", "verify-full")
PLAINTEXT_MODES = ("disable", "allow", "prefer")
TRUE_VALUES = ("1", "true", "yes", "on")
SECRET_SOURCE = "Secrets Manager secret "  # how a secret is named in Target.sources and in hints


class IamTokens:
    """A password source: a new RDS IAM token per call, remembering each so errors can redact it."""

    def __init__(self, rds: Any, host: str, port: int, user: str, region: str) -> None:
        self._rds = rds
        self._args = {"DBHostname": host, "Port": port, "DBUsername": user, "Region": region}
        self.issued: deque[str] = deque(maxlen=16)  # enough for any error being shown; bounded for a pool

    def __call__(self) -> str:
        from dbtool.aws.clients import aws_errors

        with aws_errors(actions=IAM_ACTIONS):
            token: str = self._rds.generate_db_auth_token(**self._args)
        self.issued.append(token)
        return token


def apply_credentials(params: dict[str, str], sources: dict[str, str], config: Config) -> Callable[[], str] | None:
    """Fill in production credentials from AWS when configured; returns a per-connection password source."""
    secret_id = config.get(SECRET_VARIABLE)
    iam = config.get(IAM_VARIABLE)
    use_iam = iam is not None and iam.value.strip().lower() in TRUE_VALUES
    if secret_id is not None and use_iam:
        both = f"both {config.label(SECRET_VARIABLE)} and {config.label(IAM_VARIABLE)} are set"
        raise DbtoolError(both, "use one way to authenticate")
    if secret_id is not None:
        _apply_secret(params, sources, config, secret_id.value.strip())
        return None
    if use_iam:
        return _iam_tokens(params, sources, config)
    return None


def apply_tls(params: dict[str, str], sources: dict[str, str], config: Config) -> None:
    """Point libpq at the RDS CA bundle, and refuse to verify against no bundle at all."""
    bundle = config.get(ROOTCERT_VARIABLE)
    environment_mode = config.value("PGSSLMODE")
    if bundle is not None and "sslrootcert" not in params:
        path = Path(bundle.value).expanduser()
        path = path if path.is_absolute() else config.root / path
        params["sslrootcert"] = str(path)
        sources["sslrootcert"] = f"{config.label(ROOTCERT_VARIABLE)} from {bundle.source}"
        if "sslmode" not in params and environment_mode is None:
            params["sslmode"] = "verify-full"  # a bundle is given to be used
            sources["sslmode"] = f"verify-full because {config.label(ROOTCERT_VARIABLE)} is set"
    mode = params.get("sslmode") or environment_mode or ""
    rootcert = params.get("sslrootcert") or os.environ.get("PGSSLROOTCERT")
    if rootcert and rootcert != "system" and not Path(rootcert).is_file():
        raise DbtoolError(f"the CA bundle {rootcert} does not exist", BUNDLE_HINT)
    if mode in VERIFYING_MODES and not rootcert and not (Path.home() / ".postgresql/root.crt").is_file():
        raise DbtoolError(f"sslmode={mode} needs a CA bundle to verify the server with, and none is set", BUNDLE_HINT)


def get_secret(config: Config, secret_id: str) -> dict[str, Any]:
    """Secrets Manager's GetSecretValue answer for ``secret_id`` (its ARN and SecretString), or an AwsError."""
    from dbtool.aws.clients import aws_errors

    secrets = config.aws_client("secretsmanager")
    missing = f"secret {secret_id} not found in region {secrets.meta.region_name}"
    with aws_errors(
        actions=SECRET_ACTIONS,
        not_found={
            "ResourceNotFoundException": f"{missing} (check {config.label(SECRET_VARIABLE)} and AWS_DEFAULT_REGION)"
        },
    ):
        return secrets.get_secret_value(SecretId=secret_id)  # type: ignore[no-any-return]


def _apply_secret(params: dict[str, str], sources: dict[str, str], config: Config, secret_id: str) -> None:
    response = get_secret(config, secret_id)
    values = _secret_fields(response.get("SecretString"), secret_id)
    where = f"{SECRET_SOURCE}{secret_id}"
    params["user"] = str(values["username"])
    params["password"] = str(values["password"])
    sources["user"] = sources["password"] = where
    for key, field in (("host", "host"), ("port", "port"), ("dbname", "dbname")):
        if not params.get(key) and values.get(field) not in (None, ""):
            params[key] = str(values[field])
            sources[key] = where
    if not params.get("host"):
        _apply_instance(params, sources, config, values, response.get("ARN", ""))
    if any(not part.strip().isdigit() for part in params.get("port", "5432").split(",")):
        raise MalformedUrl(f"the port in {where} is not a number", "fix the secret's port field")


def _secret_fields(text: str | None, secret_id: str) -> dict[str, Any]:
    """The secret's JSON object; never shown, since it holds the password."""
    try:
        values = json.loads(text or "")
    except ValueError:
        values = None
    if not isinstance(values, dict):
        raise DbtoolError(f"secret {secret_id} is not a JSON object", 'store it as {"username": …, "password": …, …}')
    absent = [key for key in ("username", "password") if not values.get(key)]
    if absent:
        raise DbtoolError(f"secret {secret_id} has no {' or '.join(absent)}", "an RDS secret has username and password")
    return values


def _apply_instance(
    params: dict[str, str], sources: dict[str, str], config: Config, secret: dict[str, Any], arn: str
) -> None:
    """Host, port and database of the RDS instance the secret belongs to (RDS-managed secrets hold none)."""
    from dbtool.aws.clients import aws_errors

    setting = config.value(INSTANCE_VARIABLE)
    identifier = setting.strip() if setting else secret.get("dbInstanceIdentifier")
    rds = config.aws_client("rds")
    with aws_errors(
        actions=INSTANCE_ACTIONS,
        not_found={"DBInstanceNotFound": f"RDS instance {identifier} not found (check {INSTANCE_VARIABLE})"},
    ):
        if identifier:
            instances = rds.describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"]
        else:
            pages = rds.get_paginator("describe_db_instances").paginate()
            instances = [
                instance
                for page in pages
                for instance in page["DBInstances"]
                if instance.get("MasterUserSecret", {}).get("SecretArn") == arn
            ]
    if not instances or not instances[0].get("Endpoint"):
        raise DbtoolError(
            "cannot tell which RDS instance the secret's credentials are for",
            f"set {INSTANCE_VARIABLE}, or name host and database in PROD_CONNECTION_URL (without a password)",
        )
    instance = instances[0]
    where = f"RDS instance {instance['DBInstanceIdentifier']}"
    params["host"] = instance["Endpoint"]["Address"]
    sources["host"] = where
    if not params.get("port"):
        params["port"] = str(instance["Endpoint"]["Port"])
    if not params.get("dbname") and instance.get("DBName"):
        params["dbname"] = instance["DBName"]
        sources["dbname"] = where


def _iam_tokens(params: dict[str, str], sources: dict[str, str], config: Config) -> IamTokens:
    from dbtool.aws.clients import AwsError, aws_errors, client, session

    host, user = params.get("host", ""), params.get("user", "")
    iam, url = config.label(IAM_VARIABLE), config.label("PROD_CONNECTION_URL")
    if not host or "," in host or host.startswith("/"):
        raise MalformedUrl(f"{iam} needs one RDS host name in {url}")
    if not user:
        raise MalformedUrl(
            f"{iam} needs the database user in {url}",
            "e.g. postgresql://cruddur_iam@host:5432/cruddur (a user granted rds_iam)",
        )
    if params.get("sslmode") in PLAINTEXT_MODES:
        raise DbtoolError(
            f"{iam} needs SSL, but the URL says sslmode={params['sslmode']}",
            "RDS refuses IAM tokens without SSL: use sslmode=require or verify-full",
        )
    if "sslmode" not in params:
        params["sslmode"] = "require"
        sources["sslmode"] = f"required by {iam}"
    if params.pop("password", None) is not None:
        sources["ignored"] = "the URL's password (an IAM token is used instead)"
    aws = session(config)
    with aws_errors():
        if aws.get_credentials() is None:
            raise AwsError(f"no AWS credentials found to make an RDS IAM token ({iam})")
    rds = client(config, "rds", region=_region_of(host), aws_session=aws)
    sources["password"] = f"RDS IAM token, new for each connection ({iam})"
    port = int(params.get("port") or 5432)
    return IamTokens(rds, host, port, user, rds.meta.region_name)


def _region_of(host: str) -> str | None:
    """``us-east-1`` from ``db.xxxx.us-east-1.rds.amazonaws.com``: the token must be signed for the DB's region."""
    parts = host.lower().split(".")
    if len(parts) >= 5 and parts[-3:-1] == ["rds", "amazonaws"]:
        return parts[-4]
    if len(parts) >= 6 and parts[-4:-2] == ["rds", "amazonaws"]:  # amazonaws.com.cn
        return parts[-5]
    return None
