"""The CloudFormation adapter: a custom resource's properties and request types, over :mod:`dbtool.deploy.forward`.

One adapter under the three entry points (:mod:`dbtool.deploy.entry`): the raw custom resource that
answers CloudFormation itself, the CDK Provider's ``on_event``, and a CDK Trigger.

* **Create / Update** bring the database the properties name forward (``up``).
* **Safe on a live database.** Before migrating a database that already holds a schema, its schema is
  compared with what the package's files produce (a throwaway database beside it, dropped after), and drift
  fails the request unless ``AllowDrift`` is true; a pending migration with a hazard nobody acknowledged
  fails it too (:mod:`dbtool.migrations.hazards`). Either way nothing is applied.
* **Forward only.** An Update whose files are *behind* the database is what a rollback Update looks
  like (CloudFormation sends the old properties, and the old code, back after a failed update): it
  succeeds without touching the database and says why.
* **Delete** drops nothing unless ``OnDelete`` is ``drop``; a Delete for an id this adapter never
  issued (after a failed Create, or one CloudFormation generated) succeeds at once.
* The physical id names the server and database, ``dbtool:<host:port or cluster ARN>/<database>``:
  stable, so a new ``Fingerprint`` is an Update, never a replacement.
* Errors are phrased in the stack's terms: settings by the properties they came from, next steps as
  what to fix in the stack (never a CLI variable or a ``./bin`` script).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dbtool.deploy.forward import Spec, drop, forward, project_root, resolve
from dbtool.errors import DbtoolError

logger = logging.getLogger("dbtool.deploy")

ID_PREFIX = "dbtool:"
FAILED_CREATE_ID = "dbtool-create-failed"  # a failed Create's id: its Delete has nothing to undo
TRUE_VALUES = ("true", "1", "yes")
ON_DELETE = ("retain", "drop")
REQUEST_TYPES = ("Create", "Update", "Delete")
KNOWN_PROPERTIES = ("SecretArn", "Host", "Port", "DatabaseName", "ClusterArn", "Seed", "AllowDrift", "Fingerprint")
MAX_PORT = 65535
MAX_NAME_BYTES = 63  # PostgreSQL's NAMEDATALEN - 1: a longer name is silently truncated, so refused
# The settings the properties stand in for, named as the stack's author wrote them.
PROPERTY_LABELS = {
    "PROD_DB_SECRET_ID": "the SecretArn property",
    "PROD_DATA_API_CLUSTER_ARN": "the ClusterArn property",
    "PROD_DB_NAME": "the DatabaseName property",
    "PROD_CONNECTION_URL": "the Host, Port and DatabaseName properties",
}
# The next steps errors name by kind (DbtoolError.remedy), in the stack's terms.
REMEDIES = {
    "drift": "or set the AllowDrift property to migrate it as it is",
    "security-group": "the database's security group must let this function in on the database port "
    "(check the Host and Port properties, and the function's VPC and subnets)",
}


class PropertyError(DbtoolError):
    """The custom resource's properties are missing or malformed."""


@dataclass(frozen=True)
class Properties:
    """The resource's properties, parsed (CloudFormation sends every scalar as a string)."""

    spec: Spec
    fingerprint: str = ""
    on_delete: str = "retain"

    @classmethod
    def parse(cls, properties: dict[str, Any]) -> Properties:
        """Checked as CloudFormation sends them (every scalar a string): a malformed value fails at once."""
        text = {name: _scalar(properties, name) for name in KNOWN_PROPERTIES}
        secret = text["SecretArn"]
        if not secret:
            raise PropertyError(
                "the SecretArn property is required", "the secret with the database's username and password"
            )
        port = text["Port"]
        if port is not None and not (port.isdigit() and 1 <= int(port) <= MAX_PORT):
            raise PropertyError(f"the Port property must be a port number (1-{MAX_PORT}), not {port!r}")
        database = text["DatabaseName"]
        if database is not None and len(database.encode()) > MAX_NAME_BYTES:
            raise PropertyError(
                f"the DatabaseName property is {len(database.encode())} bytes; "
                f"PostgreSQL names are at most {MAX_NAME_BYTES}"
            )
        spec = Spec(
            secret_arn=secret,
            host=text["Host"],
            port=port,
            database=database,
            cluster_arn=text["ClusterArn"],
            seed=(text["Seed"] or "").lower() in TRUE_VALUES,
            allow_drift=(text["AllowDrift"] or "").lower() in TRUE_VALUES,
        )
        return cls(spec, text["Fingerprint"] or "", on_delete(properties))


