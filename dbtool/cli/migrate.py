"""Migrations and the schema file: migrate (up, status, check, new), rollback, schema dump, drift."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from dbtool.cli.main import (
    cli,
    confirm_plan,
    known_targets,
    project_root,
    resolve,
    sql_path,
    target_argument,
    yes_option,
)
from dbtool.cli.usage import did_you_mean


class DefaultGroup(click.Group):
    """A group that runs ``default`` when its first argument is not one of its commands (``migrate prod``)."""

    def __init__(self, *args: Any, default: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.default = default

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ctx.help_option_names):
            if args and not args[0].startswith("-") and args[0] not in (targets := known_targets()):
                commands = sorted(self.commands)
                raise click.UsageError(
                    f"no command or target {args[0]!r} ({did_you_mean(args[0], commands + targets)}"
                    f"commands: {', '.join(commands)}; targets: {', '.join(targets)})",
                    ctx,
                )
            args = [self.default, *args]
        return super().parse_args(ctx, args)


def _timeouts(func: Callable[..., Any]) -> Callable[..., Any]:
    """--lock-timeout, --statement-timeout, --lock-retries and --migration-lock-wait."""
    seconds = click.FloatRange(min=0)
    for option in reversed(
        [
            click.option(
                "--lock-timeout",
                type=seconds,
                default=None,
                metavar="SECONDS",
                help="How long each statement may wait for a lock before its migration is rolled back and retried "
                "(0: no limit; default: dbtool.toml, else 2 on prod and protected targets).",
            ),
            click.option(
                "--statement-timeout",
                type=seconds,
                default=None,
                metavar="SECONDS",
                help="How long each statement may run (0: no limit; default: dbtool.toml, else none).",
            ),
            click.option(
                "--lock-retries",
                type=click.IntRange(min=0),
                default=None,
                metavar="N",
                help="Retries after a lock timeout, with jittered backoff (default: dbtool.toml, else 5).",
            ),
            click.option(
                "--migration-lock-wait",
                "lock_wait",
                type=seconds,
                default=60,
                show_default=True,
                metavar="SECONDS",
                help="How long to wait for another migrate or rollback on the same database.",
            ),
        ]
    ):
        func = option(func)
    return func


@cli.group(cls=DefaultGroup, default="up")
def migrate() -> None:
    """Versioned migrations in db/migrations (dbmate's format).  Example: dbtool migrate prod

    'dbtool migrate [TARGET]' applies pending migrations (the 'up' command).
    """


def migrations_of(target: Any, options: dict[str, Any] | None = None) -> Any:
    """The target's migrations, with the timeouts the options give (else dbtool.toml's, else the defaults)."""
    from dbtool.migrations.runner import Migrations
    from dbtool.migrations.timeouts import timeouts_for

    given = options or {}
    timeouts = timeouts_for(
        target,
        lock=given.get("lock_timeout"),
        statement=given.get("statement_timeout"),
        retries=given.get("lock_retries"),
    )
    report = lambda message: click.echo(message, err=True)  # noqa: E731
    return Migrations(target, lock_wait=given.get("lock_wait", 60), timeouts=timeouts, report=report)


@migrate.command("up")
@target_argument
@yes_option
@_timeouts
@click.option("--allow-changed", is_flag=True, help="Go on when an applied migration's file has changed.")
@click.option("--strict", is_flag=True, help="Refuse a pending migration older than the newest applied one.")
def migrate_up(target: str, yes: bool, allow_changed: bool, strict: bool, **timeouts: Any) -> None:
    """Apply pending migrations in version order, each in its own transaction.  Example: dbtool migrate up prod"""
    resolved = resolve(target)
    migrations = migrations_of(resolved, timeouts)
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
    if not confirm_plan(target, yes, [f"{verb} {name}" for name in planned], f"{nothing} {target.display}"):
        return
    done = run()
    if not done:
        click.echo(f"{nothing} {target.display} (another run got there first)")
        return
    count = f"{len(done)} migration{'s' * (len(done) != 1)}"
    click.echo(f"{done_as.format(count)} {target.display}")


@migrate.command("status")
@target_argument
@click.option("--exit-code", is_flag=True, help="Exit 1 when a migration is pending.")
def migrate_status(target: str, exit_code: bool) -> None:
    """Applied, pending, changed and missing-file migrations.  Example: dbtool migrate status --exit-code"""
    resolved = resolve(target)
    entries = migrations_of(resolved).status()
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


@migrate.command("check")
@target_argument
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (for CI).")
@click.option("--no-replay", is_flag=True, help="Only read the target's catalog: no copy replayed on the local server.")
def migrate_check(target: str, as_json: bool, no_replay: bool) -> None:
    """What the pending migrations would do to a live database.  Example: dbtool migrate check prod

    Replays them on a throwaway copy of the target's schema on the local server and reports, per statement
    with file:line, the locks each takes on existing tables, the tables it rewrites, and hazards (each with
    why and the safe way). A '-- dbtool:allow NAME: reason' comment before a statement accepts one.
    Exit 1 when a hazard is not acknowledged.
    """
    import json

    from dbtool.ops import check as checking

    resolved = resolve(target)
    report = checking.check(resolved, None if no_replay else _builder(resolved))
    if as_json:
        click.echo(json.dumps(checking.as_json(report), indent=2))
    else:
        for line in checking.lines(report):
            click.echo(line)
    if report.unacknowledged:
        sys.exit(1)


def _builder(resolved: Any) -> Any:
    """Where throwaway databases are built: the local target's server."""
    return resolved if resolved.name == "local" else resolve("local")


