"""Resolve a target name (``local``, ``prod``, or one declared in ``dbtool.toml``) into where its connections go.

Everything about a connection is decided here, once, so every command and the application agree:
which variable names the server, libpq's parse of it (never string surgery: the old scripts' ``sed``
turned ``cruddurroot`` into ``root``), the connect timeout, ``application_name`` and the SSL default
for production. Resolution order: explicit argument > environment > ``.env`` > default.
"""

from __future__ import annotations

import dataclasses
import functools
import getpass
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from dbtool.errors import DbtoolError, MalformedUrl, TargetNotConfigured
from dbtool.targets.project import Config, Project, Setting, find_root, project_of

if TYPE_CHECKING:
    from dbtool.targets.dataapi import DataApiAddress
    from dbtool.targets.declared import DeclaredTarget
    from dbtool.targets.transport import Transport

TARGET_VARIABLES = {"local": "CONNECTION_URL", "prod": "PROD_CONNECTION_URL"}
TIMEOUT_VARIABLE = "DBTOOL_CONNECT_TIMEOUT"
DEFAULT_CONNECT_TIMEOUT = 5
DEFAULT_PORT = 5432
APPLICATION_NAME = "dbtool"
# Databases to hold the maintenance connection for CREATE/DROP DATABASE, in order of preference.
MAINTENANCE_DATABASES = ("postgres", "template1")
PERCENT_ENCODING_HINT = (
    "percent-encode special characters in the password: @ as %40, / as %2F, : as %3A, ? as %3F, # as %23, % as %25"
)


@dataclass(frozen=True)
class Target:
    """A resolved target. ``conninfo`` holds the password, so it is kept out of ``repr``.

    ``password_source``, when set (RDS IAM auth), makes a new password for every connection; its
    ``issued`` attribute, if any, lists recent ones for :meth:`redact`. ``data_api``, when set, sends
    everything through the RDS Data API and ``conninfo`` is empty. ``report`` is how the target
    tells its user that it waits (a resuming Aurora cluster); the CLI points it at stderr.
    """

    name: str
    conninfo: str = field(repr=False)
    dbname: str
    is_prod: bool
    root: Path
    sources: Mapping[str, str] = field(default_factory=dict)
    password_source: Callable[[], str] | None = field(default=None, repr=False, compare=False)
    data_api: DataApiAddress | None = None
    report: Callable[[str], None] | None = field(default=None, repr=False, compare=False)
    protected: bool = False  # writes ask first (prod always; a declared target that says protected = true)
    variable: str = ""  # what names its server, for messages: CONNECTION_URL, a declared url_env, ...
    project: Project | None = field(default=None, repr=False, compare=False)  # what it was resolved in

    @property
    def transport(self) -> Transport:
        """How its SQL travels, and what that transport can do (:mod:`dbtool.targets.transport`)."""
        from dbtool.targets import transport

        if self.data_api is not None:
            return transport.data_api(self.data_api.cluster_arn)
        params = self.parsed
        return transport.libpq(params.get("host", ""), params.get("port") or str(DEFAULT_PORT))

    @property
    def context(self) -> Project:
        """The project the target belongs to: its settings, dbtool.toml and AWS clients, read once."""
        return self.project if self.project is not None else Project(self.root)

    @property
    def label(self) -> str:
        """How a write prompt names it: ``PRODUCTION``, ``protected target staging``, or nothing."""
        if self.is_prod:
            return "PRODUCTION"
        return f"protected target {self.name}" if self.protected else ""

    @functools.cached_property
    def parsed(self) -> Mapping[str, str]:
        """libpq's parse of ``conninfo``, made once (a frozen dataclass may cache: it keeps a ``__dict__``)."""
        from psycopg.conninfo import conninfo_to_dict

        return MappingProxyType({key: str(value) for key, value in conninfo_to_dict(self.conninfo).items()})

    def on_database(self, dbname: str) -> Target:
        """The same target on another database of its server (drift builds a throwaway one)."""
        from psycopg.conninfo import make_conninfo

        return dataclasses.replace(self, conninfo=make_conninfo(self.conninfo, dbname=dbname), dbname=dbname)

    @property
    def params(self) -> dict[str, str]:
        """A copy of the parsed connection parameters, for a caller to change."""
        return dict(self.parsed)

    @property
    def password(self) -> str | None:
        """The password for one new connection (a fresh token each time for IAM auth)."""
        if self.password_source is not None:
            return self.password_source()
        return self.parsed.get("password")

    @property
    def display(self) -> str:
        """``user@host:port/db``: how a target is shown anywhere, never with its password."""
        if self.data_api is not None:
            return f"{self.data_api.cluster}/{self.dbname} (RDS Data API)"
        params = self.parsed
        user = params.get("user") or getpass.getuser()
        host = params.get("host") or params.get("hostaddr") or "localhost"
        return f"{user}@{host}:{params.get('port') or 5432}/{self.dbname}"

    def conninfo_for(self, dbname: str | None = None, *, with_password: bool = True) -> str:
        """This target's conninfo, optionally on another database or without the password."""
        from psycopg.conninfo import make_conninfo

        params: dict[str, object] = dict(self.parsed)
        if dbname is not None:
            params["dbname"] = dbname
        if not with_password:
            params.pop("password", None)
        elif self.password_source is not None:
            params["password"] = self.password_source()
        return make_conninfo("", **params)

    def redact(self, text: str) -> str:
        """Remove this target's password (and any IAM token it issued) from text that is about to be shown."""
        return redact_password(text, self.parsed.get("password") or "", *getattr(self.password_source, "issued", ()))


