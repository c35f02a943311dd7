"""`dbtool wait` and `--wait`: for workspace start scripts that run before the database is up."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dbtool.local.cluster import Cluster, find_bindir, free_port, service_user
from tests.conftest import LOCAL_PASSWORD, LOCAL_USER
from tests.helpers import dbtool, error_line
from tests.services import closed_port_url


@pytest.fixture
def late_server(workdir: Path, project, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    """A server that starts accepting connections about 1.5 s after the test begins."""
    cluster = Cluster(workdir / f"late-{free_port()}", free_port(), find_bindir(), service_user())
    cluster.init(LOCAL_USER, LOCAL_PASSWORD)
    monkeypatch.setenv("CONNECTION_URL", cluster.url(LOCAL_USER, LOCAL_PASSWORD, "cruddur"))
    starter = threading.Timer(1.5, cluster.start)
    starter.start()
    yield cluster
    starter.join()
    cluster.stop()


def test_wait_returns_once_a_late_server_is_up(late_server):
    started = time.monotonic()
    run = dbtool("wait", "--timeout", "30")
    assert run.code == 0, run.err
    assert time.monotonic() - started >= 1.0
    assert run.out.startswith(f"postgres@127.0.0.1:{late_server.port}/cruddur accepts connections (waited ")


def test_wait_option_on_a_command(late_server):
    run = dbtool("create", "--wait")
    assert run.code == 0, run.err
    assert run.out.strip() == "created database cruddur"


def test_a_server_that_never_comes_up_times_out(project, monkeypatch):
    port = closed_port_url().rsplit(":", 1)[1].strip("/")
    monkeypatch.setenv("CONNECTION_URL", f"postgresql://postgres@127.0.0.1:{port}/cruddur")
    started = time.monotonic()
    run = dbtool("wait", "--timeout", "2")
    elapsed = time.monotonic() - started
    line = error_line(run)
    assert run.code == 1 and line.startswith(
        f"error: postgres@127.0.0.1:{port}/cruddur did not accept connections within 2 s: connection to"
    )
    assert 1.5 < elapsed < 8


def test_a_missing_database_counts_as_up(local):
    assert not local.exists()
    run = dbtool("wait", "--timeout", "5")
    assert run.code == 0 and "accepts connections" in run.out


def test_a_wrong_password_fails_at_once(local, monkeypatch):
    monkeypatch.setenv("CONNECTION_URL", local.url(password="wrong"))
    started = time.monotonic()
    line = error_line(dbtool("wait", "--timeout", "30"))
    assert line.startswith("error: authentication failed for postgres@127.0.0.1:")
    assert time.monotonic() - started < 5


def test_wait_timeout_must_be_positive(project):
    assert dbtool("wait", "--timeout", "0").code == 2
