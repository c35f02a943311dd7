"""sessions lists pg_stat_activity: own session marked, workers hidden, works for non-superusers."""

from __future__ import annotations

import json

import psycopg

from tests.helpers import dbtool, error_line


def sessions(*args: str) -> list[dict]:
    run = dbtool("sessions", *args, "--json")
    assert run.code == 0, run.all
    return json.loads(run.out)


def test_json_lists_own_and_other_sessions(local):
    local.create()
    with psycopg.connect(local.url(), application_name="cruddur-backend") as other:
        rows = sessions()
        mine = [row for row in rows if row["is_self"]]
        assert len(mine) == 1 and mine[0]["application"] == "dbtool" and mine[0]["database"] == "cruddur"
        theirs = [row for row in rows if row["pid"] == other.info.backend_pid]
        assert theirs and theirs[0]["application"] == "cruddur-backend" and theirs[0]["state"] == "idle"
        assert theirs[0]["client"] == "127.0.0.1" and theirs[0]["state_seconds"] >= 0
        assert {row["backend_type"] for row in rows} == {"client backend"}


def test_all_includes_background_workers(local):
    local.create()
    assert "checkpointer" in {row["backend_type"] for row in sessions("--all")}


def test_table_marks_own_session(local):
    local.create()
    with psycopg.connect(local.url(), application_name="cruddur-backend") as other:
        other_pid = other.info.backend_pid
        run = dbtool("sessions")
    assert run.code == 0
    rows = [line.split("│")[1:-1] for line in run.out.splitlines() if line.startswith("│")]
    cells = {row[0].strip(): [cell.strip() for cell in row] for row in rows}
    theirs = cells[str(other_pid)]
    assert theirs[1:6] == ["postgres", "cruddur", "127.0.0.1", "cruddur-backend", "idle"]
    mine = [cells[pid] for pid in cells if pid.endswith("*")]
    assert len(mine) == 1 and mine[0][4] == "dbtool" and mine[0][5] == "active"
    assert run.out.rstrip().endswith("* this session")


def test_works_when_the_database_is_missing(local):
    rows = sessions()
    assert any(row["is_self"] and row["database"] == "postgres" for row in rows)


def test_non_superuser_and_rdsadmin_hidden(local, monkeypatch):
    local.create()
    with local.admin() as admin:
        for role in ("app_user", "rdsadmin"):
            admin.execute(f"DROP ROLE IF EXISTS {role}")
            admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw-{role}'")
    with (
        psycopg.connect(local.url(user="rdsadmin", password="pw-rdsadmin")) as hidden,
        psycopg.connect(local.url()) as superuser,
    ):
        superuser.execute("SELECT 1")
        monkeypatch.setenv("CONNECTION_URL", local.url(user="app_user", password="pw-app_user"))
        rows = sessions()
        assert hidden.info.backend_pid not in {row["pid"] for row in rows}
        assert "rdsadmin" not in {row["user"] for row in rows}
        other = next(row for row in rows if row["pid"] == superuser.info.backend_pid)
        assert other["query"] == "<insufficient privilege>"
        assert [row["user"] for row in rows if row["is_self"]] == ["app_user"]


def test_sessions_error_is_one_line(monkeypatch):
    monkeypatch.setenv("CONNECTION_URL", "postgresql://u:pw@127.0.0.1:1/db")
    assert error_line(dbtool("sessions")).startswith("error: connection to u@127.0.0.1:1/db refused")
