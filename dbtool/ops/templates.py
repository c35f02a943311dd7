"""Template reset: ``setup`` on a local target clones a copy of its last result when nothing changed.

After a full ``setup`` (drop, create, extensions, schema, migrations, seed) the result is copied to a
template database named for a fingerprint of everything that produced it: the project's SQL files,
its declared extensions, the server's version, the connected user and dbtool's version. The next
``setup`` whose fingerprint matches drops the database and runs ``CREATE DATABASE … TEMPLATE``
instead of loading anything; any change loads afresh and keeps a new template.

A template is a database like any other, ``<database>__dbtool_<16 hex digits>``, created with
``ALLOW_CONNECTIONS false`` (nothing can hold it open by accident) and named in its comment
(``dbtool template {"database": …, "fingerprint": …}``), which is how its owner database is found:
two projects on one server keep their own. The newest :data:`KEEP` per database stay, so switching
between two branches clones both ways. A template that cannot be cloned (missing, sessions on it) is
never an error: the full load runs and replaces it. Production, and any target whose writes ask
first, never gets one; nor does a database whose own settings a copy would not carry.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dbtool import __version__, queries
from dbtool.engine.session import SqlError
from dbtool.ops.admin import DROP, DROP_FORCE, FORCE_MIN_SERVER_VERSION
from dbtool.textfile import read_bytes

if TYPE_CHECKING:
    from dbtool.engine.session import Session
    from dbtool.targets.resolve import Target

KEEP = 2
MARK = "dbtool template "
NAME_INFIX = "__dbtool_"
MAX_IDENTIFIER_BYTES = 63
FORMAT = b"dbtool template 1"
# CREATE DATABASE's STRATEGY (PostgreSQL 15+): WAL_LOG copies block by block through the WAL, FILE_COPY
# copies the files after a checkpoint. The checkpoint is a fixed cost that FILE_COPY wins back only on
# a larger database (bench/setup.py measures both).
STRATEGY_MIN_SERVER_VERSION = 150000
FILE_COPY_MIN_BYTES = 16 << 20
COPY = "CREATE DATABASE {} TEMPLATE {}"
COMMENT = "COMMENT ON DATABASE {} IS {}"
# Why a clone could not be made from a template: it is gone, or someone is connected to it.
MISSING = "3D000"
IN_USE = "55006"


@dataclass(frozen=True)
class Template:
    name: str
    database: str
    fingerprint: str
    bytes: int


@dataclass(frozen=True)
class Lookup:
    """This setup's fingerprint, the template that matches it (if any), and the database's others."""

    fingerprint: str
    name: str
    match: Template | None
    others: tuple[Template, ...] = field(default=())

    @property
    def every(self) -> tuple[Template, ...]:
        """All of the database's templates, the match included."""
        return (*self.others, self.match) if self.match is not None else self.others


def allowed(target: Target) -> bool:
    """Templates are for local targets: never production, the RDS Data API, or a target whose writes ask first."""
    return not (target.is_prod or target.protected) and target.transport.templates


def template_name(dbname: str, fingerprint: str) -> str:
    """``<database>__dbtool_<16 hex>``, the database's name shortened to fit PostgreSQL's 63 bytes."""
    suffix = f"{NAME_INFIX}{fingerprint[:16]}"
    room = MAX_IDENTIFIER_BYTES - len(suffix)
    prefix = dbname.encode()[:room].decode("utf-8", "ignore")
    return prefix + suffix


def fingerprint(target: Target, extensions: dict[str, str], *, server_version: int, user: str) -> str:
    """SHA-256 over the project's SQL files (exact bytes), its declared extensions, the server and user, dbtool."""
    from dbtool.targets.project import database_files

    digest = hashlib.sha256(FORMAT)
    facts = {
        "dbtool": __version__,
        "server": server_version,
        "user": user,
        "database": target.dbname,
        "extensions": sorted(extensions.items()),
    }
    _add(digest, json.dumps(facts, sort_keys=True).encode())
    for path in database_files(target.root):
        _add(digest, path.relative_to(target.root).as_posix().encode())
        _add(digest, read_bytes(path))
    return digest.hexdigest()


