"""The prod target through the RDS Data API: loads, errors, COPY data and call counts, on a real PostgreSQL.

The first tests pin the test server itself to the Data API's documented behaviour (boto3 straight
at it); the rest run dbtool's commands through it and compare the result with what libpq loads.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import botocore.exceptions
import pytest

from tests.conftest import CLUSTER_ARN, DBNAME, DataApi
from tests.helpers import dbtool, error_line, script


def rds_data(data_api: DataApi):  # boto3's client, as a hand-written Lambda would use it
    import boto3

    return boto3.client(
        "rds-data",
        endpoint_url=data_api.server.endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def call(data_api: DataApi, sql: str, **extra):
    request = {"resourceArn": CLUSTER_ARN, "secretArn": data_api.secret_arn, "database": DBNAME, "sql": sql}
    return rds_data(data_api).execute_statement(**request, **extra)


def aws_error(excinfo: pytest.ExceptionInfo) -> tuple[str, str]:
    error = excinfo.value.response["Error"]
    return error["Code"], error["Message"]


# -- the test server behaves like the Data API ------------------------------------------------------


def test_server_refuses_two_statements_and_allows_one_trailing_semicolon(data_api):
    data_api.db.create()
    assert call(data_api, "SELECT 1;")["records"] == [[{"longValue": 1}]]
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        call(data_api, "SELECT 1; SELECT 2")
    assert aws_error(refused) == ("ValidationException", "Multistatements aren't supported.")


def test_server_folds_errors_into_one_string_and_binds_strings_as_varchar(data_api):
    data_api.db.create()
    call(data_api, "CREATE TABLE t (id uuid PRIMARY KEY, n int NOT NULL)")
    value = {"name": "id", "value": {"stringValue": "6f1b3c1e-4d0a-4c53-9a57-2a3f6d1f0b11"}}
    with pytest.raises(botocore.exceptions.ClientError) as varchar:
        call(data_api, "INSERT INTO t VALUES (:id, 1)", parameters=[value])
    code, message = aws_error(varchar)
    assert code == "DatabaseErrorException"
    assert message.startswith('ERROR: column "id" is of type uuid but expression is of type character varying; ')
    assert message.endswith("; Position: 23; SQLState: 42804")
    assert "; Hint: You will need to rewrite or cast the expression.; " in message
    call(data_api, "INSERT INTO t VALUES (:id, 1)", parameters=[{**value, "typeHint": "UUID"}])
    with pytest.raises(botocore.exceptions.ClientError) as missing:
        call(data_api, "SELECT no_such_column FROM t")
    assert aws_error(missing)[1] == 'ERROR: column "no_such_column" does not exist; Position: 8; SQLState: 42703'


def test_server_ends_a_transaction_at_its_first_error(data_api):
    data_api.db.create()
    client = rds_data(data_api)
    where = {"resourceArn": CLUSTER_ARN, "secretArn": data_api.secret_arn, "database": DBNAME}
    tx = client.begin_transaction(**where)["transactionId"]
    client.execute_statement(**where, sql="CREATE TABLE kept (n int)", transactionId=tx)
    with pytest.raises(botocore.exceptions.ClientError):
        client.execute_statement(**where, sql="SELECT 1/0", transactionId=tx)
    with pytest.raises(botocore.exceptions.ClientError) as gone:
        client.execute_statement(**where, sql="SELECT 1", transactionId=tx)
    assert aws_error(gone) == (
        "TransactionNotFoundException",
        f"Transaction {tx} isn't found. Transaction has been aborted due to an error from a previous call.",
    )
    with data_api.db.admin(DBNAME) as conn:
        assert conn.execute("SELECT to_regclass('kept')").fetchone() == (None,)
    assert data_api.server.open_transactions == 0


def test_server_keeps_no_session_state_between_calls_and_checks_the_model(data_api):
    data_api.db.create()
    call(data_api, "SET search_path TO nowhere")
    assert call(data_api, "SHOW search_path")["records"] == [[{"stringValue": '"$user", public'}]]
    with pytest.raises(botocore.exceptions.ClientError) as long_sql:
        call(data_api, "SELECT " + "1 + " * 20_000 + "1")
    assert aws_error(long_sql)[0] == "ValidationException"
    with pytest.raises(botocore.exceptions.ClientError) as schema:
        call(data_api, "SELECT 1", schema="public")
    assert aws_error(schema) == ("ValidationException", "The schema parameter isn't supported")


# -- dbtool through the Data API --------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_setup_through_the_data_api_matches_a_libpq_setup(data_api, project, monkeypatch):
    run = dbtool("setup", "prod", "--yes")
    assert run.code == 0, run.all
    assert "setting up PRODUCTION cruddur-aurora/cruddur (RDS Data API)" in run.out
    through_data_api = data_api.db.dump(DBNAME, "--schema-only"), seeded(data_api)
    data_api.db.reset()
    monkeypatch.delenv("PROD_DATA_API_CLUSTER_ARN")
    monkeypatch.delenv("PROD_DB_SECRET_ID")
    monkeypatch.setenv("PROD_CONNECTION_URL", data_api.db.url())
    assert dbtool("setup", "prod", "--yes").code == 0
    assert (data_api.db.dump(DBNAME, "--schema-only"), seeded(data_api)) == through_data_api


def seeded(data_api: DataApi) -> list[tuple]:
    """The seed's rows without what it leaves to random UUIDs and the clock."""
    with data_api.db.admin(DBNAME) as conn:
        return conn.execute(
            "SELECT u.handle, u.display_name, u.email, a.message, a.expires_at - a.created_at > interval '9 days' "
            "FROM users u LEFT JOIN activities a ON a.user_uuid = u.uuid ORDER BY u.handle, a.message"
        ).fetchall()


