"""The ``dbtool`` command: a thin click skin over the library.

Each command resolves its target, calls one library function and reports. Errors from anywhere
below are turned into one ``error: <what> (<hint>)`` line in one place, :meth:`DbtoolGroup.main`.
Nothing here imports psycopg, rich or botocore at module level, so ``dbtool --help`` starts fast.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from dbtool.cli.usage import hoist_global_options, unknown_target
from dbtool.commands import MODULES
from dbtool.errors import DbtoolError, ProductionRefused

TARGET_NAMES = ("local", "prod")
# Secrets of targets resolved in this process, removed from any error text before it is shown.
_secrets: list[Callable[[str], str]] = []


# Which module registers each command: running one imports only its module (the help lists them all).
COMMAND_MODULES = MODULES  # command -> its module in dbtool.cli (dbtool/commands.py)


class DbtoolGroup(click.Group):
    """A click group whose ``main`` reports every failure as one line and exits 1 (2 for usage).

    Commands load on demand: ``get_command`` imports the module that registers the one asked for.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMAND_MODULES) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMAND_MODULES:
            importlib.import_module(f"dbtool.cli.{COMMAND_MODULES[cmd_name]}")
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The commands by section (``dbtool/commands.py``), each description whole: wrapped, never cut."""
        from dbtool.commands import COMMANDS, SECTIONS, START

        for section in SECTIONS:
            rows = []
            for entry in (entry for entry in COMMANDS if entry.section == section):
                command = self.get_command(ctx, entry.name)
                if command is not None and not command.hidden:
                    rows.append((entry.name, command.get_short_help_str(limit=10_000)))
            with formatter.section(section):
                if section == START:
                    formatter.write_text(START_NOTE)
                formatter.write_dl(rows)

    def remedies(self, argv: list[str]) -> dict[str, str]:
        """The CLI's words for remedies; ``--file`` only when the command run takes it."""
        found = dict(REMEDIES)
        command: click.Command | None = self
        for word in argv:
            if not isinstance(command, click.Group):
                break
            command = command.get_command(click.Context(command), word) or command
        if not any(param.name == "file" for param in getattr(command, "params", ())):
            del found["file-option"]
        return found

    def main(self, args: Any = None, prog_name: str | None = None, **extra: Any) -> Any:  # type: ignore[override]
        argv = hoist_global_options(list(sys.argv[1:] if args is None else args))
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
            _fail(error.phrase(self.remedies(argv)), error.exit_code)
        except Exception as error:
            from dbtool.engine.session import SqlError  # not at import: the session module is not needed to start

            if isinstance(error, SqlError):  # a statement's error that no file or migration could place
                if debug:
                    raise
                _fail(f"{error.describe()} ({error.hint})" if error.hint else error.describe(), 1)
            if debug or not _is_database_error(error):
                raise
            _fail(f"{type(error).__name__}: {str(error).strip().splitlines()[0]} (run with --debug for details)", 1)
        sys.exit(code if isinstance(code, int) else 0)


START_NOTE = "setup resets the database (drops and rebuilds it); up only moves it forward and never drops."
# The next steps an error names by kind (DbtoolError.remedy), in the CLI's words.
REMEDIES = {
    "security-group": "the RDS security group may not allow this IP: run ./bin/rds-update-sg-rule",
    "file-option": "or pass --file",
}


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

    TARGET is 'local' (CONNECTION_URL, the default), 'prod' (PROD_CONNECTION_URL), or a name that
    dbtool.toml declares under [targets.NAME]; each command's --help lists them. Variables are read
    from the environment, then from the project's .env file.
    """
    ctx.obj = {"connect_timeout": connect_timeout}


def resolve(name: str) -> Any:
    from dbtool.targets.resolve import resolve_target

    ctx = click.get_current_context()
    target = resolve_target(name, config=current_project(), connect_timeout=ctx.find_root().obj["connect_timeout"])
    target = dataclasses.replace(target, report=lambda message: click.echo(message, err=True))
    _secrets.append(target.redact)
    if "started" in target.sources:
        click.echo(target.sources["started"], err=True)
    return target


def confirm_production(target: Any, yes: bool) -> None:
    """Make a person type the database name before anything writes to production or a protected target."""
    if not target.protected or yes:
        return
    if not sys.stdin.isatty():
        raise ProductionRefused(
            f"refusing to change {target.label} {target.display} without confirmation",
            "run it in a terminal to be asked, or pass --yes",
        )
    click.secho(f"{target.label}: {target.display}", fg="red", bold=True, err=True)
    answer = click.prompt(
        f"Type the database name ({target.dbname}) to continue", default="", show_default=False, err=True
    )
    if answer.strip() != target.dbname:
        raise ProductionRefused("confirmation did not match the database name; nothing was changed")


class TargetName(click.ParamType):
    """TARGET: local, prod, or a name dbtool.toml declares; the usage line lists the project's names."""

    name = "target"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return f"[{'|'.join(known_targets())}]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        known = known_targets()
        if value not in known:
            self.fail(unknown_target(value, known), param, ctx)
        return str(value)


def known_targets() -> list[str]:
    from dbtool.targets.resolve import target_names

    try:
        return target_names(current_project())
    except DbtoolError:
        return list(TARGET_NAMES)  # a malformed dbtool.toml is reported when the target is resolved


target_argument = click.argument("target", type=TargetName(), default="local", required=False)
yes_option = click.option("--yes", "-y", is_flag=True, help="Do not ask before writing to prod or a protected target.")


def confirm_plan(target: Any, yes: bool, planned: list[str], nothing: str) -> bool:
    """Say there is nothing to do (False); otherwise, on prod, list the plan and ask (True: go on)."""
    if not planned:
        click.echo(nothing)
        return False
    if target.protected and not yes:
        for line in planned:
            click.echo(f"  {line}", err=True)
    confirm_production(target, yes)
    return True


def target_command(*, writes: bool, sql_file: str | None = None) -> Callable[[Callable[..., Any]], Any]:
    """Shared TARGET argument, --yes and --file; the command receives the resolved target."""

    def decorate(func: Callable[..., Any]) -> Any:
        @functools.wraps(func)
        def wrapper(target: str, yes: bool = False, wait: bool = False, **kwargs: Any) -> Any:
            resolved = resolve(target)
            if writes:
                confirm_production(resolved, yes)
            if wait:
                from dbtool.ops.wait import wait_until_up

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
            command = yes_option(command)
        return target_argument(command)

    return decorate


def echo_target(verb: str, target: Any) -> None:
    label = f"{target.label} " if target.label else ""
    click.echo(f"{verb} {label}{target.display}")


def sql_path(target: Any, file: Path | None, default: str) -> Path:
    return file if file is not None else target.root / default


def current_project() -> Any:
    """The process's :class:`~dbtool.targets.project.Project`, built on first use and kept in click's context."""
    from dbtool.targets.project import Project, find_root

    context = click.get_current_context(silent=True)
    holder = context.find_root().obj if context is not None else None
    if not isinstance(holder, dict):
        return Project(find_root())
    if "project" not in holder:
        holder["project"] = Project(find_root())
    return holder["project"]


def project_root() -> Path:
    return current_project().root