# A password where it stands: in a URL's userinfo, or as a conninfo keyword's value (quoted or not).
_URL_PASSWORD = re.compile(r"(?i)(\bpostgres(?:ql)?://[^:/@\s]*:)\S*(@)")  # to the last @: a password may hold one
_CONNINFO_PASSWORD = re.compile(r"(?i)(\bpassword\s*=\s*)(?:'(?:[^'\\]|\\.)*'|[^\s'][^\s]*)")
# Long enough that hiding every occurrence cannot eat other words: an RDS IAM token, a generated password.
WHOLE_SECRET_CHARS = 12


def redact_password(text: str, *secrets: str) -> str:
    """``text`` with every password in a URL or conninfo shown as ``****``, and long ``secrets`` wherever they are.

    A short password is hidden where it stands, never wherever its letters are: a password ``p``
    must not turn ``postgres`` into ``****ostgres``.
    """
    from urllib.parse import quote

    text = _URL_PASSWORD.sub(r"\1****\2", text)
    text = _CONNINFO_PASSWORD.sub(r"\1****", text)
    for secret in secrets:
        if len(secret) >= WHOLE_SECRET_CHARS:
            for form in {secret, quote(secret, safe=""), quote(secret)}:
                text = text.replace(form, "****")
    return text


def resolve_target(
    name: str = "local",
    *,
    config: Config | None = None,
    connect_timeout: float | None = None,
) -> Target:
    """Resolve ``name`` in ``config`` (a :class:`Project`; else the one around the current directory) into a
    :class:`Target`, or raise a :class:`DbtoolError` saying what to fix."""
    project = project_of(config) if config is not None else Project(find_root())
    return dataclasses.replace(_resolve(name, project, connect_timeout), project=project)


def _resolve(name: str, config: Project, connect_timeout: float | None) -> Target:
    declared = config.declaration.targets
    if name in declared:
        return _declared_target(declared[name], config, connect_timeout)
    if name not in TARGET_VARIABLES:
        raise UnknownTarget(f"unknown target {name!r}", f"known targets: {', '.join(target_names(config))}")
    if name == "prod" and (target := _data_api_target(config)) is not None:
        return target
    variable = TARGET_VARIABLES[name]
    setting = config.get(variable)
    is_prod = name == "prod"
    if is_prod:  # production's credentials and TLS: not imported for a local target
        from dbtool.targets.prodauth import SECRET_VARIABLE, apply_credentials, apply_tls
    from_aws = is_prod and config.get(SECRET_VARIABLE) is not None
    sources: dict[str, str] = {}
    raw: str | None = None
    if setting is not None:
        raw = setting.value
        sources["url"] = f"{variable} from {setting.source}"
    elif not is_prod and _embedded_allowed(config):
        raw = _embedded_url(config, sources)
    elif not from_aws:
        alternative = f" (or {SECRET_VARIABLE})" if is_prod else ""
        raise TargetNotConfigured(f"{variable} is not set", _not_set_hint(config, alternative))
    params = parse_url(raw, variable, setting.source if setting is not None else None) if raw is not None else {}
    password_source = None
    if is_prod:
        password_source = apply_credentials(params, sources, config)
        apply_tls(params, sources, config)
    return _build(
        name,
        variable,
        params,
        sources,
        config,
        password_source=password_source,
        is_prod=is_prod,
        protected=is_prod,
        remote_tls=is_prod,
        connect_timeout=connect_timeout,
    )