def test_single_row_inserts_travel_together(data_api, project):
    data_api.db.create()
    rows = "".join(f"INSERT INTO a (n, s) VALUES ({n}, 'row {n}');\n" for n in range(1, 1001))
    seed = write(project / "rows.sql", "CREATE TABLE a (n int PRIMARY KEY, s text);\n" + rows)
    run = dbtool("seed", "prod", "--yes", "--file", str(seed))
    assert run.code == 0, run.all
    assert "1001 statements" in run.out
    calls = data_api.server.calls.by_operation
    # begin, the CREATE, the table check, the helper function made, one multi-row INSERT through it (30 kB),
    # the helper dropped, commit
    assert calls == {"BeginTransaction": 1, "ExecuteStatement": 5, "CommitTransaction": 1}, calls
    with data_api.db.admin(DBNAME) as conn:
        assert conn.execute("SELECT count(*), sum(n), max(s) FROM a").fetchone() == (1000, 500500, "row 999")


def test_a_statement_level_trigger_keeps_inserts_apart(data_api, project):
    data_api.db.create()
    seed = write(
        project / "rows.sql",
        """\
        CREATE TABLE a (n int);
        CREATE TABLE fired (at int);
        CREATE FUNCTION count_it() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN INSERT INTO fired VALUES (1); RETURN NULL; END $$;
        CREATE TRIGGER each_statement AFTER INSERT ON a FOR EACH STATEMENT EXECUTE FUNCTION count_it();
        INSERT INTO a VALUES (1);
        INSERT INTO a VALUES (2);
        INSERT INTO a VALUES (3);
        """,
    )
    assert dbtool("seed", "prod", "--yes", "--file", str(seed)).code == 0
    with data_api.db.admin(DBNAME) as conn:
        assert conn.execute("SELECT count(*) FROM fired").fetchone() == (3,)


def test_an_error_names_its_line_and_leaves_the_database_as_it_was(data_api, project):
    data_api.db.create()
    bad = write(
        project / "bad.sql",
        """\
        CREATE TABLE a (n int);
        INSERT INTO a VALUES (1);
        INSERT INTO a VALUES (2);
        SELECT nope FROM a;
        """,
    )
    before = data_api.db.dump()
    run = dbtool("schema-load", "prod", "--yes", "--file", str(bad))
    assert run.code == 1
    assert error_line(run) == (
        'error: bad.sql:4:8: column "nope" does not exist (nothing was changed: the whole file was rolled back)'
    )
    assert data_api.db.dump() == before
    assert data_api.server.open_transactions == 0


