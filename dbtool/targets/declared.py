"""``dbtool.toml``: what the project declares about its database, read once and checked whole.

Optional, at the project root, read with the standard library's ``tomllib``. Two sections::

    [extensions]          # created or updated to exactly these versions by `dbtool up` and `setup`
    pgcrypto = "1.3"
    citext = "1.6"

    [migrations]          # how migrations run (defaults: 2 s lock_timeout on protected targets, 5 retries)
    lock_timeout = 2      # seconds each statement may wait for a lock (0: no limit)
    statement_timeout = 0 # seconds each statement may run (0: no limit)
    lock_retries = 5      # a migration that timed out on a lock is rolled back and retried this often

    [targets.staging]     # a named target beside local and prod: ./bin/db-migrate staging
    url_env = "STAGING_CONNECTION_URL"   # or data_api_cluster_arn + secret_id (+ database)
    secret_id = "app/staging"            # credentials from Secrets Manager; iam_auth = true for RDS IAM
    sslrootcert = "global-bundle.pem"
    protected = true                     # writes ask first, as prod's always do

Anything else (an unknown section or key, a value that is not a version) is one error naming the
file and the key, so a typo never silently declares nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from dbtool.errors import DbtoolError

FILE_NAME = "dbtool.toml"
SECTIONS = ("extensions", "migrations", "targets")
MIGRATION_KEYS = ("lock_timeout", "statement_timeout", "lock_retries")
TARGET_KEYS = {
    "url_env": str,
    "data_api_cluster_arn": str,
    "secret_id": str,
    "database": str,
    "iam_auth": bool,
    "sslrootcert": str,
    "protected": bool,
}
_TARGET_NAME = re.compile(r"[a-z][a-z0-9_-]*")
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z._+-]*")
_NAME = re.compile(r"[a-z_][a-z0-9_-]*")


class DeclarationError(DbtoolError):
    """``dbtool.toml`` cannot be read or says something dbtool does not understand."""


@dataclass(frozen=True)
class DeclaredTarget:
    """A ``[targets.NAME]`` table: where its connections go, and whether its writes ask first."""

    name: str
    url_env: str | None = None
    data_api_cluster_arn: str | None = None
    secret_id: str | None = None
    database: str | None = None
    iam_auth: bool = False
    sslrootcert: str | None = None
    protected: bool = False

    @property
    def where(self) -> str:
        return f"dbtool.toml [targets.{self.name}]"


@dataclass(frozen=True)
class MigrationSettings:
    """``[migrations]``: None where the file says nothing (the default applies)."""

    lock_timeout: float | None = None
    statement_timeout: float | None = None
    lock_retries: int | None = None


@dataclass(frozen=True)
class Declaration:
    """The project's declared database; empty when there is no ``dbtool.toml``."""

    path: Path | None = None
    extensions: dict[str, str] = field(default_factory=dict)  # name -> version, in the file's order
    targets: dict[str, DeclaredTarget] = field(default_factory=dict)
    migrations: MigrationSettings = field(default_factory=MigrationSettings)


def read_declaration(root: Path) -> Declaration:
    """The project's ``dbtool.toml``, or an empty declaration when there is none."""
    path = root / FILE_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Declaration()
    except (OSError, UnicodeDecodeError) as error:
        raise DeclarationError(f"cannot read {path}: {getattr(error, 'strerror', None) or error}") from None
    import tomllib  # only when there is a file: setup and up run without one too

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise DeclarationError(f"{path} is not valid TOML: {error}", "see the README's dbtool.toml section") from None
    unknown = [key for key in data if key not in SECTIONS]
    if unknown:
        raise DeclarationError(
            f"{path}: unknown section or key {unknown[0]!r}", f"dbtool.toml knows [{'], ['.join(SECTIONS)}]"
        )
    return Declaration(
        path,
        _extensions(path, data.get("extensions", {})),
        _targets(path, data.get("targets", {})),
        _migrations(path, data.get("migrations", {})),
    )


def _migrations(path: Path, section: object) -> MigrationSettings:
    if not isinstance(section, dict):
        raise DeclarationError(f"{path}: migrations must be a table", "write [migrations] and lock_timeout = 2 lines")
    for key, value in section.items():
        if key not in MIGRATION_KEYS:
            raise DeclarationError(
                f"{path}: migrations: unknown key {key!r}", f"[migrations] knows {', '.join(MIGRATION_KEYS)}"
            )
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if key == "lock_retries" and not (number and isinstance(value, int) and value >= 0):
            raise DeclarationError(f"{path}: migrations.lock_retries must be a whole number (0: no retry)")
        if key != "lock_retries" and not (number and value >= 0):
            raise DeclarationError(f"{path}: migrations.{key} must be a number of seconds (0: none)")
    return MigrationSettings(**section)


def _targets(path: Path, section: object) -> dict[str, DeclaredTarget]:
    if not isinstance(section, dict):
        raise DeclarationError(f"{path}: targets must be tables", 'write [targets.staging] and url_env = "..." lines')
    targets: dict[str, DeclaredTarget] = {}
    for name, table in section.items():
        where = f"{path}: targets.{name}"
        if not _TARGET_NAME.fullmatch(name):
            raise DeclarationError(f"{where} is not a target name", "use lowercase letters, digits, - and _")
        if not isinstance(table, dict):
            raise DeclarationError(f"{where} must be a table", f'write [targets.{name}] and url_env = "..." lines')
        for key, value in table.items():
            kind = TARGET_KEYS.get(key)
            if kind is None:
                raise DeclarationError(f"{where}: unknown key {key!r}", f"a target knows {', '.join(TARGET_KEYS)}")
            if not isinstance(value, kind):
                raise DeclarationError(f"{where}.{key} must be a {'boolean' if kind is bool else 'string'}")
        target = DeclaredTarget(name, **table)
        if target.url_env is not None and not _VARIABLE.fullmatch(target.url_env):
            raise DeclarationError(f"{where}.url_env must name an environment variable, not {target.url_env!r}")
        if target.data_api_cluster_arn is not None and (target.url_env or target.iam_auth or target.sslrootcert):
            raise DeclarationError(
                f"{where}: data_api_cluster_arn goes through the RDS Data API",
                "it takes secret_id and database only, not url_env, iam_auth or sslrootcert",
            )
        if target.data_api_cluster_arn is not None and target.secret_id is None:
            raise DeclarationError(f"{where}: data_api_cluster_arn needs secret_id")
        if target.url_env is None and target.data_api_cluster_arn is None and target.secret_id is None:
            raise DeclarationError(
                f"{where} says nothing about where it is", "give url_env, secret_id, or data_api_cluster_arn"
            )
        targets[name] = target
    return targets


def _extensions(path: Path, section: object) -> dict[str, str]:
    if not isinstance(section, dict):
        raise DeclarationError(f"{path}: extensions must be a table", 'write [extensions] and name = "version" lines')
    extensions: dict[str, str] = {}
    for name, version in section.items():
        if not _NAME.fullmatch(name):
            raise DeclarationError(f"{path}: extensions.{name} is not an extension name")
        if not isinstance(version, str) or not _VERSION.fullmatch(version):
            raise DeclarationError(
                f"{path}: extensions.{name} must be a version string, not {version!r}",
                f'pin the version you tested with, e.g. {name} = "1.3" (see dbtool extensions for the available ones)',
            )
        extensions[name] = version
    return extensions
