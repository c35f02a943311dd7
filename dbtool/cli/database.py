"""Commands that make and load a database: create, drop, schema-load, seed, setup, up."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

import click

from dbtool.cli.main import (
    cli,
    confirm_plan,
    echo_target,
    resolve,
    sql_path,
    target_argument,
    target_command,
    yes_option,
)

PROGRESS_MIN_BYTES = 4 << 20


@cli.command()
@target_command(writes=True)
def create(target: Any) -> None:
    """Create the target's database (exits 0 if it exists).  Example: dbtool create prod"""
    from dbtool.engine.session import open_maintenance_session
    from dbtool.ops.admin import create_database

    with open_maintenance_session(target) as admin:
        created = create_database(admin, target.dbname)
    click.echo(f"created database {target.dbname}" if created else f"database {target.dbname} already exists")


@cli.command()
@target_command(writes=True)
@click.option("--force", is_flag=True, help="On prod, end other sessions too (local always does).")
def drop(target: Any, force: bool) -> None:
    """Drop the target's database, ending local sessions first.  Example: dbtool drop"""
    click.echo(_drop(target, force))


def _drop(target: Any, force: bool) -> str:
    from dbtool.engine.session import open_maintenance_session
    from dbtool.ops.admin import drop_database

    with open_maintenance_session(target) as admin:
        result = drop_database(admin, target.dbname, force=force or not target.protected, on_sessions=_report_sessions)
    return f"dropped database {target.dbname}" if result.existed else f"database {target.dbname} does not exist"


def _report_sessions(sessions: Any) -> None:
    for session in sessions:
        click.echo(
            f"ending session pid {session.pid} user {session.user} application {session.application or '-'}", err=True
        )


def _load(target: Any, path: Path, *, notices: bool = True, transaction: bool = True) -> str:
    """Load one file; server notices go to stderr unless ``notices`` is off (setup's fresh database)."""
    from dbtool.engine.loader import display_path, load_stream, open_sql
    from dbtool.engine.session import open_session

    with open_sql(path) as stream, _progress(path) as on_progress, open_session(target) as session:
        if notices:
            session.add_notice_handler(lambda text: click.echo(text, err=True))
        result = load_stream(session, stream, display_path(path), transaction=transaction, on_progress=on_progress)
    return result.summary


def _progress(path: Path) -> Any:
    """A progress bar on stderr for a big file when a person is watching; otherwise nothing."""
    from dbtool.engine.loader import source_size

    size = source_size(path)
    if size is None or size < PROGRESS_MIN_BYTES or not sys.stderr.isatty():
        return contextlib.nullcontext(None)
    from dbtool.cli.progress import load_progress

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
    loaded = _load(target, sql_path(target, file, "db/schema.sql"), transaction=not no_transaction)
    click.echo(f"loaded {loaded} into {target.display}")


@cli.command()
@target_command(writes=True, sql_file="db/seed.sql")
@_no_transaction
def seed(target: Any, file: Path | None, no_transaction: bool) -> None:
    """Load db/seed.sql in one transaction.  Example: dbtool seed"""
    loaded = _load(target, sql_path(target, file, "db/seed.sql"), transaction=not no_transaction)
    click.echo(f"loaded {loaded} into {target.display}")


@cli.command()
@target_command(writes=True)
@click.option("--force", is_flag=True, help="On prod, end other sessions when dropping.")
@click.option(
    "--no-template",
    "no_template",
    is_flag=True,
    help="Load every file afresh instead of cloning the last result, and drop the database's templates.",
)
def setup(target: Any, force: bool, no_template: bool) -> None:
    """Rebuild the database: create, extensions, schema, migrate, seed.  Example: dbtool setup

    The old database is renamed aside and dropped only once the new one is complete; a failure puts it
    back as it was. On a local target, when nothing changed since the last full setup (the SQL files, dbtool.toml's
    extensions, the server), the database is cloned from a template copy of that result instead.
    """
    from dbtool.ops.converge import setup as run_setup

    echo_target("setting up", target)
    run_setup(target, force=force, template=not no_template, hooks=_hooks())


@cli.command()
@target_argument
@yes_option
@click.option("--seed", "with_seed", is_flag=True, help="Load db/seed.sql too, when this run creates the database.")
def up(target: str, yes: bool, with_seed: bool) -> None:
    """Bring the database to what the project declares, changing only what differs.  Example: dbtool up prod

    Creates the database if missing, reconciles dbtool.toml's extensions, loads db/schema.sql into
    a new database, applies pending migrations; a second run changes nothing.
    """
    from dbtool.ops.converge import plan_up
    from dbtool.ops.converge import up as run_up

    resolved = resolve(target)
    planned = plan_up(resolved, seed=with_seed)
    if not confirm_plan(resolved, yes, planned, f"{resolved.display} is up to date: nothing to do"):
        return
    echo_target("bringing up", resolved)
    run_up(resolved, seed=with_seed, hooks=_hooks())


def _hooks() -> Any:
    from dbtool.ops.converge import Hooks

    return Hooks(
        step=_render_step,
        sessions=_report_sessions,
        progress=_progress,
        message=lambda text: click.echo(text, err=True),
    )


def _render_step(step: Any) -> None:
    if step.failed:
        click.echo(f"  {step.name:<12} failed  {step.seconds:6.2f}s")
        return
    click.echo(f"  {step.name:<12} ok      {step.seconds:6.2f}s  {step.outcome}")
