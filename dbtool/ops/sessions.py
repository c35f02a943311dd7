"""What is connected to the target's server, from ``pg_stat_activity``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from dbtool import queries
from dbtool.engine.session import open_maintenance_session, open_session
from dbtool.errors import DatabaseMissing

if TYPE_CHECKING:
    from dbtool.targets.resolve import Target


@dataclass(frozen=True)
class Activity:
    """One row of ``pg_stat_activity``, as ``dbtool sessions`` shows it."""

    pid: int
    user: str
    database: str
    client: str
    application: str
    state: str
    state_seconds: float | None
    wait: str
    query: str
    backend_type: str
    is_self: bool

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def list_sessions(target: Target, *, include_all: bool = False) -> list[Activity]:
    """Sessions on the target's server; background workers only with ``include_all``.

    The target database may not exist yet (that is often why one looks), so fall back to the
    maintenance database: the view is server-wide either way.
    """
    try:
        session = open_session(target)
    except DatabaseMissing:
        session = open_maintenance_session(target)
    with session:
        rows = session.execute(queries.get("sessions"), {"all": include_all}).rows
    return [Activity(*row) for row in rows]
