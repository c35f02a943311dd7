"""The ``dbtool`` command: a thin click skin over the library.

Each command resolves its target, calls one library function and reports. Errors from anywhere
below are turned into one ``error: <what> (<hint>)`` line in one place, :meth:`DbtoolGroup.main`.
Nothing here imports psycopg, rich or botocore at module level, so ``dbtool --help`` starts fast.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from dbtool.errors import DbtoolError, ProductionRefused

TARGET_NAMES = ("local", "prod")
PROGRESS_MIN_BYTES = 4 << 20
# Secrets of targets resolved in this process, removed from any error text before it is shown.
_secrets: list[Callable[[str], str]] = []


class DbtoolGroup(click.Group):
    """A click group whose ``main`` reports every failure as one line and exits 1 (2 for usage)."""

    def main(self, args: Any = None, prog_name: str | None = None, **extra: Any) -> Any:  # type: ignore[override]
        argv = list(sys.argv[1:] if args is None else args)
        debug = "--debug" in argv or bool(os.environ.get("DBTOOL_DEBUG"))
        extra["standalone_mode"] = False
        try:
            code = super().main(argv, prog_name or "dbtool", **extra)
        except click.UsageError as error:
            where = error.ctx.command_path if error.ctx else "dbtool"
            _fail(f"{error.format_message()} (see '{where} --help')", 2)
        except (KeyboardInterrupt, click.Abort):
            _fail("interrupted (an unfinished SQL load is rolled back, never half-applied)", 130)
        except DbtoolError as error:
            if debug:
                raise
            _fail(str(error), error.exit_code)
        except Exception as error:
            if debug or not _is_database_error(error):
                raise
            _fail(f"{type(error).__name__}: {str(error).strip().splitlines()[0]} (run with --debug for details)", 1)
        sys.exit(code if isinstance(code, int) else 0)


def _is_database_error(error: Exception) -> bool:
    module = type(error).__module__
    return module.startswith(("psycopg", "botocore", "boto3"))


def _fail(message: str, code: int) -> None:
    for redact in _secrets:
        message = redact(message)
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.group(name="dbtool", cls=DbtoolGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.option(
    "--connect-timeout",
    type=float,
    default=None,
    metavar="SECONDS",
    help="Seconds to wait for a server (default: $DBTOOL_CONNECT_TIMEOUT, else 5).",
)
@click.version_option(package_name="dbtool")
@click.pass_context
def cli(ctx: click.Context, debug: bool, connect_timeout: float | None) -> None:
    """PostgreSQL developer kit: create, drop, load, seed and inspect local and prod databases.

    TARGET is 'local' (CONNECTION_URL, the default) or 'prod' (PROD_CONNECTION_URL); both are read
    from the environment, then from the project's .env file.
    """
    ctx.obj = {"connect_timeout": connect_timeout}


def _resolve(name: str) -> Any:
    from dbtool.targets import resolve_target

    ctx = click.get_current_context()
    target = resolve_target(name, connect_timeout=ctx.find_root().obj["connect_timeout"])
    _secrets.append(target.redact)
    if "started" in target.sources:
        click.echo(target.sources["started"], err=True)
    return target


def confirm_production(target: Any, yes: bool) -> None:
    """Make a person type the database name before anything writes to production."""
    if not target.is_prod or yes:
        return
    if not sys.stdin.isatty():
        raise ProductionRefused(
            f"refusing to change PRODUCTION {target.display} without confirmation",
            "run it in a terminal to be asked, or pass --yes",
        )
    click.secho(f"PRODUCTION: {target.display}", fg="red", bold=True, err=True)
    answer = click.prompt(
        f"Type the database name ({target.dbname}) to continue", default="", show_default=False, err=True
    )
    if answer.strip() != target.dbname:
        raise ProductionRefused("confirmation did not match the database name; nothing was changed")


_target_argument = click.argument("target", type=click.Choice(TARGET_NAMES), default="local", required=False)
_yes = click.option("--yes", "-y", is_flag=True, help="Do not ask before writing to prod.")


def target_command(*, writes: bool, sql_file: str | None = None) -> Callable[[Callable[..., Any]], Any]:
    """Shared TARGET argument, --yes and --file; the command receives the resolved target."""

    def decorate(func: Callable[..., Any]) -> Any:
        @functools.wraps(func)
        def wrapper(target: str, yes: bool = False, wait: bool = False, **kwargs: Any) -> Any:
            resolved = _resolve(target)
            if writes:
                confirm_production(resolved, yes)
            if wait:
                from dbtool.wait import wait_until_up

                wait_until_up(resolved)
            return func(resolved, **kwargs)

        command = click.option(
            "--wait", is_flag=True, help="First wait up to 60 s for the server to accept connections."
        )(wrapper)
        if sql_file is not None:
            command = click.option(
                "--file",
                "file",
                type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
                default=None,
                help=f"SQL file to load instead of {sql_file} ('-' reads standard input).",
            )(command)
        if writes:
            command = _yes(command)
        return _target_argument(command)

    return decorate


def _echo_target(verb: str, target: Any) -> None:
    label = "PRODUCTION " if target.is_prod else ""
    click.echo(f"{verb} {label}{target.display}")


@cli.command()
@target_command(writes=True)
def create(target: Any) -> None:
    """Create the target's database (exits 0 if it exists).  Example: dbtool create prod"""
    from dbtool.admin import create_database

    created = create_database(target)
    click.echo(f"created database {target.dbname}" if created else f"database {target.dbname} already exists")