@migrate.command("new")
@click.argument("name")
def migrate_new(name: str) -> None:
    """Write an empty migration named <UTC timestamp>_NAME.sql.  Example: dbtool migrate new add_bio_to_users"""
    from dbtool.migrations.files import new_migration

    root = project_root()
    click.echo(new_migration(root, name).relative_to(root))


@cli.command()
@target_argument
@click.option("--steps", type=click.IntRange(min=1), default=None, help="How many to undo (default 1).")
@click.option(
    "--to", "to_version", default=None, metavar="VERSION", help="Undo every migration after VERSION (0: all)."
)
@yes_option
@_timeouts
def rollback(target: str, steps: int | None, to_version: str | None, yes: bool, **timeouts: Any) -> None:
    """Undo the latest applied migrations, in reverse order of application.  Example: dbtool rollback --steps 2"""
    if steps is not None and to_version is not None:
        raise click.UsageError("use --steps or --to, not both")
    resolved = resolve(target)
    migrations = migrations_of(resolved, timeouts)
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
@target_argument
@click.option(
    "--file", "file", type=click.Path(path_type=Path, dir_okay=False), default=None, help="Default: db/schema.sql."
)
def schema_dump(target: str, file: Path | None) -> None:
    """Write db/schema.sql with pg_dump --schema-only, then the applied migrations.  Example: dbtool schema dump"""
    from dbtool.migrations.schemadump import dump_schema

    resolved = resolve(target)
    path = sql_path(resolved, file, "db/schema.sql")
    rows = dump_schema(resolved, path)
    click.echo(f"wrote {path} from {resolved.display} ({rows} applied migration{'s' * (rows != 1)})")


@cli.command()
@target_argument
def drift(target: str) -> None:
    """Compare the target's schema with what the project's files produce.  Example: dbtool drift prod

    The expected schema is db/schema.sql plus the migrations the target has applied, built on a throwaway
    database on the local target's server and dropped afterwards. Exit 1 on drift, with the differences.
    """
    from dbtool.ops.drift import drift as compare

    resolved = resolve(target)
    differences = compare(resolved, _builder(resolved))
    if not differences:
        click.echo(f"no drift: {resolved.display} matches db/schema.sql and its applied migrations")
        return
    for line in differences:
        click.echo(line)
    click.echo(f"drift: {resolved.display} differs from what the project's files produce", err=True)
    sys.exit(1)
