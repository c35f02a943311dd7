"""One error hierarchy for the whole kit.

Library code raises these; only the CLI turns them into ``error: <message> (<hint>)`` and an exit
code, in one place (``dbtool.cli``), so no command repeats its own try/except.
"""

from __future__ import annotations


class DbtoolError(Exception):
    """Base of every error the kit reports to a user: a message and an optional hint."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


def join_hints(first: str | None, second: str) -> str:
    """Two clauses of a hint or detail as one: ``first; second`` (either alone when the other is empty)."""
    first = (first or "").rstrip(".")
    return f"{first}; {second}" if first and second else first or second


class TargetNotConfigured(DbtoolError):
    """The variable that names a target's server is not set anywhere."""


class MalformedUrl(DbtoolError):
    """libpq could not parse the connection URL or key=value string."""


class ConnectionFailed(DbtoolError):
    """The server could not be reached (refused, timed out, DNS, SSL)."""


class AuthenticationFailed(ConnectionFailed):
    """The server was reached but rejected the credentials."""


class SslFailed(ConnectionFailed):
    """The TLS handshake failed: the server offers no SSL, or its certificate could not be verified."""


class DatabaseMissing(ConnectionFailed):
    """The server was reached but the target database does not exist."""


class SqlFileError(DbtoolError):
    """An SQL file is missing, unreadable, or a statement in it failed."""


class ProductionRefused(DbtoolError):
    """A write to production was not confirmed."""


class ToolMissing(DbtoolError):
    """An external program (psql) is not installed."""


class ServerError(DbtoolError):
    """A maintenance statement (CREATE/DROP DATABASE, a catalog query) failed on the server."""
