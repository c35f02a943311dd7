"""Commands that make and load a database: create, drop, schema-load, seed, setup."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from dbtool.cli.main import cli, echo_target, sql_path, target_command
from dbtool.cli.migrate import migrations_of
from dbtool.errors import DbtoolError

PROGRESS_MIN_BYTES = 4 << 20


@cli.command()
@target_command(writes=True)
def create(target: Any) -> None:
    """Create the target's database (exits 0 if it exists).  Example: dbtool create prod"""
    from dbtool.ops.admin import create_database

    created = create_database(target)
    click.echo(f"created database {target.dbname}" if created else f"database {target.dbname} already exists")


@cli.command()
@target_command(writes=True)
@click.option("--force", is_flag=True, help="On prod, end other sessions too (local always does).")
def drop(target: Any, force: bool) -> None:
    """Drop the target's database, ending local sessions first.  Example: dbtool drop"""
    click.echo(_drop(target, force))


def _drop(target: Any, force: bool) -> str:
    from dbtool.ops.admin import drop_database

    result = drop_database(target, force=force or not target.is_prod, on_sessions=_report_sessions)
    return f"dropped database {target.dbname}" if result.existed else f"database {target.dbname} does not exist"


def _report_sessions(sessions: Any) -> None:
    for session in sessions:
        click.echo(
            f"ending session pid {session.pid} user {session.user} application {session.application or '-'}", err=True
        )


def _load(target: Any, path: Path, *, notices: bool = True, transaction: bool = True) -> str:
    """Load one file; server notices go to stderr unless ``notices`` is off (setup's fresh database)."""
    from dbtool.engine.loader import load_file

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
def setup(target: Any, force: bool) -> None:
    """Drop, create, load the schema, migrate and seed, all on one target.  Example: dbtool setup"""
    from dbtool.ops.admin import create_database

    echo_target("setting up", target)
    migrations = migrations_of(target)
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