def _build(
    name: str,
    variable: str,
    params: dict[str, str],
    sources: dict[str, str],
    config: Config,
    *,
    password_source: Callable[[], str] | None,
    is_prod: bool,
    protected: bool,
    remote_tls: bool,
    connect_timeout: float | None,
) -> Target:
    """The target from its parsed connection parameters: a database is required, then the defaults."""
    if not params.get("dbname"):
        raise MalformedUrl(
            f"{variable} names no database",
            "end the URL with the database name, e.g. postgresql://user@host:5432/cruddur",
        )
    _apply_defaults(params, sources, config, is_prod=remote_tls, connect_timeout=connect_timeout)
    from psycopg.conninfo import make_conninfo

    return Target(
        name=name,
        conninfo=make_conninfo("", **params),
        dbname=params["dbname"],
        is_prod=is_prod,
        root=config.root,
        sources=MappingProxyType(sources),
        password_source=password_source,
        protected=protected,
        variable=variable,
    )


class UnknownTarget(DbtoolError):
    """A target name that is neither local, prod, nor declared in dbtool.toml: a usage error."""

    exit_code = 2


def target_names(project: Project) -> list[str]:
    """``local``, ``prod``, then the targets ``dbtool.toml`` declares, in its order."""
    declared = project.declaration.targets
    return [*TARGET_VARIABLES, *(name for name in declared if name not in TARGET_VARIABLES)]


def _data_api_target(
    config: Config, name: str = "prod", *, protected: bool = True, variable: str | None = None
) -> Target | None:
    """The Data API target when ``config`` names a cluster; ``variable`` is what names it (prod's variable)."""
    from dbtool.targets.dataapi import CLUSTER_VARIABLE, resolve_data_api

    sources: dict[str, str] = {}
    found = resolve_data_api(config, sources)
    if found is None:
        return None
    address, dbname = found
    return Target(
        name,
        "",
        dbname,
        name == "prod",
        config.root,
        MappingProxyType(sources),
        data_api=address,
        protected=protected,
        variable=variable or CLUSTER_VARIABLE,
    )


def _declared_target(declared: DeclaredTarget, config: Config, connect_timeout: float | None) -> Target:
    """A ``[targets.NAME]`` target, through production's code with its settings in place of prod's variables."""
    from dbtool.targets.prodauth import apply_credentials, apply_tls

    settings = _DeclaredSettings(config, declared)
    protected = declared.protected or declared.name == "prod"
    if declared.data_api_cluster_arn is not None:
        target = _data_api_target(settings, declared.name, protected=protected, variable=declared.where)
        assert target is not None  # the cluster is declared
        return target
    sources: dict[str, str] = {}
    variable = declared.url_env or declared.where
    params: dict[str, str] = {}
    if declared.url_env is not None:
        setting = config.get(declared.url_env)
        if setting is None:
            raise TargetNotConfigured(
                f"{declared.url_env} is not set (the URL of target {declared.name})",
                f"set it in the environment or in {config.env_file}; {declared.where} names it",
            )
        params = parse_url(setting.value, declared.url_env)
        sources["url"] = f"{declared.url_env} from {setting.source}"
    password_source = apply_credentials(params, sources, settings)
    apply_tls(params, sources, settings)
    # A declared target is treated like production for TLS: a remote host gets sslmode=require.
    return _build(
        declared.name,
        variable,
        params,
        sources,
        config,
        password_source=password_source,
        is_prod=declared.name == "prod",
        protected=protected,
        remote_tls=True,
        connect_timeout=connect_timeout,
    )


