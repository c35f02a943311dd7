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
@click.option(
    "--install",
    metavar="COMMAND",
    help="How a fresh workspace installs dbtool, for the hooks, e.g. 'pipx install git+https://github.com/ORG/dbtool'.",
)
@click.option(
    "--replace-scripts",
    is_flag=True,
    help="Move bin/ scripts that are not dbtool's aside (bin/NAME.orig) and write dbtool's.",
)
def init(directory: Path, devcontainer: bool, gitpod: bool, install: str | None, replace_scripts: bool) -> None:
    """Write bin/db-* scripts, db/, .env.example and dbtool.toml where missing.  Example: dbtool init backend-flask

    Never overwrites a file: what exists is listed as skipped, and a second run changes nothing. A bin/ script
    that is not dbtool's is kept (or, with --replace-scripts, moved aside). .env and .dbtool/ are added to the
    directory's .gitignore.
    """
    from dbtool.ops.init import init_project

    report = init_project(
        directory, devcontainer=devcontainer, gitpod=gitpod, install=install, replace_scripts=replace_scripts
    )
    for path, aside in report.moved.items():
        click.echo(f"moved    {path} → {aside}")
    for path in report.created:
        click.echo(f"created  {path}")
    for path in report.updated:
        click.echo(f"updated  {path} (added .env and .dbtool/)")
    for path in report.skipped:
        if path in report.hooks:
            what = "task" if path.endswith(".gitpod.yml") else "commands"
            click.echo(f"skipped  {path} (exists); add this {what} to it:")
            click.echo(_hook_lines(path, report.hooks[path]))
            continue
        why = "already ignores .env and .dbtool/" if path == ".gitignore" else "exists"
        click.echo(f"skipped  {path} ({why})")
    for path, command in report.foreign.items():
        click.echo(f"kept     {path} (not dbtool's: use dbtool {command})")
    if report.foreign:
        count = len(report.foreign)
        click.echo(
            f"{count} script{'s' if count > 1 else ''} in bin/ {'are' if count > 1 else 'is'} not dbtool's: "
            "dbtool init --replace-scripts moves each aside (bin/NAME.orig) and writes dbtool's"
        )
    if report.schema_elsewhere:
        found = report.schema_elsewhere[0]
        click.echo(
            f"not created db/schema.sql: this project's schema seems to be {found}; move it there "
            f"(mkdir -p db && git mv {found} db/schema.sql), or load it with dbtool schema-load --file {found}"
        )
    if not (devcontainer or gitpod):
        click.echo("workspace hooks: dbtool init --devcontainer or --gitpod (with --install 'COMMAND') writes them")
    where = os.path.relpath(report.root)
    step = "" if where == "." else f"cd {where} && "
    setup = "dbtool setup" if "bin/db-setup" in report.foreign else "./bin/db-setup"
    click.echo(f"next: {step}{setup}")


def _hook_lines(path: str, text: str) -> str:
    """The part of a hook file to add to an existing one: the task, or the command keys."""
    lines = text.splitlines()
    if path.endswith(".gitpod.yml"):
        start = next(index for index, line in enumerate(lines) if line.lstrip().startswith("- name:"))
        return "\n".join(lines[start:])
    return "\n".join(line for line in lines if "Command" in line)
