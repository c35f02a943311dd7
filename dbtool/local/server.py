"""The project's own PostgreSQL, kept in ``.dbtool/``: the local target when no CONNECTION_URL is set.

A developer who clones the project gets a database with no Docker daemon and no URL to invent:
the first command on the local target runs initdb with the machine's binaries and starts the
server. It listens on 127.0.0.1 on a port remembered in ``.dbtool/port`` (a new one is picked, and
remembered, if something else has taken it) and on a Unix socket in ``.dbtool/run``, and trusts
only those local connections, so its URL carries no password. When we are root the files and the
server belong to an unprivileged user, since PostgreSQL refuses to run as root. When that user
cannot reach the project (a devcontainer running as root with the project under ``/root``), the
data goes outside it, in ``/var/lib/dbtool/<project>-<hash of its path>`` (``$DBTOOL_LOCAL_HOME``
overrides the base), and ``.dbtool/location`` remembers where; the port and the lock stay in
``.dbtool/``.

Whether it is running is decided from ``postmaster.pid`` and a TCP probe (about a millisecond), so
every command can afford to check; a server killed without cleaning up (a stale ``postmaster.pid``)
is simply started again.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dbtool.errors import DbtoolError, ToolMissing
from dbtool.local.cluster import Cluster, find_bindir, free_port, service_user

STATE_DIR = ".dbtool"
SUPERUSER = "postgres"
LEGACY_DATABASE = "cruddur"  # every project's database before the name was the project's own
DATABASE_FILE = "database"  # in .dbtool/: the database's name, chosen once
DATABASE_VARIABLE = "DBTOOL_LOCAL_DATABASE"
SWITCH_VARIABLE = "DBTOOL_LOCAL_SERVER"  # "off": no embedded server, CONNECTION_URL is required
TRUST_LOCAL = ("local all all trust", "host all all 127.0.0.1/32 trust")
NO_BINARIES_HINT = (
    "install PostgreSQL (apt-get install postgresql, or brew install postgresql), "
    "or set CONNECTION_URL to a server you already have"
)
OUTSIDE_VARIABLE = "DBTOOL_LOCAL_HOME"
OUTSIDE_DEFAULT = "/var/lib/dbtool"
LOCATION_FILE = "location"
SOCKET_PATH_LIMIT = 100  # sun_path holds 108 bytes on Linux, 104 on macOS, with ".s.PGSQL.NNNNN" in it
START_ATTEMPTS = 3


@dataclass(frozen=True)
class Status:
    """What ``dbtool local status`` reports."""

    created: bool
    running: bool
    port: int | None
    pid: int | None
    state_dir: Path
    version: str | None


class LocalServer:
    """The embedded server of the project at ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.state = root / STATE_DIR
        self.port_file = self.state / "port"
        self.home = self._home()  # where data/ and run/ live: .dbtool/, or outside the project
        self.datadir = self.home / "data"

    def _home(self) -> Path:
        try:
            outside = (self.state / LOCATION_FILE).read_text().strip()
        except OSError:
            return self.state
        return Path(outside) if outside else self.state

    @property
    def outside(self) -> bool:
        """Whether the data lives outside the project (its server user could not reach it)."""
        return self.home != self.state

    @property
    def created(self) -> bool:
        return (self.datadir / "PG_VERSION").is_file()

    def database_name(self, default: str) -> str:
        """The database's name: the one remembered in ``.dbtool/database``, else ``default`` (the project's), which
        is then remembered, so renaming the directory later changes nothing. A server made before the name was
        remembered keeps the one every project had then."""
        path = self.state / DATABASE_FILE
        with contextlib.suppress(OSError):
            remembered = path.read_text().strip()
            if remembered:
                return remembered
        name = LEGACY_DATABASE if self.created else default
        with contextlib.suppress(OSError):  # unwritable: the same default is derived next time
            self.state.mkdir(exist_ok=True)
            path.write_text(name + "\n")
        return name

    def url(self, dbname: str, port: int) -> str:
        from urllib.parse import quote

        return f"postgresql://{SUPERUSER}@127.0.0.1:{port}/{quote(dbname, safe='')}"

    def running_port(self) -> int | None:
        """The port of the running server, or ``None``."""
        running = self._running()
        return running[1] if running else None

    def _running(self) -> tuple[int, int] | None:
        """(pid, port) of the running server: from postmaster.pid, confirmed by a TCP probe."""
        try:
            lines = (self.datadir / "postmaster.pid").read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (OSError, ValueError, IndexError):
            return None
        if not _alive(pid) or not _accepts(port):
            return None
        return pid, port

    def ensure_running(self) -> tuple[int, bool]:
        """Start the server unless it runs; returns its port and whether it was started now."""
        port = self.running_port()
        if port is not None:
            return port, False
        return self.start(), True

    def start(self) -> int:
        """initdb on first use, then start; returns the port. A running server is left alone."""
        with self._lock():  # two commands at once: one starts the server, the other finds it running
            if (running := self.running_port()) is not None:
                return running
            return self._start()

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        import fcntl

        self.state.mkdir(parents=True, exist_ok=True)
        with open(self.state / "lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def _start(self) -> int:
        cluster = self._cluster(self._port())
        if not self.created:
            cluster = self._check_reachable(cluster)
            cluster.init(SUPERUSER, "unused-trust-auth", settings=self._settings(cluster), hba=TRUST_LOCAL)
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                cluster.start(options=f"-p {cluster.port}")
                return cluster.port
            except DbtoolError:
                # After a crash, the killed server's children may hold its shared memory a moment
                # longer; and another command may have started the server at the same moment.
                time.sleep(attempt)
                if (running := self.running_port()) is not None:
                    return running
                if attempt == START_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    def stop(self) -> bool:
        """Stop the server; ``False`` when it was not running."""
        if self.running_port() is None:
            return False
        self._cluster(self.remembered_port() or 0).stop(mode="fast")
        return True

    def destroy(self) -> bool:
        """Stop the server and delete ``.dbtool/`` with all its data; ``False`` when there was nothing."""
        if not self.state.exists():
            return False
        if self.running_port() is not None:
            self._cluster(self.remembered_port() or 0).stop(mode="immediate")
        if self.outside:
            shutil.rmtree(self.home, ignore_errors=True)
        shutil.rmtree(self.state)
        return True

    def status(self) -> Status:
        pid, port = self._running() or (None, self.remembered_port())
        version = (self.datadir / "PG_VERSION").read_text().strip() if self.created else None
        return Status(self.created, pid is not None, port, pid, self.home, version)

    def _cluster(self, port: int) -> Cluster:
        try:
            bindir = find_bindir()
        except ToolMissing as error:
            raise ToolMissing(error.message, NO_BINARIES_HINT) from None
        return Cluster(self.datadir, port, bindir, service_user())

    def remembered_port(self) -> int | None:
        """The port in ``.dbtool/port``, where the server listens when it runs; None when there is none."""
        try:
            return int(self.port_file.read_text())
        except (OSError, ValueError):
            return None

    def _port(self) -> int:
        """The remembered port when it is free, else a new free one (remembered from now on)."""
        port = self.remembered_port()
        if port is None or not _free(port):
            port = free_port()
            self.state.mkdir(parents=True, exist_ok=True)
            self.port_file.write_text(f"{port}\n")
        return port

    def _settings(self, cluster: Cluster) -> dict[str, str | int]:
        run = self.home / "run"
        sockets = ""
        if len(str(run)) + len("/.s.PGSQL.65535") <= SOCKET_PATH_LIMIT:
            run.mkdir(parents=True, exist_ok=True)
            run.chmod(0o700)
            cluster.chown(run)
            sockets = str(run)
        return {"unix_socket_directories": sockets, "listen_addresses": "127.0.0.1", "logging_collector": "off"}

    def _check_reachable(self, cluster: Cluster) -> Cluster:
        """As root, the server's user must reach its data: in ``.dbtool/``, else outside the project.

        Returns the cluster to initialise, moved outside when ``.dbtool/`` is out of the user's reach.
        """
        self.state.mkdir(parents=True, exist_ok=True)
        if cluster.run_as is None:
            return cluster
        cluster.chown(self.state)
        if _writable_by(cluster.run_as, self.state):
            return cluster
        base = Path(os.environ.get(OUTSIDE_VARIABLE) or OUTSIDE_DEFAULT)
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:12]
        home = base / f"{self.root.name}-{digest}"
        home.mkdir(parents=True, exist_ok=True)
        home.chmod(0o700)
        cluster.chown(home)
        if not _writable_by(cluster.run_as, home):
            raise DbtoolError(
                f"the {cluster.run_as} user (PostgreSQL refuses to run as root) can write neither to {self.state}"
                f" nor to {home}",
                f"make every parent directory searchable (chmod o+x), set {OUTSIDE_VARIABLE} to a directory it "
                "can reach, or set CONNECTION_URL to another server",
            )
        (self.state / LOCATION_FILE).write_text(f"{home}\n")
        self.home, self.datadir = home, home / "data"
        return Cluster(self.datadir, cluster.port, cluster.bindir, cluster.run_as)


def _writable_by(user: str, directory: Path) -> bool:
    test = ["/bin/sh", "-c", 'test -w "$1"', "sh", str(directory)]  # absolute: PATH may be anything
    return subprocess.run(test, user=user, check=False, cwd="/").returncode == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive, and the TCP probe decides
    return True


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
