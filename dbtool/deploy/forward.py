"""The deploy-time run, whoever calls it: bring a database forward to this package's files, never backward.

A CloudFormation custom resource (:mod:`dbtool.deploy.cloudformation`), a Kubernetes Job or a
Terraform-invoked Lambda all do the same thing, and this module does it without knowing which:

* :func:`resolve`: the :class:`Spec` (a secret, and a host, port and database or an Aurora cluster)
  as a target, its settings named as the caller's ``labels`` say (a stack's properties, say).
* :func:`forward`: wait for the server within the deadline; when the package is *behind* the database
  (an applied migration whose file it lacks, an extension installed above its pin: what an old
  release run again looks like), leave the database alone and say why; else ``up``. The migration
  status is read once: the result's schema version comes from it and what ``up`` applied.
* :func:`drop`: drop the database, for a caller told to.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dbtool.errors import DbtoolError

logger = logging.getLogger("dbtool.deploy")

WAIT_MARGIN = 10.0  # seconds kept back from the remaining time for the caller's reply


@dataclass(frozen=True)
class Spec:
    """Where the database is: a Secrets Manager secret, and a host/port/database or an Aurora cluster ARN."""

    secret_arn: str
    host: str | None = None
    port: str | None = None
    database: str | None = None
    cluster_arn: str | None = None
    seed: bool = False
    allow_drift: bool = False


@dataclass(frozen=True)
class Forwarded:
    """What :func:`forward` did: ``behind`` says why nothing was done, else ``applied`` migrations ran."""

    database: str
    schema_version: str  # the newest applied migration's version, "" when none
    applied: int = 0
    behind: str = ""


def resolve(spec: Spec, root: Path, labels: dict[str, str] | None = None) -> Any:
    """The target the spec names (through the same resolution as ``prod``), its settings named by ``labels``."""
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
    return resolve_target("prod", config=Project(root, environ=environ, labels=labels))


def project_root() -> Path:
    """``DBTOOL_PROJECT_ROOT``, else the Lambda task root, else the current directory."""
    return Path(os.environ.get("DBTOOL_PROJECT_ROOT") or os.environ.get("LAMBDA_TASK_ROOT") or ".").resolve()


class Stopped(DbtoolError):
    """The caller gave up on this run (its reply was sent): no further step starts."""


def forward(
    target: Any,
    *,
    seed: bool,
    check_behind: bool,
    deadline: float | None,
    stopped: Callable[[], bool] | None = None,
    check_drift: bool = False,
) -> Forwarded:
    """``up``, unless the package is behind the database (with ``check_behind``); never backward.

    With ``check_drift``, a database that holds a schema and has migrations pending is first compared with
    what the package's files produce, built beside it on its own server; drift raises, and nothing is applied.
    ``stopped`` is asked before every step and every migration: once it says so, nothing more starts.
    """
    from dbtool.errors import DatabaseMissing
    from dbtool.migrations.runner import Migrations
    from dbtool.ops.converge import Hooks, up
    from dbtool.ops.wait import wait_until_up

    if deadline is not None:  # a cluster can be CREATE_COMPLETE before it accepts connections, or resuming
        wait_until_up(target, timeout=max(1.0, deadline - time.monotonic() - WAIT_MARGIN))
    try:
        status = Migrations(target).status()  # the one read: before up, and what up applies is added below
    except DatabaseMissing:
        status = []
    applied = [entry.version for entry in status if entry.state != "pending"]
    if check_behind and (behind := _behind(target, status)):
        logger.info("left the database alone: %s", behind)
        return Forwarded(target.dbname, _newest(applied), behind=behind)

    def proceed(what: str) -> None:
        if stopped is not None and stopped():
            raise Stopped(f"stopped before {what}: the request was already answered (the Lambda's time ran out)")

    if check_drift and any(entry.state == "pending" for entry in status):
        from dbtool.ops.drift import SchemaAhead, refuse_drift

        proceed("the drift check")
        try:
            refuse_drift(target, target)
            logger.info("no drift: the schema matches db/schema.sql and its applied migrations")
        except SchemaAhead as ahead:  # the schema file was dumped after the pending migrations: nothing to compare
            logger.info("drift not checked: %s", ahead.message)
    steps = up(target, seed=seed, hooks=Hooks(step=_log_step, message=logger.info, proceed=proceed))
    migrate = next((step for step in steps if step.name == "migrate"), None)
    count = int(migrate.outcome.split()[1]) if migrate is not None and migrate.outcome.startswith("applied") else 0
    pending = [entry.version for entry in status if entry.state == "pending"] if status else _all_versions(target)
    return Forwarded(target.dbname, _newest(applied + pending[:count]), applied=count)


def drop(target: Any) -> bool:
    """Drop the target's database, ending its sessions; False when it was already gone."""
    from dbtool.engine.session import open_maintenance_session
    from dbtool.ops.admin import drop_database

    with open_maintenance_session(target) as admin:
        return drop_database(admin, target.dbname, force=True, on_sessions=_log_sessions).existed


def _behind(target: Any, status: list[Any]) -> str:
    """Why this package's files are older than the database, or "" when they are not."""
    from dbtool.engine.session import open_session
    from dbtool.errors import DatabaseMissing
    from dbtool.ops.extensions import survey, version_key

    missing = [entry.version for entry in status if entry.state == "missing-file"]
    try:
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


def _all_versions(target: Any) -> list[str]:
    """Every migration file's version, in order: all of them are pending on a database up just created."""
    from dbtool.migrations.runner import Migrations

    return [migration.version for migration in Migrations(target).files]


def _newest(versions: list[str]) -> str:
    return max(versions, key=int) if versions else ""


def _log_sessions(sessions: Any) -> None:
    logger.info("ending %d sessions", len(sessions))


def _log_step(step: Any) -> None:
    logger.info("%-12s %s %6.2fs %s", step.name, "failed" if step.failed else "ok", step.seconds, step.outcome)
