"""``dbtool migrate check`` (issue 23, parts 2 and 3): the pending migrations replayed on a throwaway copy of the
target's schema, each statement's locks on existing tables (pg_locks), rewrites (relfilenode) and hazards; a
hazard acknowledged in the migration; and protected targets refusing the ones nobody acknowledged."""

from __future__ import annotations

import json

import psycopg
import pytest

from tests.conftest import Server
from tests.helpers import dbtool, error_line
from tests.migrations.test_migrations import V1, V2, applied, rows
from tests.migrations.test_migrations import write as migration

EXISTING = """
CREATE TABLE items (id int PRIMARY KEY, name varchar(50), price int, note text);
CREATE TABLE owners (id int PRIMARY KEY);
CREATE TABLE proved (id int PRIMARY KEY, email text, CONSTRAINT email_present CHECK (email IS NOT NULL));
CREATE UNIQUE INDEX items_note_key ON items (note);
INSERT INTO items VALUES (1, 'one', 10, NULL);
"""


@pytest.fixture(autouse=True)
def scripts_use_the_project(project, monkeypatch):
    monkeypatch.setenv("DBTOOL_PROJECT_ROOT", str(project))


def existing(server: Server) -> Server:
    server.create()
    with psycopg.connect(server.url()) as conn:
        conn.execute(EXISTING)
    return server


@pytest.fixture
def db(local: Server) -> Server:
    return existing(local)


def check(*args: str) -> tuple[int, dict]:
    run = dbtool("migrate", "check", *args, "--json")
    assert "Traceback" not in run.all and run.code in (0, 1) and run.out.startswith("{"), run.all
    return run.code, json.loads(run.out)


def hazards(report: dict) -> list[str]:
    return [hazard["name"] for statement in report["statements"] for hazard in statement["hazards"]]


