"""Where the project is and what its configuration says.

Configuration is read in one documented order: the real environment wins over the project's
``.env`` file, which wins over defaults. The ``.env`` file is read, never written, and never copied
into ``os.environ``: application code importing dbtool must not have its environment changed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dbtool.targets.declared import Declaration

ROOT_VARIABLE = "DBTOOL_PROJECT_ROOT"
# A directory is the project root when it holds one of these (checked nearest first).
ROOT_MARKERS = (".env", "db", ".env.example")


def find_root(start: Path | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """Return the project root: $DBTOOL_PROJECT_ROOT, else the nearest ancestor with a marker.

    Walking up lets commands run from any subdirectory (issue #2); the bin/ scripts set the
    variable so they also work from outside the project. With no marker anywhere, the start
    directory is used, and later errors name the files they looked for there.
    """
    environ = os.environ if environ is None else environ
    if environ.get(ROOT_VARIABLE):
        return Path(environ[ROOT_VARIABLE]).resolve()
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if is_project(candidate):
            return candidate
    return here


DATABASE_FILES = ("db/schema.sql", "db/seed.sql")
MIGRATIONS_DIRECTORY = "db/migrations"


def database_files(root: Path) -> list[Path]:
    """The project's SQL: the schema, the seed and the migrations that exist, in relative-path order."""
    found = [root / name for name in DATABASE_FILES if (root / name).is_file()]
    folder = root / MIGRATIONS_DIRECTORY
    if folder.is_dir():
        found += [path for path in folder.glob("*.sql") if path.is_file()]
    return sorted(found, key=lambda path: path.relative_to(root).as_posix())


def database_name_from(root: Path) -> str:
    """A database name for a project that names none: its directory's, as a plain lower-case identifier."""
    import re

    name = re.sub(r"[^a-z0-9_]+", "_", root.resolve().name.lower()).strip("_")
    name = re.sub(r"^[0-9_]+", "", name)[:63].rstrip("_")
    return name or "app"


SKIPPED_BELOW = {"node_modules", "venv", "env", "site-packages", "__pycache__", "build", "dist"}


def projects_below(directory: Path, depth: int = 2) -> list[str]:
    """Projects in the subdirectories of ``directory`` (a monorepo's ``backend-flask``), as relative paths."""
    below = directories_below(directory, depth, enter=lambda path: not is_project(path))
    return [path.relative_to(directory).as_posix() for path in below if is_project(path)]


def directories_below(directory: Path, depth: int, *, enter: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """The subdirectories of ``directory`` down to ``depth`` levels, nearest first, each level sorted; hidden ones
    and tool folders (``node_modules``, virtual environments, build output) left out. ``enter`` says whether to
    look inside one (default: always)."""
    level = [directory]
    for _ in range(depth):
        below = []
        for parent in level:
            try:
                children = sorted(path for path in parent.iterdir() if path.is_dir())
            except OSError:
                continue
            for child in children:
                if child.name.startswith(".") or child.name in SKIPPED_BELOW:
                    continue
                yield child
                if enter is None or enter(child):
                    below.append(child)
        level = below


def is_project(directory: Path) -> bool:
    """Whether ``directory`` holds one of the project markers."""
    return any((directory / marker).exists() for marker in ROOT_MARKERS)


@dataclass(frozen=True)
class Setting:
    """A configuration value and where it came from (shown by commands, never with secrets)."""

    value: str
    source: str


class Config:
    """Read-only view of the environment over the project's ``.env`` file."""

    def __init__(
        self, root: Path, environ: Mapping[str, str] | None = None, *, labels: Mapping[str, str] | None = None
    ) -> None:
        self.root = root
        self.env_file = root / ".env"
        self._environ = dict(os.environ if environ is None else environ)
        self._dotenv = _read_dotenv(self.env_file)
        self._labels = dict(labels or {})  # how messages name a setting, where it is not a variable

    def get(self, name: str) -> Setting | None:
        """The value of ``name`` from the environment, else from ``.env``; empty counts as unset."""
        if self._environ.get(name):
            return Setting(self._environ[name], "environment")
        if self._dotenv.get(name):
            return Setting(self._dotenv[name], f"{self.env_file}")
        return None

    def label(self, name: str) -> str:
        """How messages name the setting ``name``: the variable itself, unless its labels say otherwise (a
        CloudFormation property at deploy time); a declared target says where in dbtool.toml."""
        return self._labels.get(name, name)

    def value(self, name: str) -> str | None:
        """Just the value of :meth:`get`, for callers that do not report where it came from."""
        setting = self.get(name)
        return setting.value if setting else None

    def aws_client(self, service: str, **options: Any) -> Any:
        """An AWS client for ``service`` from these settings (a :class:`Project` keeps one per service)."""
        from dbtool.aws.clients import client

        return client(self, service, **options)


class Project(Config):
    """The project, read once per process: its root, its settings (the environment over ``.env``), its
    ``dbtool.toml`` (read when first asked), and the AWS clients its commands build (one per service).

    The click group and the Lambda entry each build one; every target resolved in the process holds
    it, so nothing below reads the files again or builds a second client for the same service.
    """

    def __init__(
        self, root: Path, environ: Mapping[str, str] | None = None, *, labels: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(root, environ, labels=labels)
        self._declaration: Declaration | None = None
        self._clients: dict[tuple[object, ...], Any] = {}

    @property
    def declaration(self) -> Declaration:
        """``dbtool.toml``: extensions and declared targets (empty without the file); an error names a bad key."""
        if self._declaration is None:
            from dbtool.targets.declared import read_declaration

            self._declaration = read_declaration(self.root)
        return self._declaration

    def aws_client(self, service: str, **options: Any) -> Any:
        """The project's AWS client for ``service`` with these options, built on first use."""
        key = (service, *sorted(options.items()))
        if key not in self._clients:
            self._clients[key] = super().aws_client(service, **options)
        return self._clients[key]


def project_of(config: Config) -> Project:
    """``config`` itself when it is a project, else the project of its root (a library caller's plain Config)."""
    return config if isinstance(config, Project) else Project(config.root, config._environ, labels=config._labels)


def _read_dotenv(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    import io

    from dotenv import dotenv_values

    from dbtool.textfile import read_utf8

    # No ${VAR} interpolation: a password containing "$" must arrive exactly as written.
    values = dotenv_values(stream=io.StringIO(read_utf8(path)), interpolate=False)
    return {key: value for key, value in values.items() if value is not None}
