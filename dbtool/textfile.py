"""Reading the project's own files (``.env``, ``dbtool.toml``, SQL, migrations): a failure is one error naming
the file, never a traceback."""

from __future__ import annotations

from pathlib import Path

from dbtool.errors import DbtoolError


class FileUnreadable(DbtoolError):
    """A file the project names could not be read, or is not text in the encoding it must have."""


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise FileUnreadable(f"cannot read {path}: {error.strerror or error}") from None


def read_utf8(path: Path) -> str:
    """The file's text; one error naming the first byte that is not UTF-8, and its line."""
    data = read_bytes(path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise FileUnreadable(
            f"{path} is not UTF-8 text (line {line} has byte 0x{data[error.start]:02x}; save it as UTF-8)"
        ) from None
