"""Every command in one table: the module that defines it, and the ``bin/`` script that runs it.

The click group loads a command's module from here on demand, ``dbtool init`` writes the scripts
named here, and the tests check the help, the README and ``bin/`` against it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    name: str  # as typed after dbtool
    module: str  # dbtool.cli.<module> defines it
    script: str | None = None  # the bin/ script that runs it, if any


COMMANDS = (
    Command("create", "database", "db-create"),
    Command("drop", "database", "db-drop"),
    Command("schema-load", "database", "db-schema-load"),
    Command("seed", "database", "db-seed"),
    Command("setup", "database", "db-setup"),
    Command("up", "database", "db-up"),
    Command("connect", "inspect", "db-connect"),
    Command("sessions", "inspect", "db-sessions"),
    Command("wait", "inspect"),
    Command("doctor", "inspect", "db-doctor"),
    Command("extensions", "inspect"),
    Command("update-sg-rule", "aws", "rds-update-sg-rule"),
    Command("local", "local"),
    Command("migrate", "migrate", "db-migrate"),
    Command("rollback", "migrate", "db-rollback"),
    Command("schema", "migrate"),
    Command("deploy", "deploy"),
    Command("init", "project"),
)
# command -> the dbtool.cli module that registers it
MODULES = {command.name: command.module for command in COMMANDS}
# bin script -> the command it runs
SCRIPTS = {command.script: command.name for command in COMMANDS if command.script}
