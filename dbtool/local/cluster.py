"""Start and stop a throwaway PostgreSQL cluster with the machine's own binaries.

Used by the test suite, the benchmarks and ``dbtool local`` so that all three run a real server the
same way. PostgreSQL refuses to run as root, so when we are root the cluster's files and processes
belong to an unprivileged user (``postgres`` if it exists, else ``nobody``).
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from dbtool.errors import DbtoolError, ToolMissing

INSTALL_HINT = "install PostgreSQL: apt-get install postgresql, or brew install postgresql"
_BINDIR_GLOBS = (
    "/usr/lib/postgresql/*/bin",
    "/usr/pgsql-*/bin",
    "/opt/homebrew/opt/postgresql*/bin",
    "/usr/local/opt/postgresql*/bin",
)


BINDIR_VARIABLE = "DBTOOL_PG_BINDIR"


def find_bindir(environ: Mapping[str, str] | None = None) -> Path:
    """The directory holding ``initdb`` and ``pg_ctl``.

    ``$DBTOOL_PG_BINDIR`` when set (and then only there), else PATH, then ``pg_config --bindir``,
    then the usual install locations, newest version first.
    """
    environ = os.environ if environ is None else environ
    if chosen := environ.get(BINDIR_VARIABLE):
        if (Path(chosen) / "pg_ctl").exists():
            return Path(chosen)
        raise ToolMissing(f"no PostgreSQL server binaries in {chosen} ({BINDIR_VARIABLE})", INSTALL_HINT)
    path = environ.get("PATH", "")
    if found := shutil.which("pg_ctl", path=path):
        return Path(found).resolve().parent
    if pg_config := shutil.which("pg_config", path=path):
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False).stdout
        if (Path(out.strip()) / "pg_ctl").exists():
            return Path(out.strip())
    candidates = [Path(p) for pattern in _BINDIR_GLOBS for p in glob.glob(pattern) if (Path(p) / "pg_ctl").exists()]
    if not candidates:
        raise ToolMissing("no PostgreSQL server binaries (initdb, pg_ctl) found", INSTALL_HINT)
    return max(candidates, key=_version_key)


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", str(path))) or (0,)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def service_user() -> str | None:
    """The unprivileged user to run the server as when we are root; None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise DbtoolError("running as root and no unprivileged user to run PostgreSQL as", "create a 'postgres' user")


@dataclass(frozen=True)
class Cluster:
    """A data directory, the port it listens on, and who runs it."""

    datadir: Path
    port: int
    bindir: Path
    run_as: str | None = None

    def url(self, user: str, password: str, dbname: str, **query: str) -> str:
        from urllib.parse import quote, urlencode

        suffix = f"?{urlencode(query)}" if query else ""
        credentials = f"{quote(user, safe='')}:{quote(password, safe='')}"
        return f"postgresql://{credentials}@127.0.0.1:{self.port}/{quote(dbname, safe='')}{suffix}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            args, capture_output=True, text=True, check=False, cwd="/", user=self.run_as, env=_server_env()
        )
        if result.returncode != 0:
            raise DbtoolError(f"{Path(args[0]).name} failed: {(result.stderr or result.stdout).strip()[-500:]}")
        return result

    def init(
        self,
        superuser: str,
        password: str,
        *,
        settings: Mapping[str, str | int] | None = None,
        hba: Iterable[str] = ("host all all 127.0.0.1/32 scram-sha-256",),
        files: Mapping[str, str] | None = None,
    ) -> None:
        """initdb, then write settings, pg_hba.conf and extra files (such as SSL keys) into the datadir."""
        self.datadir.mkdir(parents=True, exist_ok=True)
        self.chown(self.datadir)
        with tempfile.NamedTemporaryFile("w", delete=False, prefix="dbtool-pw-") as pwfile:
            pwfile.write(password + "\n")
        self.chown(Path(pwfile.name))
        try:
            self._run(
                str(self.bindir / "initdb"),
                "-D",
                str(self.datadir),
                "-U",
                superuser,
                f"--pwfile={pwfile.name}",
                "--auth-local=peer",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            )
        finally:
            os.unlink(pwfile.name)
        for name, content in (files or {}).items():
            self._write(name, content, mode=0o600)
        conf = {"port": self.port, "listen_addresses": "127.0.0.1", "unix_socket_directories": "", **(settings or {})}
        lines = [f"{key} = {_conf_value(value)}" for key, value in conf.items()]
        with open(self.datadir / "postgresql.conf", "a") as handle:
            handle.write("\n# dbtool\n" + "\n".join(lines) + "\n")
        self._write("pg_hba.conf", "\n".join(hba) + "\n", mode=0o600)

    def start(self, options: str | None = None) -> None:
        """Start and wait until it accepts connections; ``options`` go to the server (``-o``)."""
        extra = ["-o", options] if options else []
        log = str(self.datadir / "server.log")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-l", log, "-w", "-t", "60", *extra, "start")

    def stop(self, mode: str = "immediate") -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w", "stop")

    def _write(self, name: str, content: str, mode: int) -> None:
        path = self.datadir / name
        path.write_text(content)
        path.chmod(mode)
        self.chown(path)

    def chown(self, path: Path) -> None:
        """Hand ``path`` to the server's user (when we are root and the server is not)."""
        if self.run_as is not None:
            entry = pwd.getpwnam(self.run_as)
            os.chown(path, entry.pw_uid, entry.pw_gid)


def _conf_value(value: str | int) -> str:
    if isinstance(value, int):
        return str(value)
    return "'" + value.replace("'", "''") + "'"


def _server_env() -> dict[str, str]:
    """A clean environment: the server must not pick up the caller's PG* or locale quirks."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
