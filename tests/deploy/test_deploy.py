"""The deploy-time handler: CloudFormation's whole lifecycle against a real server, moto's Secrets Manager and a
loopback receiver for the replies (a presigned S3 URL's stand-in)."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import psycopg
import pytest

from dbtool.deploy import handler, on_event
from dbtool.deploy.fingerprint import fingerprint
from tests.conftest import DBNAME, LOCAL_PASSWORD, PROD_PASSWORD, REPO
from tests.deploy.events import Context, event, last
from tests.helpers import dbtool, error_line
from tests.migrations.test_migrations import V1, V2, applied, tables
from tests.migrations.test_migrations import write as migration


def test_the_whole_lifecycle_forward_only(receiver, secret, local, project, caplog):
    caplog.set_level(logging.INFO, logger="dbtool.deploy")
    migration(project, V1, "bio", "ALTER TABLE users ADD COLUMN bio text;", "ALTER TABLE users DROP COLUMN bio;")
    properties = {"SecretArn": secret, "Fingerprint": fingerprint(project), "Seed": "true"}
    assert handler(event(receiver, "Create", properties), Context()) is None
    created = last(receiver)
    assert created["Status"] == "SUCCESS", created
    physical = created["PhysicalResourceId"]
    assert physical == f"dbtool:127.0.0.1:{local.cluster.port}/{DBNAME}"
    assert created["Data"] == {"DatabaseName": DBNAME, "MigrationsApplied": "1", "SchemaVersion": V1}
    assert applied(local) == [V1]
    with psycopg.connect(local.url()) as conn:
        assert conn.execute("SELECT count(*) FROM activities").fetchone() == (3,)  # seeded on Create

    # A new migration: a new fingerprint, an Update, the same id.
    migration(project, V2, "posts", "CREATE TABLE posts (id int);", "DROP TABLE posts;")
    new_properties = {**properties, "Fingerprint": fingerprint(project)}
    assert new_properties["Fingerprint"] != properties["Fingerprint"]
    update = event(receiver, "Update", new_properties, PhysicalResourceId=physical, OldResourceProperties=properties)
    handler(update, Context())
    assert last(receiver)["Status"] == "SUCCESS"
    assert last(receiver)["PhysicalResourceId"] == physical
    assert last(receiver)["Data"] == {"DatabaseName": DBNAME, "MigrationsApplied": "1", "SchemaVersion": V2}
    assert "posts" in tables(local)

    # An Update that fails names the file and line, and leaves that migration out.
    migration(project, "20260103000000", "bad", "CREATE TABLE likes (id int);\nSELEC oops;")
    failing = {**properties, "Fingerprint": fingerprint(project)}
    handler(
        event(receiver, "Update", failing, PhysicalResourceId=physical, OldResourceProperties=new_properties), Context()
    )
    failed = last(receiver)
    assert failed["Status"] == "FAILED" and failed["PhysicalResourceId"] == physical
    assert failed["Reason"].startswith('db/migrations/20260103000000_bad.sql:3:1: syntax error at or near "SELEC"')
    assert "likes" not in tables(local)

    # The rollback Update: the old properties and the old package (V2's file gone) touch nothing.
    (project / "db" / "migrations" / "20260103000000_bad.sql").unlink()
    (project / "db" / "migrations" / f"{V2}_posts.sql").unlink()
    rollback = event(receiver, "Update", properties, PhysicalResourceId=physical, OldResourceProperties=failing)
    handler(rollback, Context())
    assert last(receiver)["Status"] == "SUCCESS"
    assert last(receiver)["Reason"].startswith(
        f"forward only, nothing done: applied migrations not in this package ({V2})"
    )
    assert applied(local) == [V1, V2] and "posts" in tables(local)

    # Delete with OnDelete retain (the default) keeps the database; with drop, it goes.
    handler(event(receiver, "Delete", properties, PhysicalResourceId=physical), Context())
    assert last(receiver)["Status"] == "SUCCESS" and local.exists()
    handler(event(receiver, "Delete", {**properties, "OnDelete": "drop"}, PhysicalResourceId=physical), Context())
    assert last(receiver)["Status"] == "SUCCESS" and not local.exists()

    everything = json.dumps(receiver.replies) + caplog.text
    assert LOCAL_PASSWORD not in everything and PROD_PASSWORD not in everything
    assert all(size <= 4096 for size in receiver.sizes)


def test_a_failed_create_then_its_delete(receiver, secret, local, project):
    (project / "db" / "schema.sql").write_text("CREATE TABLE a (id int);\nSELECT nope;\n")
    handler(event(receiver, "Create", {"SecretArn": secret}), Context())
    failed = last(receiver)
    assert failed["Status"] == "FAILED"
    assert failed["Reason"].startswith('db/schema.sql:2:8: column "nope" does not exist')
    marker = failed["PhysicalResourceId"]
    assert marker == "dbtool-create-failed"
    handler(event(receiver, "Delete", {"SecretArn": secret, "OnDelete": "drop"}, PhysicalResourceId=marker), Context())
    assert last(receiver)["Status"] == "SUCCESS" and local.exists()  # nothing dropped for an id never created


def test_a_very_long_error_keeps_the_reply_under_the_limit_its_start_and_its_end(receiver, secret, local, project):
    (project / "db" / "schema.sql").write_text(f"CREATE TABLE a (id int);\nSELECT '{'x' * 6000}'::int;\n")
    handler(event(receiver, "Create", {"SecretArn": secret}), Context())
    failed = last(receiver)
    assert receiver.sizes[-1] <= 4096
    assert failed["Status"] == "FAILED" and failed["Reason"].startswith("db/schema.sql:2:8: invalid input syntax")
    assert "x … x" in failed["Reason"]
    assert failed["Reason"].endswith("(nothing was changed: the whole file was rolled back)")


def test_an_unreachable_database_fails_before_the_deadline(receiver, aws, project, monkeypatch):
    from dbtool.local.cluster import free_port

    monkeypatch.setenv("DBTOOL_PROJECT_ROOT", str(project))
    value = {"username": "u", "password": "p", "host": "127.0.0.1", "port": str(free_port()), "dbname": "x"}
    arn = aws.client("secretsmanager").create_secret(Name="gone", SecretString=json.dumps(value))["ARN"]
    started = time.monotonic()
    handler(event(receiver, "Create", {"SecretArn": arn}), Context(seconds=20))
    took = time.monotonic() - started
    assert last(receiver)["Status"] == "FAILED" and took < 20, took
    assert "did not accept connections" in last(receiver)["Reason"]


def test_duplicate_invocations_converge(receiver, secret, local, project):
    migration(project, V1, "slow", "CREATE TABLE slow (id int);\nSELECT pg_sleep(1);")
    request = event(receiver, "Create", {"SecretArn": secret})
    threads = [threading.Thread(target=handler, args=(request, Context())) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [reply["Status"] for reply in receiver.replies] == ["SUCCESS", "SUCCESS"], receiver.replies
    assert applied(local) == [V1]


def test_bad_properties_are_a_failed_reply(receiver, project, monkeypatch):
    monkeypatch.setenv("DBTOOL_PROJECT_ROOT", str(project))
    handler(event(receiver, "Create", {}), Context())
    assert last(receiver)["Status"] == "FAILED"
    assert last(receiver)["Reason"].startswith("the SecretArn property is required")
    handler(event(receiver, "Create", {"SecretArn": "arn:x", "OnDelete": "destroy"}), Context())
    assert last(receiver)["Reason"] == "the OnDelete property must be retain or drop, not 'destroy'"


def test_on_event_returns_fields_or_raises(secret, local, project):
    fields = on_event({"RequestType": "Create", "ResourceProperties": {"SecretArn": secret}}, Context())
    assert fields["PhysicalResourceId"].startswith("dbtool:127.0.0.1:")
    assert fields["Data"]["DatabaseName"] == DBNAME
    (project / "db" / "migrations").mkdir()
    migration(project, V1, "bad", "SELEC 1;")
    with pytest.raises(RuntimeError, match=r"20260101000000_bad.sql:2:1: syntax error"):
        on_event({"RequestType": "Update", "ResourceProperties": {"SecretArn": secret}}, Context())


def test_the_data_api_variant(receiver, data_api, project, monkeypatch):
    monkeypatch.setenv("DBTOOL_PROJECT_ROOT", str(project))
    monkeypatch.delenv("PROD_DATA_API_CLUSTER_ARN")
    monkeypatch.delenv("PROD_DB_SECRET_ID")
    properties = {
        "SecretArn": data_api.secret_arn,
        "ClusterArn": "arn:aws:rds:us-east-1:123456789012:cluster:cruddur-aurora",
    }
    handler(event(receiver, "Create", {**properties, "Seed": "true"}), Context())
    created = last(receiver)
    assert created["Status"] == "SUCCESS", created
    assert created["PhysicalResourceId"] == f"dbtool:{properties['ClusterArn']}/{DBNAME}"
    with psycopg.connect(data_api.db.url()) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (3,)


def test_fingerprint_is_stable_and_sees_every_database_file(project):
    first = dbtool("deploy", "fingerprint").out.strip()
    assert len(first) == 64 and first == fingerprint(project)
    seed = project / "db" / "seed.sql"
    seed.write_bytes(seed.read_bytes().replace(b"\n", b"\r\n"))
    assert fingerprint(project) == first  # a Windows checkout's line endings
    (project / "dbtool.toml").write_text('[extensions]\ncitext = "1.6"\n')
    with_extensions = fingerprint(project)
    assert with_extensions != first
    migration(project, V1, "x", "SELECT 1;")
    assert fingerprint(project) not in (first, with_extensions)
    (project / "README.md").write_text("not a database file")
    assert fingerprint(project) == fingerprint(project)


def test_a_delete_never_drops_what_its_id_does_not_name(receiver, secret, local, project):
    handler(event(receiver, "Create", {"SecretArn": secret}), Context())
    physical = last(receiver)["PhysicalResourceId"]
    handler(event(receiver, "Delete", {"Old": "shape"}, PhysicalResourceId=physical), Context())  # retain, unparsed
    assert last(receiver)["Status"] == "SUCCESS" and local.exists()
    other = physical.replace(f"/{DBNAME}", "/another")
    handler(event(receiver, "Delete", {"SecretArn": secret, "OnDelete": "drop"}, PhysicalResourceId=other), Context())
    assert last(receiver)["Status"] == "SUCCESS" and local.exists()
    assert last(receiver)["Reason"] == f"the properties name {physical}, not this resource: nothing dropped"


WHEELS = Path(__file__).resolve().parents[2] / ".cache" / "lambda-wheels"  # fetched by bin/run-tests


@pytest.mark.parametrize("python", ["3.11", "3.12"])
def test_package_holds_the_handler_its_wheels_and_the_project(project, tmp_path, python):
    import subprocess
    import sys
    import zipfile

    assert (WHEELS / ".complete").exists(), "run ./bin/run-tests: it fetches the Lambda wheels these tests build from"
    (project / "dbtool.toml").write_text('[extensions]\ncitext = "1.6"\n')
    out = tmp_path / "lambda.zip"
    run = dbtool("deploy", "package", "--out", str(out), "--python", python, "--find-links", str(WHEELS))
    assert run.code == 0, run.all
    assert run.out.startswith(f"wrote {out} (") and "handler dbtool.deploy.handler" in run.out
    names = zipfile.ZipFile(out).namelist()
    for needed in (
        "dbtool/deploy/entry.py",
        "dbtool/queries/xact_lock.sql",
        "db/schema.sql",
        "db/seed.sql",
        "dbtool.toml",
    ):
        assert needed in names, needed
    tops = {name.split("/")[0] for name in names}
    assert {"psycopg", "psycopg_binary", "dotenv"} <= tops
    assert not tops & {"boto3", "botocore", "click", "rich"}, tops & {"boto3", "botocore", "click", "rich"}
    assert not any(name.startswith("dbtool/cli/") for name in names)
    assert zipfile.ZipFile(out).getinfo("db/schema.sql").date_time == (2020, 1, 1, 0, 0, 0)  # reproducible
    assert out.stat().st_size < 15_000_000
    if python != f"{sys.version_info.major}.{sys.version_info.minor}":
        return  # no interpreter of that version here to import it with
    unpacked = tmp_path / "task"
    zipfile.ZipFile(out).extractall(unpacked)
    probe = (
        "import sys; sys.path[:0] = [sys.argv[1]]\n"
        "import dbtool.deploy.entry, psycopg\n"
        "print(psycopg.pq.__impl__, dbtool.deploy.entry.__file__.startswith(sys.argv[1]))"
    )
    # -I: no user site, no environment; -S: not even this machine's site-packages, only the package.
    result = subprocess.run([sys.executable, "-I", "-S", "-c", probe, str(unpacked)], capture_output=True, text=True)
    assert result.stdout.split() == ["binary", "True"], result.stderr


def test_package_without_the_wheels_is_one_line(project, tmp_path):
    empty = tmp_path / "none"
    empty.mkdir()
    line = error_line(dbtool("deploy", "package", "--out", str(tmp_path / "x.zip"), "--find-links", str(empty)))
    assert line.startswith("error: could not get Lambda wheels for Python 3.12 on x86_64: ")


def test_reasons_name_properties_never_cli_variables_or_scripts(receiver, aws, data_api, project, monkeypatch):
    from dbtool.local.cluster import free_port

    monkeypatch.setenv("DBTOOL_PROJECT_ROOT", str(project))
    for name in ("PROD_DATA_API_CLUSTER_ARN", "PROD_DB_SECRET_ID"):
        monkeypatch.delenv(name)
    # A secret without dbname, and no DatabaseName: the Reason asks for the property.
    plain = aws.client("secretsmanager").create_secret(
        Name="no-dbname", SecretString=json.dumps({"username": "u", "password": "p"})
    )["ARN"]
    cluster = "arn:aws:rds:us-east-1:123456789012:cluster:cruddur-aurora"
    handler(event(receiver, "Create", {"SecretArn": plain, "ClusterArn": cluster}), Context())
    reason = last(receiver)["Reason"]
    assert "DatabaseName property" in reason and "PROD_" not in reason, reason
    # An unreachable host: the Reason speaks of the function's network, not of ./bin scripts.
    value = {"username": "u", "password": "p", "host": "127.0.0.1", "port": str(free_port()), "dbname": "x"}
    gone = aws.client("secretsmanager").create_secret(Name="gone", SecretString=json.dumps(value))["ARN"]
    handler(event(receiver, "Create", {"SecretArn": gone}), Context(seconds=15))
    reason = last(receiver)["Reason"]
    assert "./bin/" not in reason and "PROD_" not in reason and "security group" in reason, reason


def test_package_builds_are_the_same_bytes_from_any_interpreter_path(project, tmp_path):
    """pip writes console scripts whose shebang is the builder's interpreter: they are left out, with their
    RECORD lines, so two machines (here: two virtual environments) build the same zip; the manifest says what
    it was built for."""
    import json
    import os
    import subprocess
    import sys
    import sysconfig
    import zipfile

    other = tmp_path / "elsewhere" / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(other)], check=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), sysconfig.get_paths()["purelib"]])}
    outs = []
    for python in (sys.executable, str(other / "bin" / "python")):
        out = tmp_path / f"{len(outs)}.zip"
        command = [python, "-m", "dbtool", "deploy", "package", "--out", str(out), "--find-links", str(WHEELS)]
        result = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        outs.append(out)
    assert outs[0].read_bytes() == outs[1].read_bytes()
    archive = zipfile.ZipFile(outs[0])
    assert not [name for name in archive.namelist() if name.startswith("bin/")]
    assert json.loads(archive.read("dbtool-package.json")) == {"architecture": "x86_64", "python": "3.12"}
