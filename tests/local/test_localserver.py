"""The embedded local server: a project with no CONNECTION_URL gets its own PostgreSQL in .dbtool/.

Every test gets a fresh project in a directory the unprivileged server user can reach (the
tests run as root in CI), and every server a test starts is destroyed afterwards.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from dbtool.local.cluster import service_user
from dbtool.local.server import LocalServer
from dbtool.targets.project import database_name_from
from tests.helpers import REPO, dbtool, error_line, in_terminal, script


def _project(parent: Path) -> Path:
    path = Path(tempfile.mkdtemp(prefix="project-", dir=parent))
    path.chmod(0o755)
    shutil.copytree(REPO / "db", path / "db")
    return path


@pytest.fixture
def projects(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Path]]:
    """Two fresh projects side by side (the first is the current directory), embedded servers allowed."""
    monkeypatch.delenv("DBTOOL_LOCAL_SERVER")
    made = [_project(workdir), _project(workdir)]
    monkeypatch.chdir(made[0])
    monkeypatch.setenv("DBTOOL_PROJECT_ROOT", str(made[0]))  # the bin/ scripts would otherwise use this repo
    yield made
    for path in made:
        LocalServer(path).destroy()
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def project_dir(projects: list[Path]) -> Path:
    return projects[0]


def test_start_status_stop_restart(project_dir):
    assert dbtool("local", "status").code == 3
    started = script("dbtool", "local", "start")
    assert started.code == 0, started.err
    port = int((project_dir / ".dbtool" / "port").read_text())
    name = database_name_from(project_dir)
    assert started.out.strip() == f"export CONNECTION_URL='postgresql://postgres@127.0.0.1:{port}/{name}'"
    status = dbtool("local", "status")
    assert status.code == 0 and status.out.startswith(f"running on 127.0.0.1:{port} (pid ")
    assert dbtool("local", "stop").out.strip() == "stopped"
    stopped = dbtool("local", "status")
    assert stopped.code == 3 and stopped.out.startswith(f"stopped (port {port}")
    assert dbtool("local", "stop").out.strip() == "not running"
    assert script("dbtool", "local", "start").code == 0
    assert int((project_dir / ".dbtool" / "port").read_text()) == port  # remembered


def test_its_database_is_named_after_the_project_and_the_name_is_kept(workdir, projects, monkeypatch):
    project = workdir / "My-App"
    projects[0].rename(project)  # a project directory with a name of its own; the fixture's cleanup skips it
    monkeypatch.chdir(project)
    monkeypatch.setenv("DBTOOL_PROJECT_ROOT", str(project))
    try:
        started = script("dbtool", "local", "start")
        assert started.code == 0, started.err
        assert started.out.strip().endswith("/my_app'")
        assert (project / ".dbtool" / "database").read_text() == "my_app\n"
        (project / ".dbtool" / "database").write_text("chosen\n")  # the remembered name wins
        assert script("dbtool", "local", "start").out.strip().endswith("/chosen'")
        # A server made before dbtool remembered the name keeps the one it had: cruddur.
        (project / ".dbtool" / "database").unlink()
        assert script("dbtool", "local", "start").out.strip().endswith("/cruddur'")
        assert (project / ".dbtool" / "database").read_text() == "cruddur\n"
    finally:
        LocalServer(project).destroy()
        shutil.rmtree(project, ignore_errors=True)


def test_a_command_starts_it_and_uses_it(project_dir):
    run = script("db-setup")
    assert run.code == 0, run.err
    assert "started the project's PostgreSQL in .dbtool/ on port" in run.err
    port = int((project_dir / ".dbtool" / "port").read_text())
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/{database_name_from(project_dir)}") as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (3,)
    again = script("db-sessions", "--json")
    assert again.code == 0 and "started" not in again.err  # already running: no second start


def test_only_local_connections_and_a_socket_in_the_project(project_dir):
    port = LocalServer(project_dir).start()
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres") as conn:
        settings = dict(
            conn.execute("SELECT name, setting FROM pg_settings WHERE name LIKE 'listen%' OR name LIKE 'unix%'")
        )
        rules = conn.execute("SELECT type, address, auth_method FROM pg_hba_file_rules ORDER BY line_number").fetchall()
    assert settings["listen_addresses"] == "127.0.0.1"
    assert settings["unix_socket_directories"] == str(project_dir / ".dbtool" / "run")
    assert (project_dir / ".dbtool" / "run" / f".s.PGSQL.{port}").exists()
    assert rules == [("local", None, "trust"), ("host", "127.0.0.1", "trust")]


def test_doctor_starts_it_and_checks_it_over_tcp_and_its_socket(project_dir, monkeypatch):
    from tests.ops.test_doctor import report

    run = script("db-doctor")
    steps = report(run)
    port, name = int((project_dir / ".dbtool" / "port").read_text()), database_name_from(project_dir)
    assert steps["configuration"] == (
        "ok",
        f"postgres@127.0.0.1:{port}/{name} via the project's own server in .dbtool/ (CONNECTION_URL is not set); "
        f"started the project's PostgreSQL in .dbtool/ on port {port}",
    )
    assert steps["authentication"][1] == (
        "logged in as postgres with no password in the configuration "
        "(the server trusts this client, or ~/.pgpass has it)"
    )
    assert steps["database"][0] == "FAIL"  # started, never set up: the hint says what to run
    assert run.code == 1
    assert script("db-create").code == 0
    run_dir = project_dir / ".dbtool" / "run"
    monkeypatch.setenv(
        "CONNECTION_URL", f"postgresql://postgres@/{database_name_from(project_dir)}?host={run_dir}&port={port}"
    )
    run = script("db-doctor")
    steps = report(run)
    socket_path = f"{run_dir}/.s.PGSQL.{port}"
    assert steps["dns"] == ("skip", f"Unix socket {socket_path}, no lookup")
    assert steps["tcp"][0] == "ok" and steps["tcp"][1].startswith(f"{socket_path} PostgreSQL answers (")
    assert steps["ssl"] == ("skip", "not used over a Unix socket")
    assert run.code == 0, run.out


def _as_user(user: pwd.struct_passwd, commands: list[list[str]]) -> list[tuple[int, str]]:
    """Run dbtool commands in a forked child that has dropped root for ``user``: (exit code, output) each.

    A fork, not a new interpreter, because this interpreter may live where that user cannot read
    (under /root): the caller must first have run the same commands once, so that the child
    imports nothing.
    """
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
            outcome = [(run.code, run.all) for run in (dbtool(*args) for args in commands)]
        except BaseException as error:
            outcome = [(-1, f"{type(error).__name__}: {error}")]
        os.write(write, json.dumps(outcome).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    return [tuple(item) for item in json.loads(data)]


LIFECYCLE = [["local", "start"], ["local", "status"], ["local", "stop"], ["local", "status"], ["create"]]


@pytest.mark.skipif(os.geteuid() != 0, reason="as any other user, every other test here is this case")
def test_as_an_unprivileged_user_the_server_runs_as_that_user(projects, monkeypatch):
    """The code path of a developer's own account (no user switch, no chown), exercised from a root CI."""
    warm_up, project_dir = projects[1], projects[0]
    monkeypatch.setenv("DBTOOL_PROJECT_ROOT", str(warm_up))
    for args in [*LIFECYCLE, ["local", "destroy", "--yes"]]:  # as root, in another project: imports it all
        assert dbtool(*args).code in (0, 3), args
    monkeypatch.setenv("DBTOOL_PROJECT_ROOT", str(project_dir))
    user = pwd.getpwnam(service_user())
    for path in (project_dir, *project_dir.rglob("*")):
        os.chown(path, user.pw_uid, user.pw_gid)
    outcome = _as_user(user, [*LIFECYCLE, ["local", "status"]])
    assert [code for code, _ in outcome] == [0, 0, 0, 3, 0, 0], outcome
    port = int((project_dir / ".dbtool" / "port").read_text())
    name = database_name_from(project_dir)
    assert outcome[0][1].strip() == f"export CONNECTION_URL='postgresql://postgres@127.0.0.1:{port}/{name}'"
    assert outcome[1][1].startswith(f"running on 127.0.0.1:{port} (pid ")
    assert outcome[3][1].startswith(f"stopped (port {port}")
    assert f"created database {name}" in outcome[4][1]  # auto-started again, on the remembered port
    assert outcome[5][1].startswith(f"running on 127.0.0.1:{port} (pid ")
    pid = int((project_dir / ".dbtool" / "data" / "postmaster.pid").read_text().split()[0])
    assert os.stat(f"/proc/{pid}").st_uid == user.pw_uid
    assert {path.stat().st_uid for path in (project_dir / ".dbtool").rglob("*")} == {user.pw_uid}
    (destroyed,) = _as_user(user, [["local", "destroy", "--yes"]])
    assert destroyed == (0, f"destroyed {project_dir / '.dbtool'}\n")
    assert not (project_dir / ".dbtool").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="checks the root case; the other case is every other test here")
