"""The deploy-time handler on a live database (issue 23): a pending migration with a hazard nobody acknowledged, and
a database that drifted from the project's files, are refused (FAILED, nothing applied); both transports."""

from __future__ import annotations

import psycopg
import pytest

from dbtool.deploy import handler
from tests.deploy.events import Context, event, last
from tests.migrations.test_migrations import V1, V2, applied, tables
from tests.migrations.test_migrations import write as migration

INDEX = "CREATE INDEX users_handle ON users (handle);"
ACKNOWLEDGED = "-- dbtool:allow index-not-concurrent: users holds a few hundred rows\n" + INDEX


@pytest.fixture(params=["libpq", "data-api"])
def deployed(request, receiver, project, monkeypatch):
    """A stack's database created by the handler (Create), and a function that sends it an Update."""
    monkeypatch.setenv("DBTOOL_PROJECT_ROOT", str(project))
    if request.param == "libpq":
        server = request.getfixturevalue("local")
        properties = {"SecretArn": request.getfixturevalue("secret")}
    else:
        data_api = request.getfixturevalue("data_api")
        server = data_api.db
        monkeypatch.delenv("PROD_DATA_API_CLUSTER_ARN")
        monkeypatch.delenv("PROD_DB_SECRET_ID")
        properties = {
            "SecretArn": data_api.secret_arn,
            "ClusterArn": "arn:aws:rds:us-east-1:123456789012:cluster:cruddur-aurora",
        }
    migration(project, V1, "bio", "ALTER TABLE users ADD COLUMN bio text;")
    handler(event(receiver, "Create", properties), Context())
    assert last(receiver)["Status"] == "SUCCESS", last(receiver)
    physical = last(receiver)["PhysicalResourceId"]

    def update(**extra: str) -> dict:
        changed = {**properties, **extra}
        handler(
            event(receiver, "Update", changed, PhysicalResourceId=physical, OldResourceProperties=properties), Context()
        )
        return last(receiver)

    update.server = server  # type: ignore[attr-defined]
    return update


def test_an_unacknowledged_hazard_fails_the_update_and_applies_nothing(deployed, project):
    migration(project, V2, "handle", f"CREATE TABLE handles (id int);\n{INDEX}")
    reply = deployed()
    assert reply["Status"] == "FAILED", reply
    assert reply["Reason"].startswith(
        f"db/migrations/{V2}_handle.sql:3: index-not-concurrent: CREATE INDEX on users blocks its writes"
    ), reply["Reason"]
    assert "dbtool:allow index-not-concurrent" in reply["Reason"]
    assert applied(deployed.server) == [V1] and "handles" not in tables(deployed.server)
    migration(project, V2, "handle", f"CREATE TABLE handles (id int);\n{ACKNOWLEDGED}")
    reply = deployed()
    assert reply["Status"] == "SUCCESS", reply
    assert applied(deployed.server) == [V1, V2]
    with psycopg.connect(deployed.server.url()) as conn:
        assert conn.execute("SELECT to_regclass('users_handle') IS NOT NULL").fetchone() == (True,)


def test_drift_fails_the_update_unless_allow_drift_is_set(deployed, project):
    with psycopg.connect(deployed.server.url()) as conn:
        conn.execute("CREATE INDEX users_by_hand ON users (display_name)")
    migration(project, V2, "handles", "CREATE TABLE handles (id int);")
    reply = deployed()
    assert reply["Status"] == "FAILED", reply
    reason = reply["Reason"]
    assert " has drifted from db/schema.sql and its applied migrations: " in reason, reason
    assert "+CREATE INDEX users_by_hand ON public.users USING btree (display_name);" in reason
    assert reason.endswith("or set the AllowDrift property to migrate it as it is)"), reason
    assert applied(deployed.server) == [V1] and "handles" not in tables(deployed.server)
    with psycopg.connect(deployed.server.url()) as conn:
        left = conn.execute("SELECT count(*) FROM pg_database WHERE datname LIKE '%dbtool_drift%'").fetchone()
    assert left == (0,)  # the throwaway database built beside it is gone
    reply = deployed(AllowDrift="true")
    assert reply["Status"] == "SUCCESS", reply
    assert applied(deployed.server) == [V1, V2]


