"""The prod target through the RDS Data API: an Aurora cluster ARN and a Secrets Manager secret, no URL.

``PROD_DATA_API_CLUSTER_ARN`` set makes ``prod`` go through the Data API. The secret is
``PROD_DB_SECRET_ID`` (a name or an ARN; the API wants the ARN, so a name is looked up once); the
database is ``PROD_DB_NAME``, else the secret's ``dbname``. With an ARN and a database name given,
resolving makes no AWS call at all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dbtool.errors import DbtoolError, TargetNotConfigured

if TYPE_CHECKING:
    from dbtool.targets.project import Config

CLUSTER_VARIABLE = "PROD_DATA_API_CLUSTER_ARN"
DATABASE_VARIABLE = "PROD_DB_NAME"
SECRET_VARIABLE = "PROD_DB_SECRET_ID"  # the same variable as for libpq credentials from Secrets Manager


@dataclass(frozen=True)
class DataApiAddress:
    """Where Data API calls go: the Aurora cluster and the secret whose credentials it uses."""

    cluster_arn: str
    secret_arn: str

    @property
    def cluster(self) -> str:
        """The cluster's identifier: the last part of its ARN."""
        return self.cluster_arn.rsplit(":", 1)[-1]


def resolve_data_api(config: Config, sources: dict[str, str]) -> tuple[DataApiAddress, str] | None:
    """The Data API address and database when ``PROD_DATA_API_CLUSTER_ARN`` is set, else None."""
    cluster = config.get(CLUSTER_VARIABLE)
    if cluster is None:
        return None
    cluster_arn = cluster.value.strip()
    if not cluster_arn.startswith("arn:") or ":cluster:" not in cluster_arn:
        raise DbtoolError(
            f"{config.label(CLUSTER_VARIABLE)} is not an Aurora cluster ARN: {cluster_arn!r}",
            "it looks like arn:aws:rds:us-east-1:123456789012:cluster:my-cluster",
        )
    secret = config.get(SECRET_VARIABLE)
    if secret is None:
        raise TargetNotConfigured(
            f"{config.label(CLUSTER_VARIABLE)} needs {config.label(SECRET_VARIABLE)}",
            "the Data API logs in with a Secrets Manager secret: set its name or ARN",
        )
    secret_id = secret.value.strip()
    database = config.value(DATABASE_VARIABLE)
    sources["url"] = f"{config.label(CLUSTER_VARIABLE)} from {cluster.source}"
    sources["password"] = f"Secrets Manager secret {secret_id}, used by the RDS Data API"
    if secret_id.startswith("arn:") and database:
        sources["dbname"] = config.label(DATABASE_VARIABLE)
        return DataApiAddress(cluster_arn, secret_id), database.strip()
    secret_arn, secret_database = _read_secret(config, secret_id)
    if database:
        sources["dbname"] = config.label(DATABASE_VARIABLE)
    elif secret_database:
        database = secret_database
        sources["dbname"] = f"the secret {secret_id}"
    else:
        raise TargetNotConfigured(
            f"no database name for the Data API target: secret {secret_id} has no dbname",
            f"set {config.label(DATABASE_VARIABLE)}",
        )
    return DataApiAddress(cluster_arn, secret_arn), database.strip()


def _read_secret(config: Config, secret_id: str) -> tuple[str, str | None]:
    """The secret's ARN and its ``dbname``, if it has one (never its password: that stays with AWS)."""
    from dbtool.targets.prodauth import get_secret

    response = get_secret(config, secret_id)
    try:
        values = json.loads(response.get("SecretString") or "")
    except ValueError:
        values = None
    database = values.get("dbname") if isinstance(values, dict) else None
    return response["ARN"], str(database) if database else None
