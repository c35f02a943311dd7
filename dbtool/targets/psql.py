"""libpq's client programs (``psql``, ``pg_dump``) on a target, with the password kept out of argv.

Anything on a command line is readable by every user of the machine (``ps``, ``/proc/*/cmdline``);
the old ``psql $URL`` put the production password there. libpq reads ``PGPASSWORD`` from the
environment instead, which only the process's own user can read.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence

from dbtool.errors import DbtoolError, ToolMissing
from dbtool.targets.resolve import Target

PSQL_INSTALL_HINT = "install the PostgreSQL client: apt-get install postgresql-client, or brew install libpq"


def require_network_route(target: Target, program: str) -> None:
    """psql and pg_dump speak libpq: a Data API target has no network route for them."""
    if not target.transport.psql_route:
        raise DbtoolError(
            f"{program} needs a network route to the database, and {target.display} has none",
            "the prod target goes through the RDS Data API (PROD_DATA_API_CLUSTER_ARN); "
            "from a machine with a route, set PROD_CONNECTION_URL instead",
        )


def psql_invocation(target: Target, extra_args: Sequence[str] = ()) -> tuple[str, list[str], dict[str, str]]:
    """The psql executable, its argv and its environment for this target."""
    require_network_route(target, "psql")
    psql = shutil.which("psql")
    if psql is None:
        raise ToolMissing("psql is not installed", PSQL_INSTALL_HINT)
    argv = ["psql", "--dbname", target.conninfo_for(with_password=False), *extra_args]
    return psql, argv, password_environment(target)


def password_environment(target: Target) -> dict[str, str]:
    """This process's environment for a libpq client program (psql, pg_dump), with the target's password."""
    env = dict(os.environ)
    env.pop("PGPASSWORD", None)
    password = target.password  # once: an IAM target makes a new token on every read
    if password is not None:
        env["PGPASSWORD"] = password
    return env


def exec_psql(target: Target, extra_args: Sequence[str] = ()) -> None:
    """Replace this process with psql; returns only if exec itself fails."""
    psql, argv, env = psql_invocation(target, extra_args)
    os.execve(psql, argv, env)


def find_pg_dump() -> str:
    """``pg_dump`` on PATH, else next to the server binaries dbtool would use."""
    found = shutil.which("pg_dump")
    if found is not None:
        return found
    from dbtool.local.cluster import find_bindir

    try:
        return str(find_bindir() / "pg_dump")
    except ToolMissing:
        raise ToolMissing(
            "pg_dump is not installed", "install the PostgreSQL client: apt-get install postgresql-client"
        ) from None
