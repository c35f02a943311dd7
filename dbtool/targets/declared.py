"""``dbtool.toml``: what the project declares about its database, read once and checked whole.

Optional, at the project root, read with the standard library's ``tomllib``. This version knows one
section::

    [extensions]          # created or updated to exactly these versions by `dbtool up` and `setup`
    pgcrypto = "1.3"
    citext = "1.6"

Anything else (an unknown section or key, a value that is not a version) is one error naming the
file and the key, so a typo never silently declares nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from dbtool.errors import DbtoolError

FILE_NAME = "dbtool.toml"
SECTIONS = ("extensions",)
_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z._+-]*")
_NAME = re.compile(r"[a-z_][a-z0-9_-]*")


class DeclarationError(DbtoolError):
    """``dbtool.toml`` cannot be read or says something dbtool does not understand."""


@dataclass(frozen=True)
class Declaration:
    """The project's declared database; empty when there is no ``dbtool.toml``."""

    path: Path | None = None
    extensions: dict[str, str] = field(default_factory=dict)  # name -> version, in the file's order


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
    return Declaration(path, _extensions(path, data.get("extensions", {})))


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