@cli.command()
@target_command(writes=True)
@click.option("--force", is_flag=True, help="On prod, end other sessions too (local always does).")
def drop(target: Any, force: bool) -> None:
    """Drop the target's database, ending local sessions first.  Example: dbtool drop"""
    click.echo(_drop(target, force))


def _drop(target: Any, force: bool) -> str:
    from dbtool.admin import drop_database

    result = drop_database(target, force=force or not target.is_prod, on_sessions=_report_sessions)
    return f"dropped database {target.dbname}" if result.existed else f"database {target.dbname} does not exist"


def _report_sessions(sessions: Any) -> None:
    for session in sessions:
        click.echo(
            f"ending session pid {session.pid} user {session.user} application {session.application or '-'}", err=True
        )


def _sql_path(target: Any, file: Path | None, default: str) -> Path:
    return file if file is not None else target.root / default


def _load(target: Any, path: Path, *, notices: bool = True, transaction: bool = True) -> str:
    """Load one file; server notices go to stderr unless ``notices`` is off (setup's fresh database)."""
    from dbtool.sqlfile import load_file

    with _progress(path) as on_progress:
        result = load_file(
            target,
            path,
            transaction=transaction,
            on_notice=(lambda text: click.echo(text, err=True)) if notices else None,
            on_progress=on_progress,
        )
    return f"{result.name}: {result.statements} statements"


def _progress(path: Path) -> Any:
    """A progress bar on stderr for a big file when a person is watching; otherwise nothing."""
    from dbtool.sqlfile import source_size

    size = source_size(path)
    if size is None or size < PROGRESS_MIN_BYTES or not sys.stderr.isatty():
        return contextlib.nullcontext(None)
    from dbtool.progress import load_progress

    return load_progress(path.name, size)


_no_transaction = click.option(
    "--no-transaction",
    is_flag=True,
    help="Run statements one at a time, each committed, honouring the file's own BEGIN/COMMIT "
    "(for CREATE INDEX CONCURRENTLY, CREATE DATABASE, VACUUM).",
)


