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


# -- items 6 and 8: typos ------------------------------------------------------------------------------------


def test_a_mistyped_target_for_connect_is_a_usage_error_not_a_local_session(local: Server, project):
    local.create()  # in a process of its own: connect execs psql, which would replace pytest
    run = run_dbtool("connect", "prdo", "-c", "select 1", cwd=project, env={"CONNECTION_URL": local.url()})
    assert run.code == 2
    assert error_line(run) == (
        "error: unknown target 'prdo' (did you mean 'prod'? known: local, prod) (see 'dbtool connect --help')"
    )


def test_connect_still_passes_psql_options_to_psql(local: Server, project):
    local.create()
    run = run_dbtool("connect", "-tAc", "select 40 + 2", cwd=project, env={"CONNECTION_URL": local.url()})
    assert (run.code, run.out.strip()) == (0, "42"), run.all


def test_a_mistyped_command_suggests_the_command():
    run = dbtool("seteup")
    assert run.code == 2
    assert (
        error_line(run)
        == "error: No such command 'seteup'. (Did you mean one of: 'seed', 'setup'?) (see 'dbtool --help')"
    )


def test_a_mistyped_migrate_command_is_not_taken_for_a_target(project):
    run = dbtool("migrate", "stauts")
    assert run.code == 2
    assert error_line(run) == (
        "error: no command or target 'stauts' (did you mean 'status'? commands: check, new, status, up; "
        "targets: local, prod) (see 'dbtool migrate --help')"
    )


def test_a_mistyped_target_suggests_the_target(project):
    run = dbtool("migrate", "status", "prdo")
    assert run.code == 2
    assert "unknown target 'prdo' (did you mean 'prod'? known: local, prod)" in error_line(run)


# -- item 8: the help, and the global options after the command ----------------------------------------------


def test_the_help_groups_the_commands_and_cuts_no_description():
    import re

    from dbtool.commands import COMMANDS

    text = dbtool("--help").out
    headings = [line for line in text.splitlines() if line.endswith(":") and not line.startswith(" ")]
    assert headings == ["Options:", "Start here:", "Daily:", "Migrations:", "AWS and deploy:"]
    start, rest = text.split("Start here:")[1].split("Daily:")

    def names(part: str) -> list[str]:
        return re.findall(r"(?m)^  ([a-z-]+)  +\S", part)

    assert names(start) == ["init", "setup", "up"]
    note = "setup resets the database (drops and rebuilds it); up only moves it forward and never drops."
    assert note in " ".join(start.split())
    assert sorted(names(start) + names(rest)) == sorted(command.name for command in COMMANDS)
    assert "..." not in text.split("Options:")[1] and "…" not in text


def test_the_help_file_printed_without_click_is_the_same(monkeypatch):
    from dbtool.cli import HELP_FILE
    from dbtool.cli.helptext import render

    assert Path(HELP_FILE).read_text(encoding="utf-8") == render()


def test_global_options_work_after_the_command_as_bin_scripts_pass_them(project):
    from tests.helpers import script

    env = {"DBTOOL_PROJECT_ROOT": str(project)}
    debug = script("db-create", "--debug", env=env)  # no CONNECTION_URL: with --debug, the traceback
    assert debug.code == 1 and "Traceback" in debug.err and "TargetNotConfigured" in debug.err
    bad = script("db-create", "--connect-timeout", "soon", env=env)
    assert bad.code == 2 and "Invalid value for '--connect-timeout'" in error_line(bad)
    assert dbtool("create", "--connect-timeout=soon").code == 2


# -- item 9: files in db/migrations that are not migrations ----------------------------------------------------


def test_files_that_are_not_migrations_are_named_once_each(local: Server, project):
    local.create()
    migration(project, V1, "users", "CREATE TABLE users2 (id int);")
    folder = project / "db" / "migrations"
    (folder / "add_posts.sql").write_text("-- migrate:up\nCREATE TABLE posts2 (id int);\n")
    (folder / "20260102000000_tags.py").write_text("def up(): pass\n")
    (folder / "README.md").write_text("notes\n")
    (folder / ".gitkeep").write_text("")
    run = dbtool("migrate")
    assert run.code == 0, run.all
    warnings = [line for line in run.err.splitlines() if line.startswith("warning: ")]
    assert warnings == [
        "warning: ignored db/migrations/20260102000000_tags.py: dbtool runs .sql migrations only "
        "(dbmate's format), not .py",
        "warning: ignored db/migrations/add_posts.sql: its name has no version: migrations are named "
        "VERSION_NAME.sql (dbtool migrate new add_posts writes one)",
    ]
    assert f"applied {V1} users" in run.err


