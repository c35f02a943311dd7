"""Running dbtool the ways users do: in-process through click, and through the real bin/ scripts."""

from __future__ import annotations

import os
import pty
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

from dbtool.cli import cli

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str

    @property
    def all(self) -> str:
        return self.out + self.err


def dbtool(*args: str, input: str | None = None) -> Run:
    """Run the click command in-process; stdin is never a terminal here."""
    result = CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)
    return Run(result.exit_code, result.stdout, result.stderr)


def script(
    name: str,
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    stdin: str | None = None,
) -> Run:
    """Run a real bin/ script as a subprocess, with no terminal on stdin (``stdin``, if given, through a pipe)."""
    result = subprocess.run(
        [str(REPO / "bin" / name), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        **({"input": stdin} if stdin is not None else {"stdin": subprocess.DEVNULL}),
    )
    return Run(result.returncode, result.stdout, result.stderr)


def error_line(run: Run) -> str:
    """The one stderr line of a failure; fails the test if there is more than one line or a traceback."""
    lines = [line for line in run.err.splitlines() if line.strip()]
    assert "Traceback" not in run.all, run.all
    assert len(lines) == 1, run.err
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


def in_terminal(args: list[str], answer: str | None, env: dict[str, str]) -> tuple[int, str]:
    """Run a bin script on a real pseudo-terminal, answer its prompt if any, return exit code and screen."""
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
        if answer is not None and not answered and b"to continue" in screen:
            os.write(master, answer.encode() + b"\n")
            answered = True
    os.close(master)
    return process.wait(timeout=30), screen.decode(errors="replace")
