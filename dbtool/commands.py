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
    section: str = "Daily"  # where dbtool --help lists it


# The help's sections, in order; commands are listed in this table's order within each.
SECTIONS = ("Start here", "Daily", "Migrations", "AWS and deploy")
START = "Start here"

COMMANDS = (
    Command("init", "project", section=START),
    Command("setup", "database", "db-setup", section=START),
    Command("up", "database", "db-up", section=START),
    Command("connect", "inspect", "db-connect"),
    Command("create", "database", "db-create"),
    Command("drop", "database", "db-drop"),
    Command("schema-load", "database", "db-schema-load"),
    Command("seed", "database", "db-seed"),
    Command("sessions", "inspect", "db-sessions"),
    Command("doctor", "inspect", "db-doctor"),
    Command("wait", "inspect"),
    Command("extensions", "inspect"),
    Command("local", "local"),
    Command("migrate", "migrate", "db-migrate", section="Migrations"),
    Command("rollback", "migrate", "db-rollback", section="Migrations"),
    Command("schema", "migrate", section="Migrations"),
    Command("drift", "migrate", section="Migrations"),
    Command("update-sg-rule", "aws", "rds-update-sg-rule", section="AWS and deploy"),
    Command("deploy", "deploy", section="AWS and deploy"),
)
# command -> the dbtool.cli module that registers it
MODULES = {command.name: command.module for command in COMMANDS}
# bin script -> the command it runs
SCRIPTS = {command.script: command.name for command in COMMANDS if command.script}
