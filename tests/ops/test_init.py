"""dbtool outside this repository: a wheel installed into a fresh virtual environment, and ``dbtool init``
setting up a project that already has a schema, then that project's own bin/db-setup against a real server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import psycopg
import pytest

from tests.conftest import REPO, Server
from tests.helpers import dbtool, error_line

SITE_PACKAGES = Path(psycopg.__file__).resolve().parent.parent  # where the test environment's dependencies are


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with dbtool installed from a wheel built from this checkout (offline)."""
    work = tmp_path_factory.mktemp("install")
    source, wheels = work / "source", work / "wheels"
    ignored = shutil.ignore_patterns(".git", ".venv", ".cache", ".dbtool", "__pycache__", "build", "*.egg-info")
    shutil.copytree(REPO, source, ignore=ignored)  # python -m build writes build/ beside the sources
    build = [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(wheels), str(source)]
    built = subprocess.run(build, capture_output=True, text=True)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    (wheel,) = wheels.glob("dbtool-*.whl")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # The dependencies come from the test environment, since nothing may be downloaded here.
    (site,) = venv.glob("lib/python3*/site-packages")
    (site / "test-dependencies.pth").write_text(f"{SITE_PACKAGES}\n")
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)]
    subprocess.run(pip, check=True, capture_output=True)
    return venv