def test_no_drift_and_nothing_pending_is_no_extra_work(deployed, project, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="dbtool.deploy")
    migration(project, V2, "handles", "CREATE TABLE handles (id int);")
    assert deployed()["Status"] == "SUCCESS"
    assert "no drift: the schema matches db/schema.sql and its applied migrations" in caplog.text
    caplog.clear()
    assert deployed()["Status"] == "SUCCESS"  # nothing pending: no throwaway database built
    assert "no drift" not in caplog.text


def test_a_user_who_cannot_create_the_throwaway_database_is_told_so(receiver, aws, local, project, monkeypatch):
    import json

    from tests.conftest import DBNAME

    monkeypatch.setenv("DBTOOL_PROJECT_ROOT", str(project))
    monkeypatch.delenv("CONNECTION_URL", raising=False)
    local.create()
    with psycopg.connect(local.url()) as conn:
        conn.execute("CREATE ROLE deployer LOGIN PASSWORD 'deployer-pw' NOCREATEDB")
        conn.execute("CREATE TABLE users (id int)")
        conn.execute("ALTER TABLE users OWNER TO deployer")
    value = {"username": "deployer", "password": "deployer-pw", "host": "127.0.0.1", "port": str(local.cluster.port)}
    value["dbname"] = DBNAME
    arn = aws.client("secretsmanager").create_secret(Name="deployer", SecretString=json.dumps(value))["ARN"]
    migration(project, V1, "bio", "ALTER TABLE users ADD COLUMN bio text;")
    try:
        handler(event(receiver, "Create", {"SecretArn": arn}), Context())
    finally:
        with psycopg.connect(local.url()) as conn:
            conn.execute("DROP TABLE IF EXISTS users")
            conn.execute("DROP ROLE deployer")
    reply = last(receiver)
    assert reply["Status"] == "FAILED", reply
    assert reply["Reason"].startswith("cannot build a throwaway database on deployer@"), reply["Reason"]
    assert "permission denied to create database" in reply["Reason"]
    assert reply["Reason"].endswith(
        "needs CREATEDB for it (ALTER ROLE … CREATEDB), or set the AllowDrift property to migrate it as it is)"
    ), reply["Reason"]
    assert "deployer-pw" not in json.dumps(reply)


def test_a_newly_declared_extension_is_not_drift(deployed, project):
    """dbtool.toml gains an extension and a migration uses it: up installs it, so its absence is not drift."""
    (project / "dbtool.toml").write_text('[extensions]\ncitext = "1.6"\n')
    migration(project, V2, "nickname", "ALTER TABLE users ADD COLUMN nickname citext;")
    reply = deployed()
    assert reply["Status"] == "SUCCESS", reply
    assert applied(deployed.server) == [V1, V2]


def test_a_schema_dumped_after_the_pending_migration_is_not_taken_for_drift(
    deployed, project, request, caplog, monkeypatch
):
    """The usual flow: migrate locally, `dbtool schema dump`, commit both. db/schema.sql then already holds the new
    migration (and its row); the target has not applied it, so the two cannot be compared before migrating."""
    import logging

    from tests.helpers import dbtool

    caplog.set_level(logging.INFO, logger="dbtool.deploy")
    local = request.getfixturevalue("local_server")
    local.reset("dev")
    monkeypatch.setenv("CONNECTION_URL", local.url("dev"))
    migration(project, V2, "nickname", "ALTER TABLE users ADD COLUMN nickname text;")
    for command in (["setup"], ["schema", "dump"]):
        done = dbtool(*command)
        assert done.code == 0, done.all
    assert "nickname" in (project / "db" / "schema.sql").read_text()
    reply = deployed()
    assert reply["Status"] == "SUCCESS", reply
    assert applied(deployed.server) == [V1, V2]
    assert "drift not checked: db/schema.sql marks 1 migration applied that " in caplog.text