def test_combined_inserts_point_an_error_at_the_right_row(data_api, project):
    data_api.db.create()
    rows = "".join(f"INSERT INTO a (n, s) VALUES ({n}, 'row {n}');\n" for n in range(1, 300))
    bad = write(
        project / "rows.sql", "CREATE TABLE a (n int PRIMARY KEY, s text);\n" + rows.replace("(150, ", "(150x, ")
    )
    run = dbtool("seed", "prod", "--yes", "--file", str(bad))
    assert error_line(run) == (
        'error: rows.sql:151:30: trailing junk after numeric literal at or near "150x" '
        "(nothing was changed: the whole file was rolled back)"
    )
    duplicate = write(project / "dup.sql", "CREATE TABLE a (n int PRIMARY KEY);\n" + "INSERT INTO a VALUES (1);\n" * 3)
    line = error_line(dbtool("seed", "prod", "--yes", "--file", str(duplicate)))
    assert line == (  # the row that failed, as psql names it, though the three travelled together
        'error: dup.sql:3:1: duplicate key value violates unique constraint "a_pkey" (Key (n)=(1) already exists) '
        "(nothing was changed: the whole file was rolled back)"
    )


def test_copy_data_of_every_kind_loads_exactly_as_through_libpq(data_api, project, monkeypatch):
    data_api.db.create()
    dump = write(
        project / "dump.sql",
        """\
        CREATE TYPE mood AS ENUM ('ok', 'sad');
        CREATE TABLE t (id int GENERATED ALWAYS AS IDENTITY, b bytea, a text[], m mood, j jsonb, s text, f float8);
        COPY public.t (id, b, a, m, j, s, f) FROM stdin;
        1\t\\\\x00ff10\t{a,"b c",NULL}\tok\t{"k": [1, "x\\\\ty"]}\ttab\\there\\\\back\\nline\t1.5
        2\t\\N\t{}\tsad\tnull\t\\N\t-0
        3\t\\\\x\t{"\\\\\\\\"}\t\\N\t{}\tüñí €\\101\\x42\tNaN
        \\.
        SELECT setval('t_id_seq', 3);
        """,
    )
    run = dbtool("schema-load", "prod", "--yes", "--file", str(dump))
    assert run.code == 0, run.all
    through_data_api = data_api.db.dump()
    assert "3 statements" in run.out or "statements" in run.out
    data_api.db.reset()
    monkeypatch.delenv("PROD_DATA_API_CLUSTER_ARN")
    monkeypatch.delenv("PROD_DB_SECRET_ID")
    monkeypatch.setenv("PROD_CONNECTION_URL", data_api.db.url())
    data_api.db.create()
    assert dbtool("schema-load", "prod", "--yes", "--file", str(dump)).code == 0
    assert data_api.db.dump() == through_data_api
    with data_api.db.admin(DBNAME) as conn:
        assert conn.execute("SELECT s FROM t WHERE id = 1").fetchone() == ("tab\there\\back\nline",)


@pytest.mark.parametrize("source", ["file", "pipe"])
def test_a_statement_too_large_for_one_call_is_refused_before_anything_is_sent(data_api, project, source):
    data_api.db.create()
    before = "".join(f"CREATE TABLE t{n} (n int);\n" for n in range(37))
    big = write(project / "big.sql", before + "SELECT '" + "x" * 70_000 + "';\n")
    data_api.server.reset_counts()
    if source == "file":
        run = dbtool("schema-load", "prod", "--yes", "--file", str(big))
    else:
        run = script("db-schema-load", "prod", "--yes", "--file", "-", cwd=project, stdin=big.read_text())
    line = error_line(run)
    assert line.startswith(
        f"error: {'big.sql' if source == 'file' else '<stdin>'}:38:1: this statement is 70,010 characters; "
        "the RDS Data API takes at most 65,536 in one call, and only an INSERT … VALUES of constants can be sent "
        "in parts (load this file over a network connection"
    ), line
    assert data_api.server.calls.by_operation == {}  # not a BeginTransaction, not one of the 37 statements


def test_an_insert_of_constants_too_large_for_one_call_travels_in_parts(data_api, project):
    data_api.db.create()
    rows = ",\n".join(f"({n}, 'row {n:<56}')" for n in range(3000))
    insert = write(project / "big.sql", f"CREATE TABLE t (n int PRIMARY KEY, s text);\nINSERT INTO t VALUES\n{rows};\n")
    assert (project / "big.sql").stat().st_size > 3 * 65_536
    run = dbtool("schema-load", "prod", "--yes", "--file", str(insert))
    assert run.code == 0, run.all
    with data_api.db.admin(DBNAME) as conn:
        assert conn.execute("SELECT count(*), sum(n), min(s) FROM t").fetchone()[:2] == (3000, sum(range(3000)))


def test_a_resuming_cluster_is_waited_for(data_api, project):
    data_api.db.create()
    data_api.server.fail_next("DatabaseResumingException", "The Data API request automatically resumes", count=2)
    run = dbtool("schema-load", "prod", "--yes")
    assert run.code == 0, run.all
    assert "the Aurora cluster cruddur-aurora is resuming from a pause; waiting" in run.err


