"""SQL the tool runs, one statement per ``.sql`` file, each opening with a ``-- purpose`` line."""

from __future__ import annotations

from functools import cache
from importlib.resources import files


@cache
def get(name: str) -> str:
    """The text of ``queries/<name>.sql``; read once per process."""
    return files(__package__).joinpath(f"{name}.sql").read_text(encoding="utf-8")
