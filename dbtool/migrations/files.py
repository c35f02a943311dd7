"""Migration files in dbmate's format: ``db/migrations/<version>_<name>.sql`` with up and down sections.

    -- migrate:up
    CREATE TABLE ...;

    -- migrate:down transaction:false
    DROP INDEX CONCURRENTLY ...;

Versions sort as numbers, never as text or by file order: the old ``bin/db/migrate`` compared
timestamps of different lengths and silently skipped migrations. A section keeps its place in the
file (the other section's lines are blanked, not removed), so the SQL engine's ``file:line:column``
errors point into the real file.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dbtool.errors import DbtoolError
from dbtool.textfile import read_bytes

DIRECTORY = "db/migrations"
FILENAME = re.compile(r"^(?P<version>\d+)_(?P<name>[^/]+)\.sql$")
MARKER = re.compile(rb"^--\s*migrate:(?P<kind>up|down)\b(?P<options>[^\r\n]*)$")
VERSION_FORMAT = "%Y%m%d%H%M%S"  # 14 digits, UTC: what dbmate writes
TEMPLATE = "-- migrate:up\n\n\n-- migrate:down\n\n"
NOTES = ("md", "txt", "rst")  # a README beside the migrations is not one


class MigrationError(DbtoolError):
    """A migration file is malformed, or the migrations and the database disagree."""


@dataclass(frozen=True)
class Section:
    """One direction of a migration: the file's bytes with only this section's lines kept."""

    sql: bytes
    transaction: bool
    line: int  # the marker's line

    @property
    def empty(self) -> bool:
        return not any(
            line.strip() and not line.lstrip().startswith(b"--") for line in self.sql.splitlines()[self.line :]
        )


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    path: Path
    display: str  # the path as shown: relative to the project root
    up: Section
    down: Section | None

    @property
    def number(self) -> int:
        return int(self.version)

    @property
    def checksum(self) -> str:
        """SHA-256 of the up section as applied (line endings normalised: a CRLF checkout is no change)."""
        kept = b"\n".join(line.rstrip(b"\r") for line in self.up.sql.splitlines())
        return hashlib.sha256(kept.strip()).hexdigest()


def read_migrations(
    root: Path, directory: str = DIRECTORY, warn: Callable[[str], None] | None = None
) -> list[Migration]:
    """Every migration under ``root/directory``, in version order; none when the directory is absent.

    A file there that is not a migration is passed over with a ``warn`` line (dotfiles and notes excepted);
    so is ``directory`` being a file."""
    folder = root / directory
    warn = warn or (lambda message: None)
    if not folder.is_dir():
        if folder.exists():
            warn(f"{directory} is not a directory: no migrations are read (make it a directory of .sql files)")
        return []
    migrations: dict[int, Migration] = {}
    for path in sorted(folder.iterdir()):
        found = FILENAME.match(path.name)
        if found is None or not path.is_file():
            if path.is_file() and (reason := _not_a_migration(path.name)):
                warn(f"ignored {_display(path, root)}: {reason}")
            continue
        migration = parse(path, found["version"], found["name"], _display(path, root))
        if (twin := migrations.get(migration.number)) is not None:
            raise MigrationError(
                f"two migrations have version {migration.version}: {twin.display} and {migration.display}",
                "rename one with a later version",
            )
        migrations[migration.number] = migration
    return [migrations[number] for number in sorted(migrations)]


def _not_a_migration(name: str) -> str | None:
    """Why a file in the migrations directory is passed over, or None for one that is not meant as one."""
    stem, _, suffix = name.rpartition(".")
    if name.startswith(".") or suffix.lower() in NOTES:
        return None
    if suffix != "sql":
        return f"dbtool runs .sql migrations only (dbmate's format), not .{suffix or name}"
    return (
        "its name has no version: migrations are named VERSION_NAME.sql "
        f"(dbtool migrate new {re.sub(r'^[0-9_]*', '', stem) or 'NAME'} writes one)"
    )


def parse(path: Path, version: str, name: str, display: str) -> Migration:
    data = read_bytes(path)
    lines = data.splitlines(keepends=True)
    markers: list[tuple[int, str, bool]] = []  # (0-based line, kind, transaction)
    for index, line in enumerate(lines):
        found = MARKER.match(line.rstrip(b"\r\n"))
        if found is not None:
            markers.append((index, found["kind"].decode(), _transaction(found["options"], display, index + 1)))
    kinds = [kind for _, kind, _ in markers]
    if kinds.count("up") != 1 or kinds.count("down") > 1:
        raise MigrationError(
            f"{display} needs exactly one '-- migrate:up' line (and at most one '-- migrate:down')",
            "the format is dbmate's; dbtool migrate new NAME writes an empty one",
        )
    sections: dict[str, Section] = {}
    for position, (start, kind, transaction) in enumerate(markers):
        end = markers[position + 1][0] if position + 1 < len(markers) else len(lines)
        kept = b"".join(line if start <= number < end else b"\n" for number, line in enumerate(lines))
        sections[kind] = Section(kept, transaction, start + 1)
    return Migration(version, name, path, display, sections["up"], sections.get("down"))


def _transaction(options: bytes, display: str, line: int) -> bool:
    transaction = True
    for option in options.decode(errors="replace").split():
        if option not in ("transaction:false", "transaction:true"):
            raise MigrationError(f"{display}:{line}: unknown migration option {option!r}", "use transaction:false")
        transaction = option == "transaction:true"
    return transaction


def _display(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def new_migration(root: Path, name: str, now: datetime | None = None, directory: str = DIRECTORY) -> Path:
    """Write an empty migration named ``<UTC timestamp>_<name>.sql``; a taken second moves to the next one."""
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    if not slug:
        raise MigrationError(f"{name!r} is not a usable migration name", "use letters and digits, e.g. add_users")
    folder = root / directory
    folder.mkdir(parents=True, exist_ok=True)
    taken = {found["version"] for path in folder.iterdir() if (found := FILENAME.match(path.name))}
    moment = (now or datetime.now(UTC)).replace(microsecond=0)
    while (version := moment.strftime(VERSION_FORMAT)) in taken:
        moment += timedelta(seconds=1)
    path = folder / f"{version}_{slug}.sql"
    path.write_text(TEMPLATE)
    return path
