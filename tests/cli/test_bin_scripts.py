"""The bin/ scripts: POSIX sh, work from any directory, bootstrap their venv with a clear failure."""

from __future__ import annotations

import os
import shutil
import subprocess

import psycopg
import pytest

from dbtool.commands import SCRIPTS as COMMAND_SCRIPTS
from tests.helpers import REPO, dbtool, error_line, script

SCRIPTS = [*COMMAND_SCRIPTS, "dbtool", "_dbtool"]


def test_scripts_are_posix_sh():
    for name in SCRIPTS:
        path = REPO / "bin" / name
        assert path.read_text().startswith("#!/bin/sh\n"), name
        for shell in ("sh", "dash"):
            if shutil.which(shell):
                assert subprocess.run([shell, "-n", str(path)]).returncode == 0, (shell, name)


def test_setup_from_another_directory(local, tmp_path):
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    run = script("db-setup", cwd=elsewhere)
    assert run.code == 0, run.all
    with psycopg.connect(local.url()) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (3,)


def test_each_script_runs_its_command(local):
    assert script("db-create").out.strip() == "created database cruddur"
    assert script("db-schema-load").code == 0
    assert script("db-seed").code == 0
    assert '"is_self": true' in script("db-sessions", "--json").out
    assert script("db-drop").out.strip() == "dropped database cruddur"
    assert "--ip gave 10.0.0.1, a private" in error_line(script("rds-update-sg-rule", "--ip", "10.0.0.1"))


def test_commands_find_the_project_from_a_subdirectory(local, project, monkeypatch):
    (project / "db" / "seed.sql").write_text("CREATE TABLE from_project_seed (id int);")
    sub = project / "backend" / "lib"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    local.create()
    assert dbtool("seed").code == 0
    with psycopg.connect(local.url()) as conn:
        assert conn.execute("SELECT to_regclass('from_project_seed') IS NOT NULL").fetchone() == (True,)


def test_dotenv_in_the_project_is_used(local_server, project, monkeypatch):
    local_server.reset()
    (project / ".env").write_text(f"CONNECTION_URL={local_server.url()}\n")
    run = script("db-create", env={"DBTOOL_PROJECT_ROOT": str(project)})
    assert run.code == 0, run.all
    assert local_server.exists()


def test_failed_first_run_bootstrap_is_one_clear_error(tmp_path):
    # No package index reachable: pip cannot install, and the script must say so and leave no half venv.
    copy = tmp_path / "project"
    shutil.copytree(REPO / "bin", copy / "bin")
    shutil.copy(REPO / "pyproject.toml", copy / "pyproject.toml")
    run = subprocess.run(
        [str(copy / "bin" / "db-create")],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": os.environ["PATH"], "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(tmp_path), "HOME": str(tmp_path)},
    )
    assert run.returncode == 1
    assert "dbtool: first run, installing into" in run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith(f"error: could not install dbtool into {copy}/.venv")
    assert not (copy / ".venv" / "bin" / "dbtool").exists()


def test_python_dash_m_works():
    result = subprocess.run(
        [str(REPO / ".venv" / "bin" / "python"), "-m", "dbtool", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "version" in result.stdout


@pytest.mark.parametrize(
    ("args", "needs"),
    [
        ([], "deploy"),  # the whole suite
        (["-q"], "deploy"),
        (["-q", "tests"], "deploy"),
        (["."], "deploy"),
        (["tests/deploy/test_cdk.py::test_cfn_lint_finds_nothing_in_the_synthesized_templates"], "deploy"),
        (["-q", "tests/ops", "tests/deploy/test_contract.py"], "deploy"),
        (["-q", "tests/ops/test_init.py"], ""),  # a focused run: no CDK extra, Lambda wheels or ministack
        (["-k", "deploy", "tests/cli"], ""),  # -k's expression is not a path
    ],
)
def test_run_tests_installs_the_deploy_parts_only_for_runs_that_need_them(args, needs):
    result = subprocess.run([str(REPO / "bin" / "_test-needs"), *args], cwd=REPO, capture_output=True, text=True)
    assert (result.returncode, result.stdout.strip()) == (0, needs)
