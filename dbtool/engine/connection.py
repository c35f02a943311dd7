"""Open connections to a target and turn libpq's failures into errors that say what to do.

libpq reports connection failures as one ``OperationalError`` with English text; the phrases
matched below are libpq's and the server's own, stable across versions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dbtool.errors import AuthenticationFailed, ConnectionFailed, DatabaseMissing, DbtoolError, SslFailed
from dbtool.targets.prodauth import SECRET_SOURCE
from dbtool.targets.resolve import Target

if TYPE_CHECKING:
    import psycopg

SECURITY_GROUP = "security-group"  # remedy: a network rule (the RDS security group) must let this client in


def connect(
    target: Target, *, dbname: str | None = None, autocommit: bool = False, connect_timeout: int | None = None
) -> psycopg.Connection:
    """A connection to the target's database (or ``dbname`` on the same server)."""
    import psycopg

    dbname = dbname or target.dbname
    timeout = {} if connect_timeout is None else {"connect_timeout": connect_timeout}
    try:
        return psycopg.connect(target.conninfo_for(dbname), autocommit=autocommit, **timeout)
    except psycopg.OperationalError as error:
        raise connection_error(error, target, dbname) from None


def connection_error(error: Exception, target: Target, dbname: str) -> DbtoolError:
    """Classify a libpq connection failure into one error with a hint for this target."""
    text = target.redact(str(error))
    reason = _reason(text)
    where = target.display if dbname == target.dbname else f"{target.display} (database {dbname})"
    variable = target.variable
    lowered = text.lower()
    if f'database "{dbname}" does not exist' in text:
        suffix = "" if target.name == "local" else f" {target.name}"
        return DatabaseMissing(
            f'database "{dbname}" does not exist on {where}', f"create it with ./bin/db-create{suffix}"
        )
    if "authentication failed for user" in lowered or "no password supplied" in lowered:
        return AuthenticationFailed(f"authentication failed for {where}", _credentials_hint(target))
    if "certificate verify failed" in lowered or "does not match host name" in lowered:
        return SslFailed(
            f"the server certificate of {where} could not be verified: {reason}",
            "the CA bundle (PROD_DB_SSLROOTCERT or sslrootcert) must be the one that signed it; for RDS: "
            "global-bundle.pem, and the host must be the RDS endpoint name",
        )
    if "server does not support ssl" in lowered:
        return SslFailed(f"{where} does not accept SSL", "add sslmode=disable to the URL if that is intended")
    if "no pg_hba.conf entry" in lowered:
        return AuthenticationFailed(
            f"{where} refused this client: {reason}", "the server's pg_hba.conf does not allow it"
        )
    if "timeout expired" in lowered:
        return _unreachable(target, f"connection to {where} timed out")
    if "could not translate host name" in lowered:
        return ConnectionFailed(f"cannot resolve the host of {where}", f"check the host name in {variable}")
    if "connection refused" in lowered:
        return _unreachable(target, f"connection to {where} refused")
    return ConnectionFailed(f"cannot connect to {where}: {reason}", f"check {variable}")


def _credentials_hint(target: Target) -> str:
    """Where this target's credentials came from decides what to check."""
    source = target.sources.get("password", "")
    if target.password_source is not None:
        return (
            "the IAM token was refused: the AWS identity needs rds-db:connect for this database user, "
            "the user needs GRANT rds_iam, and the token must be made with the right credentials and region"
        )
    if source.startswith(SECRET_SOURCE):
        return f"check the username and password in the {source}"
    return f"check the user and password in {target.variable}; special characters must be percent-encoded"


def _unreachable(target: Target, message: str) -> ConnectionFailed:
    """A server that did not answer: production's is behind a security group (a remedy each front end says)."""
    if target.is_prod:
        return ConnectionFailed(message, remedy=SECURITY_GROUP)
    if _own_server_stopped(target):
        return ConnectionFailed(message, "the project's own server is stopped: dbtool local start")
    return ConnectionFailed(message, f"is the server running and listening there? check {target.variable}")


def _own_server_stopped(target: Target) -> bool:
    """Whether the refused address is the project's own server's (``CONNECTION_URL`` kept after ``local stop``)."""
    from dbtool.local.server import LocalServer

    host, port = target.params.get("host", ""), target.params.get("port", "5432")
    return host in ("127.0.0.1", "localhost") and str(LocalServer(target.root).remembered_port()) == port


def _reason(text: str) -> str:
    """The last, most specific line of a libpq message, without its 'connection to ... failed:' prefix."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    last = lines[0] if lines else text
    for line in lines:
        if "failed:" in line:
            last = line
    return last.rsplit("failed:", 1)[-1].replace("FATAL:", "").strip()
