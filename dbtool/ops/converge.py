"""``setup`` and ``up`` as library functions: each step timed and reported through a callback.

The CLI renders the steps, the deploy-time handler logs them, the tests read them: all run this code.

* ``setup`` (a laptop's reset): drop → create → extensions → schema → migrate → seed.
* ``up`` (any database, production included, converging): create the database if missing →
  reconcile extensions → load ``db/schema.sql`` only when the database is new (nothing of its own in
  it, no ``schema_migrations``) → apply pending migrations → load ``db/seed.sql`` only with ``seed``
  and only on the run that created the database. :func:`plan_up` says beforehand what ``up`` would
  change, without changing anything: an empty plan means a second ``up`` has nothing to do.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dbtool import queries
from dbtool.errors import DbtoolError

if TYPE_CHECKING:
    from dbtool.engine.loader import ProgressCallback
    from dbtool.targets.resolve import Target

# Distinct from the migrations' key: up holds this one while migrate (its own session) takes that one.
UP_LOCK_KEY = int.from_bytes(hashlib.sha256(b"dbtool up").digest()[:8], "big", signed=True)
UP_LOCK_TIMEOUT = 600.0
UP_LOCK_POLL = 0.05
SCHEMA_FILE = "db/schema.sql"
SEED_FILE = "db/seed.sql"


@dataclass(frozen=True)
class Step:
    """One step's outcome: ``changed`` is False when it found nothing to do."""

    name: str
    outcome: str
    seconds: float
    changed: bool = True
    failed: bool = False


@dataclass
class Hooks:
    """How a caller hears about the run: each step, sessions a drop ends, load progress, messages."""

    step: Callable[[Step], None] = lambda step: None
    sessions: Callable[[Any], None] | None = None
    progress: Callable[[Path], AbstractContextManager[ProgressCallback | None]] = lambda path: contextlib.nullcontext(
        None
    )
    message: Callable[[str], None] = lambda text: None
    # Asked before each step and each migration starts (with what is about to start); raising stops the run.
    proceed: Callable[[str], None] = lambda what: None


def setup(target: Target, *, force: bool = False, template: bool = True, hooks: Hooks | None = None) -> list[Step]:
    """Rebuild the target's database from the project's files; the steps run.

    The old database is never dropped before the new one is complete: it is renamed aside
    (:func:`aside_name`), the new one is built under the real name (so files that name their database, such as
    ``ALTER DATABASE cruddur SET …``, and ``current_database()`` work), and only when every step succeeded is
    the old one dropped. A failure drops the new one and renames the old one back, exactly as it was. What can
    be checked first is, before any write: the files are readable (the template's fingerprint reads them), the
    declared extensions are available, and on a protected target, that no session holds the database.

    On a local target, a template of the last full result is cloned when nothing changed since it was
    made, and a fresh result is kept as the next one (:mod:`dbtool.ops.templates`); ``template=False``
    loads afresh and drops the database's templates.
    """
    from dbtool.engine.session import open_maintenance_session
    from dbtool.ops import extensions, templates
    from dbtool.ops.admin import create_database, database_exists, drop_database, rename_database

    hooks = hooks or Hooks()
    run = _Runner(hooks)
    declared = _declared(target)
    migrations = _migrations(target, hooks)
    aside = aside_name(target.dbname)
    # One maintenance session for the renames, the create, the drops and the templates.
    with open_maintenance_session(target) as admin:
        found = templates.lookup(admin, target, declared) if templates.allowed(target) else None
        if declared:
            extensions.plan(admin, declared)  # an unavailable version fails here, before anything is written
        if database_exists(admin, aside):  # left by a setup that was killed: the last good database
            drop_database(admin, target.dbname, force=True)
            rename_database(admin, aside, target.dbname, force=True)
            hooks.message(f"restored {target.dbname} from {aside}, left by an interrupted setup")
        ends = force or not target.protected
        run("aside", lambda: _set_aside(admin, target.dbname, aside, ends, hooks))

        def clone(match: templates.Template) -> tuple[str, bool]:
            why_not = templates.clone(admin, target, match)
            if why_not is not None:
                return f"{why_not}: loading afresh", False
            return f"from template {match.name}: nothing changed since it was made", True

        try:
            cloned = (
                template
                and found is not None
                and found.match is not None
                and run("clone", lambda: clone(found.match)).changed
            )
            if not cloned:
                run("create", lambda: ("created", create_database(admin, target.dbname)))
                if declared:
                    run("extensions", lambda: _extensions(target, declared, hooks.message))
                run("schema-load", lambda: _load(target, target.root / SCHEMA_FILE, hooks))
                if migrations.files:  # after the schema (which may mark some applied), before the seed
                    run("migrate", lambda: _migrate(migrations, hazards=False))
                run("seed", lambda: _load(target, target.root / SEED_FILE, hooks))
        except BaseException:
            with contextlib.suppress(Exception):  # the error that stopped the run is the one to report
                run.note("restore", _restore(admin, target.dbname, aside))
            raise
        run("drop-old", lambda: _drop_aside(admin, target.dbname, aside))
        if cloned:
            return run.steps
        if found is not None:
            if template:
                run("template", lambda: (templates.keep(admin, target, found), True))
            else:
                run("template", lambda: (templates.discard_all(admin, found), False))
    return run.steps