def test_as_root_the_files_belong_to_the_server_user(project_dir):
    LocalServer(project_dir).start()
    owner = (project_dir / ".dbtool" / "data").owner()
    assert owner == service_user() and owner != "root"


def test_a_killed_server_with_a_stale_pid_file_starts_again(project_dir):
    server = LocalServer(project_dir)
    port = server.start()
    pid = int((project_dir / ".dbtool" / "data" / "postmaster.pid").read_text().split()[0])
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while server.running_port() is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (project_dir / ".dbtool" / "data" / "postmaster.pid").exists()  # stale, left by the kill
    assert dbtool("local", "status").code == 3
    run = script("db-create")
    assert run.code == 0, run.err
    assert server.running_port() == port


def test_a_taken_port_moves_the_server_to_a_free_one(project_dir):
    server = LocalServer(project_dir)
    assert script("dbtool", "local", "start").code == 0
    port = server.running_port()
    server.stop()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        run = script("dbtool", "local", "start")
        assert run.code == 0, run.err
        new_port = int((project_dir / ".dbtool" / "port").read_text())
        assert new_port != port and f":{new_port}/{database_name_from(project_dir)}" in run.out
    assert server.running_port() == new_port


def test_two_projects_get_two_independent_servers(projects):
    first, second = (LocalServer(path) for path in projects)
    ports = first.start(), second.start()
    assert ports[0] != ports[1]
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{ports[0]}/postgres", autocommit=True) as conn:
        conn.execute("CREATE DATABASE only_in_first")
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{ports[1]}/postgres") as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname = 'only_in_first'").fetchone() == (0,)
    first.stop()
    assert second.running_port() == ports[1]