def on_delete(properties: dict[str, Any]) -> str:
    """``OnDelete``: ``retain`` (the default) or ``drop``."""
    value = (_scalar(properties, "OnDelete") or "retain").lower()
    if value not in ON_DELETE:
        raise PropertyError(f"the OnDelete property must be retain or drop, not {value!r}")
    return value


def _scalar(properties: dict[str, Any], name: str) -> str | None:
    """A property as text (stripped; None when absent or empty); an object or a list is refused."""
    value = properties.get(name)
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if not isinstance(value, (str, int, float)):
        kind = "an object" if isinstance(value, dict) else "a list" if isinstance(value, list) else type(value).__name__
        raise PropertyError(f"the {name} property must be a string, not {kind}")
    return str(value).strip() or None


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
    stopped: Callable[[], bool] | None = None,
) -> Outcome:
    """Carry out one request; never raises for a database or property problem (that is a FAILED outcome).

    ``stopped`` says that the request was already answered (the handler's timer): the run then stops
    before its next step.
    """
    fallback = physical_id if request_type != "Create" and physical_id else FAILED_CREATE_ID
    try:
        if request_type not in REQUEST_TYPES:
            raise PropertyError(
                f"unknown RequestType {str(request_type)[:60]!r}", "CloudFormation sends Create, Update or Delete"
            )
        if request_type == "Delete":
            if not (physical_id or "").startswith(ID_PREFIX):
                never = "nothing to delete: dbtool never created this id"
                return Outcome("SUCCESS", physical_id or FAILED_CREATE_ID, reason=never)
            # Leniently: a Delete of an old resource must not fail on a value this version would refuse.
            if str(properties.get("OnDelete") or "retain").strip().lower() != "drop":
                return Outcome("SUCCESS", physical_id or "", reason="OnDelete is retain: the database was kept")
        parsed = Properties.parse(properties)
        target = resolve(parsed.spec, root or project_root(), PROPERTY_LABELS)
        new_id = physical_id_of(target)
        if request_type == "Delete":
            return _delete(target, physical_id or new_id, new_id)
        if request_type == "Update" and (physical_id or "").startswith(ID_PREFIX):
            _same_database(physical_id or "", target.dbname)
            new_id = physical_id or new_id  # an Update never replaces: a Delete of the old id could drop it
        return _converge(request_type, parsed.spec, target, new_id, deadline, stopped)
    except DbtoolError as error:
        reason = error.phrase(REMEDIES)
        logger.error("%s failed: %s", str(request_type)[:60], reason)
        return Outcome("FAILED", fallback, reason=reason)


def _same_database(physical_id: str, dbname: str) -> None:
    """A changed database name would be a replacement, whose Delete of the old id drops the old database."""
    old = physical_id.rsplit("/", 1)[-1]
    if old != dbname:
        raise PropertyError(
            f"DatabaseName cannot change from {old} to {dbname} in an Update: CloudFormation would then delete "
            "the old resource (with OnDelete drop, its database)",
            "add a new resource for the new database instead",
        )


def physical_id_of(target: Any) -> str:
    return f"{ID_PREFIX}{target.transport.identity}/{target.dbname}"


def _converge(
    request_type: str,
    spec: Spec,
    target: Any,
    physical_id: str,
    deadline: float | None,
    stopped: Callable[[], bool] | None,
) -> Outcome:
    check_behind = request_type == "Update"
    done = forward(
        target,
        seed=spec.seed,
        check_behind=check_behind,
        deadline=deadline,
        stopped=stopped,
        check_drift=not spec.allow_drift,
    )
    data = {"DatabaseName": done.database, "MigrationsApplied": str(done.applied), "SchemaVersion": done.schema_version}
    reason = f"forward only, nothing done: {done.behind}" if done.behind else ""
    return Outcome("SUCCESS", physical_id, data, reason=reason)


def _delete(target: Any, physical_id: str, named: str) -> Outcome:
    """OnDelete is drop: drop the database, but only the one this resource's id names."""
    if physical_id != named:
        return Outcome(
            "SUCCESS", physical_id, reason=f"the properties name {named}, not this resource: nothing dropped"
        )
    what = "dropped" if drop(target) else "was already gone"
    return Outcome("SUCCESS", physical_id, reason=f"OnDelete is drop: database {target.dbname} {what}")


def _text(value: Any) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text or None
