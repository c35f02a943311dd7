"""create, drop, schema-load, seed and setup against real servers, through the CLI."""

from __future__ import annotations

import psycopg

from tests.helpers import dbtool, error_line


def tables(server) -> list[tuple[str, int]]:
    with psycopg.connect(server.url()) as conn:
        names = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname='public' ORDER BY 1")]
        return [(n, conn.execute(f'SELECT count(*) FROM public."{n}"').fetchone()[0]) for n in names]


def test_create_then_create_again(local):
    first = dbtool("create")
    assert (first.code, first.out.strip()) == (0, "created database cruddur")
    assert local.exists()
    again = dbtool("create")
    assert (again.code, again.out.strip()) == (0, "database cruddur already exists")


def test_create_quotes_the_name(local, monkeypatch):
    local.reset('odd "name"; drop')
    monkeypatch.setenv("CONNECTION_URL", local.url('odd "name"; drop'))
    assert dbtool("create").code == 0
    assert local.exists('odd "name"; drop')
    assert dbtool("drop").code == 0
    assert not local.exists('odd "name"; drop')


def test_drop_missing_database_is_not_an_error(local):
    run = dbtool("drop")
    assert (run.code, run.out.strip()) == (0, "database cruddur does not exist")


def test_drop_ends_other_sessions_locally_and_names_them(local):
    local.create()
    holder = psycopg.connect(local.url(), application_name="cruddur-backend-pool")
    try:
        pid = holder.info.backend_pid
        run = dbtool("drop")
        assert run.code == 0, run.all
        assert run.out.strip() == "dropped database cruddur"
        assert f"ending session pid {pid} user postgres application cruddur-backend-pool" in run.err
        assert not local.exists()
    finally:
        holder.close()


def test_prod_drop_with_sessions_needs_force(prod):
    prod.create()
    holder = psycopg.connect(prod.url(), application_name="prod-app")
    try:
        refused = dbtool("drop", "prod", "--yes")
        line = error_line(refused)
        assert refused.code == 1
        assert f"pid {holder.info.backend_pid} cruddurroot prod-app" in line and "--force" in line
        assert prod.exists()
        forced = dbtool("drop", "prod", "--yes", "--force")
        assert forced.code == 0, forced.all
        assert not prod.exists()
    finally:
        holder.close()


def test_schema_load_and_seed(local):
    local.create()
    run = dbtool("schema-load")
    assert run.code == 0, run.all
    assert run.out.strip() == f"loaded db/schema.sql: 7 statements into postgres@127.0.0.1:{local.cluster.port}/cruddur"
    assert tables(local) == [("activities", 0), ("users", 0)]
    assert dbtool("seed").code == 0
    assert tables(local) == [("activities", 3), ("users", 3)]
    assert dbtool("seed").code == 0  # a second seed adds nothing twice
    assert tables(local) == [("activities", 3), ("users", 3)]
    assert dbtool("schema-load").code == 0  # a second schema-load works too
    assert tables(local) == [("activities", 0), ("users", 0)]


def test_file_option_overrides_the_sql_file(local, project):
    local.create()
    (project / "other.sql").write_text("CREATE TABLE other (id int); INSERT INTO other VALUES (1), (2);")
    run = dbtool("seed", "--file", "other.sql")
    assert run.code == 0, run.all
    assert tables(local) == [("other", 2)]


def test_percent_signs_in_sql_are_not_placeholders(local, project):
    local.create()
    (project / "pct.sql").write_text(
        "CREATE TABLE pct (v text);\nINSERT INTO pct VALUES ('100%'), ('%s'), ('%(x)s');\n"
    )
    assert dbtool("seed", "--file", "pct.sql").code == 0
    with psycopg.connect(local.url()) as conn:
        assert conn.execute("SELECT string_agg(v, ' ' ORDER BY v) FROM pct").fetchone() == ("%(x)s %s 100%",)


