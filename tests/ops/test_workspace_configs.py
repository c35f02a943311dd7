"""The workspace configurations parse, and every command they run exists and accepts its options."""

from __future__ import annotations

import json
import os
import shlex

import pytest
import yaml

from dbtool.cli import cli
from tests.helpers import REPO, dbtool

SCRIPT_COMMANDS = {"dbtool": None, "rds-update-sg-rule": "update-sg-rule"}


def devcontainer() -> dict:
    return json.loads((REPO / ".devcontainer" / "devcontainer.json").read_text())


def gitpod() -> dict:
    return yaml.safe_load((REPO / ".gitpod.yml").read_text())


def commands_in(text: str) -> list[list[str]]:
    """Each ``./bin/…`` command of a shell snippet, split like the shell would."""
    found = []
    for line in text.replace("&&", "\n").splitlines():
        words = shlex.split(line)
        if words and words[0].startswith("./bin/"):
            found.append(words)
    return found


def assert_runs(words: list[str]) -> None:
    """The script exists and is executable, and dbtool parses its arguments (checked with --help)."""
    script = REPO / words[0]
    assert script.is_file() and os.access(script, os.X_OK), words
    name = script.name
    if name.startswith("db-"):
        args = [name.removeprefix("db-"), *words[1:]]
    elif SCRIPT_COMMANDS.get(name):
        args = [SCRIPT_COMMANDS[name], *words[1:]]
    else:
        args = words[1:]
    assert args[0] in cli.commands, words
    run = dbtool(*args, "--help")  # an unknown option or argument fails here, before --help is acted on
    assert run.code == 0, (words, run.err)


def test_devcontainer_sets_up_and_updates_the_rule():
    config = devcontainer()
    assert "postgresql" in config["onCreateCommand"] and "python" in config["image"]
    setup, start = commands_in(config["postCreateCommand"]), commands_in(config["postStartCommand"])
    assert setup == [["./bin/db-setup"]]
    assert start == [["./bin/rds-update-sg-rule", "--quiet"]]
    for words in setup + start:
        assert_runs(words)


def test_gitpod_uses_a_command_task_for_the_rule():
    [task] = gitpod()["tasks"]
    assert "before" not in task  # before: runs in prebuilds too, without the workspace's IP or credentials
    assert commands_in(task["init"]) == [["./bin/db-setup"]]
    started = commands_in(task["command"])
    assert ["./bin/rds-update-sg-rule", "--quiet"] in started
    for words in commands_in(task["init"]) + started:
        assert_runs(words)


def test_compose_has_a_healthchecked_loopback_only_postgres():
    service = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["db"]
    assert service["image"].startswith("postgres:")
    assert "pg_isready" in " ".join(service["healthcheck"]["test"])
    assert all(port.startswith("127.0.0.1:") for port in service["ports"])


@pytest.mark.parametrize("words", [["./bin/db-nonexistent"], ["./bin/rds-update-sg-rule", "--quietly"]])
def test_the_checker_catches_a_wrong_command(words):
    with pytest.raises(AssertionError):
        assert_runs(words)
