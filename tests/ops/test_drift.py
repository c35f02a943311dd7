"""Drift against a reference (issue 23, parts 4 and 5): the catalog description that ``dbtool drift`` compares, on
real schemas nobody here wrote. pg_dump is the reference: a schema taken through ``pg_dump --schema-only`` and
``psql`` is the same schema, so drift must see none; each change pg_dump sees, drift must see too."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import psycopg
import pytest

from tests.conftest import DBNAME, REPO, Server
from tests.engine.test_corpus import CORPUS, chinook_body, fresh, psql
from tests.helpers import dbtool

REFERENCE = "reference"
FILES = {
    "pagila": lambda directory: CORPUS / "pagila-schema.sql",
    "northwind": lambda directory: CORPUS / "northwind.sql",
    "danbooru": lambda directory: CORPUS / "danbooru-structure.sql",
    "chinook": chinook_body,
    "cruddur": lambda directory: REPO / "db" / "schema.sql",
}


@pytest.fixture(autouse=True)
def scripts_use_the_project(project, monkeypatch):
    monkeypatch.setenv("DBTOOL_PROJECT_ROOT", str(project))


def pg_dump(server: Server, dbname: str) -> str:
    command = [str(server.cluster.bindir / "pg_dump"), "--schema-only", "--no-owner", "--no-privileges"]
    done = subprocess.run(
        [*command, "--dbname", server.url(dbname, password="")],
        capture_output=True,
        text=True,
        env={**os.environ, "PGPASSWORD": server.password},
        check=True,
    )
    return re.sub(r"(?m)^\\(un)?restrict .*$", "", done.stdout)


def round_trip(server: Server, original: Path, directory: Path) -> None:
    """The target database: ``original`` loaded with psql into a reference, dumped, and the dump loaded with psql."""
    fresh(server, REFERENCE)
    assert psql(server, REFERENCE, original).returncode == 0
    dumped = directory / "dumped.sql"
    dumped.write_text(pg_dump(server, REFERENCE))
    fresh(server, DBNAME)
    done = psql(server, DBNAME, dumped)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("case", sorted(FILES))
def test_a_schema_through_pg_dump_and_psql_is_no_drift(local, project, tmp_path, case):
    original = FILES[case](tmp_path)
    (project / "db" / "schema.sql").write_bytes(original.read_bytes())  # what the project's files produce
    round_trip(local, original, tmp_path)
    run = dbtool("drift")
    assert run.code == 0, run.out[-3000:] + run.err
    assert run.out.startswith("no drift: ")


# Each change, and a word of the line drift must show for it.
CHANGES = [
    ("ALTER TABLE store ADD COLUMN motto text", "+    motto text"),
    ("ALTER TABLE staff ALTER COLUMN username TYPE varchar(40)", "+    username character varying(40) NOT NULL"),
    ("ALTER TABLE film ALTER COLUMN rating SET DEFAULT 'PG'", "DEFAULT 'PG'::public.mpaa_rating"),
    ("ALTER TYPE mpaa_rating ADD VALUE 'X'", "'NC-17', 'X'"),
    ("ALTER DOMAIN year DROP CONSTRAINT year_check", "-CREATE DOMAIN public.year AS integer CONSTRAINT year_check"),
    ("ALTER SEQUENCE actor_actor_id_seq INCREMENT BY 2", "INCREMENT BY 2"),
    ("DROP TRIGGER last_updated ON actor", "-CREATE TRIGGER last_updated BEFORE UPDATE ON public.actor"),
    ("CREATE INDEX actor_first ON actor (first_name)", "+CREATE INDEX actor_first ON public.actor"),
    ("ALTER TABLE customer DROP CONSTRAINT customer_address_id_fkey", "-ALTER TABLE ONLY public.customer"),
    (
        "CREATE OR REPLACE FUNCTION last_day(timestamp with time zone) RETURNS date LANGUAGE sql\n"
        "AS $$ SELECT NULL::date $$",
        "SELECT NULL::date",
    ),
    ("CREATE VIEW actor_names AS SELECT first_name FROM actor", "+CREATE VIEW public.actor_names AS"),
    ("ALTER TABLE actor ENABLE ROW LEVEL SECURITY", "+ALTER TABLE public.actor ENABLE ROW LEVEL SECURITY;"),
    ("CREATE POLICY mine ON actor USING (actor_id > 0)", "+CREATE POLICY mine ON public.actor FOR ALL USING"),
    ("CREATE RULE keep AS ON DELETE TO store DO INSTEAD NOTHING", "+CREATE RULE keep AS"),
    ("CREATE SCHEMA reporting", "+CREATE SCHEMA reporting;"),
    ("ALTER TABLE rental ALTER COLUMN return_date SET NOT NULL", "+    return_date timestamp with time zone NOT NULL"),
]


def test_each_change_pg_dump_sees_drift_sees(local, project, tmp_path):
    original = CORPUS / "pagila-schema.sql"
    (project / "db" / "schema.sql").write_bytes(original.read_bytes())
    round_trip(local, original, tmp_path)
    dumped = pg_dump(local, DBNAME)
    for change, shown in CHANGES:
        with psycopg.connect(local.url()) as conn:
            conn.execute(change)
        now = pg_dump(local, DBNAME)
        assert now != dumped, f"pg_dump sees no change for {change}"  # the reference agrees it is one
        dumped = now
        run = dbtool("drift")
        assert run.code == 1, (change, run.all[-2000:])
        assert shown in run.out, (change, run.out[-3000:])
    assert run.err.startswith("drift: ")