@pytest.mark.parametrize(
    ("code", "status"), [("DatabaseUnavailableException", 504), ("DatabaseNotFoundException", 404)]
)
def test_a_cluster_whose_writer_is_not_available_yet_is_waited_for(data_api, project, code, status):
    data_api.db.create()
    data_api.server.fail_next(code, "The writer is not available", status=status, count=2)
    run = dbtool("schema-load", "prod", "--yes")
    assert run.code == 0, run.all
    assert "the Aurora cluster cruddur-aurora has no writer available yet; waiting" in run.err


def test_a_statement_the_service_cancels_at_45_s_names_its_line(data_api, project):
    data_api.db.create()
    slow = write(project / "slow.sql", "CREATE TABLE t (n int);\nSELECT pg_sleep(3);\n")
    data_api.server.statement_timeout = 1.0  # the service's 45 s, shortened
    try:
        line = error_line(dbtool("schema-load", "prod", "--yes", "--file", str(slow)))
    finally:
        data_api.server.statement_timeout = 45.0
    assert line.startswith(
        "error: slow.sql:2:1: this statement ran longer than the RDS Data API's 45 s limit and was cancelled"
    ), line
    assert line.endswith("nothing was changed: the whole file was rolled back)")


def test_a_call_longer_than_twenty_seconds_is_not_cut_by_the_client(data_api, project):
    # botocore's read timeout was 20 s: the statement ran on in the database while dbtool gave up on it.
    data_api.db.create()
    slow = write(project / "slow.sql", "CREATE TABLE t (n int);\nSELECT pg_sleep(21);\nINSERT INTO t VALUES (1);\n")
    run = dbtool("schema-load", "prod", "--yes", "--file", str(slow))
    assert run.code == 0, run.all


def test_bad_data_api_configuration_is_one_line(data_api, project, monkeypatch):
    monkeypatch.setenv("PROD_DATA_API_CLUSTER_ARN", CLUSTER_ARN.replace("cruddur-aurora", "other"))
    line = error_line(dbtool("create", "prod", "--yes"))
    assert line.startswith(
        "error: the RDS Data API is not enabled for arn:aws:rds:us-east-1:123456789012:cluster:other"
    )
    monkeypatch.setenv("PROD_DATA_API_CLUSTER_ARN", CLUSTER_ARN)
    monkeypatch.setenv("PROD_DB_SECRET_ID", "no/such/secret")
    assert "no/such/secret" in error_line(dbtool("create", "prod", "--yes"))
    monkeypatch.delenv("PROD_DB_SECRET_ID")
    assert error_line(dbtool("create", "prod", "--yes")).startswith(
        "error: PROD_DATA_API_CLUSTER_ARN needs PROD_DB_SECRET_ID"
    )


def test_migrate_status_and_rollback_through_the_data_api(data_api, project, monkeypatch):
    from tests.migrations.test_migrations import V1, V2, applied, last_error, tables
    from tests.migrations.test_migrations import write as migration

    monkeypatch.setenv("DBTOOL_PROJECT_ROOT", str(project))
    data_api.db.create()
    migration(project, V1, "users", "CREATE TABLE users (id int PRIMARY KEY);", "DROP TABLE users;")
    migration(
        project, V2, "index", "CREATE INDEX CONCURRENTLY users_id ON users (id);", "DROP INDEX users_id;",
        up_opts="transaction:false",
    )  # fmt: skip
    run = dbtool("migrate", "prod", "--yes")
    assert run.code == 0, run.all
    assert run.out.strip() == "applied 2 migrations to cruddur-aurora/cruddur (RDS Data API)"
    assert applied(data_api.db) == [V1, V2] and tables(data_api.db) == ["users"]
    status = dbtool("migrate", "status", "prod")
    assert status.out.splitlines()[-1] == "2 applied, 0 pending on cruddur-aurora/cruddur (RDS Data API)"
    assert dbtool("rollback", "prod", "--yes", "--steps", "2").code == 0
    assert applied(data_api.db) == [] and tables(data_api.db) == []
    migration(project, V2, "index", "CREATE TABLE posts (id int);\nSELEC oops;")
    line = last_error(dbtool("migrate", "prod", "--yes"))
    assert line.startswith(f'error: db/migrations/{V2}_index.sql:3:1: syntax error at or near "SELEC"')
    assert "the 1 before it in this run stay applied" in line
    assert applied(data_api.db) == [V1] and tables(data_api.db) == ["users"]  # V1 stayed; V2 left nothing


