"""What a deploy-time run does with a CloudFormation request: ``up`` forward, never backward, never a hang.

One engine under the three entry points (:mod:`dbtool.deploy.handler`): the raw custom resource that
answers CloudFormation itself, the CDK Provider's ``on_event``, and a CDK Trigger.

* **Create / Update** run ``dbtool up`` on the database the properties name.
* **Forward only.** An Update whose files are *behind* the database (an applied migration whose file
  is not in this package, an extension installed above its pin) is what a rollback Update looks like
  (CloudFormation sends the old properties, and the old code, back after a failed update): it
  succeeds without touching the database and says why.
* **Delete** drops nothing unless ``OnDelete`` is ``drop``; a Delete for an id this engine never
  issued (after a failed Create, or one CloudFormation generated) succeeds at once.
* The physical id names the server and database, ``dbtool:<host:port or cluster ARN>/<database>``:
  stable, so a new ``Fingerprint`` is an Update, never a replacement.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dbtool.errors import DbtoolError

logger = logging.getLogger("dbtool.deploy")

ID_PREFIX = "dbtool:"
FAILED_CREATE_ID = "dbtool-create-failed"  # a failed Create's id: its Delete has nothing to undo
TRUE_VALUES = ("true", "1", "yes")
ON_DELETE = ("retain", "drop")
WAIT_MARGIN = 10.0  # seconds kept back from the remaining time for the reply


# The settings the properties stand in for, named as the stack's author wrote them.
PROPERTY_LABELS = {
    "PROD_DB_SECRET_ID": "the SecretArn property",
    "PROD_DATA_API_CLUSTER_ARN": "the ClusterArn property",
    "PROD_DB_NAME": "the DatabaseName property",
    "PROD_CONNECTION_URL": "the Host, Port and DatabaseName properties",
}
# The next steps errors name by kind (DbtoolError.remedy), in the stack's terms.
REMEDIES = {
    "security-group": "the database's security group must let this function in on the database port "
    "(check the Host and Port properties, and the function's VPC and subnets)",
}


class PropertyError(DbtoolError):
    """The custom resource's properties are missing or malformed."""


@dataclass(frozen=True)
class Spec:
    """The resource's properties, parsed (CloudFormation sends every scalar as a string)."""

    secret_arn: str
    host: str | None = None
    port: str | None = None
    database: str | None = None
    cluster_arn: str | None = None
    fingerprint: str = ""
    on_delete: str = "retain"
    seed: bool = False

    @classmethod
    def parse(cls, properties: dict[str, Any]) -> Spec:
        secret = str(properties.get("SecretArn") or "").strip()
        if not secret:
            raise PropertyError(
                "the SecretArn property is required", "the secret with the database's username and password"
            )
        on_delete = str(properties.get("OnDelete") or "retain").strip().lower()
        if on_delete not in ON_DELETE:
            raise PropertyError(f"OnDelete must be retain or drop, not {on_delete!r}")
        port = str(properties.get("Port") or "").strip() or None
        if port is not None and not port.isdigit():
            raise PropertyError(f"Port must be a number, not {port!r}")
        return cls(
            secret_arn=secret,
            host=_text(properties.get("Host")),
            port=port,
            database=_text(properties.get("DatabaseName")),
            cluster_arn=_text(properties.get("ClusterArn")),
            fingerprint=str(properties.get("Fingerprint") or ""),
            on_delete=on_delete,
            seed=str(properties.get("Seed") or "").strip().lower() in TRUE_VALUES,
        )


@dataclass
class Outcome:
    """What to tell CloudFormation."""

    status: str  # SUCCESS or FAILED
    physical_id: str
    data: dict[str, str] = field(default_factory=dict)
    reason: str = ""


def run(
    request_type: str,
    properties: dict[str, Any],
    physical_id: str | None,
    *,
    deadline: float | None = None,
    root: Path | None = None,
) -> Outcome:
    """Carry out one request; never raises for a database or property problem (that is a FAILED outcome)."""
    if request_type == "Delete":
        if not (physical_id or "").startswith(ID_PREFIX):
            never = "nothing to delete: dbtool never created this id"
            return Outcome("SUCCESS", physical_id or FAILED_CREATE_ID, reason=never)
        if str(properties.get("OnDelete") or "retain").strip().lower() != "drop":  # old shapes need not parse
            return Outcome("SUCCESS", physical_id or "", reason="OnDelete is retain: the database was kept")
    fallback = physical_id if request_type != "Create" and physical_id else FAILED_CREATE_ID
    try:
        spec = Spec.parse(properties)
        target = resolve(spec, root or project_root())
        new_id = physical_id_of(target)
        if request_type == "Delete":
            return _delete(target, physical_id or new_id, new_id)
        return _converge(request_type, spec, target, new_id, deadline)
    except DbtoolError as error:
        reason = error.phrase(REMEDIES)
        logger.error("%s failed: %s", request_type, reason)
        return Outcome("FAILED", fallback, reason=reason)


