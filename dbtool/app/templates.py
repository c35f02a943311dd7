"""SQL templates: the application's queries kept as ``.sql`` files, read once and reread when edited.

The backend's ``db.template('activities', 'home')`` found files through Flask's ``app.root_path``,
so it only worked inside a request, and printed every path it loaded. Here the directory is
``DBTOOL_SQL_DIR`` (relative to the project root) or ``db/sql`` in the project root, found the way
the CLI finds it, so the same call works in a Flask route, a script or a test.
"""

from __future__ import annotations

import os
from pathlib import Path

from dbtool.errors import DbtoolError
from dbtool.targets.project import ROOT_VARIABLE, Config, find_root

DIRECTORY_VARIABLE = "DBTOOL_SQL_DIR"
DEFAULT_DIRECTORY = "db/sql"


class TemplateMissing(DbtoolError):
    """No ``.sql`` file for the requested template (or a name that points outside the directory)."""


class SqlTemplates:
    """Templates under one directory: ``templates("activities", "home")`` is ``activities/home.sql``.

    Each file is cached with its modification time and size, so a running development server sees an
    edited template at once, at the cost of one ``stat`` per call.
    """

    def __init__(self, directory: str | Path | None = None) -> None:
        if directory is None:
            config = Config(find_root())
            directory = config.root / (config.value(DIRECTORY_VARIABLE) or DEFAULT_DIRECTORY)
        self.directory = Path(directory).resolve()
        self._cache: dict[Path, tuple[int, int, str]] = {}

    def __call__(self, *parts: str) -> str:
        path = self.path(*parts)
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise TemplateMissing(
                f"SQL template {'/'.join(parts)} not found: {path} does not exist",
                f"templates are read from {self.directory} (set {DIRECTORY_VARIABLE} to use another directory)",
            ) from None
        cached = self._cache.get(path)
        if cached is not None and cached[:2] == (stat.st_mtime_ns, stat.st_size):
            return cached[2]
        text = path.read_text(encoding="utf-8")
        self._cache[path] = (stat.st_mtime_ns, stat.st_size, text)
        return text

    def path(self, *parts: str) -> Path:
        """The file of a template; ``.sql`` is added to the last part unless it is there."""
        if not parts or not all(parts):
            raise TemplateMissing("an SQL template needs a name", "e.g. sql_template('activities', 'home')")
        *folders, name = parts
        path = self.directory.joinpath(*folders, name if name.endswith(".sql") else f"{name}.sql").resolve()
        if not path.is_relative_to(self.directory):
            raise TemplateMissing(f"SQL template {'/'.join(parts)} points outside {self.directory}")
        return path


# One loader per place the project could be found from: an application has one; tests have many.
_loaders: dict[tuple[str, str | None, str | None], SqlTemplates] = {}


def sql_template(*parts: str) -> str:
    """The text of ``<project>/db/sql/<parts...>.sql`` (or under ``DBTOOL_SQL_DIR``)."""
    key = (os.getcwd(), os.environ.get(ROOT_VARIABLE), os.environ.get(DIRECTORY_VARIABLE))
    loader = _loaders.get(key)
    if loader is None:
        loader = _loaders.setdefault(key, SqlTemplates())
    return loader(*parts)