def test_no_binaries_anywhere_says_what_to_install(project_dir, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("DBTOOL_PG_BINDIR", "/nonexistent/bin")
    line = error_line(dbtool("create"))
    assert line.startswith("error: no PostgreSQL server binaries in /nonexistent/bin")
    assert "apt-get install postgresql" in line and "brew install postgresql" in line and "CONNECTION_URL" in line
    assert not (project_dir / ".dbtool" / "data").exists()


def test_usual_install_locations_are_searched_when_path_has_none(project_dir, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert LocalServer(project_dir).start() > 0


def test_not_a_project_still_asks_for_connection_url(workdir, monkeypatch):
    monkeypatch.delenv("DBTOOL_LOCAL_SERVER")
    bare = Path(tempfile.mkdtemp(dir=workdir))
    monkeypatch.chdir(bare)
    assert error_line(dbtool("create")).startswith("error: CONNECTION_URL is not set")
    assert not (bare / ".dbtool").exists()


def test_switched_off_by_variable(project_dir, monkeypatch):
    monkeypatch.setenv("DBTOOL_LOCAL_SERVER", "off")
    assert error_line(dbtool("create")).startswith("error: CONNECTION_URL is not set")


def test_destroy_asks_and_refuses_without_a_terminal_or_the_word(project_dir):
    LocalServer(project_dir).start()
    run = dbtool("local", "destroy")
    assert error_line(run).startswith("error: refusing to delete") and (project_dir / ".dbtool").exists()
    code, screen = in_terminal(["dbtool", "local", "destroy"], "yes", {})
    assert code == 1 and "nothing was deleted" in screen and (project_dir / ".dbtool").exists()
    code, screen = in_terminal(["dbtool", "local", "destroy"], "destroy", {})
    assert code == 0 and not (project_dir / ".dbtool").exists()


def test_destroy_with_yes_stops_and_deletes(project_dir):
    server = LocalServer(project_dir)
    port = server.start()
    run = dbtool("local", "destroy", "--yes")
    assert run.code == 0 and run.out.startswith("destroyed ")
    assert not (project_dir / ".dbtool").exists()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    assert dbtool("local", "destroy", "--yes").out.startswith("nothing to destroy")


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the data to another user")
def test_as_root_a_project_the_server_user_cannot_reach_gets_its_server_outside(workdir, monkeypatch):
    monkeypatch.delenv("DBTOOL_LOCAL_SERVER")
    private = Path(tempfile.mkdtemp(dir=workdir))  # 0700: the postgres user cannot enter it (a project in /root)
    project = private / "app"
    shutil.copytree(REPO / "db", project / "db")
    monkeypatch.chdir(project)
    base = Path(tempfile.mkdtemp(dir=workdir))
    base.chmod(0o755)
    monkeypatch.setenv("DBTOOL_LOCAL_HOME", str(base))  # instead of /var/lib/dbtool
    try:
        run = dbtool("create")
        assert run.code == 0, run.all
        (home,) = base.iterdir()
        assert home.name.startswith("app-") and (home / "data" / "PG_VERSION").is_file()
        assert home.stat().st_uid == pwd.getpwnam(service_user()).pw_uid
        assert (project / ".dbtool" / "location").read_text() == f"{home}\n"
        assert f"started the project's PostgreSQL in {home} on port " in run.err
        assert "outside the project: its server user cannot reach .dbtool/" in run.err
        assert dbtool("setup").code == 0  # and every command after it finds it there
        assert f"data in {home}" in dbtool("local", "status").out
    finally:
        assert dbtool("local", "destroy", "--yes").code == 0
    assert not home.exists() and not (project / ".dbtool").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the data to another user")
def test_as_root_with_nowhere_the_server_user_can_write_is_a_clear_error(workdir, monkeypatch):
    monkeypatch.delenv("DBTOOL_LOCAL_SERVER")
    private = Path(tempfile.mkdtemp(dir=workdir))
    project = private / "app"
    shutil.copytree(REPO / "db", project / "db")
    monkeypatch.chdir(project)
    monkeypatch.setenv("DBTOOL_LOCAL_HOME", str(private / "homes"))  # inside the same unreachable directory
    line = error_line(dbtool("create"))
    assert f"the {service_user()} user (PostgreSQL refuses to run as root) can write neither to" in line
    assert "DBTOOL_LOCAL_HOME" in line and "chmod o+x" in line


def test_two_commands_starting_it_at_once_both_succeed(project_dir):
    import subprocess

    commands = [
        subprocess.Popen([str(REPO / "bin" / "db-sessions"), "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    results = [(command.wait(timeout=120), command.stderr.read().decode()) for command in commands]
    assert [code for code, _ in results] == [0, 0], results
    assert LocalServer(project_dir).running_port() is not None
