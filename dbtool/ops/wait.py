"""Wait for a server to accept connections: workspace start scripts run before the database is up.

In Gitpod the database container may still be starting when ``db-setup`` runs; the old scripts
failed with "connection refused" and left a half-set-up workspace. A missing database counts as
up (the server answered), and a refused login is final (waiting will not fix a password).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from dbtool.engine.session import open_session
from dbtool.errors import AuthenticationFailed, ConnectionFailed, DatabaseMissing

if TYPE_CHECKING:
    from dbtool.targets.resolve import Target

DEFAULT_TIMEOUT = 60.0
RETRY_SECONDS = 0.25


def wait_until_up(target: Target, timeout: float = DEFAULT_TIMEOUT) -> float:
    """Seconds waited until the target's server accepted a connection; ConnectionFailed after ``timeout``."""
    clock = time.monotonic
    started = clock()
    deadline = started + timeout
    while True:
        remaining = deadline - clock()
        try:
            # Each attempt gets at most the time left (libpq counts whole seconds, at least 2).
            with open_session(target, connect_timeout=max(2, int(remaining + 0.999))) as session:
                session.execute("SELECT 1")  # the Data API opens nothing until a call: make one
            return clock() - started
        except ConnectionFailed as error:
            failure = error
        if isinstance(failure, DatabaseMissing):
            return clock() - started
        if isinstance(failure, AuthenticationFailed):
            raise failure
        if clock() + RETRY_SECONDS > deadline:
            raise ConnectionFailed(
                f"{target.display} did not accept connections within {timeout:g} s: {failure.message}",
                failure.hint,
                remedy=failure.remedy,
            )
        time.sleep(RETRY_SECONDS)
