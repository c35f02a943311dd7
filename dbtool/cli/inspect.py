"""Commands that look at a target without writing: connect, sessions, wait, doctor, extensions."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from dbtool.cli.main import (
    cli,
    known_targets,
    resolve,
    target_argument,
    target_command,
)
from dbtool.cli.usage import unknown_target


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def connect(args: tuple[str, ...]) -> None:
    """Open psql on the target; other arguments go to psql.  Example: dbtool connect prod -c 'select 1'"""
    from dbtool.targets.psql import exec_psql

    known = known_targets()
    if args and not args[0].startswith("-") and args[0] not in known:  # psql's own words start with "-"
        raise click.UsageError(unknown_target(args[0], known))
    name, rest = (args[0], args[1:]) if args and args[0] in known else ("local", args)
    exec_psql(resolve(name), rest)


@cli.command()
@target_command(writes=False)
@click.option("--all", "include_all", is_flag=True, help="Include background workers.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def sessions(target: Any, include_all: bool, as_json: bool) -> None:
    """Show who is connected to the target's server.  Example: dbtool sessions prod --json"""
    from dbtool.ops.sessions import list_sessions

    rows = list_sessions(target, include_all=include_all)
    if as_json:
        click.echo(json.dumps([row.as_dict() for row in rows], indent=2))
        return
    from dbtool.cli.sessions_table import render

    render(rows, title=f"sessions on {target.display}")


@cli.command()
@target_argument
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=60, show_default=True, help="Seconds.")
def wait(target: str, timeout: float) -> None:
    """Return when the target's server accepts connections.  Example: dbtool wait --timeout 30"""
    from dbtool.ops.wait import wait_until_up

    resolved = resolve(target)
    seconds = wait_until_up(resolved, timeout)
    click.echo(f"{resolved.display} accepts connections (waited {seconds:.1f} s)")


DOCTOR_LABELS = {"ok": ("ok", "green"), "fail": ("FAIL", "red"), "skip": ("skip", "yellow")}


@cli.command()
@target_argument
def doctor(target: str) -> None:
    """Check each step of connecting, and say which one fails and why.  Example: dbtool doctor prod"""
    from dbtool.ops.doctor import diagnose

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


@cli.command()
@target_command(writes=False)
@click.option("--check", is_flag=True, help="Exit 1 when an installed version differs from dbtool.toml's.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def extensions(target: Any, check: bool, as_json: bool) -> None:
    """Declared, installed and available extension versions.  Example: dbtool extensions prod --check"""
    from dbtool.engine.session import open_session
    from dbtool.ops.extensions import survey

    declared = target.context.declaration.extensions
    with open_session(target) as session:
        rows = survey(session, declared)
    if as_json:
        click.echo(json.dumps([row.as_dict() for row in rows], indent=2))
    else:
        click.echo(f"{'extension':<20}{'declared':<10}{'installed':<11}{'state':<13}available")
        for row in rows:
            available = ", ".join(row.available) or "-"
            click.echo(
                f"{row.name:<20}{row.declared or '-':<10}{row.installed or '-':<11}{row.state:<13}{available}".rstrip()
            )
    differ = [row.name for row in rows if row.declared is not None and row.state != "ok"]
    if check and differ:
        click.echo(f"not at their declared versions: {', '.join(differ)} (dbtool up installs them)", err=True)
        sys.exit(1)
