"""The fingerprint of a project's database files, for the custom resource's ``Fingerprint`` property.

CloudFormation re-runs a custom resource only when its properties change, not when the Lambda's code
does; putting this hash in a property makes every change to the SQL an Update. It covers
``db/schema.sql``, ``db/seed.sql``, ``db/migrations/*.sql`` and ``dbtool.toml`` (the declared
extensions): sorted POSIX paths and their bytes, line endings normalised, so a Windows checkout and a
Linux one agree.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from dbtool.targets.project import database_files
from dbtool.textfile import read_bytes

DECLARATION = "dbtool.toml"


def project_files(root: Path) -> list[Path]:
    """The SQL files and ``dbtool.toml``, in relative-path order."""
    found = database_files(root)
    if (root / DECLARATION).is_file():
        found.append(root / DECLARATION)
    return sorted(found, key=lambda path: path.relative_to(root).as_posix())


def fingerprint(root: Path) -> str:
    """SHA-256 over each file's relative path and contents, in path order."""
    digest = hashlib.sha256()
    for path in project_files(root):
        name = path.relative_to(root).as_posix().encode()
        data = read_bytes(path).replace(b"\r\n", b"\n")
        digest.update(len(name).to_bytes(4, "big") + name + len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()