ASIDE_SUFFIX = "_dbtool_old"
MAX_NAME_BYTES = 63


def aside_name(dbname: str) -> str:
    """Where setup keeps the old database while it builds: ``<dbname>_dbtool_old``, within 63 bytes."""
    name = dbname + ASIDE_SUFFIX
    if len(name.encode()) <= MAX_NAME_BYTES:
        return name
    tag = "_" + hashlib.sha256(dbname.encode()).hexdigest()[:8] + ASIDE_SUFFIX
    head = dbname.encode()[: MAX_NAME_BYTES - len(tag)].decode(errors="ignore")
    return head + tag


def _set_aside(admin: Any, dbname: str, aside: str, ends: bool, hooks: Hooks) -> tuple[str, bool]:
    """Rename the old database aside (ending its sessions where allowed); it stays until the new one is done."""
    from dbtool.ops.admin import database_exists, rename_database

    if not database_exists(admin, dbname):
        return f"no {dbname} yet", False
    rename_database(admin, dbname, aside, force=ends, on_sessions=hooks.sessions)
    return f"kept the old {dbname} as {aside} until the new one is complete", True


def _restore(admin: Any, dbname: str, aside: str) -> str:
    """After a failure: drop the new database and rename the old one back; what happened, in words."""
    from dbtool.ops.admin import database_exists, drop_database, rename_database

    drop_database(admin, dbname, force=True)
    if not database_exists(admin, aside):
        return f"dropped the new {dbname} (there was no old one)"
    rename_database(admin, aside, dbname, force=True)
    return f"{dbname} was not changed: the new one was dropped and the old one renamed back"


def _drop_aside(admin: Any, dbname: str, aside: str) -> tuple[str, bool]:
    from dbtool.ops.admin import drop_database

    existed = drop_database(admin, aside, force=True).existed
    return (f"dropped the old {dbname}" if existed else "none"), existed


def plan_up(target: Target, *, seed: bool = False) -> list[str]:
    """What :func:`up` would do, one line each; empty when the database is already where it should be."""
    from dbtool.engine.session import open_maintenance_session, open_session
    from dbtool.ops import extensions

    declared = _declared(target)
    migrations = _migrations(target, Hooks())
    with open_maintenance_session(target) as session:
        exists = bool(session.execute(queries.get("database_exists"), {"dbname": target.dbname}).scalar())
    if not exists:
        lines = [f"create database {target.dbname}"]
        lines += [f"create extension {name} {version}" for name, version in declared.items()]
        lines += [f"load {SCHEMA_FILE}"] if (target.root / SCHEMA_FILE).exists() else []
        lines += [f"apply {migration.display}" for migration in migrations.files]
        lines += [f"load {SEED_FILE}"] if seed and (target.root / SEED_FILE).exists() else []
        return lines
    with open_session(target) as session:
        lines = [f"{change.describe()}" for change in extensions.plan(session, declared)]
        fresh = _is_new(session)
    if fresh and (target.root / SCHEMA_FILE).exists():
        lines.append(f"load {SCHEMA_FILE} (the database is empty)")
    if migrations.files:
        pending = migrations.plan() if not fresh else migrations.files
        lines += [f"apply {migration.display}" for migration in pending]
    return lines