def test_failed_load_leaves_the_database_exactly_as_before(local, project):
    local.create()
    assert dbtool("setup").code == 0
    before = local.dump()
    (project / "bad.sql").write_text(
        "DELETE FROM activities;\nINSERT INTO users (display_name, handle, email, cognito_user_id)\n"
        "  VALUES ('x', 'x', 'x', 'x');\nDROP TABLE activities;\nSELECT nonexistent_column FROM users;\n"
    )
    run = dbtool("schema-load", "--file", "bad.sql")
    assert run.code == 1
    assert error_line(run) == (
        'error: bad.sql:5:8: column "nonexistent_column" does not exist '
        "(nothing was changed: the whole file was rolled back)"
    )
    assert local.dump() == before


def test_error_without_position_deep_in_a_large_file_names_its_line(local, project):
    # 12,000 statements span several batches; the failing one (a runtime error, no position) is in the third.
    local.create()
    lines = ["CREATE TABLE t (id int PRIMARY KEY);"] + [f"INSERT INTO t VALUES ({i});" for i in range(12000)]
    lines[11000] = "INSERT INTO t VALUES (42);"  # duplicate key, line 11001
    (project / "big.sql").write_text("\n".join(lines) + "\n")
    run = dbtool("seed", "--file", "big.sql")
    assert run.code == 1
    assert error_line(run) == (
        'error: big.sql:11001:1: duplicate key value violates unique constraint "t_pkey" '
        "(Key (id)=(42) already exists) (nothing was changed: the whole file was rolled back)"
    )
    assert tables(local) == []


def test_sql_error_carries_the_server_hint(local, project):
    local.create()
    (project / "hint.sql").write_text("-- header\n\nSELECT 1;\n  SELECT lenght('abc');\n")
    line = error_line(dbtool("seed", "--file", "hint.sql"))
    assert line.startswith("error: hint.sql:4:10: function lenght(unknown) does not exist (")
    assert "You might need to add explicit type casts" in line and "rolled back" in line


def test_missing_sql_file(local, project):
    local.create()
    run = dbtool("seed", "--file", "nope.sql")
    assert (run.code, error_line(run)) == (1, "error: SQL file nope.sql not found (check the path, or pass --file)")


def test_setup_runs_every_step_on_one_target(local):
    run = dbtool("setup")
    assert run.code == 0, run.all
    steps = [line.split()[:2] for line in run.out.splitlines()[1:]]
    assert steps == [["drop", "ok"], ["create", "ok"], ["schema-load", "ok"], ["seed", "ok"], ["template", "ok"]]
    assert tables(local) == [("activities", 3), ("users", 3)]
    assert dbtool("setup").code == 0  # and again, over an existing database (from the template: test_templates.py)
    assert tables(local) == [("activities", 3), ("users", 3)]


def test_setup_prod_touches_only_prod(local, prod):
    # The old db-setup dropped the local database and loaded the schema into production.
    local.create()
    with psycopg.connect(local.url()) as conn:
        conn.execute("CREATE TABLE keep_me (id int)")
    run = dbtool("setup", "prod", "--yes")
    assert run.code == 0, run.all
    assert "PRODUCTION cruddurroot@127.0.0.1" in run.out
    assert tables(prod) == [("activities", 3), ("users", 3)]
    assert tables(local) == [("keep_me", 0)]


def test_setup_stops_at_the_first_failure(local, project):
    (project / "db" / "schema.sql").write_text("CREATE TABLE users (id int);\nCREATE TABLE broken (;\n")
    run = dbtool("setup")
    assert run.code == 1
    steps = [line.split()[:2] for line in run.out.splitlines()[1:]]
    assert steps == [["drop", "ok"], ["create", "ok"], ["schema-load", "failed"]]
    assert error_line(run).startswith('error: db/schema.sql:2:22: syntax error at or near ";"')
    assert tables(local) == []  # schema rolled back, seed never ran
