"""The project's throwaway local PostgreSQL in ``.dbtool/`` (a first cut; issue #5 grows it).

It trusts only loopback connections, so its URL carries no password, and its port is remembered
in ``.dbtool/port`` so the printed URL stays valid across restarts.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from dbtool.cluster import Cluster, find_bindir, free_port, service_user

SUPERUSER = "postgres"
TRUST_LOOPBACK = ("host all all 127.0.0.1/32 trust",)


def _cluster(root: Path) -> Cluster:
    state = root / ".dbtool"
    port_file = state / "port"
    if port_file.exists():
        port = int(port_file.read_text())
    else:
        state.mkdir(parents=True, exist_ok=True)
        port = free_port()
        port_file.write_text(str(port))
    return Cluster(state / "data", port, find_bindir(), service_user())


def start(root: Path, dbname: str) -> str:
    """Start the server (initdb first if needed); return a CONNECTION_URL for ``dbname``."""
    cluster = _cluster(root)
    if not (cluster.datadir / "PG_VERSION").exists():
        cluster.init(SUPERUSER, "unused", hba=TRUST_LOOPBACK)
    if not _running(cluster):
        cluster.start()
    return f"postgresql://{SUPERUSER}@127.0.0.1:{cluster.port}/{dbname}"


def stop(root: Path) -> bool:
    """Stop the server; False when it was not running."""
    cluster = _cluster(root)
    if not _running(cluster):
        return False
    cluster.stop()
    return True


def _running(cluster: Cluster) -> bool:
    if not (cluster.datadir / "PG_VERSION").exists():
        return False
    status = subprocess.run(
        [str(cluster.bindir / "pg_ctl"), "-D", str(cluster.datadir), "status"],
        capture_output=True,
        check=False,
        user=cluster.run_as,
        cwd="/",
    )
    return status.returncode == 0