def test_the_wheel_holds_every_file_the_package_reads(installed):
    (wheel,) = (installed.parent / "wheels").glob("dbtool-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    data = [
        path.relative_to(REPO).as_posix()
        for path in (REPO / "dbtool").rglob("*")
        if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts
    ]
    assert data and all(name in names for name in data), sorted(set(data) - names)
    assert {"dbtool/queries/templates.sql", "dbtool/cli/help.txt", "dbtool/ops/scaffold/script.sh"} <= names


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_a_new_project_from_pip_install_to_db_setup(installed, local: Server, tmp_path):
    env = {**os.environ, "PATH": f"{installed / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    env.pop("DBTOOL_PROJECT_ROOT", None)
    help_run = run(["dbtool", "--help"], tmp_path, env)
    assert help_run.returncode == 0 and "Usage: dbtool" in help_run.stdout
    where = run(["python", "-c", "import dbtool; print(dbtool.__file__)"], tmp_path, env).stdout
    assert where.startswith(str(installed)), where  # the installed copy, not this checkout

    project = tmp_path / "app"
    (project / "db").mkdir(parents=True)
    schema = "CREATE TABLE notes (id int PRIMARY KEY, body text);\n"
    (project / "db" / "schema.sql").write_text(schema)
    created = run(["dbtool", "init", "app"], tmp_path, env)
    assert created.returncode == 0, created.stderr
    assert "skipped  db/schema.sql (exists)" in created.stdout
    assert "created  bin/db-setup" in created.stdout and "created  dbtool.toml" in created.stdout
    assert (project / "db" / "schema.sql").read_text() == schema  # kept
    assert os.access(project / "bin" / "db-setup", os.X_OK)
    assert (project / ".gitignore").read_text() == ".env\n.dbtool/\n"

    # The project's own script, from another directory, on a real server.
    env["CONNECTION_URL"] = local.url()
    setup = run([str(project / "bin" / "db-setup")], tmp_path, env)
    assert setup.returncode == 0, setup.stderr
    assert "schema-load  ok" in setup.stdout
    with psycopg.connect(local.url()) as conn:
        assert conn.execute("SELECT count(*) FROM notes").fetchone() == (0,)

    # Without dbtool on PATH, the script says what to install.
    bare = {**env, "PATH": "/usr/bin:/bin"}
    missing = run([str(project / "bin" / "db-setup")], tmp_path, bare)
    assert missing.returncode == 1
    assert missing.stderr.strip().startswith("error: dbtool is not installed (")


def test_init_twice_changes_nothing(tmp_path):
    first = dbtool("init", str(tmp_path / "p"))
    assert first.code == 0, first.all
    before = {path: path.read_bytes() for path in (tmp_path / "p").rglob("*") if path.is_file()}
    second = dbtool("init", str(tmp_path / "p"))
    assert second.code == 0, second.all
    assert "created" not in second.out and "updated" not in second.out
    assert {path: path.read_bytes() for path in (tmp_path / "p").rglob("*") if path.is_file()} == before
    assert "skipped  .gitignore (already ignores .env and .dbtool/)" in second.out


def test_init_adds_to_an_existing_gitignore_without_touching_the_rest(tmp_path):
    (tmp_path / ".gitignore").write_text("node_modules/\n.env")
    result = dbtool("init", str(tmp_path))
    assert "updated  .gitignore (added .env and .dbtool/)" in result.out
    assert (tmp_path / ".gitignore").read_text() == "node_modules/\n.env\n.dbtool/\n"


def test_init_in_a_subdirectory_of_a_repository_puts_the_hooks_at_its_root(tmp_path):
    (tmp_path / ".git").mkdir()
    (tmp_path / ".gitpod.yml").write_text("tasks: []\n")
    result = dbtool(
        "init", str(tmp_path / "backend-flask"), "--devcontainer", "--gitpod", "--install", "pipx install x"
    )
    assert result.code == 0, result.all
    assert "skipped  ../.gitpod.yml (exists)" in result.out
    assert (tmp_path / ".gitpod.yml").read_text() == "tasks: []\n"
    container = (tmp_path / ".devcontainer" / "devcontainer.json").read_text()
    assert '"postCreateCommand": "./backend-flask/bin/db-setup"' in container
    assert (tmp_path / "backend-flask" / "bin" / "db-setup").exists()
    assert (tmp_path / "backend-flask" / ".gitignore").exists() and not (tmp_path / ".gitignore").exists()


def test_init_where_it_cannot_write_is_one_line(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    line = error_line(dbtool("init", str(blocked / "sub")))
    assert line.startswith("error: cannot write") and "(check the directory's permissions)" in line


# -- issue 24, items 1 and 2: adopting a repository with scripts of its own; hooks that install dbtool ----------

CRUDDUR_SETUP = """#! /usr/bin/bash
-e # stop if it fails at any point
CYAN='\\033[1;36m'
bin_path="$(realpath .)/bin"
source "$bin_path/db-drop"
source "$bin_path/db-create"
source "$bin_path/db-schema-load"
source "$bin_path/db-seed"
"""


def cruddur(tmp_path: Path) -> Path:
    """The bootcamp's backend-flask, week 4: bash scripts of its own in bin/, db/schema.sql."""
    project = tmp_path / "backend-flask"
    (project / "bin").mkdir(parents=True)
    (project / "db").mkdir()
    (project / "db" / "schema.sql").write_text("CREATE TABLE public.users (uuid uuid);\n")
    (project / "bin" / "db-setup").write_text(CRUDDUR_SETUP)
    (project / "bin" / "db-connect").write_text("#! /usr/bin/bash\npsql $CONNECTION_URL\n")
    for script in (project / "bin").iterdir():
        script.chmod(0o755)
    return project


def test_init_keeps_foreign_scripts_says_so_and_points_at_dbtool(tmp_path, monkeypatch):
    project = cruddur(tmp_path)
    monkeypatch.chdir(tmp_path)
    run = dbtool("init", "backend-flask")
    assert run.code == 0, run.all
    assert "kept     bin/db-connect (not dbtool's: use dbtool connect)" in run.out
    assert "kept     bin/db-setup (not dbtool's: use dbtool setup)" in run.out
    assert (
        "2 scripts in bin/ are not dbtool's: dbtool init --replace-scripts moves each aside (bin/NAME.orig) "
        "and writes dbtool's" in run.out
    )
    assert run.out.strip().splitlines()[-1] == "next: cd backend-flask && dbtool setup"
    assert (project / "bin" / "db-setup").read_text() == CRUDDUR_SETUP
    assert "created  bin/db-create" in run.out  # the ones it lacked are written


def test_init_replace_scripts_moves_each_aside_and_loses_nothing(tmp_path):
    project = cruddur(tmp_path)
    (project / "bin" / "db-setup.orig").write_text("an older copy\n")
    run = dbtool("init", str(project), "--replace-scripts")
    assert run.code == 0, run.all
    assert "moved    bin/db-setup → bin/db-setup.orig.1" in run.out
    assert "moved    bin/db-connect → bin/db-connect.orig" in run.out
    assert (project / "bin" / "db-setup.orig.1").read_text() == CRUDDUR_SETUP
    assert (project / "bin" / "db-setup.orig").read_text() == "an older copy\n"
    assert "dbtool setup" in (project / "bin" / "db-setup").read_text()
    assert os.access(project / "bin" / "db-setup", os.X_OK)
    assert run.out.strip().splitlines()[-1] == "next: cd backend-flask && ./bin/db-setup"
    again = dbtool("init", str(project), "--replace-scripts")  # dbtool's own scripts are never moved
    assert "moved" not in again.out and "kept" not in again.out


def test_a_schema_elsewhere_is_named_instead_of_an_empty_one_made(tmp_path):
    (tmp_path / "schema.sql").write_text("CREATE TABLE subscribers (id int);\n")  # listmonk keeps it at its root
    run = dbtool("init", str(tmp_path))
    assert run.code == 0, run.all
    assert not (tmp_path / "db" / "schema.sql").exists()
    assert (
        "not created db/schema.sql: this project's schema seems to be schema.sql; move it there "
        "(mkdir -p db && git mv schema.sql db/schema.sql), or load it with dbtool schema-load --file schema.sql"
    ) in run.out
    assert (tmp_path / "db" / "seed.sql").exists()


def test_workspace_hooks_install_dbtool_first(tmp_path):
    import json

    import yaml

    (tmp_path / ".git").mkdir()
    install = "pipx install 'git+https://github.com/acme/dbtool@v1'"
    run = dbtool("init", str(tmp_path / "backend-flask"), "--gitpod", "--devcontainer", "--install", install)
    assert run.code == 0, run.all
    [task] = yaml.safe_load((tmp_path / ".gitpod.yml").read_text())["tasks"]
    assert task["before"] == f"command -v dbtool >/dev/null 2>&1 || {install}"  # prebuilds keep only /workspace
    assert task["init"] == "./backend-flask/bin/db-setup" and task["command"] == "./backend-flask/bin/db-up"
    container = json.loads((tmp_path / ".devcontainer" / "devcontainer.json").read_text())
    assert container["onCreateCommand"].endswith(f"&& {install}")
    assert container["postCreateCommand"] == "./backend-flask/bin/db-setup"


def test_workspace_hooks_without_an_install_command_are_refused(tmp_path):
    run = dbtool("init", str(tmp_path), "--gitpod")
    assert run.code == 2
    assert error_line(run) == (
        "error: --gitpod and --devcontainer write hooks that must install dbtool on a fresh workspace: pass "
        "--install 'COMMAND', e.g. --install 'pipx install git+https://github.com/ORG/dbtool'"
    )
    assert not (tmp_path / ".gitpod.yml").exists() and not (tmp_path / "bin").exists()


def test_an_existing_hook_file_gets_the_lines_to_add(tmp_path):
    (tmp_path / ".gitpod.yml").write_text("tasks: []\n")
    run = dbtool("init", str(tmp_path), "--gitpod", "--install", "pip install dbtool")
    assert run.code == 0, run.all
    assert (tmp_path / ".gitpod.yml").read_text() == "tasks: []\n"
    assert "skipped  .gitpod.yml (exists); add this task to it:" in run.out
    assert '  - name: database\n    before: "command -v dbtool >/dev/null 2>&1 || pip install dbtool"\n' in run.out
