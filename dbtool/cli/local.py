"""The project's own PostgreSQL: local start, stop, status, destroy."""

from __future__ import annotations

import sys

import click

from dbtool.cli.main import (
    cli,
    project_root,
)
from dbtool.errors import DbtoolError


@cli.group()
def local() -> None:
    """The project's own PostgreSQL in .dbtool/, used when CONNECTION_URL is not set."""


@local.command("start")
@click.option(
    "--database", default=None, help="Database name for the printed URL (default: the project directory's name)."
)
def local_start(database: str | None) -> None:
    """Start it (initdb on first use) and print `export CONNECTION_URL=…`.  Example: dbtool local start"""
    from dbtool.local.server import LocalServer
    from dbtool.targets.project import database_name_from

    server = LocalServer(project_root())
    name = database or server.database_name(database_name_from(server.root))
    port = server.start()
    click.echo(f"export CONNECTION_URL='{server.url(name, port)}'")


@local.command("stop")
def local_stop() -> None:
    """Stop it; the data stays in .dbtool/.  Example: dbtool local stop"""
    from dbtool.local.server import LocalServer

    click.echo("stopped" if LocalServer(project_root()).stop() else "not running")


@local.command("status")
def local_status() -> None:
    """Whether it runs, its port and version; exit 3 when it is not running.  Example: dbtool local status"""
    from dbtool.local.server import LocalServer

    status = LocalServer(project_root()).status()
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
    from dbtool.local.server import LocalServer

    server = LocalServer(project_root())
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
