"""A throwaway PostgreSQL for the benchmarks: the machine's binaries, trust on loopback, deleted after."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dbtool.local.cluster import Cluster, find_bindir, free_port, service_user


@contextmanager
def throwaway_server() -> Iterator[tuple[Cluster, Path]]:
    """A started cluster (superuser ``postgres``, no password on 127.0.0.1) and a work directory beside it."""
    work = Path(tempfile.mkdtemp(prefix="dbtool-bench-"))
    work.chmod(0o755)  # readable by the server's user when run as root
    cluster = Cluster(work / "data", free_port(), find_bindir(), service_user())
    cluster.init("postgres", "bench", hba=("host all all 127.0.0.1/32 trust",))
    cluster.start()
    print(f"PostgreSQL {cluster.bindir.parent.name} on 127.0.0.1, {os.cpu_count()} CPUs")
    try:
        yield cluster, work
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
