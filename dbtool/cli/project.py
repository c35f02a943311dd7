"""``dbtool init``: set a project up to use the installed dbtool."""

from __future__ import annotations

import os
from pathlib import Path

import click

from dbtool.cli.main import cli


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".", required=False)
@click.option(
    "--devcontainer", is_flag=True, help="Also write .devcontainer/devcontainer.json (at the repository root)."
)
@click.option("--gitpod", is_flag=True, help="Also write .gitpod.yml (at the repository root).")
def init(directory: Path, devcontainer: bool, gitpod: bool) -> None:
    """Write bin/db-* scripts, db/, .env.example and dbtool.toml where missing.  Example: dbtool init backend-flask

    Never overwrites a file: what exists is listed as skipped, and a second run changes nothing.
    .env and .dbtool/ are added to the directory's .gitignore.
    """
    from dbtool.ops.init import init_project

    report = init_project(directory, devcontainer=devcontainer, gitpod=gitpod)
    for path in report.created:
        click.echo(f"created  {path}")
    for path in report.updated:
        click.echo(f"updated  {path} (added .env and .dbtool/)")
    for path in report.skipped:
        why = "already ignores .env and .dbtool/" if path == ".gitignore" else "exists"
        click.echo(f"skipped  {path} ({why})")
    if not (devcontainer or gitpod):
        click.echo("workspace hooks: dbtool init --devcontainer or --gitpod writes them")
    where = os.path.relpath(report.root)
    step = "" if where == "." else f"cd {where} && "
    click.echo(f"next: {step}./bin/db-setup")
