"""``dbtool doctor`` for a target that goes through the RDS Data API: no DNS, TCP or TLS of ours to check.

What can stop a Data API call instead: the cluster (found, Aurora PostgreSQL, a version the Data API
serves, its HTTP endpoint enabled), the secret (readable by this identity, with a user and a
password), the call itself, the database, and the server. Each is one line, like the libpq steps.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from dbtool.errors import DatabaseMissing, DbtoolError
from dbtool.ops.doctor import FAIL, OK, SKIP, Check

if TYPE_CHECKING:
    from dbtool.targets.resolve import Target

STEPS = ("configuration", "cluster", "secret", "data api", "database", "server", "psql")
# The first minor release of each major that the Data API serves on Aurora PostgreSQL (v2 and provisioned).
MINIMUM_VERSIONS = {13: 11, 14: 8, 15: 3, 16: 1, 17: 4}
ENABLE_HINT = "enable it: aws rds enable-http-endpoint --resource-arn {arn} (or EnableHttpEndpoint in the stack)"


def diagnose_data_api(target: Target) -> Iterator[Check]:
    """Every step of reaching the target's database through the Data API, in order."""
    assert target.transport.kind == "data-api"
    sources = target.sources
    yield Check(
        "configuration",
        OK,
        f"PRODUCTION {target.display} via {sources.get('url')}; credentials: {sources.get('password')}; "
        f"database from {sources.get('dbname')}",
    )
    yield _cluster(target)
    secret = _secret(target)
    yield secret
    if secret.failed:
        yield from (Check(step, SKIP, "needs a readable secret") for step in ("data api", "database", "server"))
    else:
        yield from _statements(target)
    yield Check("psql", SKIP, "not used: the Data API target has no network route (dbtool connect needs one)")


def _config(target: Target) -> Any:
    return target.context


def _cluster(target: Target) -> Check:
    from dbtool.aws.clients import AwsError, aws_errors

    arn = target.data_api.cluster_arn  # type: ignore[union-attr]
    try:
        rds = _config(target).aws_client("rds")
        with aws_errors(
            actions=("rds:DescribeDBClusters (for doctor only: the Data API does not need it)",),
            not_found={"DBClusterNotFoundFault": f"no cluster {arn} in this account and region"},
        ):
            clusters = rds.describe_db_clusters(DBClusterIdentifier=arn)["DBClusters"]
    except AwsError as error:
        if "denied" in error.message:
            return Check("cluster", SKIP, f"cannot describe the cluster: {error.message}", error.hint)
        return Check("cluster", FAIL, error.message, error.hint or "check PROD_DATA_API_CLUSTER_ARN and the region")
    cluster = clusters[0]
    engine, version = cluster.get("Engine", "?"), cluster.get("EngineVersion", "?")
    about = f"{cluster.get('DBClusterIdentifier')}: {engine} {version}, {cluster.get('Status', '?')}"
    if engine != "aurora-postgresql":
        return Check("cluster", FAIL, about, "dbtool's Data API target needs Aurora PostgreSQL")
    too_old = _too_old(version)
    if too_old is not None:
        return Check("cluster", FAIL, f"{about}: the Data API needs {too_old} or newer", "upgrade the cluster")
    if not cluster.get("HttpEndpointEnabled"):
        return Check("cluster", FAIL, f"{about}, Data API (HTTP endpoint) not enabled", ENABLE_HINT.format(arn=arn))
    return Check("cluster", OK, f"{about}, Data API enabled")


def _too_old(version: str) -> str | None:
    found = re.match(r"(\d+)\.(\d+)", version)
    if found is None:
        return None
    major, minor = int(found.group(1)), int(found.group(2))
    least = MINIMUM_VERSIONS.get(major)
    if least is None:
        return None if major > max(MINIMUM_VERSIONS) else f"{min(MINIMUM_VERSIONS)}.{MINIMUM_VERSIONS[13]}"
    return f"{major}.{least}" if minor < least else None


def _secret(target: Target) -> Check:
    import json

    from dbtool.aws.clients import AwsError, aws_errors
    from dbtool.targets.prodauth import SECRET_ACTIONS

    arn = target.data_api.secret_arn  # type: ignore[union-attr]
    try:
        with aws_errors(actions=SECRET_ACTIONS, not_found={"ResourceNotFoundException": f"secret {arn} not found"}):
            text = _config(target).aws_client("secretsmanager").get_secret_value(SecretId=arn).get("SecretString")
    except AwsError as error:
        return Check("secret", FAIL, error.message, error.hint)
    try:
        values = json.loads(text or "")
    except ValueError:
        values = None
    if not isinstance(values, dict) or not values.get("username") or not values.get("password"):
        return Check("secret", FAIL, f"secret {arn} has no username and password", "an RDS secret holds both")
    return Check("secret", OK, f"{arn} is readable: user {values['username']}")


def _statements(target: Target) -> Iterator[Check]:
    from dbtool.engine.session import SqlError, open_maintenance_session, open_session

    started = time.monotonic()
    try:
        with open_session(target) as session:
            session.execute("SELECT 1")
            took = (time.monotonic() - started) * 1000
            yield Check("data api", OK, f"SELECT 1 answered ({took:.0f} ms)")
            yield Check("database", OK, f"{target.dbname} exists")
            yield _server(session)
        return
    except DatabaseMissing as missing:
        yield Check("data api", OK, "the cluster answered")
        yield Check("database", FAIL, missing.message, missing.hint)
        with open_maintenance_session(target) as session:
            yield _server(session)
    except (SqlError, DbtoolError) as error:
        message = error.message if isinstance(error, DbtoolError) else error.describe()
        yield Check("data api", FAIL, message, getattr(error, "hint", None))
        yield from (Check(step, SKIP, "needs a working call") for step in ("database", "server"))


def _server(session: Any) -> Check:
    version, in_recovery = session.execute("SELECT current_setting('server_version'), pg_is_in_recovery()").one()
    replica = ", a read-only replica (in recovery)" if in_recovery else ""
    return Check("server", OK, f"PostgreSQL {version}{replica}")