# prod's variable -> the declared key that stands for it, for messages about a declared target
DECLARED_KEYS = {
    "PROD_DB_SECRET_ID": "secret_id",
    "PROD_DB_IAM_AUTH": "iam_auth",
    "PROD_DB_SSLROOTCERT": "sslrootcert",
    "PROD_DATA_API_CLUSTER_ARN": "data_api_cluster_arn",
    "PROD_DB_NAME": "database",
    "PROD_CONNECTION_URL": "url_env",
}


class _DeclaredSettings(Config):
    """A declared target's settings under the names production's code reads; prod's own are hidden."""

    HIDDEN_PREFIXES = ("PROD_DB_", "PROD_DATA_API_", "PROD_CONNECTION_URL")

    def __init__(self, base: Config, declared: DeclaredTarget) -> None:
        self.root, self.env_file, self._base = base.root, base.env_file, base
        values = {
            "PROD_DB_SECRET_ID": declared.secret_id,
            "PROD_DB_IAM_AUTH": "1" if declared.iam_auth else None,
            "PROD_DB_SSLROOTCERT": declared.sslrootcert,
            "PROD_DATA_API_CLUSTER_ARN": declared.data_api_cluster_arn,
            "PROD_DB_NAME": declared.database,
            "PROD_CONNECTION_URL": base.value(declared.url_env) if declared.url_env else None,
        }
        self._values = {name: value for name, value in values.items() if value}
        self._where = declared.where
        self._labels = {name: f"{key} in {declared.where}" for name, key in DECLARED_KEYS.items()}
        if declared.url_env:
            self._labels["PROD_CONNECTION_URL"] = declared.url_env

    def aws_client(self, service: str, **options: Any) -> Any:
        return self._base.aws_client(service, **options)  # AWS settings are the project's own

    def label(self, name: str) -> str:
        return self._labels.get(name, name)

    def get(self, name: str) -> Setting | None:
        if name in self._values:
            return Setting(self._values[name], self._where)
        if name.startswith(self.HIDDEN_PREFIXES):
            return None
        return self._base.get(name)


def _embedded_allowed(config: Config) -> bool:
    """The embedded server stands in for CONNECTION_URL in a project (not any directory), unless turned off."""
    from dbtool.local.server import STATE_DIR, SWITCH_VARIABLE
    from dbtool.targets.project import is_project

    switch = config.value(SWITCH_VARIABLE)
    if switch is not None and switch.strip().lower() in ("off", "0", "no", "false"):
        return False
    return is_project(config.root) or (config.root / STATE_DIR).exists()


def _embedded_url(config: Config, sources: dict[str, str]) -> str:
    """The embedded server's URL, starting the server when it is not running."""
    from dbtool.local.server import DATABASE_VARIABLE, STATE_DIR, LocalServer
    from dbtool.targets.project import database_name_from

    server = LocalServer(config.root)
    dbname = config.value(DATABASE_VARIABLE) or server.database_name(database_name_from(config.root))
    port, started = server.ensure_running()
    where = f"{server.home}" if server.outside else f"{STATE_DIR}/"
    sources["url"] = f"the project's own server in {where} (CONNECTION_URL is not set)"
    if started:
        where = f"{server.home}" if server.outside else f"{STATE_DIR}/"  # after a first start, where it went
        why = f", outside the project: its server user cannot reach {STATE_DIR}/" if server.outside else ""
        sources["started"] = f"started the project's PostgreSQL in {where} on port {port}{why}"
    return server.url(dbname, port)


def _not_set_hint(config: Config, alternative: str) -> str:
    """Where to set it; at a directory that is not a project but holds one (a monorepo's root), where that is."""
    from dbtool.targets.project import is_project, projects_below

    hint = f"set it{alternative} in the environment or in {config.env_file}"
    if (config.root / ".env.example").is_file():
        hint += "; see .env.example"
    below = [] if is_project(config.root) else projects_below(config.root)
    if below:
        where = " or ".join(f"{path}/" for path in below)
        return f"no project here: it is in {where}, so cd {below[0]}; or {hint}"
    return hint


