"""setup's template reset on a real server: a clone when nothing changed, a full load (and a new template)
when anything did, never an error when the template cannot be used, and never on production."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.conftest import DBNAME, Server
from tests.helpers import dbtool
from tests.migrations.test_migrations import V1, V2
from tests.migrations.test_migrations import write as migration


def setup(*args: str) -> list[str]:
    """Run setup; its step names and outcomes, e.g. ``["aside", "clone", "drop-old"]``."""
    run = dbtool("setup", *args)
    assert run.code == 0, run.all
    return [line.split()[0] for line in run.out.splitlines() if line.startswith("  ")]


def outcome(step: str, *args: str) -> str:
    run = dbtool("setup", *args)
    assert run.code == 0, run.all
    line = next(line for line in run.out.splitlines() if line.split()[:1] == [step])
    return line.split(None, 3)[3]


def count(server: Server, query: str, dbname: str = DBNAME) -> int:
    with psycopg.connect(server.url(dbname)) as conn:
        return conn.execute(query).fetchone()[0]


FULL = ["aside", "create", "schema-load", "seed", "drop-old", "template"]
CLONED = ["aside", "clone", "drop-old"]


def test_nothing_changed_clones_and_the_result_is_the_full_loads(local, project):
    assert setup() == FULL
    full = local.dump()
    assert len(local.templates()) == 1
    assert setup() == CLONED
    assert local.dump() == full
    assert count(local, "SELECT count(*) FROM activities") == 3


def test_data_written_after_a_setup_is_gone_after_the_next(local, project):
    setup()
    setup()  # from the template now
    with psycopg.connect(local.url()) as conn:
        conn.execute("DELETE FROM activities")
        conn.execute("CREATE TABLE scratch (id int)")
    assert setup() == CLONED
    assert count(local, "SELECT count(*) FROM activities") == 3
    assert count(local, "SELECT count(*) FROM pg_tables WHERE tablename = 'scratch'") == 0


def _change_seed(project: Path) -> None:
    with (project / "db" / "seed.sql").open("a") as seed:
        seed.write("\nDELETE FROM activities WHERE false;\n")


def _change_schema(project: Path) -> None:
    with (project / "db" / "schema.sql").open("a") as schema:
        schema.write("\nCREATE TABLE extra (id int);\n")


def _add_migration(project: Path) -> None:
    migration(project, V2, "posts", "CREATE TABLE posts (id int);", "DROP TABLE posts;")


def _move_extension_pin(project: Path) -> None:
    (project / "dbtool.toml").write_text('[extensions]\ncitext = "1.5"\n')


@pytest.mark.parametrize("change", [_change_seed, _change_schema, _add_migration, _move_extension_pin])
def test_any_change_loads_afresh_and_replaces_the_template(local, project, change):
    migration(project, V1, "bio", "ALTER TABLE users ADD COLUMN bio text;")
    (project / "dbtool.toml").write_text('[extensions]\ncitext = "1.4"\n')
    first = ["aside", "create", "extensions", "schema-load", "migrate", "seed", "drop-old", "template"]
    assert setup() == first
    assert setup() == CLONED
    before = local.templates()
    change(project)
    assert setup() == first  # loaded afresh
    fresh = local.dump()
    after = local.templates()
    assert len(after) == 2 and set(before) < set(after)  # the new one, and the last one kept for a switch back
    assert setup() == CLONED and local.dump() == fresh


def test_a_branch_switch_clones_both_ways_and_old_templates_go(local, project):
    schema = project / "db" / "schema.sql"
    original = schema.read_bytes()
    setup()
    schema.write_bytes(original + b"\nCREATE TABLE branch_b (id int);\n")
    setup()
    schema.write_bytes(original)
    assert setup() == CLONED  # back on the first branch: its template is still there
    assert count(local, "SELECT count(*) FROM pg_tables WHERE tablename = 'branch_b'") == 0
    schema.write_bytes(original + b"\nCREATE TABLE branch_c (id int);\n")
    assert setup() == FULL
    assert len(local.templates()) == 2  # never more than two per database


def test_a_session_left_open_on_the_template_rebuilds_it(local, project):
    setup()
    (template,) = local.templates()
    with local.admin() as admin:
        admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(sql.Identifier(template)))
    with psycopg.connect(local.url(template)):
        assert outcome("clone") == f"template {template} is in use: loading afresh"
    assert local.templates() == [template]  # rebuilt, the session ended
    assert setup() == CLONED


def test_a_template_dropped_by_hand_is_rebuilt(local, project):
    setup()
    (template,) = local.templates()
    local.reset(template)
    assert setup() == FULL
    assert local.templates() == [template]
    assert setup() == CLONED


def test_two_projects_on_one_server_keep_their_own(local, project, tmp_path, monkeypatch):
    other = "cruddur_other"
    local.reset(other)
    setup()
    ours = local.templates()
    monkeypatch.setenv("CONNECTION_URL", local.url(other))
    assert setup() == FULL
    assert setup() == CLONED
    assert len(local.templates()) == 2 and set(ours) < set(local.templates())
    monkeypatch.setenv("CONNECTION_URL", local.url())
    assert setup() == CLONED  # the first project's template survived the second's
    local.reset(other)


def test_no_template_loads_afresh_and_drops_them(local, project):
    setup()
    assert local.templates()
    assert setup("--no-template") == FULL
    assert local.templates() == []
    assert setup() == FULL  # and the next plain setup keeps one again
    assert local.templates()


def test_settings_a_copy_would_not_carry_keep_no_template(local, project):
    with (project / "db" / "schema.sql").open("a") as schema:
        schema.write(f"\nALTER DATABASE {DBNAME} SET search_path = public, pg_catalog;\n")
    assert outcome("template").startswith("none kept: a copy would not carry the database's settings")
    assert local.templates() == []
    assert setup() == FULL  # always the full load, so the setting is always there
    with psycopg.connect(local.url()) as conn:
        assert conn.execute("SHOW search_path").fetchone() == ("public, pg_catalog",)


def test_a_database_in_use_when_the_copy_is_made_keeps_no_template_and_fails_nothing(local, project):
    from dbtool.engine.session import open_maintenance_session
    from dbtool.ops import templates
    from dbtool.targets.resolve import resolve_target

    setup("--no-template")
    target = resolve_target("local")
    with open_maintenance_session(target) as admin, psycopg.connect(local.url()):  # the app, say
        found = templates.lookup(admin, target, {})  # this project declares no extensions
        assert found.match is None
        assert (
            templates.keep(admin, target, found)
            == f"none kept: database {DBNAME} is in use (a copy needs it to itself)"
        )
    assert local.templates() == []


def test_prod_never_gets_a_template(prod, project):
    for _ in range(2):
        run = dbtool("setup", "prod", "--yes")
        assert run.code == 0, run.all
        steps = [line.split()[0] for line in run.out.splitlines() if line.startswith("  ")]
        assert steps == ["aside", "create", "schema-load", "seed", "drop-old"]
    assert prod.templates() == []