def test_a_migrations_path_that_is_a_file_is_a_warning(local: Server, project):
    local.create()
    (project / "db" / "migrations").write_text("CREATE TABLE t (id int);\n")
    run = dbtool("migrate", "status")
    assert run.code == 0, run.all
    assert "warning: db/migrations is not a directory: no migrations are read" in run.err


# -- item 10: hints that lead somewhere --------------------------------------------------------------------------


def test_at_a_monorepo_root_the_hint_names_the_project_below(tmp_path, monkeypatch):
    (tmp_path / "backend-flask" / "db").mkdir(parents=True)
    (tmp_path / "frontend-react-js").mkdir()
    run = dbtool("create")
    assert run.code == 1
    assert error_line(run) == (
        f"error: CONNECTION_URL is not set (no project here: it is in backend-flask/, so cd backend-flask; "
        f"or set it in the environment or in {tmp_path / '.env'})"
    )


def test_without_an_env_example_the_hint_does_not_name_one(project):
    run = dbtool("create")
    assert error_line(run) == f"error: CONNECTION_URL is not set (set it in the environment or in {project / '.env'})"
    (project / ".env.example").write_text("# CONNECTION_URL=postgresql://...\n")
    assert error_line(dbtool("create")).endswith("; see .env.example)")


def test_a_url_without_its_scheme_says_so_and_never_shows_it(project, monkeypatch):
    monkeypatch.setenv("CONNECTION_URL", "app:Secret-pw@db.internal/app")
    assert error_line(run := dbtool("create")).startswith("error: CONNECTION_URL is missing the postgresql:// scheme")
    assert "Secret-pw" not in run.all
    monkeypatch.setenv("CONNECTION_URL", "localhost:5432")
    assert error_line(dbtool("create")) == (
        "error: CONNECTION_URL is missing the postgresql:// scheme (write it as postgresql://USER@HOST:PORT/DBNAME)"
    )


def test_the_placeholder_from_env_example_is_named_as_such(project):
    from dbtool.ops.init import init_project

    init_project(project)
    example = (project / ".env.example").read_text()
    placeholder = next(line for line in example.splitlines() if line.startswith("# PROD_CONNECTION_URL="))
    (project / ".env").write_text(placeholder.removeprefix("# ") + "\n")
    run = dbtool("sessions", "prod")
    assert error_line(run) == (
        "error: PROD_CONNECTION_URL is still the example from .env.example "
        "(app-db.xxxxxxxx.us-east-1.rds.amazonaws.com; "
        f"put your database's URL in {project / '.env'})"
    )


def test_a_refused_connection_to_the_stopped_own_server_says_to_start_it(project, monkeypatch):
    from dbtool.local.cluster import free_port

    port = free_port()
    (project / ".dbtool").mkdir()
    (project / ".dbtool" / "port").write_text(f"{port}\n")  # what dbtool local start left, then local stop
    monkeypatch.setenv("CONNECTION_URL", f"postgresql://postgres@127.0.0.1:{port}/app")
    assert error_line(dbtool("create")) == (
        f"error: connection to postgres@127.0.0.1:{port}/app (database postgres) refused "
        "(the project's own server is stopped: dbtool local start)"
    )


def test_one_statement_is_one_statement(local: Server, project):
    local.create()
    (project / "one.sql").write_text("SELECT 1;\n")
    run = dbtool("schema-load", "--file", "one.sql")
    assert run.code == 0 and "one.sql: 1 statement " in run.out + " " and "statements" not in run.out, run.all


def test_the_sessions_table_shows_queries_without_their_leading_comment(local: Server, project):
    local.create()
    run = dbtool("sessions")
    assert run.code == 0, run.all
    assert "-- purpose" not in run.out and "SELECT pid" in run.out, run.out


@pytest.mark.parametrize("columns", [60, 80, 200])
def test_the_help_on_a_real_terminal_cuts_nothing(columns):
    """On a pty of each width (help.txt at 80 and over, click's own rendering below), every description whole."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES")}
    process = subprocess.Popen(
        [sys.executable, "-m", "dbtool", "--help"], stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True
    )
    os.close(slave)
    screen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        screen += chunk
    os.close(master)
    assert process.wait(timeout=30) == 0
    text = screen.decode().replace("\r\n", "\n")
    assert "Start here:" in text and "AWS and deploy:" in text
    assert "..." not in text.split("Options:")[1] and "…" not in text
    assert max(len(line) for line in text.splitlines()) <= max(columns, 80)