def resolve(spec: Spec, root: Path) -> Any:
    """The target the properties name: a libpq URL with the secret's credentials, or the Data API."""
    from dbtool.targets.project import Project
    from dbtool.targets.resolve import resolve_target

    environ = {key: value for key, value in os.environ.items() if not key.startswith(("PROD_", "CONNECTION_URL"))}
    environ["PROD_DB_SECRET_ID"] = spec.secret_arn
    if spec.cluster_arn:
        environ["PROD_DATA_API_CLUSTER_ARN"] = spec.cluster_arn
        if spec.database:
            environ["PROD_DB_NAME"] = spec.database
    elif spec.host or spec.database:
        from psycopg.conninfo import make_conninfo

        parts = {"host": spec.host, "port": spec.port, "dbname": spec.database}
        environ["PROD_CONNECTION_URL"] = make_conninfo("", **{k: v for k, v in parts.items() if v})
    return resolve_target("prod", config=Project(root, environ=environ, labels=PROPERTY_LABELS))


def physical_id_of(target: Any) -> str:
    return f"{ID_PREFIX}{target.transport.identity}/{target.dbname}"


def project_root() -> Path:
    """``DBTOOL_PROJECT_ROOT``, else the Lambda task root, else the current directory."""
    return Path(os.environ.get("DBTOOL_PROJECT_ROOT") or os.environ.get("LAMBDA_TASK_ROOT") or ".").resolve()


def _converge(request_type: str, spec: Spec, target: Any, physical_id: str, deadline: float | None) -> Outcome:
    from dbtool.ops.converge import Hooks, up
    from dbtool.ops.wait import wait_until_up

    if deadline is not None:  # a cluster can be CREATE_COMPLETE before it accepts connections, or resuming
        wait_until_up(target, timeout=max(1.0, deadline - time.monotonic() - WAIT_MARGIN))
    if request_type == "Update":
        behind = _behind(target)
        if behind:
            logger.info("Update left the database alone: %s", behind)
            return Outcome("SUCCESS", physical_id, _data(target), reason=f"forward only, nothing done: {behind}")
    steps = up(target, seed=spec.seed, hooks=Hooks(step=_log_step, message=logger.info))
    migrate = next((step for step in steps if step.name == "migrate"), None)
    applied = migrate.outcome.split()[1] if migrate is not None and migrate.outcome.startswith("applied") else "0"
    return Outcome("SUCCESS", physical_id, {**_data(target), "MigrationsApplied": applied})


def _delete(target: Any, physical_id: str, named: str) -> Outcome:
    """OnDelete is drop: drop the database, but only the one this resource's id names."""
    if physical_id != named:
        return Outcome(
            "SUCCESS", physical_id, reason=f"the properties name {named}, not this resource: nothing dropped"
        )
    from dbtool.engine.session import open_maintenance_session
    from dbtool.ops.admin import drop_database

    with open_maintenance_session(target) as admin:
        result = drop_database(
            admin,
            target.dbname,
            force=True,
            on_sessions=lambda sessions: logger.info("ending %d sessions", len(sessions)),
        )
    what = "dropped" if result.existed else "was already gone"
    return Outcome("SUCCESS", physical_id, reason=f"OnDelete is drop: database {target.dbname} {what}")


def _log_sessions(sessions: Any) -> None:
    logger.info("ending %d sessions", len(sessions))


def _behind(target: Any) -> str:
    """Why this package's files are older than the database, or "" when they are not."""
    from dbtool.engine.session import open_session
    from dbtool.errors import DatabaseMissing
    from dbtool.migrations.runner import Migrations
    from dbtool.ops.extensions import survey, version_key

    try:
        missing = [entry.version for entry in Migrations(target).status() if entry.state == "missing-file"]
        with open_session(target) as session:
            extensions = survey(session, target.context.declaration.extensions)
    except DatabaseMissing:
        return ""
    ahead = [
        f"{e.name} {e.installed} > {e.declared}"
        for e in extensions
        if e.declared and e.installed and version_key(e.installed) > version_key(e.declared)
    ]
    reasons = []
    if missing:
        reasons.append(f"applied migrations not in this package ({', '.join(missing)}) would need a down migration")
    if ahead:
        reasons.append(f"extensions newer than pinned ({', '.join(ahead)})")
    return "; ".join(reasons)


def _data(target: Any) -> dict[str, str]:
    from dbtool.migrations.runner import Migrations

    applied = [entry.version for entry in Migrations(target).status() if entry.state != "pending"]
    return {
        "DatabaseName": target.dbname,
        "MigrationsApplied": "0",
        "SchemaVersion": max(applied, key=int) if applied else "",
    }


def _log_step(step: Any) -> None:
    logger.info("%-12s %s %6.2fs %s", step.name, "failed" if step.failed else "ok", step.seconds, step.outcome)


def _text(value: Any) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text or None
