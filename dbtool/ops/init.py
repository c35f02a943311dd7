"""``dbtool init``: set up an existing project to use the installed dbtool, never overwriting a file.

It writes what is missing: the ``bin/db-*`` and ``bin/rds-update-sg-rule`` scripts (which run the
installed ``dbtool`` from any directory, with this project as the root), ``db/schema.sql``,
``db/seed.sql`` and ``db/migrations/``, ``.env.example`` and ``dbtool.toml``, and ``.env`` and
``.dbtool/`` in the project's ``.gitignore``. On request, the workspace hooks: a devcontainer and a
Gitpod task that set the database up, at the repository's root with the project's path in their
commands (a project in ``backend-flask/`` of a monorepo). An existing file is reported as skipped;
a second run changes nothing. The files' text is in ``scaffold/``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from dbtool.commands import SCRIPTS as COMMAND_SCRIPTS
from dbtool.errors import DbtoolError

SCRIPTS = COMMAND_SCRIPTS  # bin script -> the dbtool command it runs
# project file -> its text in scaffold/
FILES = {
    "db/schema.sql": "schema.sql",
    "db/seed.sql": "seed.sql",
    ".env.example": "env.example",
    "dbtool.toml": "dbtool.toml",
}
MIGRATIONS_KEEP = "db/migrations/.gitkeep"
IGNORED = (".env", ".dbtool/")


class InitError(DbtoolError):
    """The project could not be set up."""


@dataclass
class InitReport:
    """What ``init`` did, each path relative to the project directory."""

    root: Path
    created: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)


def init_project(directory: Path, *, devcontainer: bool = False, gitpod: bool = False) -> InitReport:
    """Write the missing files into ``directory`` (created if needed); what was created, skipped, updated."""
    root = directory.resolve()
    report = InitReport(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        for name, command in SCRIPTS.items():
            text = _scaffold("script.sh").replace("@NAME@", name).replace("@COMMAND@", command)
            _write(report, root / "bin" / name, text, executable=True)
        for path, source in FILES.items():
            _write(report, root / path, _scaffold(source))
        if not (root / "db" / "migrations").is_dir():
            _write(report, root / MIGRATIONS_KEEP, "")
        else:
            report.skipped.append("db/migrations/")
        _ignore(report, root / ".gitignore")
        repository = _git_root(root)
        base = repository or root
        prefix = "./" if base == root else f"./{root.relative_to(base).as_posix()}/"
        if devcontainer:
            text = _scaffold("devcontainer.json").replace("@PROJECT@", root.name).replace("@PREFIX@", prefix)
            _write(report, base / ".devcontainer" / "devcontainer.json", text)
        if gitpod:
            _write(report, base / ".gitpod.yml", _scaffold("gitpod.yml").replace("@PREFIX@", prefix))
    except OSError as error:
        where = f" {error.filename}" if error.filename else ""
        raise InitError(
            f"cannot write{where}: {error.strerror or error}", "check the directory's permissions"
        ) from None
    return report


def _scaffold(name: str) -> str:
    return files("dbtool.ops").joinpath("scaffold", name).read_text(encoding="utf-8")


def _write(report: InitReport, path: Path, text: str, *, executable: bool = False) -> None:
    shown = os.path.relpath(path, report.root)
    if path.exists():
        report.skipped.append(shown)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("x", encoding="utf-8") as file:  # "x": never replaces a file made meanwhile
        file.write(text)
    if executable:
        path.chmod(0o755)
    report.created.append(shown)


def _ignore(report: InitReport, path: Path) -> None:
    """Add ``.env`` and ``.dbtool/`` to the project's ``.gitignore`` (creating it), each only once."""
    existed = path.exists()
    existing = path.read_text(encoding="utf-8") if existed else ""
    present = {line.strip().rstrip("/") for line in existing.splitlines()}
    missing = [entry for entry in IGNORED if entry.rstrip("/") not in present]
    if not missing:
        report.skipped.append(".gitignore")
        return
    text = ("" if not existing or existing.endswith("\n") else "\n") + "".join(f"{entry}\n" for entry in missing)
    with path.open("a", encoding="utf-8") as file:
        file.write(text)
    (report.updated if existed else report.created).append(".gitignore")


def _git_root(directory: Path) -> Path | None:
    """The repository holding ``directory`` (the nearest ancestor with ``.git``), if any."""
    for candidate in (directory, *directory.parents):
        if (candidate / ".git").exists():
            return candidate
    return None
