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
    names = ["aside", "create", "schema-load", "seed", "drop-old", "template"]
    assert steps == [[name, "ok"] for name in names]
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


def test_setup_stops_at_the_first_failure_and_the_old_database_stays_as_it_was(local, project):
    local.create()
    with psycopg.connect(local.url()) as conn:
        conn.execute("CREATE TABLE my_work (id int); INSERT INTO my_work VALUES (1), (2)")
    (project / "db" / "schema.sql").write_text("CREATE TABLE users (id int);\nCREATE TABLE broken (;\n")
    run = dbtool("setup")
    assert run.code == 1
    steps = [line.split()[:2] for line in run.out.splitlines()[1:]]
    assert steps == [["aside", "ok"], ["create", "ok"], ["schema-load", "failed"], ["restore", "ok"]]
    assert error_line(run).startswith('error: db/schema.sql:2:22: syntax error at or near ";"')
    assert run.out.splitlines()[-1] == (
        "  restore      ok        0.00s  cruddur was not changed: the new one was dropped and the old one renamed back"
    )
    assert tables(local) == [("my_work", 2)]  # the developer's database, exactly as it was
    with local.admin() as conn:
        names = [row[0] for row in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'cruddur%'")]
    assert names == ["cruddur"]


def test_setup_checks_the_declared_extensions_before_it_writes_anything(local, project):
    local.create()
    (project / "dbtool.toml").write_text('[extensions]\nno_such_extension = "1.0"\n')
    run = dbtool("setup")
    assert run.code == 1
    assert "extension no_such_extension is not available on this server" in error_line(run)
    assert run.out.splitlines()[1:] == []  # no step ran
    with local.admin() as conn:
        names = [row[0] for row in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'cruddur%'")]
    assert names == ["cruddur"]


def test_setup_on_prod_with_a_session_on_its_database_refuses_before_writing(prod, project):
    prod.create()
    with psycopg.connect(prod.url()) as held:  # the application
        held.execute("CREATE TABLE my_work (id int)")
        held.commit()
        run = dbtool("setup", "prod", "--yes")
        assert run.code == 1
        assert "has 1 other session(s)" in error_line(run) and "pass --force to end them" in run.err
    assert tables(prod) == [("my_work", 0)]
    with prod.admin() as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname LIKE 'cruddur_dbtool%'").fetchone() == (0,)


def test_a_setup_killed_half_way_is_undone_by_the_next(local, project):
    """What a kill -9 between the steps leaves (the old database aside, a partial new one) is put back first."""
    local.create()
    with psycopg.connect(local.url()) as conn:
        conn.execute("CREATE TABLE my_work (id int)")
    with local.admin() as conn:
        conn.execute("ALTER DATABASE cruddur RENAME TO cruddur_dbtool_old")
        conn.execute("CREATE DATABASE cruddur")  # the partial new one
    (project / "db" / "schema.sql").write_text("CREATE TABLE broken (;\n")
    run = dbtool("setup")
    assert run.code == 1
    assert "restored cruddur from cruddur_dbtool_old, left by an interrupted setup" in run.err
    assert tables(local) == [("my_work", 0)]  # the last good database, back under its name


def test_setup_on_local_ends_the_sessions_on_the_old_database(local, project):
    local.create()
    with psycopg.connect(local.url()) as held:  # an application's session
        held.execute("CREATE TABLE my_work (id int)")
        held.commit()
        run = dbtool("setup", "--yes")
        assert run.code == 0, run.all  # locally, its sessions are ended (and named)
    assert "ending session pid" in run.err
    assert sorted(t for t, _ in tables(local)) == ["activities", "users"]