# (up section, its options, the hazards expected): each hazard beside a near case that must not be flagged
CASES = {
    "index on an existing table": ("CREATE INDEX items_name ON items (name);", "", ["index-not-concurrent"]),
    "index built concurrently": ("CREATE INDEX CONCURRENTLY items_name ON items (name);", "transaction:false", []),
    "index on a table this migration creates": ("CREATE TABLE t (a int);\nCREATE INDEX t_a ON t (a);", "", []),
    "check constraint validated at once": (
        "ALTER TABLE items ADD CONSTRAINT price_positive CHECK (price > 0);",
        "",
        ["constraint-not-valid"],
    ),
    "check constraint NOT VALID": ("ALTER TABLE items ADD CONSTRAINT p CHECK (price > 0) NOT VALID;", "", []),
    "foreign key validated at once": (
        "ALTER TABLE items ADD CONSTRAINT fk FOREIGN KEY (id) REFERENCES owners (id);",
        "",
        ["constraint-not-valid"],
    ),
    "foreign key NOT VALID": ("ALTER TABLE items ADD FOREIGN KEY (id) REFERENCES owners (id) NOT VALID;", "", []),
    "unique constraint building its index": (
        "ALTER TABLE items ADD CONSTRAINT items_name_key UNIQUE (name);",
        "",
        ["constraint-builds-index"],
    ),
    "unique constraint using an index": (
        "ALTER TABLE items ADD CONSTRAINT items_note_unique UNIQUE USING INDEX items_note_key;",
        "",
        [],
    ),
    "set not null": ("ALTER TABLE items ALTER COLUMN name SET NOT NULL;", "", ["set-not-null"]),
    "set not null proved by a validated check": ("ALTER TABLE proved ALTER COLUMN email SET NOT NULL;", "", []),
    "set not null after a check validated in the same run": (
        "ALTER TABLE items ADD CONSTRAINT name_present CHECK (name IS NOT NULL) NOT VALID;\n"
        "ALTER TABLE items VALIDATE CONSTRAINT name_present;\n"
        "ALTER TABLE items ALTER COLUMN name SET NOT NULL;",
        "",
        [],
    ),
    "volatile default": ("ALTER TABLE items ADD COLUMN id2 uuid DEFAULT gen_random_uuid();", "", ["volatile-default"]),
    "stable default": ("ALTER TABLE items ADD COLUMN created_at timestamptz DEFAULT now();", "", []),
    "serial column": ("ALTER TABLE items ADD COLUMN seq bigserial;", "", ["volatile-default"]),
    "type change that rewrites": ("ALTER TABLE items ALTER COLUMN price TYPE bigint;", "", ["column-type"]),
    "type change that widens": ("ALTER TABLE items ALTER COLUMN name TYPE varchar(100);", "", []),
    "stored generated column": (
        "ALTER TABLE items ADD COLUMN total int GENERATED ALWAYS AS (price * 2) STORED;",
        "",
        ["table-rewrite"],
    ),
    "a rewrite only the replay sees": ("VACUUM FULL items;", "transaction:false", ["table-rewrite"]),
    "a plain new column": ("ALTER TABLE items ADD COLUMN bio text;", "", []),
    "rename a column": ("ALTER TABLE items RENAME COLUMN note TO remark;", "", ["rename"]),
    "rename a table": ("ALTER TABLE items RENAME TO products;", "", ["rename"]),
    "rename in a table this run creates": ("CREATE TABLE t (a int);\nALTER TABLE t RENAME COLUMN a TO b;", "", []),
    "drop a column": ("ALTER TABLE items DROP COLUMN note;", "", ["drop"]),
    "drop a table": ("DROP TABLE owners;", "", ["drop"]),
    "drop a constraint": ("ALTER TABLE proved DROP CONSTRAINT email_present;", "", []),
    "drop a table this run creates": ("CREATE TABLE t (a int);\nDROP TABLE t;", "", []),
    "a drop inside a DO block": (
        "DO $$\nBEGIN\n  IF EXISTS (SELECT 1 FROM pg_attribute WHERE attname = 'note') THEN\n"
        "    ALTER TABLE items DROP COLUMN note;\n  END IF;\nEND $$;",
        "",
        ["drop"],
    ),
    "a DO block making its own table and index": (
        "DO $body$ BEGIN\n  CREATE TABLE IF NOT EXISTS t (a int);\n  CREATE INDEX IF NOT EXISTS t_a ON t (a);\n"
        "EXCEPTION WHEN duplicate_object THEN NULL;\nEND $body$;",
        "",
        [],
    ),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_each_hazard_beside_a_case_that_is_not_one(db, project, case):
    up, options, expected = CASES[case]
    migration(project, V1, "change", up, up_opts=options)
    code, report = check()
    assert hazards(report) == expected, report
    assert code == (1 if expected else 0)
    assert report["replayed"] and report["pending"] == [f"db/migrations/{V1}_change.sql"]
    for statement in report["statements"]:
        for hazard in statement["hazards"]:
            assert hazard["reason"] and hazard["safe"] and hazard["allowed"] is None
    assert applied(db) == []  # the target was only read


def test_locks_rewrites_and_lines_are_reported_per_statement(db, project):
    migration(
        project,
        V1,
        "two",
        "-- a comment\nALTER TABLE items ADD COLUMN bio text;\n\nALTER TABLE items\n  ALTER COLUMN price TYPE bigint;",
    )
    migration(project, V2, "index", "CREATE TABLE fresh (a int);\nCREATE INDEX items_price ON items (price);")
    code, report = check()
    assert code == 1
    by_line = {(s["file"].rsplit("_", 1)[-1], s["line"]): s for s in report["statements"]}
    bio = by_line[("two.sql", 3)]
    assert bio["locks"] == [{"table": "items", "mode": "ACCESS EXCLUSIVE"}] and bio["rewrites"] == []
    assert by_line[("two.sql", 5)]["rewrites"] == ["items"]
    assert by_line[("two.sql", 5)]["locks"] == []  # already held by this migration's transaction
    assert by_line[("index.sql", 2)]["locks"] == []  # a table the run creates is not one that existed
    assert by_line[("index.sql", 3)]["locks"] == [{"table": "items", "mode": "SHARE"}]
    run = dbtool("migrate", "check")
    assert run.code == 1
    lines = run.out.splitlines()
    assert f"db/migrations/{V1}_two.sql:3: ALTER TABLE items ADD COLUMN bio text" in lines
    assert "  locks items ACCESS EXCLUSIVE" in lines
    assert any(line.startswith("  hazard column-type: changing the type of items.price rewrites") for line in lines)
    assert any(line.startswith("    safe: ") for line in lines)
    assert lines[-1].startswith("2 pending migrations on ") and "2 hazards (0 acknowledged)" in lines[-1]


def test_an_acknowledged_hazard_passes_and_is_shown_with_its_reason(db, project):
    migration(
        project,
        V1,
        "index",
        "-- dbtool:allow index-not-concurrent: items holds a dozen rows\nCREATE INDEX items_name ON items (name);\n"
        "ALTER TABLE items DROP COLUMN note;",
    )
    code, report = check()
    assert code == 1 and [h["allowed"] for s in report["statements"] for h in s["hazards"]] == [
        "items holds a dozen rows",
        None,
    ]  # one comment accepts one hazard of the statement after it
    migration(
        project,
        V1,
        "index",
        "-- dbtool:allow index-not-concurrent: items holds a dozen rows\nCREATE INDEX items_name ON items (name);\n"
        "-- dbtool:allow drop: no release reads note since v12\nALTER TABLE items DROP COLUMN note;",
    )
    run = dbtool("migrate", "check")
    assert run.code == 0, run.all
    assert "  allowed index-not-concurrent: items holds a dozen rows" in run.out.splitlines()
    assert "2 hazards (2 acknowledged)" in run.out


@pytest.mark.parametrize(
    ("comment", "message"),
    [
        ("-- dbtool:allow drop", "'dbtool:allow drop' gives no reason"),
        ("-- dbtool:allow drop:   ", "'dbtool:allow drop' gives no reason"),
        ("-- dbtool:allow dorp: typo", "unknown hazard 'dorp' in dbtool:allow"),
    ],
)
def test_an_acknowledgement_needs_a_known_name_and_a_reason(db, project, comment, message):
    migration(project, V1, "drop", f"{comment}\nALTER TABLE items DROP COLUMN note;")
    line = error_line(dbtool("migrate", "check"))
    assert line.startswith(f"error: db/migrations/{V1}_drop.sql:3: {message}"), line


def test_a_migration_that_fails_on_the_copy_is_named_and_nothing_is_left(db, project):
    migration(project, V1, "bad", "ALTER TABLE items ADD COLUMN bio text;\nALTER TABLE nowhere ADD COLUMN x int;")
    line = error_line(dbtool("migrate", "check"))
    assert line.startswith(f'error: db/migrations/{V1}_bad.sql:3:1: relation "nowhere" does not exist'), line
    assert rows(db, "SELECT count(*) FROM pg_database WHERE datname LIKE '%dbtool_check%'") == [(0,)]
    assert rows(db, "SELECT count(*) FROM information_schema.columns WHERE column_name = 'bio'") == [(0,)]


def test_nothing_pending(db, project):
    run = dbtool("migrate", "check")
    assert run.code == 0 and run.out.startswith("nothing pending on "), run.all


def test_prod_is_replayed_on_the_local_server_and_only_read(local, prod, project):
    existing(prod)
    local.create()
    migration(project, V1, "index", "CREATE INDEX items_name ON items (name);")
    code, report = check("prod")
    assert code == 1 and hazards(report) == ["index-not-concurrent"]
    assert report["copy"].startswith("pg_dump --schema-only of ")
    versions = report["server_versions"]
    assert versions["target"] == versions["copy"] >= 150000  # the same major here: the run says nothing of it
    assert applied(prod) == [] and rows(prod, "SELECT count(*) FROM pg_indexes WHERE tablename = 'items'") == [(2,)]
    assert rows(prod, "SELECT count(*) FROM pg_database WHERE datname LIKE '%dbtool_check%'") == [(0,)]


def test_without_a_replay_the_rules_read_the_targets_catalog(prod, project):
    existing(prod)
    migration(project, V1, "index", "CREATE INDEX items_name ON items (name);\nALTER TABLE items ADD COLUMN b text;")
    code, report = check("prod", "--no-replay")
    assert code == 1 and hazards(report) == ["index-not-concurrent"] and not report["replayed"]
    assert all(statement["locks"] == [] for statement in report["statements"])


def test_over_the_data_api(data_api, local, project):
    local.create()
    (project / "db" / "schema.sql").write_text(EXISTING)
    existing(data_api.db)
    migration(project, V1, "index", "CREATE INDEX items_name ON items (name);\nALTER TABLE items ADD COLUMN b text;")
    code, report = check("prod")
    assert code == 1 and hazards(report) == ["index-not-concurrent"]
    assert report["copy"].startswith("db/schema.sql and the applied migrations")
    assert report["statements"][1]["locks"] == [{"table": "items", "mode": "ACCESS EXCLUSIVE"}]
    code, report = check("prod", "--no-replay")
    assert code == 1 and hazards(report) == ["index-not-concurrent"]


# -- protected targets refuse unacknowledged hazards ----------------------------------------------------------


def test_migrate_on_prod_refuses_an_unacknowledged_hazard_before_anything_is_applied(prod, project):
    existing(prod)
    migration(project, V1, "safe", "CREATE TABLE fine (a int);")
    migration(project, V2, "index", "ALTER TABLE items ADD COLUMN b text;\nCREATE INDEX items_name ON items (name);")
    line = error_line(dbtool("migrate", "prod", "--yes"))
    assert line.startswith(
        f"error: db/migrations/{V2}_index.sql:3: index-not-concurrent: CREATE INDEX on items blocks its writes"
    ), line
    assert "nothing was applied; CREATE INDEX CONCURRENTLY" in line and "-- dbtool:allow index-not-concurrent:" in line
    assert applied(prod) == []
    migration(
        project,
        V2,
        "index",
        "ALTER TABLE items ADD COLUMN b text;\n-- dbtool:allow index-not-concurrent: a dozen rows\n"
        "CREATE INDEX items_name ON items (name);",
    )
    run = dbtool("migrate", "prod", "--yes")
    assert run.code == 0, run.all
    assert applied(prod) == [V1, V2]


def test_up_on_prod_refuses_too_but_not_on_a_database_it_builds(prod, project):
    (project / "db" / "schema.sql").write_text(EXISTING)
    migration(project, V1, "index", "CREATE INDEX items_name ON items (name);")
    run = dbtool("up", "prod", "--yes")  # creates the database, loads the schema: nothing live to harm
    assert run.code == 0, run.all
    assert applied(prod) == [V1]
    migration(project, V2, "drop", "ALTER TABLE items DROP COLUMN note;")
    line = error_line(dbtool("up", "prod", "--yes"))
    assert f"db/migrations/{V2}_drop.sql:2: drop: dropping column items.note" in line
    assert applied(prod) == [V1]


def test_local_migrate_does_not_check(db, project):
    migration(project, V1, "index", "CREATE INDEX items_name ON items (name);")
    assert dbtool("migrate").code == 0
    assert applied(db) == [V1]


def test_a_declared_protected_target_refuses_as_prod_does(local, project, monkeypatch):
    existing(local)
    monkeypatch.setenv("STAGING_CONNECTION_URL", local.url())
    (project / "dbtool.toml").write_text('[targets.staging]\nurl_env = "STAGING_CONNECTION_URL"\nprotected = true\n')
    migration(project, V1, "rename", "ALTER TABLE items RENAME COLUMN note TO remark;")
    line = error_line(dbtool("migrate", "staging", "--yes"))
    assert "rename: renaming column items.note breaks the release still running" in line
    assert applied(local) == []
