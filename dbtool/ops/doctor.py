"""``dbtool doctor``: find out, one step at a time, why a connection fails.

A hanging production connection can be DNS, the security group, SSL or the password, and libpq
reports only the last thing that went wrong. Doctor walks the path libpq takes (configuration, name
lookup, TCP, TLS, login, database) with the target's own settings and timeout, and reports every
step, so the first failing line is the cause and its hint is the fix. Nothing is written anywhere;
every line passes through the target's redaction, so no password is ever shown.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dbtool import queries
from dbtool.errors import ConnectionFailed, DatabaseMissing, DbtoolError, SslFailed
from dbtool.targets.psql import PSQL_INSTALL_HINT
from dbtool.targets.resolve import Target, resolve_target

if TYPE_CHECKING:
    from dbtool.engine.session import Session
    from dbtool.targets.project import Config

OK, FAIL, SKIP = "ok", "fail", "skip"
STEPS = ("configuration", "dns", "tcp", "ssl", "authentication", "database", "server", "psql")
# The first message of PostgreSQL's protocol: "may we talk TLS?". Every server answers it with one
# byte, 'S' or 'N', before any login, which proves a PostgreSQL server (not just an open port) is there.
SSL_REQUEST = struct.pack("!ii", 8, 80877103)
SSL_ANSWERS = {b"S": True, b"N": False}
DEFAULT_SOCKET_DIRS = ("/var/run/postgresql", "/tmp")  # libpq's compiled-in default: Debian's, then upstream's
SG_FIX = "likely cause: the RDS security group does not allow this workspace's IP; fix it with ./bin/rds-update-sg-rule"
PRIVATE_FIX = (
    "the host has only private addresses: the RDS instance is not publicly accessible, so connect from inside "
    "its VPC or make it publicly accessible"
)
NOT_POSTGRES_HINT = "is this the PostgreSQL port? something else listens there; check the port"
VERSION_PATTERN = re.compile(r"(\d+)(?:\.(\d+))?")


@dataclass(frozen=True)
class Check:
    """One reported step: its name, ``ok``/``fail``/``skip``, what was found and, on failure, the fix."""

    step: str
    status: str
    detail: str
    hint: str | None = None

    @property
    def failed(self) -> bool:
        return self.status == FAIL


@dataclass(frozen=True)
class Endpoint:
    """One place libpq would try: a TCP address or a Unix socket file."""

    label: str
    family: int
    address: tuple[str, int] | str
    private: bool = False


@dataclass(frozen=True)
class Login:
    """The outcome of one real libpq login, and what the server said about itself when there was one."""

    error: ConnectionFailed | None
    version: str | None = None
    major: int | None = None
    in_recovery: bool = False
    ssl: bool | None = None
    ssl_version: str | None = None


def diagnose(
    name: str = "local", *, config: Config | None = None, connect_timeout: float | None = None
) -> Iterator[Check]:
    """Every step of connecting to target ``name``, in order, as it completes (a timeout takes a while)."""
    try:
        target = resolve_target(name, config=config, connect_timeout=connect_timeout)
    except DbtoolError as error:
        yield Check("configuration", FAIL, error.message, error.hint)
        yield from _skipped(STEPS[1:-1], "needs a configuration")
        yield check_psql(None)
        return
    if target.transport.kind == "data-api":  # its own checks: no network, no TLS, no psql
        from dbtool.ops.doctor_data_api import diagnose_data_api

        yield from diagnose_data_api(target)
        return
    for check in _diagnose(target):
        hint = target.redact(check.hint) if check.hint else None
        yield Check(check.step, check.status, target.redact(check.detail), hint)


def _diagnose(target: Target) -> Iterator[Check]:
    params = effective_params(target)
    yield Check("configuration", OK, _configuration(target))
    endpoints, dns = _look_up(params, target)
    yield dns
    if not endpoints:
        yield from _skipped(STEPS[2:-1], "needs the host's address")
        yield check_psql(None)
        return
    tcp, reached, offers_ssl = _reach(endpoints, float(params["connect_timeout"]), target)
    yield tcp
    if reached is None:
        yield from _skipped(STEPS[3:-1], "needs a TCP connection")
        yield check_psql(None)
        return
    login = _login(target)
    yield _ssl(params, target, reached, offers_ssl, login)
    yield from _login_checks(target, params, login)
    yield check_psql(login.major)


def _skipped(steps: tuple[str, ...], reason: str) -> Iterator[Check]:
    for step in steps:
        yield Check(step, SKIP, reason)


def effective_params(target: Target) -> dict[str, str]:
    """The target's connection parameters with libpq's defaults (PGPORT, PGSSLMODE, ...) filled in."""
    from psycopg import pq

    defaults = {
        option.keyword.decode(): option.val.decode() for option in pq.Conninfo.get_defaults() if option.val is not None
    }
    return {**defaults, **target.params}


def _configuration(target: Target) -> str:
    sources = target.sources
    where = sources.get("url") or f"{sources.get('host', 'AWS')} ({target.variable} is not set)"
    parts = [f"{'PRODUCTION ' if target.is_prod else ''}{target.display} via {where}"]
    if "password" in sources:
        parts.append(f"credentials: {sources['password']}")
    if "started" in sources:
        parts.append(sources["started"])
    return "; ".join(parts)


def _look_up(params: Mapping[str, str], target: Target) -> tuple[list[Endpoint], Check]:
    """The addresses libpq would try, host by host (a URL may list several, comma-separated)."""
    hosts = params.get("host", "").split(",")
    addresses = params.get("hostaddr", "").split(",")
    ports = params.get("port", "5432").split(",")
    endpoints: list[Endpoint] = []
    found: list[str] = []
    failures: list[str] = []
    for index, host in enumerate(hosts):
        host = host.strip()
        port = int((ports[index] if len(ports) > 1 else ports[0]).strip() or 5432)
        hostaddr = addresses[index].strip() if index < len(addresses) else ""
        if hostaddr:
            endpoints.append(_tcp_endpoint(hostaddr, port))
            found.append(f"hostaddr {hostaddr} is given, no lookup")
        elif not host or host.startswith(("/", "@")):
            directory = host or next((d for d in DEFAULT_SOCKET_DIRS if Path(d).is_dir()), DEFAULT_SOCKET_DIRS[-1])
            path = f"{directory}/.s.PGSQL.{port}"
            endpoints.append(Endpoint(path, socket.AF_UNIX, "\0" + path[1:] if path.startswith("@") else path))
            found.append(f"Unix socket {path}, no lookup")
        elif _is_address(host):
            endpoints.append(_tcp_endpoint(host, port))
            found.append(f"{host} is an address, no lookup")
        else:
            try:
                resolved = _resolve(host, port)
            except UnicodeError:
                failures.append(f"{host} is not a host name: a part between dots is empty or over 63 characters")
                continue
            except OSError as error:
                failures.append(f"cannot resolve {host}: {_reason(error)}")
                continue
            endpoints += resolved
            private = " (private: reachable only inside its network)" if _all_private(resolved, target) else ""
            found.append(f"{host} → {', '.join(endpoint.address[0] for endpoint in resolved)}{private}")
    if not endpoints:
        origin = target.sources.get("host") or target.variable
        return [], Check("dns", FAIL, "; ".join(failures), f"check the host name in {origin}")
    status = SKIP if all(endpoint.family == socket.AF_UNIX for endpoint in endpoints) else OK
    return endpoints, Check("dns", status, "; ".join(found + failures))


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _tcp_endpoint(address: str, port: int) -> Endpoint:
    ip = ipaddress.ip_address(address)
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    label = f"[{address}]:{port}" if ip.version == 6 else f"{address}:{port}"
    return Endpoint(label, family, (address, port), private=ip.is_private and not ip.is_loopback)


def _resolve(host: str, port: int) -> list[Endpoint]:
    # The encoding check catches a malformed name (an empty or over-long label) before any query is sent.
    host.encode("idna")
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    unique = dict.fromkeys(str(info[4][0]) for info in infos)
    return [_tcp_endpoint(address, port) for address in unique]


def _all_private(endpoints: list[Endpoint], target: Target) -> bool:
    return target.is_prod and all(endpoint.private for endpoint in endpoints)


def _reach(endpoints: list[Endpoint], timeout: float, target: Target) -> tuple[Check, Endpoint | None, bool]:
    """The first endpoint where a PostgreSQL server answers, and whether it offers SSL."""
    failures: list[Check] = []
    for endpoint in endpoints:
        started = time.monotonic()
        try:
            offers_ssl = _probe(endpoint, timeout)
        except _Unreachable as failure:
            failures.append(failure.check(endpoint, timeout, target))
            continue
        took = (time.monotonic() - started) * 1000
        kind = "PostgreSQL answers" if endpoint.family == socket.AF_UNIX else "accepts TCP, PostgreSQL answers"
        return Check("tcp", OK, f"{endpoint.label} {kind} ({took:.0f} ms)"), endpoint, offers_ssl
    first = failures[0]
    return Check("tcp", FAIL, "; ".join(failure.detail for failure in failures), first.hint), None, False


class _Unreachable(Exception):
    """Why an endpoint could not be reached: ``refused``, ``timeout``, ``silent``, ``other`` or ``missing``."""

    def __init__(self, kind: str, reason: str = "") -> None:
        super().__init__(kind)
        self.kind = kind
        self.reason = reason

    def check(self, endpoint: Endpoint, timeout: float, target: Target) -> Check:
        where = endpoint.label
        if self.kind == "missing":
            return Check("tcp", FAIL, f"no server socket at {where}", _not_running_hint(target))
        if self.kind == "refused":
            return Check(
                "tcp", FAIL, f"{where} refused the connection: nothing listens there", _not_running_hint(target)
            )
        if self.kind == "timeout":
            if not target.is_prod:
                hint = "a firewall drops the packets, or the host is down"
            else:
                hint = PRIVATE_FIX if endpoint.private else SG_FIX
            return Check("tcp", FAIL, f"no answer from {where} within {timeout:g} s", hint)
        if self.kind == "silent":
            detail = f"{where} accepted the connection but did not answer like PostgreSQL within {timeout:g} s"
            return Check("tcp", FAIL, detail, NOT_POSTGRES_HINT)
        if self.kind == "not-postgres":
            return Check("tcp", FAIL, f"{where} answered, but not like PostgreSQL", NOT_POSTGRES_HINT)
        return Check("tcp", FAIL, f"cannot reach {where}: {self.reason}", _not_running_hint(target))


def _not_running_hint(target: Target) -> str:
    variable = target.variable
    if target.is_prod:
        return f"check the host and port in {variable}; is the RDS instance available (not stopped or rebooting)?"
    return f"is the server running and listening there? check {variable}"


def _probe(endpoint: Endpoint, timeout: float) -> bool:
    """Connect and ask for TLS; True when the server offers it. Raises :class:`_Unreachable`."""
    with socket.socket(endpoint.family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(endpoint.address)
        except (FileNotFoundError, ConnectionRefusedError) as error:
            kind = "missing" if isinstance(error, FileNotFoundError) else "refused"
            raise _Unreachable(kind) from None
        except TimeoutError:
            raise _Unreachable("timeout") from None
        except OSError as error:
            raise _Unreachable("other", _reason(error)) from None
        try:
            sock.sendall(SSL_REQUEST)
            # More than the one byte is not PostgreSQL (which then waits for the TLS handshake), even when
            # it starts with "S": an SSH server's greeting does.
            answer = sock.recv(64)
        except TimeoutError:
            raise _Unreachable("silent") from None
        except OSError:
            answer = b""
    if answer not in SSL_ANSWERS:
        raise _Unreachable("not-postgres")
    return SSL_ANSWERS[answer]


def _reason(error: BaseException) -> str:
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


def _login(target: Target) -> Login:
    """Log in as libpq does; on a missing database, ask the server about itself on a maintenance database."""
    from dbtool.engine.session import open_maintenance_session, open_session

    try:
        with open_session(target) as session:
            return _server_facts(session, None)
    except DatabaseMissing as missing:
        try:
            with open_maintenance_session(target) as session:
                return _server_facts(session, missing)
        except ConnectionFailed:
            return Login(missing)
    except ConnectionFailed as error:
        return Login(error)


def _server_facts(session: Session, error: ConnectionFailed | None) -> Login:
    row = session.execute(queries.get("doctor_server")).one()
    assert row is not None  # the query always returns its one row
    version, in_recovery, ssl, ssl_version = row
    return Login(error, version, session.server_version // 10000, in_recovery, ssl, ssl_version)


def _ssl(params: Mapping[str, str], target: Target, endpoint: Endpoint, offers_ssl: bool, login: Login) -> Check:
    mode = params.get("sslmode", "prefer")
    if endpoint.family == socket.AF_UNIX:
        return Check("ssl", SKIP, "not used over a Unix socket")
    if isinstance(login.error, SslFailed):
        return Check("ssl", FAIL, f"{login.error.message} (sslmode={mode})", login.error.hint)
    encrypted = login.ssl
    if encrypted is None:  # no session to ask: what libpq does with this mode and this server
        encrypted = offers_ssl and mode not in ("disable", "allow")
    if not encrypted:
        why = "" if offers_ssl else ", the server offers no SSL"
        return Check("ssl", OK, f"not encrypted (sslmode={mode}{why})")
    protocol = f" with {login.ssl_version}" if login.ssl_version else ""
    verified, hint = _verification(params, mode, target)
    return Check("ssl", OK, f"encrypted{protocol} (sslmode={mode}): {verified}", hint)


def _verification(params: Mapping[str, str], mode: str, target: Target) -> tuple[str, str | None]:
    """What libpq checked of the certificate: with a root certificate it always verifies the chain."""
    rootcert = params.get("sslrootcert") or str(Path.home() / ".postgresql" / "root.crt")
    if rootcert == "system":
        store: str | None = "the system's CA store"
    else:
        store = rootcert if Path(rootcert).is_file() else None
    if mode == "verify-full":
        return f"certificate verified against {store}, host name matches", None
    if store is not None:
        return f"certificate verified against {store}; host name not checked (sslmode=verify-full checks it)", None
    hint = "set PROD_DB_SSLROOTCERT to the RDS CA bundle to verify it" if target.is_prod else None
    return "certificate not verified: anyone on the path could pose as the server", hint


def _login_checks(target: Target, params: Mapping[str, str], login: Login) -> Iterator[Check]:
    error = login.error
    if isinstance(error, SslFailed):
        yield from _skipped(("authentication", "database", "server"), "needs SSL to work")
        return
    if error is not None and not isinstance(error, DatabaseMissing):
        yield Check("authentication", FAIL, error.message, error.hint)
        yield from _skipped(("database", "server"), "needs a login")
        return
    yield Check("authentication", OK, f"logged in as {params.get('user')} with {_credential(target, params)}")
    if error is None:
        yield Check("database", OK, f"{target.dbname} exists")
    else:
        yield Check("database", FAIL, error.message, error.hint)
    if login.version is None:
        yield Check("server", SKIP, "could not ask the server")
    else:
        replica = ", a read-only replica (in recovery)" if login.in_recovery else ""
        yield Check("server", OK, f"PostgreSQL {login.version}{replica}")


def _credential(target: Target, params: Mapping[str, str]) -> str:
    if "password" in target.sources:
        return target.sources["password"]
    if target.params.get("password"):
        return f"the password in {target.sources.get('url', target.variable)}"
    if params.get("password"):
        return "the password in PGPASSWORD"
    return "no password in the configuration (the server trusts this client, or ~/.pgpass has it)"


def check_psql(server_major: int | None) -> Check:
    """``psql`` is there (``dbtool connect`` needs it) and not older than the server it will talk to."""
    path = shutil.which("psql")
    if path is None:
        return Check("psql", FAIL, "psql is not installed (dbtool connect needs it)", PSQL_INSTALL_HINT)
    try:
        output = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError) as error:
        return Check("psql", FAIL, f"{path} --version failed: {_reason(error)}", PSQL_INSTALL_HINT)
    found = VERSION_PATTERN.search(output)
    if found is None:
        return Check("psql", FAIL, f"{path} --version printed no version: {output.strip()!r}", PSQL_INSTALL_HINT)
    version, major = found.group(0), int(found.group(1))
    if server_major is None:
        return Check("psql", OK, f"psql {version} ({path})")
    if major < server_major:
        return Check(
            "psql",
            FAIL,
            f"psql {version} ({path}) is older than the server's PostgreSQL {server_major}: \\d and other "
            "meta-commands may fail",
            f"install the version {server_major} client: apt-get install postgresql-client-{server_major}, "
            "or brew install libpq",
        )
    relation = "the server's major version" if major == server_major else f"newer than the server's {server_major}"
    return Check("psql", OK, f"psql {version} ({path}), {relation}")
