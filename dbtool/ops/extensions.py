"""Extensions at the versions ``dbtool.toml`` pins: surveyed, checked, then created or updated in one transaction.

``CREATE EXTENSION IF NOT EXISTS x VERSION 'v'`` keeps whatever version is already there; here:

* missing → ``CREATE EXTENSION x VERSION 'v' CASCADE`` (what CASCADE brought in is reported);
* installed at another version with an update path → ``ALTER EXTENSION x UPDATE TO 'v'``;
* never a downgrade, never a drop: an installed extension that is not declared is only reported.

Everything that can be known beforehand is checked before any DDL: the version is available (else
the ones that are), the role may create it (an untrusted extension needs a superuser, or RDS's
``rds_superuser``), and on RDS ``rds.allowed_extensions`` lets it in. Then all of it runs in one
transaction, so a failure leaves no extension of that run installed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from dbtool import queries
from dbtool.engine.session import SqlError
from dbtool.errors import DbtoolError, join_hints

if TYPE_CHECKING:
    from dbtool.engine.session import Session

ALL_ALLOWED = ("", "*")
BUILT_IN = ("plpgsql",)  # in every database from its template: not worth reporting as undeclared


class ExtensionError(DbtoolError):
    """A declared extension cannot be brought to its version; nothing was changed."""


@dataclass(frozen=True)
class Extension:
    """One line of ``dbtool extensions``: what is declared, installed and available."""

    name: str
    declared: str | None
    installed: str | None
    available: tuple[str, ...] = ()

    @property
    def state(self) -> str:
        if self.declared is None:
            return "undeclared"
        if self.installed == self.declared:
            return "ok"
        if self.declared not in self.available:
            return "unavailable"
        return "missing" if self.installed is None else "differs"

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "available": list(self.available), "state": self.state}


@dataclass(frozen=True)
class Change:
    """``create`` or ``update`` one extension to ``version``."""

    action: str
    name: str
    version: str
    installed: str | None = None

    def describe(self) -> str:
        if self.action == "create":
            return f"create {self.name} {self.version}"
        return f"update {self.name} {self.installed} → {self.version}"


@dataclass(frozen=True)
class Reconciled:
    changes: list[Change]
    cascaded: list[tuple[str, str]] = field(default_factory=list)  # (name, version) CASCADE installed
    undeclared: list[Extension] = field(default_factory=list)

    def describe(self) -> str:
        parts = [change.describe() for change in self.changes] or ["all at their declared versions"]
        if self.cascaded:
            parts.append("CASCADE brought in " + ", ".join(f"{name} {version}" for name, version in self.cascaded))
        if self.undeclared:
            parts.append("not declared, left alone: " + ", ".join(f"{e.name} {e.installed}" for e in self.undeclared))
        return "; ".join(parts)


@dataclass(frozen=True)
class _Version:
    superuser: bool
    trusted: bool
    requires: tuple[str, ...]


@dataclass(frozen=True)
class _Server:
    """What the server offers and who is asking, read once per survey."""

    installed: dict[str, str]
    versions: dict[str, dict[str, _Version]]  # name -> version -> facts
    defaults: dict[str, str]
    user: str
    superuser: bool
    rds_superuser: bool
    allowed: str | None  # rds.allowed_extensions; None off RDS

    def survey(self, declared: dict[str, str]) -> list[Extension]:
        names = list(declared) + sorted(
            name for name in self.installed if name not in declared and name not in BUILT_IN
        )
        return [
            Extension(name, declared.get(name), self.installed.get(name), tuple(self.versions.get(name, {})))
            for name in names
        ]


def survey(session: Session, declared: dict[str, str]) -> list[Extension]:
    """Declared extensions first (in the file's order), then installed ones nobody declared."""
    return _read(session).survey(declared)


def plan(session: Session, declared: dict[str, str]) -> list[Change]:
    """What :func:`reconcile` would do, checked as it will check it; changes nothing."""
    return _plan(session, _read(session), declared)


def reconcile(
    session: Session, declared: dict[str, str], *, lock: Callable[[Session], None] | None = None
) -> Reconciled:
    """Bring the declared extensions to their versions in one transaction; raise before any DDL if it cannot.

    ``lock``, called first inside the transaction, lets concurrent runs take turns: each then reads
    the state the one before it left.
    """
    from psycopg import sql

    session.begin()
    try:
        if lock is not None:
            lock(session)
        server = _read(session)
        changes = _plan(session, server, declared)
        undeclared = [extension for extension in server.survey(declared) if extension.state == "undeclared"]
        for change in changes:
            statement = (
                "CREATE EXTENSION {} VERSION {} CASCADE"
                if change.action == "create"
                else ("ALTER EXTENSION {} UPDATE TO {}")
            )
            try:
                session.execute(sql.SQL(statement).format(sql.Identifier(change.name), sql.Literal(change.version)))
            except SqlError as error:
                raise ExtensionError(
                    f"cannot {change.describe()}: {error.describe()}",
                    join_hints(error.hint, "no extension of this run was installed"),
                ) from None
        after = dict(session.execute(queries.get("extensions_installed")).rows) if changes else server.installed
        session.commit()
    finally:
        if session.in_transaction:
            session.rollback()
    created = {change.name for change in changes}
    cascaded = [
        (name, version) for name, version in after.items() if name not in server.installed and name not in created
    ]
    return Reconciled(changes, cascaded, undeclared)


def _read(session: Session) -> _Server:
    installed = dict(session.execute(queries.get("extensions_installed")).rows)
    versions: dict[str, dict[str, _Version]] = {}
    defaults: dict[str, str] = {}
    for name, version, superuser, trusted, requires, default in session.execute(queries.get("extensions_available")):
        versions.setdefault(name, {})[version] = _Version(bool(superuser), bool(trusted), _names(requires))
        defaults[name] = default
    for name in versions:  # a readable order for messages: 1.4, 1.5, 1.10
        versions[name] = dict(sorted(versions[name].items(), key=lambda item: version_key(item[0])))
    user, superuser, rds_superuser, allowed = session.execute(queries.get("extension_privileges")).one() or (
        "?",
        False,
        False,
        None,
    )
    return _Server(installed, versions, defaults, user, bool(superuser), bool(rds_superuser), allowed)


def _plan(session: Session, server: _Server, declared: dict[str, str]) -> list[Change]:
    changes: list[Change] = []
    for name, version in declared.items():
        installed = server.installed.get(name)
        if installed == version:
            continue
        facts = _available(server, name, version)
        if installed is None:
            _may_create(server, name, facts, "create")
            _requirements(server, facts.requires, set(declared), seen={name})
            changes.append(Change("create", name, version))
            continue
        if version_key(version) < version_key(installed):
            raise ExtensionError(
                f"extension {name} is installed at {installed} and dbtool.toml pins {version}: dbtool never downgrades",
                f"pin {installed} (or newer) in dbtool.toml; a downgrade is a decision to make by hand",
            )
        _may_create(server, name, facts, "update")
        path = session.execute(
            queries.get("extension_update_path"), {"name": name, "source": installed, "target": version}
        ).scalar()
        if path is None:
            raise ExtensionError(
                f"extension {name} has no update path from {installed} to {version}",
                "pin a version the installed one can be updated to (dbtool extensions lists them)",
            )
        changes.append(Change("update", name, version, installed))
    return changes


def _available(server: _Server, name: str, version: str) -> _Version:
    offered = server.versions.get(name)
    if not offered:
        raise ExtensionError(
            f"extension {name} is not available on this server",
            "install its package on the server (or ask your provider), or remove it from dbtool.toml",
        )
    if version not in offered:
        raise ExtensionError(
            f"extension {name} {version} is not available on this server (available: {', '.join(offered)})",
            "pin one of those in dbtool.toml",
        )
    return offered[version]


def _may_create(server: _Server, name: str, facts: _Version, verb: str) -> None:
    if facts.superuser and not facts.trusted and not (server.superuser or server.rds_superuser):
        on_rds = server.allowed is not None
        raise ExtensionError(
            f"extension {name} is not trusted: only a superuser may {verb} it, and {server.user} is not one",
            f"GRANT rds_superuser TO {server.user} (RDS), or have the master user {verb} it"
            if on_rds
            else f"have a superuser {verb} it, or connect as one",
        )
    if server.allowed is not None and server.allowed.strip() not in ALL_ALLOWED:
        allowed = {item.strip() for item in server.allowed.split(",")}
        if name not in allowed:
            raise ExtensionError(
                f"extension {name} is not in rds.allowed_extensions ({server.allowed})",
                "add it to rds.allowed_extensions in the DB parameter group, then reboot if needed",
            )


def _requirements(server: _Server, requires: tuple[str, ...], declared: set[str], seen: set[str]) -> None:
    """What CASCADE will install must pass the same checks, at its default version."""
    for name in requires:
        if name in server.installed or name in declared or name in seen:
            continue
        seen.add(name)
        facts = _available(server, name, server.defaults.get(name, ""))
        _may_create(server, name, facts, "create")
        _requirements(server, facts.requires, declared, seen)


def version_key(version: str) -> tuple[tuple[int, str], ...]:
    """A sort key for extension versions: numbers as numbers (1.10 after 1.9), other parts as text."""
    return tuple((int(part), "") if part.isdigit() else (-1, part) for part in re.split(r"[.\-_]", version))


def _names(text: str) -> tuple[str, ...]:
    return tuple(part for part in text.split(",") if part)
