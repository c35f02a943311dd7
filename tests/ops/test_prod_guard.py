"""Writes to prod ask for the database name in a terminal, take --yes, and refuse otherwise."""

from __future__ import annotations

import pytest

from tests.helpers import dbtool, error_line, in_terminal, script


@pytest.mark.parametrize("command", ["create", "drop", "schema-load", "seed", "setup"])
def test_prod_writes_refuse_without_terminal_and_yes(prod, command):
    prod.create()
    before = prod.dump()
    run = dbtool(command, "prod")
    assert run.code == 1
    assert error_line(run) == (
        f"error: refusing to change PRODUCTION cruddurroot@127.0.0.1:{prod.cluster.port}/cruddur without "
        "confirmation (run it in a terminal to be asked, or pass --yes)"
    )
    assert prod.exists() and prod.dump() == before


def test_bin_script_refuses_too(prod):
    run = script("db-drop", "prod")
    assert run.code == 1 and "refusing to change PRODUCTION" in error_line(run)
    prod.create()
    assert script("db-drop", "prod").code == 1
    assert prod.exists()


def test_local_writes_do_not_ask(local):
    assert dbtool("create").code == 0


def test_read_only_commands_do_not_ask(prod):
    assert dbtool("sessions", "prod").code == 0


def test_terminal_prompt_accepts_the_database_name(prod):
    code, screen = in_terminal(["db-create", "prod"], "cruddur", {"PROD_CONNECTION_URL": prod.url()})
    assert f"PRODUCTION: cruddurroot@127.0.0.1:{prod.cluster.port}/cruddur" in screen
    assert "Type the database name (cruddur) to continue" in screen
    assert code == 0, screen
    assert prod.exists()


def test_terminal_prompt_refuses_a_wrong_answer(prod):
    code, screen = in_terminal(["db-create", "prod"], "yes", {"PROD_CONNECTION_URL": prod.url()})
    assert code == 1
    assert "error: confirmation did not match the database name; nothing was changed" in screen
    assert not prod.exists()
