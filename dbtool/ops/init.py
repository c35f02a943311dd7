"""``dbtool init``: set up an existing project to use the installed dbtool, never overwriting a file.

It writes what is missing: the ``bin/db-*`` and ``bin/rds-update-sg-rule`` scripts (which run the
installed ``dbtool`` from any directory, with this project as the root), ``db/schema.sql``,
``db/seed.sql`` and ``db/migrations/``, ``.env.example`` and ``dbtool.toml``, and ``.env`` and
``.dbtool/`` in the project's ``.gitignore``. On request, the workspace hooks: a devcontainer and a
Gitpod task that install dbtool (with the team's command) and set the database up, at the repository's
root with the project's path in their commands (a project in ``backend-flask/`` of a monorepo). An
existing file is reported as skipped; a second run changes nothing. The files' text is in ``scaffold/``.

A project adopting dbtool may have scripts of its own under the same names (the Cruddur bootcamp's bash
``bin/db-setup``): those are kept and reported with the ``dbtool`` command to use instead, or, with
``replace_scripts``, moved aside (``bin/db-setup.orig``, never over another file) and replaced. A schema
kept elsewhere (``schema.sql`` at the root) is named instead of an empty ``db/schema.sql`` written.
"""

from __future__ import annotations

import json
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
SCHEMA = "db/schema.sql"
OURS = (b"dbtool init", b"_dbtool")  # what dbtool's scripts say (init's, and this repository's own)


class InitError(DbtoolError):
    """The project could not be set up."""


@dataclass
class InitReport:
    """What ``init`` did, each path relative to the project directory."""

    root: Path
    created: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    foreign: dict[str, str] = field(default_factory=dict)  # script kept -> the dbtool command it stands for
    moved: dict[str, str] = field(default_factory=dict)  # script moved aside -> where it went
    schema_elsewhere: list[str] = field(default_factory=list)  # schema.sql files found, when db/ has none
    hooks: dict[str, str] = field(default_factory=dict)  # hook file that exists -> what to add to it


def init_project(
    directory: Path,
    *,
    devcontainer: bool = False,
    gitpod: bool = False,
    install: str | None = None,
    replace_scripts: bool = False,
) -> InitReport:
    """Write the missing files into ``directory`` (created if needed); what was created, skipped, updated.

    ``install`` is the shell command that installs dbtool on a fresh workspace; the hooks need it."""
    root = directory.resolve()
    if (devcontainer or gitpod) and not install:
        raise InitUsage(
            "--gitpod and --devcontainer write hooks that must install dbtool on a fresh workspace: pass "
            "--install 'COMMAND', e.g. --install 'pipx install git+https://github.com/ORG/dbtool'"
        )
    report = InitReport(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        for name, command in SCRIPTS.items():
            _script(report, root / "bin" / name, command, replace=replace_scripts)
        if not (root / SCHEMA).exists():
            report.schema_elsewhere = _schemas_elsewhere(root)
        for path, source in FILES.items():
            if path != SCHEMA or not report.schema_elsewhere:
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
            text = (
                _scaffold("devcontainer.json")
                .replace('"@PROJECT@"', json.dumps(root.name))
                .replace("@PREFIX@", prefix)
                .replace('"@ON_CREATE@"', json.dumps(f"{APT_POSTGRES} && {install}"))
            )
            _hook(report, base / ".devcontainer" / "devcontainer.json", text)
        if gitpod:
            before = json.dumps(f"command -v dbtool >/dev/null 2>&1 || {install}")  # a YAML double-quoted scalar
            text = _scaffold("gitpod.yml").replace("@PREFIX@", prefix).replace('"@BEFORE@"', before)
            _hook(report, base / ".gitpod.yml", text)
    except OSError as error:
        where = f" {error.filename}" if error.filename else ""
        raise InitError(
            f"cannot write{where}: {error.strerror or error}", "check the directory's permissions"
        ) from None
    return report


class InitUsage(InitError):
    """The options asked for something init cannot write well."""

    exit_code = 2


APT_POSTGRES = "sudo apt-get update && sudo apt-get install -y --no-install-recommends postgresql postgresql-client"


def _script(report: InitReport, path: Path, command: str, *, replace: bool) -> None:
    """dbtool's script for ``command`` at ``path``; someone else's there is kept, or moved aside and replaced."""
    text = _scaffold("script.sh").replace("@NAME@", path.name).replace("@COMMAND@", command)
    if path.is_file() and not any(mark in path.read_bytes() for mark in OURS):
        shown = os.path.relpath(path, report.root)
        if not replace:
            report.foreign[shown] = command
            return
        aside = path.with_name(f"{path.name}.orig")
        number = 0
        while aside.exists() or aside.is_symlink():
            number += 1
            aside = path.with_name(f"{path.name}.orig.{number}")
        path.rename(aside)  # same directory: a rename, and never over a file (checked just above)
        report.moved[shown] = os.path.relpath(aside, report.root)
    _write(report, path, text, executable=True)


def _schemas_elsewhere(root: Path) -> list[str]:
    """``schema.sql`` files in ``root`` and two levels below (not in db/), nearest first: a project that keeps
    its schema there."""
    from dbtool.targets.project import directories_below

    folders = [root, *directories_below(root, 2)]
    return [
        (folder / "schema.sql").relative_to(root).as_posix() for folder in folders if (folder / "schema.sql").is_file()
    ]


def _hook(report: InitReport, path: Path, text: str) -> None:
    """A workspace hook file; when one exists, what to add to it goes in the report."""
    shown = os.path.relpath(path, report.root)
    if path.exists():
        report.hooks[shown] = text
    _write(report, path, text)


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
