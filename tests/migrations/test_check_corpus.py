"""``migrate check`` on real migrations nobody here wrote: Supabase's auth server, 70 files from 2021 to 2026
(``tests/corpus/supabase-auth``, see SOURCES.md). The first 31 are applied as history; the 39 after 2023-01-01
are checked. PostgreSQL is the reference: the replay's pg_locks and relfilenodes say what each statement really
does, and the rules alone (what ``migrate prod``, ``up prod`` and the deploy handler run, with no server to
replay on) must find what the full check finds, statement by statement."""

from __future__ import annotations

import json
import re
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.conftest import Server
from tests.helpers import dbtool

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "supabase-auth"
NAMESPACE = re.compile(r'\{\{ ?index \.Options "Namespace" ?\}\}')
SPLIT = 20230101000000  # applied before, checked from here


@pytest.fixture(autouse=True)
def scripts_use_the_project(project, monkeypatch):
    monkeypatch.setenv("DBTOOL_PROJECT_ROOT", str(project))


def add(project, path) -> None:
    """A migration file of Supabase's as dbmate's format: the schema template filled in as their migrator does."""
    version, rest = path.name.split("_", 1)
    name = rest.removesuffix(".up.sql").replace(".", "_")
    text = NAMESPACE.sub("auth", path.read_text())
    folder = project / "db" / "migrations"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{version.zfill(14)}_{name}.sql").write_text(f"-- migrate:up\n{text}\n")


@pytest.fixture
def history(local: Server, project):
    local.create()
    with psycopg.connect(local.url()) as conn:  # what their migrator and Supabase's roles provide
        conn.execute("CREATE SCHEMA auth; CREATE TABLE auth.schema_migrations (version varchar(14) PRIMARY KEY)")
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'postgres'").fetchone():
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier("postgres")))
    files = sorted(CORPUS.glob("*.up.sql"), key=lambda path: int(path.name.split("_")[0]))
    assert len(files) == 70
    for path in files:
        if int(path.name.split("_")[0]) < SPLIT:
            add(project, path)
    run = dbtool("migrate")
    assert run.code == 0 and run.out.startswith("applied 31 migrations"), run.all
    for path in files:
        if int(path.name.split("_")[0]) >= SPLIT:
            add(project, path)
    return local


def check(*args: str) -> dict:
    run = dbtool("migrate", "check", "--json", *args)
    assert run.code == 1 and run.out.startswith("{"), run.all
    report = json.loads(run.out)
    assert len(report["pending"]) == 39
    return {(s["file"].split("/")[-1], s["line"]): s for s in report["statements"]}


def names(statement: dict) -> list[str]:
    return [hazard["name"] for hazard in statement["hazards"]]


def test_the_rules_alone_find_what_the_replay_finds_on_real_migrations(history):
    replayed, rules = check(), check("--no-replay")
    assert replayed.keys() == rules.keys() and len(replayed) == 93
    assert {key: names(s) for key, s in replayed.items()} == {key: names(s) for key, s in rules.items()}
    for key, statement in replayed.items():
        modes = {lock["mode"] for lock in statement["locks"]}
        if statement["rewrites"] or "SHARE" in modes:  # what PostgreSQL says blocks writers for a while
            assert statement["hazards"], (key, statement)


@pytest.mark.parametrize(
    ("where", "expected", "rewrites"),
    [
        # ADD COLUMN id uuid DEFAULT gen_random_uuid() PRIMARY KEY on a table with rows: a rewrite and an index
        (("20231117164230_add_id_pkey_identities.sql", 13), ["volatile-default", "constraint-builds-index"], True),
        # inside DO $$ … IF NOT EXISTS … THEN: RENAME COLUMN id TO provider_id, and DROP COLUMN ip_address
        (("20231117164230_add_id_pkey_identities.sql", 2), ["rename"], False),
        (("20240115144230_remove_ip_address_from_saml_relay_state.sql", 2), ["drop"], False),
        # CREATE INDEX on auth.users, a DO block's second statement
        (("20240214120130_add_is_anonymous_column.sql", 2), ["index-not-concurrent"], False),
        # phone varchar(15) to text, in a DO block: binary compatible, no rewrite, no hazard
        (("20230116124310_alter_phone_type.sql", 4), [], False),
        # a CHECK added to auth.sessions without NOT VALID
        (("20251111201300_add_scopes_to_sessions.sql", 10), ["constraint-not-valid"], False),
    ],
)
def test_what_real_statements_do(history, where, expected, rewrites):
    statement = check()[where]
    assert names(statement) == expected, statement
    assert bool(statement["rewrites"]) == rewrites, statement
