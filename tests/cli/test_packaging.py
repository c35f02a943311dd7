"""Startup stays light, help documents every command, SQL files ship, the README stays true."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib

from dbtool import queries
from dbtool.cli import cli
from dbtool.commands import COMMANDS as REGISTRY
from tests.helpers import REPO, dbtool

COMMANDS = [command.name for command in REGISTRY]


HEAVY = ("psycopg", "boto3", "botocore", "rich", "dotenv", "click", "typing")


def _help_probe(argv: list[str], columns: str) -> list[str]:
    """Run the console script's main() with ``argv``; its output, then the heavy modules it imported."""
    probe = (
        f"import sys\nfrom dbtool.cli import main\nsys.argv = {['dbtool', *argv]!r}\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    env = {**os.environ, "COLUMNS": columns}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env)
    return result.stdout.splitlines()


def test_help_imports_nothing_heavy_not_even_click():
    for flag in ("--help", "-h"):
        *text, imported = _help_probe([flag], "120")
        assert imported == "[]", flag
        assert "\n".join(text) + "\n" == (REPO / "dbtool" / "cli" / "help.txt").read_text()


def test_the_help_copy_is_clicks_own_rendering():
    from dbtool.cli.helptext import render

    assert (REPO / "dbtool" / "cli" / "help.txt").read_text() == render(), (
        "dbtool/cli/help.txt is stale: run .venv/bin/python -m dbtool.cli.helptext"
    )


def test_a_narrow_terminal_and_other_commands_still_get_click():
    *text, imported = _help_probe(["--help"], "60")
    assert "'click'" in imported and "'psycopg'" not in imported
    assert max(len(line) for line in text) <= 58 and text[0] == "Usage: dbtool [OPTIONS] COMMAND [ARGS]..."
    *text, imported = _help_probe(["setup", "--help"], "120")
    assert "'click'" in imported and "'psycopg'" not in imported and "--no-template" in "\n".join(text)


def test_targets_without_aws_settings_never_import_boto3():
    probe = (
        "import os, sys\nfrom dbtool.targets.resolve import resolve_target\n"
        "os.environ['CONNECTION_URL'] = 'postgresql://u:p@127.0.0.1/db'\n"
        "os.environ['PROD_CONNECTION_URL'] = 'postgresql://u:p@db.example.com/db'\n"
        "resolve_target('local'); resolve_target('prod')\n"
        "print(sorted(m for m in ('boto3', 'botocore', 'click') if m in sys.modules))"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PROD_DB_", "AWS_"))}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env)
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_each_command_loads_only_its_own_module():
    from dbtool.cli.main import COMMAND_MODULES

    assert {name: command.callback.__module__ for name, command in cli.commands.items()} == {
        name: f"dbtool.cli.{module}" for name, module in COMMAND_MODULES.items()
    }
    probe = (
        "import sys\nfrom dbtool.cli import main\nsys.argv = ['dbtool', 'setup', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('dbtool.cli.')))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    # main and its helper usage (what was typed), and the one command's module
    assert result.stdout.strip().splitlines()[-1] == "['dbtool.cli.database', 'dbtool.cli.main', 'dbtool.cli.usage']"


def test_every_command_has_a_summary_and_example():
    assert sorted(cli.commands) == sorted(COMMANDS)
    for name in COMMANDS:
        run = dbtool(name, "--help")
        assert run.code == 0, name
        if name != "local":
            assert "Example: dbtool " + name in " ".join(run.out.split()), name


def test_readme_documents_every_command_and_variable():
    readme = (REPO / "README.md").read_text()
    for name in COMMANDS:
        assert f"`{name}" in readme or f"dbtool {name}" in readme, name
    example = (REPO / ".env.example").read_text()
    for variable in re.findall(r"^#? ?([A-Z_]+)=", example, flags=re.M):
        assert variable in readme, variable


def test_every_query_used_has_a_file_with_a_purpose_and_ships():
    used = set()
    for path in (REPO / "dbtool").rglob("*.py"):
        used |= set(re.findall(r'queries\.get\("(\w+)"\)', path.read_text()))
    assert used >= {"sessions", "database_exists", "database_sessions"}
    for name in used:
        assert queries.get(name).startswith("-- purpose: "), name
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "queries/*.sql" in package_data["dbtool"]


# A folder imports only from folders below it (the README's "Layout"); errors and queries are the floor.
LAYERS = {
    "errors": 0,
    "queries": 0,
    "aws": 1,
    "local": 1,
    "targets": 2,
    "engine": 3,
    "commands": 0,  # dbtool/commands.py, the command table: a floor module
    "textfile": 0,  # dbtool/textfile.py, reading the project's files: a floor module
    "app": 4,
    "migrations": 4,
    "ops": 5,
    "deploy": 6,
    "cli": 7,
}


def test_no_module_imports_from_a_folder_above_its_own():
    package = REPO / "dbtool"
    folders = {path.name for path in package.iterdir() if (path / "__init__.py").exists()} - {"queries"}
    assert folders <= set(LAYERS), folders - set(LAYERS)
    upward = []
    for path in package.rglob("*.py"):
        parts = path.relative_to(package).parts
        if len(parts) == 1:
            continue
        own = parts[0]
        for other in re.findall(r"^\s*(?:from|import) dbtool\.(\w+)", path.read_text(), flags=re.M):
            if other != own and LAYERS[other] >= LAYERS[own]:
                upward.append(f"{path.relative_to(REPO)} imports dbtool.{other}")
    assert upward == []


def test_no_module_is_over_three_hundred_lines_in_cli():
    for path in (REPO / "dbtool" / "cli").glob("*.py"):
        assert len(path.read_text().splitlines()) <= 300, path.name


def test_only_targets_and_engine_ask_which_transport_a_target_has():
    asking = []
    for path in (REPO / "dbtool").rglob("*.py"):
        if path.relative_to(REPO / "dbtool").parts[0] in ("targets", "engine"):
            continue
        if re.search(r"\.data_api is (?:not )?None", path.read_text()):
            asking.append(str(path.relative_to(REPO)))
    assert asking == []  # the rest asks target.transport what it can do


def test_the_command_table_matches_bin_and_the_readme():
    from dbtool.commands import SCRIPTS

    scripts = {path.name for path in (REPO / "bin").iterdir()} - {"dbtool", "_dbtool", "run-tests", "_test-needs"}
    assert scripts == set(SCRIPTS)
    readme = (REPO / "README.md").read_text()
    for script, command in SCRIPTS.items():
        assert f"`{script.removeprefix('db-')}" in readme or f"`{script}`" in readme, script
        assert f"`dbtool {command}" in readme, command