def _add(digest: hashlib._Hash, data: bytes) -> None:
    digest.update(len(data).to_bytes(8, "big") + data)


def lookup(session: Session, target: Target, extensions: dict[str, str]) -> Lookup:
    """The fingerprint for this setup (``extensions``: those dbtool.toml declares) and the target's templates."""
    rows = session.execute(queries.get("templates")).rows
    user = rows[0][0]
    found = [template for row in rows if (template := _parse(*row[1:])) and template.database == target.dbname]
    wanted = fingerprint(target, extensions, server_version=session.server_version, user=user)
    name = template_name(target.dbname, wanted)
    match = next((t for t in found if t.fingerprint == wanted and t.name == name), None)
    return Lookup(wanted, name, match, tuple(t for t in found if t is not match))


def _parse(name: str | None, description: str | None, size: int | None) -> Template | None:
    if name is None or description is None:
        return None
    try:
        facts = json.loads(description[len(MARK) :])
        return Template(name, str(facts["database"]), str(facts["fingerprint"]), int(size or 0))
    except (ValueError, KeyError, TypeError):
        return None  # someone else's comment that happens to start the same way


def clone(session: Session, target: Target, template: Template) -> str | None:
    """Create the target's database from ``template``; the reason when it could not (then nothing was created)."""
    try:
        session.execute(_copy(session, target.dbname, template.name, template.bytes))
    except SqlError as error:
        if error.sqlstate == IN_USE:
            return f"template {template.name} is in use"
        if error.sqlstate == MISSING:
            return f"template {template.name} is gone"
        raise
    return None


def keep(session: Session, target: Target, found: Lookup) -> str:
    """Copy the freshly loaded database to the lookup's template, dropping older ones; what happened, in words."""
    from psycopg import sql

    uncopied, size = session.execute(queries.get("database_copy_facts"), {"dbname": target.dbname}).one()
    if uncopied:
        discard(session, found.every)
        return f"none kept: a copy would not carry the database's {uncopied}"
    discard(session, [t for t in found.every if t.name == found.name])  # the one that could not be cloned
    try:
        session.execute(_copy(session, found.name, target.dbname, int(size)) + sql.SQL(" ALLOW_CONNECTIONS false"))
    except SqlError as error:
        if error.sqlstate == IN_USE:
            return f"none kept: database {target.dbname} is in use (a copy needs it to itself)"
        raise
    comment = MARK + json.dumps({"database": target.dbname, "fingerprint": found.fingerprint})
    session.execute(sql.SQL(COMMENT).format(sql.Identifier(found.name), sql.Literal(comment)))
    older = [t for t in found.others if t.name != found.name][KEEP - 1 :]
    discard(session, older)
    return f"kept as {found.name} for the next setup"


def discard_all(session: Session, found: Lookup) -> str:
    """Drop every template of the target's database (``setup --no-template``); what happened, in words."""
    discard(session, found.every)
    return f"dropped {len(found.every)} template(s)" if found.every else "none kept"


def discard(session: Session, templates: tuple[Template, ...] | list[Template]) -> None:
    """Drop templates, ending any session on one (they are dbtool's own)."""
    from psycopg import sql

    statement = DROP_FORCE if session.server_version >= FORCE_MIN_SERVER_VERSION else DROP
    for template in templates:
        session.execute(sql.SQL(statement).format(sql.Identifier(template.name)))


def _copy(session: Session, new: str, source: str, size: int) -> Any:
    """``CREATE DATABASE new TEMPLATE source`` with the strategy for a source of ``size`` bytes."""
    from psycopg import sql

    statement = sql.SQL(COPY).format(sql.Identifier(new), sql.Identifier(source))
    if session.server_version < STRATEGY_MIN_SERVER_VERSION:
        return statement
    return statement + sql.SQL(" STRATEGY FILE_COPY" if size >= FILE_COPY_MIN_BYTES else " STRATEGY WAL_LOG")