@cli.command("schema-load")
@target_command(writes=True, sql_file="db/schema.sql")
@_no_transaction
def schema_load(target: Any, file: Path | None, no_transaction: bool) -> None:
    """Load db/schema.sql in one transaction.  Example: dbtool schema-load prod"""
    loaded = _load(target, _sql_path(target, file, "db/schema.sql"), transaction=not no_transaction)
    click.echo(f"loaded {loaded} into {target.display}")


@cli.command()
@target_command(writes=True, sql_file="db/seed.sql")
@_no_transaction
def seed(target: Any, file: Path | None, no_transaction: bool) -> None:
    """Load db/seed.sql in one transaction.  Example: dbtool seed"""
    loaded = _load(target, _sql_path(target, file, "db/seed.sql"), transaction=not no_transaction)
    click.echo(f"loaded {loaded} into {target.display}")


@cli.command()
@target_command(writes=True)
@click.option("--force", is_flag=True, help="On prod, end other sessions when dropping.")
def setup(target: Any, force: bool) -> None:
    """Drop, create, load the schema, migrate and seed, all on one target.  Example: dbtool setup"""
    from dbtool.admin import create_database

    _echo_target("setting up", target)
    migrations = _migrations(target)
    steps: list[tuple[str, Callable[[], str]]] = [
        ("drop", lambda: _drop(target, force)),
        ("create", lambda: "created" if create_database(target) else "already existed"),
        ("schema-load", lambda: _load(target, target.root / "db/schema.sql", notices=False)),
        ("seed", lambda: _load(target, target.root / "db/seed.sql", notices=False)),
    ]
    if migrations.files:  # after the schema (which may mark some applied), before the seed that needs them
        steps.insert(3, ("migrate", lambda: f"applied {len(migrations.migrate())} of {len(migrations.files)}"))
    for name, step in steps:
        started = time.perf_counter()
        try:
            outcome = step()
        except DbtoolError:
            click.echo(f"  {name:<12} failed  {time.perf_counter() - started:6.2f}s")
            raise
        click.echo(f"  {name:<12} ok      {time.perf_counter() - started:6.2f}s  {outcome}")


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def connect(args: tuple[str, ...]) -> None:
    """Open psql on the target; other arguments go to psql.  Example: dbtool connect prod -c 'select 1'"""
    from dbtool.psql import exec_psql

    name, rest = (args[0], args[1:]) if args and args[0] in TARGET_NAMES else ("local", args)
    exec_psql(_resolve(name), rest)


@cli.command()
@target_command(writes=False)
@click.option("--all", "include_all", is_flag=True, help="Include background workers.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def sessions(target: Any, include_all: bool, as_json: bool) -> None:
    """Show who is connected to the target's server.  Example: dbtool sessions prod --json"""
    from dbtool.sessions import list_sessions

    rows = list_sessions(target, include_all=include_all)
    if as_json:
        click.echo(json.dumps([row.as_dict() for row in rows], indent=2))
        return
    from dbtool.sessions_table import render

    render(rows, title=f"sessions on {target.display}")


@cli.command()
@_target_argument
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=60, show_default=True, help="Seconds.")
def wait(target: str, timeout: float) -> None:
    """Return when the target's server accepts connections.  Example: dbtool wait --timeout 30"""
    from dbtool.wait import wait_until_up

    resolved = _resolve(target)
    seconds = wait_until_up(resolved, timeout)
    click.echo(f"{resolved.display} accepts connections (waited {seconds:.1f} s)")


DOCTOR_LABELS = {"ok": ("ok", "green"), "fail": ("FAIL", "red"), "skip": ("skip", "yellow")}


@cli.command()
@_target_argument
def doctor(target: str) -> None:
    """Check each step of connecting, and say which one fails and why.  Example: dbtool doctor prod"""
    from dbtool.doctor import diagnose

    connect_timeout = click.get_current_context().find_root().obj["connect_timeout"]
    failed = []
    for check in diagnose(target, connect_timeout=connect_timeout):
        label, colour = DOCTOR_LABELS[check.status]
        hint = f" ({check.hint})" if check.hint else ""
        click.echo(f"{click.style(f'{label:<4}', fg=colour, bold=check.failed)}  {check.step:<14} {check.detail}{hint}")
        if check.failed:
            failed.append(check.step)
    if failed:
        click.echo(f"{len(failed)} failed: {', '.join(failed)}")
        sys.exit(1)
    click.echo("all checks passed")


