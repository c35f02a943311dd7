"""A newcomer's first hour (issue 24): what a new user types and breaks, each answered in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Server
from tests.helpers import Run, dbtool, error_line
from tests.migrations.test_migrations import V1
from tests.migrations.test_migrations import write as migration


def run_dbtool(*args: str, cwd: Path, env: dict[str, str] | None = None, close_stdin: bool = False) -> Run:
    """dbtool as a process of its own (what a closed standard input needs), in ``cwd``."""
    result = subprocess.run(
        [sys.executable, "-m", "dbtool", *args],
        cwd=cwd,
        stdin=None if close_stdin else subprocess.DEVNULL,
        preexec_fn=(lambda: os.close(0)) if close_stdin else None,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )
    return Run(result.returncode, result.stdout, result.stderr)


# -- item 3: no traceback without --debug -------------------------------------------------------------------


def test_a_dotenv_that_is_not_utf8_is_one_line(project):
    (project / ".env").write_bytes(b"# caf\xe9\nCONNECTION_URL=postgresql://u@127.0.0.1/db\n")
    run = dbtool("schema-load")
    assert run.code == 1
    assert error_line(run) == (f"error: {project / '.env'} is not UTF-8 text (line 1 has byte 0xe9; save it as UTF-8)")


def unreadable(path: Path) -> Path:
    """``path`` made a file that opens and then fails to read (EIO, as root too): a link to /proc/self/mem."""
    if path.exists() or path.is_symlink():
        path.unlink()
    path.symlink_to("/proc/self/mem")
    return path


def test_an_unreadable_dotenv_is_one_line(project):
    unreadable(project / ".env")
    run = dbtool("schema-load")
    assert run.code == 1
    assert error_line(run) == f"error: cannot read {project / '.env'}: Input/output error"


@pytest.mark.parametrize("name", ["schema.sql", "seed.sql"])
def test_setup_with_an_unreadable_schema_or_seed_is_one_line_and_changes_nothing(local: Server, project, name):
    local.create()
    unreadable(project / "db" / name)
    run = dbtool("setup")
    assert run.code == 1
    assert error_line(run) == f"error: cannot read {project / 'db' / name}: Input/output error"
    assert local.exists()


def test_an_unreadable_migration_is_one_line(local: Server, project):
    local.create()
    path = unreadable(migration(project, V1, "users", "CREATE TABLE u (id int);"))
    run = dbtool("migrate", "status")
    assert run.code == 1
    assert error_line(run) == f"error: cannot read {path}: Input/output error"


def test_a_read_error_in_the_middle_of_a_file_is_one_line_and_loads_nothing(local: Server, project):
    local.create()
    run = dbtool("schema-load", "--file", "/proc/self/mem")
    assert run.code == 1
    assert error_line(run) == "error: cannot read SQL file /proc/self/mem: Input/output error"


def test_reading_a_closed_stdin_is_one_line(local: Server, project):
    local.create()
    run = run_dbtool("schema-load", "--file", "-", cwd=project, env={"CONNECTION_URL": local.url()}, close_stdin=True)
    assert run.code == 1
    assert error_line(run) == "error: standard input is closed (pipe the SQL in, or pass --file PATH)"
