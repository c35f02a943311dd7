"""One error hierarchy for the whole kit.

Library code raises these; only the CLI turns them into ``error: <message> (<hint>)`` and an exit
code, in one place (``dbtool.cli``), so no command repeats its own try/except; the deploy-time handler
turns them into a CloudFormation Reason.

An error holds facts, and each front end phrases them: the hint speaks of what the library knows (a
setting under the name its configuration gives it: a variable, a ``dbtool.toml`` key, a CloudFormation
property), and a ``remedy`` names the next step by its kind (``security-group``, ``file-option``),
which the CLI phrases as a command to run and the handler as what to fix in the stack.
"""

from __future__ import annotations

from collections.abc import Mapping


class DbtoolError(Exception):
    """Base of every error the kit reports to a user: a message and an optional hint."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None, *, remedy: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.remedy = remedy  # the next step's kind, phrased by the front end (see phrase)

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def phrase(self, remedies: Mapping[str, str]) -> str:
        """The message and hint, with the remedy as ``remedies`` (a front end's words) says it, if it says it."""
        remedy = remedies.get(self.remedy or "", "")
        alternative = remedy.startswith("or ") and self.hint  # worded as an alternative: it continues the hint
        hint = f"{self.hint}, {remedy}" if alternative else join_hints(self.hint, remedy)
        return f"{self.message} ({hint})" if hint else self.message


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

    sqlstate: str | None = None  # the failed statement's, when it was one


class ProductionRefused(DbtoolError):
    """A write to production was not confirmed."""


class ToolMissing(DbtoolError):
    """An external program (psql) is not installed."""


class ServerError(DbtoolError):
    """A maintenance statement (CREATE/DROP DATABASE, a catalog query) failed on the server."""