@cli.command("update-sg-rule")
@click.option("--ip", default=None, help="Address to allow (default: $GITPOD_IP, else detected over HTTPS).")
@click.option("--group-id", default=None, metavar="SG_ID", help="The RDS security group (default: $DB_SG_ID).")
@click.option(
    "--owner", default=None, help="Whose rule (default: $DBTOOL_SG_OWNER, $GITHUB_USER, $GITPOD_GIT_USER_EMAIL, user)."
)
@click.option(
    "--port", type=click.IntRange(1, 65535), default=None, help="Port (default: PROD_CONNECTION_URL's, else 5432)."
)
@click.option("--dry-run", is_flag=True, help="Check permissions with EC2's DryRun and print what would change.")
@click.option("--revoke", is_flag=True, help="Remove my rule instead.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="For workspace start: silent on success; on failure warn and exit 0.")
@click.option(
    "--allow-non-global", is_flag=True, help="Accept a private or loopback address (tests, private networks)."
)
def update_sg_rule(quiet: bool, as_json: bool, **options: Any) -> None:
    """Point my ingress rule of the RDS security group at this workspace's IP.  Example: dbtool update-sg-rule"""
    try:
        outcome = _update_sg_rule(**options)
    except DbtoolError as error:
        if not quiet:
            raise
        click.echo(f"warning: {error} (the RDS security group was not updated)", err=True)
        return
    if as_json:
        click.echo(json.dumps(outcome.as_dict(), indent=2))
    elif not quiet:
        from dbtool.sgrule import describe_outcome

        for line, to_stderr in describe_outcome(outcome):
            click.echo(line, err=to_stderr)


def _update_sg_rule(
    ip: str | None,
    group_id: str | None,
    owner: str | None,
    port: int | None,
    dry_run: bool,
    revoke: bool,
    allow_non_global: bool,
) -> Any:
    from dbtool import sgrule
    from dbtool.aws import client_in_background
    from dbtool.project import Config, find_root

    config = Config(find_root())
    ec2 = client_in_background(config, "ec2")  # while the IP is found

    def setting(name: str) -> str | None:
        found = config.value(name)
        return found.strip() if found else None

    cidr = ""
    if not revoke:
        from dbtool.publicip import find_public_ip

        cidr = find_public_ip(given=ip, environ=os.environ, allow_non_global=allow_non_global).cidr
    owner = owner or sgrule.default_owner(config)
    request = sgrule.RuleRequest(
        group_id=group_id or setting("DB_SG_ID"),
        owner=owner,
        port=port or sgrule.database_port(config),
        cidr=cidr,
        description=sgrule.description(owner, sgrule.workspace_name(os.environ), sgrule.utc_now()),
        rule_id=setting("DB_SG_RULE_ID"),
    )
    change = sgrule.revoke_rule if revoke else sgrule.update_rule
    return change(ec2(), request, dry_run=dry_run)


class DefaultGroup(click.Group):
    """A group that runs ``default`` when its first argument is not one of its commands (``migrate prod``)."""

    def __init__(self, *args: Any, default: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.default = default

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ctx.help_option_names):
            args = [self.default, *args]
        return super().parse_args(ctx, args)


_lock_timeout = click.option(
    "--lock-timeout",
    type=click.FloatRange(min=0),
    default=60,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait for another migrate or rollback on the same database.",
)


@cli.group(cls=DefaultGroup, default="up")
def migrate() -> None:
    """Versioned migrations in db/migrations (dbmate's format).  Example: dbtool migrate prod

    'dbtool migrate [TARGET]' applies pending migrations (the 'up' command).
    """


def _migrations(target: Any, lock_timeout: float = 60) -> Any:
    from dbtool.migrations import Migrations

    return Migrations(target, lock_timeout=lock_timeout, report=lambda message: click.echo(message, err=True))


@migrate.command("up")
@_target_argument
@_yes
@_lock_timeout
@click.option("--allow-changed", is_flag=True, help="Go on when an applied migration's file has changed.")
@click.option("--strict", is_flag=True, help="Refuse a pending migration older than the newest applied one.")
def migrate_up(target: str, yes: bool, lock_timeout: float, allow_changed: bool, strict: bool) -> None:
    """Apply pending migrations in version order, each in its own transaction.  Example: dbtool migrate up prod"""
    resolved = _resolve(target)
    migrations = _migrations(resolved, lock_timeout)
    _plan_confirm_run(
        resolved,
        yes,
        [migration.display for migration in migrations.plan(allow_changed=allow_changed, strict=strict)],
        lambda: migrations.migrate(allow_changed=allow_changed, strict=strict),
        ("apply", "applied {} to", "nothing to migrate on"),
    )


def _plan_confirm_run(
    target: Any, yes: bool, planned: list[str], run: Callable[[], list[Any]], words: tuple[str, str, str]
) -> None:
    """Say there is nothing to do, or (on prod: list it and ask, then) do it and say how much was done.

    The run re-reads the state under the migration lock, so it may find less to do than was planned:
    another run got there first.
    """
    verb, done_as, nothing = words
    if not planned:
        click.echo(f"{nothing} {target.display}")
        return
    if target.is_prod and not yes:
        for name in planned:
            click.echo(f"  {verb} {name}", err=True)
    confirm_production(target, yes)
    done = run()
    if not done:
        click.echo(f"{nothing} {target.display} (another run got there first)")
        return
    count = f"{len(done)} migration{'s' * (len(done) != 1)}"
    click.echo(f"{done_as.format(count)} {target.display}")


@migrate.command("status")
@_target_argument
@click.option("--exit-code", is_flag=True, help="Exit 1 when a migration is pending.")
def migrate_status(target: str, exit_code: bool) -> None:
    """Applied, pending, changed and missing-file migrations.  Example: dbtool migrate status --exit-code"""
    resolved = _resolve(target)
    entries = _migrations(resolved).status()
    for entry in entries:
        when = f"{entry.applied_at:%Y-%m-%d %H:%M:%S}" if entry.applied_at else ""
        detail = f"  {entry.detail}" if entry.detail else ""
        click.echo(f"{entry.state:<13}{entry.version:<16}{entry.name:<32}{when}{detail}".rstrip())
    counts = Counter(entry.state for entry in entries)
    parts = [f"{counts['applied']} applied", f"{counts['pending']} pending"]
    parts += [f"{counts[state]} {state}" for state in ("changed", "missing-file") if counts[state]]
    click.echo(f"{', '.join(parts)} on {resolved.display}")
    if exit_code and counts["pending"]:
        sys.exit(1)


@migrate.command("new")
@click.argument("name")
def migrate_new(name: str) -> None:
    """Write an empty migration named <UTC timestamp>_NAME.sql.  Example: dbtool migrate new add_bio_to_users"""
    from dbtool.migrationfiles import new_migration

    root = _project_root()
    click.echo(new_migration(root, name).relative_to(root))


@cli.command()
@_target_argument
@click.option("--steps", type=click.IntRange(min=1), default=None, help="How many to undo (default 1).")
@click.option(
    "--to", "to_version", default=None, metavar="VERSION", help="Undo every migration after VERSION (0: all)."
)
@_yes
@_lock_timeout
def rollback(target: str, steps: int | None, to_version: str | None, yes: bool, lock_timeout: float) -> None:
    """Undo the latest applied migrations, in reverse order of application.  Example: dbtool rollback --steps 2"""
    if steps is not None and to_version is not None:
        raise click.UsageError("use --steps or --to, not both")
    resolved = _resolve(target)
    migrations = _migrations(resolved, lock_timeout)
    _plan_confirm_run(
        resolved,
        yes,
        [f"{row.version} {row.name or ''}".strip() for row in migrations.to_roll_back(steps=steps, to=to_version)],
        lambda: migrations.rollback(steps=steps, to=to_version),
        ("roll back", "rolled back {} on", "nothing to roll back on"),
    )


@cli.group()
def schema() -> None:
    """The schema as a file.  Example: dbtool schema dump prod"""


@schema.command("dump")
@_target_argument
@click.option(
    "--file", "file", type=click.Path(path_type=Path, dir_okay=False), default=None, help="Default: db/schema.sql."
)
def schema_dump(target: str, file: Path | None) -> None:
    """Write db/schema.sql with pg_dump --schema-only, then the applied migrations.  Example: dbtool schema dump"""
    from dbtool.schemadump import dump_schema

    resolved = _resolve(target)
    path = _sql_path(resolved, file, "db/schema.sql")
    rows = dump_schema(resolved, path)
    click.echo(f"wrote {path} from {resolved.display} ({rows} applied migration{'s' * (rows != 1)})")


@cli.group()
def local() -> None:
    """The project's own PostgreSQL in .dbtool/, used when CONNECTION_URL is not set."""


@local.command("start")
@click.option("--database", default=None, help="Database name for the printed URL (default: cruddur).")
def local_start(database: str | None) -> None:
    """Start it (initdb on first use) and print `export CONNECTION_URL=…`.  Example: dbtool local start"""
    from dbtool.localserver import DEFAULT_DATABASE, LocalServer

    server = LocalServer(_project_root())
    port = server.start()
    click.echo(f"export CONNECTION_URL='{server.url(database or DEFAULT_DATABASE, port)}'")


@local.command("stop")
def local_stop() -> None:
    """Stop it; the data stays in .dbtool/.  Example: dbtool local stop"""
    from dbtool.localserver import LocalServer

    click.echo("stopped" if LocalServer(_project_root()).stop() else "not running")


@local.command("status")
def local_status() -> None:
    """Whether it runs, its port and version; exit 3 when it is not running.  Example: dbtool local status"""
    from dbtool.localserver import LocalServer

    status = LocalServer(_project_root()).status()
    if status.running:
        click.echo(
            f"running on 127.0.0.1:{status.port} (pid {status.pid}), PostgreSQL {status.version}, "
            f"data in {status.state_dir}"
        )
        return
    where = f"stopped (port {status.port}, data in {status.state_dir})" if status.created else "not created yet"
    click.echo(where)
    sys.exit(3)


@local.command("destroy")
@click.option("--yes", "-y", is_flag=True, help="Do not ask first.")
def local_destroy(yes: bool) -> None:
    """Stop it and delete .dbtool/ with all its data.  Example: dbtool local destroy"""
    from dbtool.localserver import LocalServer

    server = LocalServer(_project_root())
    if not server.state.exists():
        click.echo(f"nothing to destroy: {server.state} does not exist")
        return
    if not yes:
        if not sys.stdin.isatty():
            raise DbtoolError(
                f"refusing to delete {server.state} without confirmation", "run it in a terminal, or pass --yes"
            )
        click.secho(f"This deletes {server.state} and every local database in it.", fg="red", err=True)
        if click.prompt("Type 'destroy' to continue", default="", show_default=False, err=True).strip() != "destroy":
            raise DbtoolError("not confirmed; nothing was deleted")
    server.destroy()
    click.echo(f"destroyed {server.state}")


def _project_root() -> Path:
    from dbtool.project import find_root

    return find_root()


def main() -> None:
    cli.main()