def parse_url(raw: str, variable: str, source: str | None = None) -> dict[str, str]:
    """libpq's parse of a URL or key=value string, with the mistakes it accepts silently caught; ``source`` is
    where the value was set."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    if "://" not in raw and "=" not in raw and raw.strip() and not any(c.isspace() for c in raw.strip()):
        # "localhost:5432": libpq would take it for a database name. Never echoed: it may hold a password.
        raise MalformedUrl(
            f"{variable} is missing the postgresql:// scheme", "write it as postgresql://USER@HOST:PORT/DBNAME"
        )
    try:
        params = {key: str(value) for key, value in conninfo_to_dict(raw).items()}
    except psycopg.ProgrammingError:
        # libpq's message quotes the string, password included: never show it.
        raise MalformedUrl(f"{variable} is not a valid PostgreSQL URL", PERCENT_ENCODING_HINT) from None
    host = params.get("host", "")
    if "@" in host or ("/" in host and not host.startswith("/")):  # a leading "/" is a socket directory
        # "postgresql://u:p@ss@host/db" parses with host "ss@host": an unencoded password.
        raise MalformedUrl(f"{variable} has an unexpected '@' or '/' in its host name", PERCENT_ENCODING_HINT)
    if any(not part.strip().isdigit() for part in params.get("port", "5432").split(",")):
        raise MalformedUrl(f"{variable} has a port that is not a number", PERCENT_ENCODING_HINT)
    if any(PLACEHOLDER_LABEL.fullmatch(label) for label in host.split(".")):
        where = "the environment" if source in (None, "environment") else source
        raise MalformedUrl(
            f"{variable} is still the example from .env.example", f"{host}; put your database's URL in {where}"
        )
    return params


PLACEHOLDER_LABEL = re.compile(r"x{4,}", re.I)  # .env.example's app-db.xxxxxxxx.us-east-1.rds.amazonaws.com


def _apply_defaults(
    params: dict[str, str],
    sources: dict[str, str],
    config: Config,
    *,
    is_prod: bool,
    connect_timeout: float | None,
) -> None:
    if connect_timeout is not None:
        params["connect_timeout"] = _timeout(str(connect_timeout), "--connect-timeout")
        sources["connect_timeout"] = "option"
    elif "connect_timeout" in params:
        sources["connect_timeout"] = "url"
    elif (setting := config.get(TIMEOUT_VARIABLE)) is not None:
        params["connect_timeout"] = _timeout(setting.value, TIMEOUT_VARIABLE)
        sources["connect_timeout"] = f"{TIMEOUT_VARIABLE} from {setting.source}"
    else:
        params["connect_timeout"] = str(DEFAULT_CONNECT_TIMEOUT)
        sources["connect_timeout"] = "default"
    params.setdefault("application_name", APPLICATION_NAME)
    if "sslmode" in params:
        sources["sslmode"] = "url"
    elif is_prod and config.value("PGSSLMODE") is None and not is_local_host(params):
        # RDS accepts SSL; a production password should never cross the network in clear.
        params["sslmode"] = "require"
        sources["sslmode"] = "default for a remote production host"


def _timeout(value: str, origin: str) -> str:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1
    if seconds <= 0:
        raise DbtoolError(f"{origin} must be a positive number of seconds, not {value!r}")
    # libpq takes whole seconds, and treats 1 as 2; round up so a short timeout is never 0 (= wait forever).
    return str(max(2, int(-(-seconds // 1))))


def is_local_host(params: Mapping[str, str]) -> bool:
    """True when every host is a Unix socket, ``localhost`` or a loopback address."""
    hosts = params.get("host") or params.get("hostaddr") or ""
    return all(_is_local(host.strip()) for host in hosts.split(","))


def _is_local(host: str) -> bool:
    if not host or host.startswith(("/", "@")) or host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def prod_port(config: Config) -> int:
    """The port of ``PROD_CONNECTION_URL`` (the first, if it lists several), else 5432."""
    url = config.value("PROD_CONNECTION_URL")
    if url is None:
        return DEFAULT_PORT
    port = parse_url(url, "PROD_CONNECTION_URL").get("port", "")
    return int(port.split(",")[0]) if port else DEFAULT_PORT