def test_a_migrate_meeting_another_creating_the_migrations_table_waits_for_it(data_api, project, monkeypatch):
    """Over the Data API no session lock is held while schema_migrations is created: two runs that both
    found it missing raced on CREATE TABLE, and the loser failed on pg_type's unique index."""
    import threading

    import psycopg

    from dbtool.migrations.runner import LOCK_KEY
    from tests.migrations.test_migrations import V1, applied
    from tests.migrations.test_migrations import write as migration

    monkeypatch.setenv("DBTOOL_PROJECT_ROOT", str(project))
    data_api.db.create()
    migration(project, V1, "users", "CREATE TABLE users (id int PRIMARY KEY);")
    created = threading.Event()

    def another_run() -> None:  # what a concurrent dbtool does: the lock, then the table, committed later
        with psycopg.connect(data_api.db.url()) as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_KEY])
            conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version varchar(128) PRIMARY KEY)")
            created.set()
            threading.Event().wait(1.5)
        # leaving the block commits

    other = threading.Thread(target=another_run)
    other.start()
    assert created.wait(10)
    run = dbtool("migrate", "prod", "--yes")
    other.join()
    assert run.code == 0, run.all
    assert applied(data_api.db) == [V1]


def test_five_migrate_processes_through_the_data_api_apply_each_once(data_api, project, monkeypatch):
    import re
    import subprocess

    from tests.helpers import REPO
    from tests.migrations.test_migrations import V1, V2, applied, rows
    from tests.migrations.test_migrations import write as migration

    monkeypatch.setenv("DBTOOL_PROJECT_ROOT", str(project))
    data_api.db.create()
    migration(project, V1, "log", "CREATE TABLE log (name text);\nSELECT pg_sleep(2);\nINSERT INTO log VALUES ('v1');")
    migration(project, V2, "more", "INSERT INTO log VALUES ('v2');")
    processes = [
        subprocess.Popen(
            [str(REPO / "bin" / "db-migrate"), "prod", "--yes"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(5)
    ]
    results = [(process.wait(timeout=90), *process.communicate()) for process in processes]
    assert [code for code, _, _ in results] == [0] * 5, [err for _, _, err in results]
    assert sorted(rows(data_api.db, "SELECT name FROM log")) == [("v1",), ("v2",)]
    assert applied(data_api.db) == [V1, V2]
    counts = [re.match(r"applied (\d+)|nothing to migrate", out) for _, out, _ in results]
    assert sum(int(match[1] or 0) for match in counts) == 2, results


def test_doctor_walks_the_data_api_steps(data_api, aws):
    data_api.db.create()
    aws.client("rds").create_db_cluster(
        DBClusterIdentifier="cruddur-aurora",
        Engine="aurora-postgresql",
        EngineVersion="15.4",
        MasterUsername="cruddurroot",
        MasterUserPassword="not-the-real-one",
    )
    run = dbtool("doctor", "prod")
    assert run.code == 1
    lines = run.out.splitlines()
    assert [line.split()[:2] for line in lines[:7]] == [
        ["ok", "configuration"],
        ["FAIL", "cluster"],
        ["ok", "secret"],
        ["ok", "data"],
        ["ok", "database"],
        ["ok", "server"],
        ["skip", "psql"],
    ]
    assert "via PROD_DATA_API_CLUSTER_ARN from environment" in lines[0] and "database from the secret" in lines[0]
    assert lines[1].endswith(
        "cruddur-aurora: aurora-postgresql 15.4, available, Data API (HTTP endpoint) not enabled "
        f"(enable it: aws rds enable-http-endpoint --resource-arn {CLUSTER_ARN} (or EnableHttpEndpoint in the stack))"
    )
    assert "is readable: user cruddurroot" in lines[2]
    assert "PostgreSQL 15." in lines[5]
    assert lines[-1] == "1 failed: cluster"
    assert "p@ss" not in run.all


def test_sessions_and_wait_through_the_data_api(data_api):
    data_api.db.create()
    run = dbtool("wait", "prod", "--timeout", "5")
    assert run.code == 0, run.all
    assert run.out.startswith("cruddur-aurora/cruddur (RDS Data API) accepts connections")
    listed = dbtool("sessions", "prod", "--json")
    assert listed.code == 0, listed.all
    import json

    mine = [row for row in json.loads(listed.out) if row["is_self"]]
    assert len(mine) == 1 and mine[0]["database"] == DBNAME


def test_connect_and_schema_dump_say_they_need_a_route(data_api):
    assert error_line(dbtool("connect", "prod")).startswith(
        "error: psql needs a network route to the database, and cruddur-aurora/cruddur (RDS Data API) has none"
    )
    assert error_line(dbtool("schema", "dump", "prod")).startswith("error: schema dump (pg_dump) needs a network route")


def test_a_real_pg_dump_round_trips_through_the_data_api(data_api, project):
    source = "dump_source"
    data_api.db.reset(source)
    data_api.db.create(source)
    with data_api.db.admin(source) as conn:
        conn.execute(
            """
            CREATE TYPE mood AS ENUM ('ok', 'sad');
            CREATE TABLE things (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tags text[], m mood,
                                 doc jsonb, raw bytea, note text, at timestamptz);
            INSERT INTO things (tags, m, doc, raw, note, at)
            SELECT ARRAY['a' || i, 'b\\c', NULL], CASE WHEN i % 2 = 0 THEN 'ok' ELSE 'sad' END::mood,
                   jsonb_build_object('i', i, 's', E'tab\\there'), decode(lpad(to_hex(i), 8, '0'), 'hex'),
                   CASE WHEN i % 7 = 0 THEN NULL ELSE E'line\\nbreak \\\\ ' || i END,
                   '2026-01-01'::timestamptz + i * interval '1 h'
            FROM generate_series(1, 3000) AS i;
            CREATE VIEW sad AS SELECT id FROM things WHERE m = 'sad';
            CREATE FUNCTION twice(n int) RETURNS int LANGUAGE sql AS $$ SELECT n * 2 $$;
            """
        )
    dump = project / "dump.sql"
    dump.write_text(data_api.db.dump(source))
    data_api.db.create()
    run = dbtool("schema-load", "prod", "--yes", "--file", str(dump))
    assert run.code == 0, run.all
    assert data_api.db.dump() == data_api.db.dump(source)
    assert data_api.server.calls.total < 60, data_api.server.calls.by_operation


def test_what_the_data_api_would_run_differently_is_refused_with_its_line(data_api, project):
    data_api.db.create()
    preamble = write(project / "preamble.sql", "SET check_function_bodies = false;\nCREATE TABLE t (n int);\n")
    assert error_line(dbtool("schema-load", "prod", "--yes", "--no-transaction", "--file", str(preamble))) == (
        "error: preamble.sql:1:1: a session setting does not last past its own call through the RDS Data API "
        "(load without --no-transaction: inside the load's one Data API transaction it lasts to the end; "
        "statements before this one were committed)"
    )
    assert dbtool("schema-load", "prod", "--yes", "--file", str(preamble)).code == 0
    latin = project / "latin.sql"
    latin.write_bytes(b"SET client_encoding = 'LATIN1';\nCREATE TABLE caf\xe9 (n int);\n")
    line = error_line(dbtool("schema-load", "prod", "--yes", "--file", str(latin)))
    assert line.startswith("error: latin.sql:1:1: the file sets a client_encoding other than UTF-8")
    latin.write_bytes(b"CREATE TABLE caf\xe9 (n int);\n")
    line = error_line(dbtool("schema-load", "prod", "--yes", "--file", str(latin)))
    assert line.startswith("error: latin.sql:1:1: this statement is not UTF-8 text")
    copy_out = write(project / "out.sql", "COPY t TO STDOUT;\n")
    assert error_line(dbtool("schema-load", "prod", "--yes", "--file", str(copy_out))).startswith(
        "error: out.sql:1:1: COPY … TO STDOUT in a file to load"
    )


def test_standard_conforming_strings_off_through_the_data_api(data_api, project):
    from tests.engine.test_sqlfile import STRINGS_OFF, loads_as_psql_loads

    (project / "off.sql").write_text(STRINGS_OFF)
    loads_as_psql_loads(data_api.db, project, "off.sql", "prod", "--yes")


def test_the_application_pool_says_it_needs_a_route(data_api):
    import dbtool

    with pytest.raises(dbtool.DbtoolError, match=r"dbtool.connect and dbtool.pool need a network connection"):
        dbtool.pool("prod")
    with pytest.raises(dbtool.DbtoolError, match=r"has none"):
        dbtool.connect("prod")


def test_aws_refusals_are_one_line_and_leave_nothing_behind(data_api, project):
    data_api.db.create()
    data_api.server.fail_next(
        "AccessDeniedException", "User is not authorized to perform rds-data:ExecuteStatement", 403
    )
    line = error_line(dbtool("create", "prod", "--yes"))
    assert line.startswith("error: AWS denied ExecuteStatement (AccessDeniedException) (the IAM user or role needs: ")
    assert "rds-data:BeginTransaction" in line and "secretsmanager:GetSecretValue on the secret" in line
    seed = write(project / "one.sql", "CREATE TABLE t (n int);\n")
    data_api.server.failures.clear()
    data_api.server.fail_next("AccessDeniedException", "not authorized", 403)
    assert error_line(dbtool("seed", "prod", "--yes", "--file", str(seed))).startswith(
        "error: AWS denied BeginTransaction"
    )
    assert data_api.server.open_transactions == 0


def test_a_huge_copy_row_is_sent_alone_or_named(data_api, project):
    data_api.db.create()
    big = "y" * 2_000_000
    huge = "z" * 4_500_000
    (project / "rows.sql").write_text(
        f"CREATE TABLE t (n int, s text);\nCOPY t FROM stdin;\n1\tone\n2\t{big}\n3\tthree\n\\.\n"
    )
    run = dbtool("schema-load", "prod", "--yes", "--file", "rows.sql")
    assert run.code == 0, run.all
    with data_api.db.admin(DBNAME) as conn:
        assert conn.execute("SELECT n, length(s) FROM t ORDER BY n").fetchall() == [(1, 3), (2, 2_000_000), (3, 5)]
    (project / "huge.sql").write_text(f"CREATE TABLE u (n int, s text);\nCOPY u FROM stdin;\n1\tone\n2\t{huge}\n\\.\n")
    line = error_line(dbtool("schema-load", "prod", "--yes", "--file", "huge.sql"))
    assert line.startswith("error: huge.sql:4:1: this row is 4,500,010 bytes: more than one RDS Data API request")


def test_no_database_name_for_the_data_api_is_one_line(data_api, aws, monkeypatch):
    secret = aws.client("secretsmanager").create_secret(
        Name="no-dbname", SecretString='{"username": "cruddurroot", "password": "x"}'
    )
    monkeypatch.setenv("PROD_DB_SECRET_ID", "no-dbname")
    assert error_line(dbtool("create", "prod", "--yes")) == (
        "error: no database name for the Data API target: secret no-dbname has no dbname (set PROD_DB_NAME)"
    )
    monkeypatch.setenv("PROD_DB_NAME", DBNAME)
    monkeypatch.setenv("PROD_DB_SECRET_ID", secret["ARN"])
    run = dbtool("create", "prod", "--yes")  # an ARN and a name: resolved without reading the secret
    assert error_line(run) == (
        "error: authentication failed for cruddur-aurora/postgres (RDS Data API): password authentication failed "
        f'for user "cruddurroot" (check the username and password in Secrets Manager secret {secret["ARN"]})'
    )


def test_writes_ask_first_as_on_every_prod_target(data_api, project):
    data_api.db.create()
    line = error_line(dbtool("schema-load", "prod"))
    assert line == (
        "error: refusing to change PRODUCTION cruddur-aurora/cruddur (RDS Data API) without confirmation "
        "(run it in a terminal to be asked, or pass --yes)"
    )
    assert data_api.server.calls.total == 0  # refused before any call


def test_a_write_that_may_have_run_is_never_sent_again(data_api, project):
    data_api.db.create()
    data_api.server.fail_next("DatabaseUnavailableException", "The writer is unavailable", 504)
    line = error_line(dbtool("create", "prod", "--yes"))
    assert line == "error: AWS ExecuteStatement failed: DatabaseUnavailableException: The writer is unavailable"
    assert data_api.server.calls.by_operation == {"ExecuteStatement": 1}  # botocore would have sent it 3 times


def test_the_error_string_is_read_back_into_postgresql_fields():
    from dbtool.engine.dataapi import parse_database_error

    error = parse_database_error(
        "ERROR: operator does not exist: integer = text; Detail: a; b: c; Hint: No operator matches the given name "
        "and argument types. You might need to add explicit type casts.; Position: 36; SQLState: 42883"
    )
    assert (error.message, error.detail, error.sqlstate, error.position) == (
        "operator does not exist: integer = text",
        "a; b: c",
        "42883",
        36,
    )
    assert (
        error.hint
        == "No operator matches the given name and argument types. You might need to add explicit type casts."
    )
    bare = parse_database_error('ERROR: null value in column "name" violates not-null constraint; SQLState: 23502')
    assert (bare.message, bare.detail, bare.hint, bare.position) == (
        'null value in column "name" violates not-null constraint',
        None,
        None,
        None,
    )


def test_a_copy_into_a_table_with_a_statement_trigger_is_refused_past_one_call(data_api, project):
    data_api.db.create()
    rows = "".join(f"{n}\t{'x' * 200}\n" for n in range(10_000))  # 2 MB: more than one call carries
    dump = write(
        project / "dump.sql",
        "CREATE TABLE reading (id int, note text);\nCREATE TABLE batches (n bigint);\n"
        "CREATE FUNCTION count_batch() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        "BEGIN INSERT INTO batches SELECT count(*) FROM fresh; RETURN NULL; END $$;\n"
        "CREATE TRIGGER reading_batch AFTER INSERT ON reading REFERENCING NEW TABLE AS fresh\n"
        "    FOR EACH STATEMENT EXECUTE FUNCTION count_batch();\n"
        "COPY reading (id, note) FROM stdin;\n" + rows + "\\.\n",
    )
    line = error_line(dbtool("schema-load", "prod", "--yes", "--file", str(dump)))
    assert line.startswith(
        "error: dump.sql:7:1: this COPY's rows take more than one RDS Data API call, and trigger reading_batch on "
        "reading would fire once per call where COPY fires it once (load this file over a network connection"
    ), line
    with data_api.db.admin(DBNAME) as conn:
        assert conn.execute("SELECT to_regclass('reading')").fetchone() == (None,)


@pytest.fixture
def without_temp(data_api, aws, monkeypatch):
    """The Data API logging in as a user who may not create temporary objects (no TEMP on the database)."""
    import json

    data_api.db.create()
    with data_api.db.admin() as conn:
        conn.execute("DROP ROLE IF EXISTS loader")
        conn.execute("CREATE ROLE loader LOGIN PASSWORD 'loader-pw'")
        conn.execute(f"GRANT CONNECT, CREATE ON DATABASE {DBNAME} TO loader")
        conn.execute(f"REVOKE TEMPORARY ON DATABASE {DBNAME} FROM PUBLIC")
    with data_api.db.admin(DBNAME) as conn:
        conn.execute("GRANT ALL ON SCHEMA public TO loader")
    secret = {"engine": "postgres", "username": "loader", "password": "loader-pw", "dbname": DBNAME}
    aws.client("secretsmanager").create_secret(Name="cruddur/loader", SecretString=json.dumps(secret))
    monkeypatch.setenv("PROD_DB_SECRET_ID", "cruddur/loader")
    yield data_api
    data_api.server.forget_connections()
    data_api.db.reset()
    with data_api.db.admin() as conn:
        conn.execute("DROP ROLE loader")


def test_without_temp_rows_still_load_and_errors_name_the_lines_sent_together(without_temp, project):
    rows = "".join(f"INSERT INTO a VALUES ({n}, 'row {n}');\n" for n in range(1, 301))
    good = write(project / "good.sql", "CREATE TABLE a (n int PRIMARY KEY, s text);\n" + rows)
    run = dbtool("schema-load", "prod", "--yes", "--file", str(good))
    assert run.code == 0, run.all
    with without_temp.db.admin(DBNAME) as conn:
        assert conn.execute("SELECT count(*) FROM a").fetchone() == (300,)
        conn.execute("DROP TABLE a")
    dup = write(project / "dup.sql", "CREATE TABLE a (n int PRIMARY KEY);\n" + "INSERT INTO a VALUES (1);\n" * 3)
    line = error_line(dbtool("schema-load", "prod", "--yes", "--file", str(dup)))
    assert line.startswith('error: dup.sql:2:1: duplicate key value violates unique constraint "a_pkey"'), line
    assert "in one of the 3 rows on lines 2 to 4, sent together" in line
    copy = write(project / "copy.sql", "CREATE TABLE c (n int);\nCOPY c (n) FROM stdin;\n1\n2x\n3\n\\.\n")
    line = error_line(dbtool("schema-load", "prod", "--yes", "--file", str(copy)))
    assert line.startswith('error: copy.sql:2:1: invalid input syntax for type integer: "2x"'), line
    assert "in one of lines 1 to 3 of its data, sent together" in line
