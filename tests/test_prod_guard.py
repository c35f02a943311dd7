"""Writes to prod ask for the database name in a terminal, take --yes, and refuse otherwise."""

from __future__ import annotations

import os
import pty
import subprocess
import time

import pytest

from tests.helpers import REPO, dbtool, error_line, script


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


def in_terminal(args: list[str], answer: str, env: dict[str, str]) -> tuple[int, str]:
    """Run a bin script on a real pseudo-terminal, answer its prompt, return exit code and screen."""
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [str(REPO / "bin" / args[0]), *args[1:]],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**os.environ, **env},
        close_fds=True,
    )
    os.close(slave)
    screen = b""
    deadline = time.monotonic() + 60
    answered = False
    while time.monotonic() < deadline:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break  # the child closed the terminal
        if not chunk:
            break
        screen += chunk
        if not answered and b"to continue" in screen:
            os.write(master, answer.encode() + b"\n")
            answered = True
    os.close(master)
    return process.wait(timeout=30), screen.decode(errors="replace")


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