def up(target: Target, *, seed: bool = False, hooks: Hooks | None = None) -> list[Step]:
    """Bring the target's database to what the project declares, changing only what differs; the steps run."""
    from dbtool.engine.session import open_session

    hooks = hooks or Hooks()
    run = _Runner(hooks)
    declared = _declared(target)
    migrations = _migrations(target, hooks)
    created = run("create", lambda: ("created", True) if _create(target) else ("exists", False))
    if declared:
        run("extensions", lambda: _extensions(target, declared, hooks.message))

    def schema() -> tuple[str, bool]:
        from dbtool.engine.loader import load_file

        path = target.root / SCHEMA_FILE
        if not path.exists():
            return f"skipped: no {SCHEMA_FILE}", False
        with open_session(target) as session:
            session.begin()
            _take_up_lock(session, hooks.message)  # a concurrent up loads it first, or waits for this one
            if not _is_new(session):
                session.rollback()
                return "skipped: the database is not new", False
            with hooks.progress(path) as on_progress:
                result = load_file(session, path, on_progress=on_progress)  # in this transaction, under the lock
        return result.summary, True

    loaded = run("schema-load", schema)
    if migrations.files:  # a database this run built has nothing live for a hazard to harm
        fresh = created.changed or loaded.changed
        run("migrate", lambda: _migrate(migrations, hazards=False if fresh else None))
    if seed:

        def seed_step() -> tuple[str, bool]:
            if not created.changed:
                return "skipped: only the run that creates the database seeds it", False
            return _load(target, target.root / SEED_FILE, hooks)

        run("seed", seed_step)
    return run.steps


class _Runner:
    """Runs steps in order, timing and reporting each; a failure is reported, then raised."""

    def __init__(self, hooks: Hooks) -> None:
        self.hooks = hooks
        self.steps: list[Step] = []

    def __call__(self, name: str, work: Callable[[], tuple[str, bool]]) -> Step:
        started = time.perf_counter()
        try:
            self.hooks.proceed(f"the {name} step")
            outcome, changed = work()
        except DbtoolError:
            self._report(Step(name, "failed", time.perf_counter() - started, failed=True))
            raise
        return self._report(Step(name, outcome, time.perf_counter() - started, changed))

    def note(self, name: str, outcome: str) -> Step:
        """A step run after a failure, to undo what the run did: reported, never raising."""
        return self._report(Step(name, outcome, 0.0))

    def _report(self, step: Step) -> Step:
        self.steps.append(step)
        self.hooks.step(step)
        return step


def _create(target: Target) -> bool:
    from dbtool.engine.session import open_maintenance_session
    from dbtool.ops.admin import create_database

    with open_maintenance_session(target) as admin:
        return create_database(admin, target.dbname)


def _declared(target: Target) -> dict[str, str]:
    return target.context.declaration.extensions


class _NoMigrations:
    files: tuple[()] = ()


def _migrations(target: Target, hooks: Hooks) -> Any:
    """The project's migrations; without a migration file, nothing (and the runner is not even imported)."""
    from dbtool.targets.project import MIGRATIONS_DIRECTORY

    folder = target.root / MIGRATIONS_DIRECTORY
    if not (folder.is_dir() and any(folder.glob("*.sql"))):
        return _NoMigrations()
    from dbtool.migrations.runner import Migrations

    def before(migration: Any) -> None:
        hooks.proceed(f"migration {migration.display}")

    return Migrations(target, report=hooks.message, before=before)


def _extensions(target: Target, declared: dict[str, str], message: Callable[[str], None]) -> tuple[str, bool]:
    from dbtool.engine.session import open_session
    from dbtool.ops.extensions import reconcile

    with open_session(target) as session:
        result = reconcile(session, declared, lock=lambda locked: _take_up_lock(locked, message))
    return result.describe(), bool(result.changes)


def _load(target: Target, path: Path, hooks: Hooks) -> tuple[str, bool]:
    from dbtool.engine.loader import load_file
    from dbtool.engine.session import open_session

    with hooks.progress(path) as on_progress, open_session(target) as session:
        result = load_file(session, path, on_progress=on_progress)
    return result.summary, True


def _migrate(migrations: Any, hazards: bool | None = None) -> tuple[str, bool]:
    applied = migrations.migrate(hazards=hazards)
    return f"applied {len(applied)} of {len(migrations.files)}", bool(applied)


def _take_up_lock(session: Any, report: Callable[[str], None]) -> None:
    """Inside the session's transaction: wait for any other run's extension or schema step to finish."""
    deadline = time.monotonic() + UP_LOCK_TIMEOUT
    told = False
    while not session.execute(queries.get("xact_lock"), {"key": UP_LOCK_KEY}).scalar():
        if time.monotonic() >= deadline:
            raise DbtoolError(
                f"timed out after {UP_LOCK_TIMEOUT:g} s waiting for another run of up or setup on this database",
                "it may still be loading; run again when it has finished",
            )
        if not told:
            report("waiting for another run of up or setup on this database")
            told = True
        time.sleep(UP_LOCK_POLL * (1 + random.random()))


def _is_new(session: Any) -> bool:
    """Nothing of the database's own in it (extension members aside), and no schema_migrations."""
    return bool(session.execute(queries.get("database_is_empty")).scalar())
