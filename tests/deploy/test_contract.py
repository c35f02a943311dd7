"""The handler keeps CloudFormation's contract under every input (issue 22, items 6-13): hostile events, a reply
URL that refuses, the Lambda's clock running out, and DEBUG logging. Each case on the real server."""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import pkgutil
import time

import pytest

import dbtool.deploy
from dbtool.deploy import handler
from tests.conftest import DBNAME, LOCAL_PASSWORD
from tests.deploy.events import Context, event, last
from tests.migrations.test_migrations import V1, V2, applied, tables
from tests.migrations.test_migrations import write as migration


def test_an_unknown_request_type_fails_and_touches_nothing(receiver, secret, local):
    handler(event(receiver, "Destroy", {"SecretArn": secret, "OnDelete": "drop"}), Context())
    reply = last(receiver)
    assert reply["Status"] == "FAILED"
    assert reply["Reason"] == "unknown RequestType 'Destroy' (CloudFormation sends Create, Update or Delete)"
    assert not local.exists()


def test_an_update_that_renames_the_database_is_refused_and_the_rollback_keeps_everything(receiver, secret, local):
    properties = {"SecretArn": secret, "DatabaseName": DBNAME, "OnDelete": "drop"}
    handler(event(receiver, "Create", properties), Context())
    physical = last(receiver)["PhysicalResourceId"]
    renamed = {**properties, "DatabaseName": "cruddur_v2"}
    handler(
        event(receiver, "Update", renamed, PhysicalResourceId=physical, OldResourceProperties=properties), Context()
    )
    refused = last(receiver)
    assert refused["Status"] == "FAILED" and refused["PhysicalResourceId"] == physical
    assert refused["Reason"] == (
        f"DatabaseName cannot change from {DBNAME} to cruddur_v2 in an Update: CloudFormation would then delete "
        f"the old resource (with OnDelete drop, its database) (add a new resource for the new database instead)"
    )
    assert not local.exists("cruddur_v2")
    # CloudFormation's rollback Update: the old properties again, under the same id: fine, nothing changes.
    handler(
        event(receiver, "Update", properties, PhysicalResourceId=physical, OldResourceProperties=renamed), Context()
    )
    assert last(receiver)["Status"] == "SUCCESS" and local.exists()


def test_a_long_reason_keeps_its_place_and_its_start_cut_in_bytes(receiver, secret, local, project):
    (project / "db" / "schema.sql").write_text(f"CREATE TABLE a (id int);\nSELECT '{'é🙂' * 3000}'::int;\n")
    handler(event(receiver, "Create", {"SecretArn": secret}), Context())
    reply = last(receiver)
    assert receiver.sizes[-1] <= 4096 and reply["Status"] == "FAILED"
    assert reply["Reason"].startswith('db/schema.sql:2:8: invalid input syntax for type integer: "é🙂é🙂'), reply
    assert " … " in reply["Reason"]
    assert reply["Reason"].endswith("(nothing was changed: the whole file was rolled back)")


def test_every_field_is_bounded_even_a_hostile_physical_id(receiver, secret, local):
    hostile = "dbtool:" + "x" * 3000
    handler(
        event(receiver, "Delete", {"SecretArn": secret}, PhysicalResourceId=hostile, LogicalResourceId="L" * 3000),
        Context(),
    )
    assert receiver.sizes[-1] <= 4096
    assert last(receiver)["Status"] == "SUCCESS"
    assert json.dumps(last(receiver)).encode().__len__() <= 4096


def test_the_entry_points_stay_functions_after_every_import(receiver, project, monkeypatch):
    monkeypatch.setenv("DBTOOL_PROJECT_ROOT", str(project))
    for module in pkgutil.iter_modules(dbtool.deploy.__path__):
        if module.name != "cdk":  # the CDK construct needs the [cdk] extra; it defines no entry point either way
            importlib.import_module(f"dbtool.deploy.{module.name}")
    for _ in range(2):  # the first call used to import a submodule that replaced the function
        dbtool.deploy.handler(event(receiver, "Create", {}), Context())
        assert inspect.isfunction(dbtool.deploy.handler) and inspect.isfunction(dbtool.deploy.on_event)
    assert [reply["Status"] for reply in receiver.replies] == ["FAILED", "FAILED"]


def test_when_the_timer_has_answered_no_migration_starts(receiver, secret, local, project):
    migration(project, V1, "slow", "CREATE TABLE slow (id int);\nSELECT pg_sleep(4);")
    migration(project, V2, "after", "CREATE TABLE after_the_timer (id int);")
    started = time.monotonic()
    handler(event(receiver, "Create", {"SecretArn": secret}), Context(seconds=7))  # the timer answers at 2 s
    assert [reply["Status"] for reply in receiver.replies] == ["FAILED"]
    assert "ran out of Lambda time" in receiver.replies[0]["Reason"]
    assert receiver.attempts[0] - started < 3.5
    assert V2 not in applied(local) and "after_the_timer" not in tables(local)


@pytest.mark.parametrize(
    ("properties", "reason"),
    [
        ({"Port": "99999"}, "the Port property must be a port number (1-65535), not '99999'"),
        ({"Port": "0"}, "the Port property must be a port number (1-65535), not '0'"),
        ({"DatabaseName": "d" * 64}, "the DatabaseName property is 64 bytes; PostgreSQL names are at most 63"),
        ({"DatabaseName": {"x": 1}}, "the DatabaseName property must be a string, not an object"),
        ({"Seed": ["true"]}, "the Seed property must be a string, not a list"),
        ({"OnDelete": "destroy"}, "the OnDelete property must be retain or drop, not 'destroy'"),
    ],
)
def test_permanent_errors_fail_at_once(receiver, secret, local, properties, reason):
    started = time.monotonic()
    handler(event(receiver, "Create", {"SecretArn": secret, **properties}), Context(seconds=300))
    assert time.monotonic() - started < 5
    assert last(receiver)["Status"] == "FAILED" and last(receiver)["Reason"] == reason
    assert not local.exists()


def test_a_refused_reply_is_not_retried(receiver, project, monkeypatch):
    monkeypatch.setenv("DBTOOL_PROJECT_ROOT", str(project))
    receiver.status = 403  # an expired presigned URL
    handler(event(receiver, "Create", {}), Context())
    assert len(receiver.attempts) == 1


def test_reply_retries_stop_before_the_deadline(receiver, project, monkeypatch):
    monkeypatch.setenv("DBTOOL_PROJECT_ROOT", str(project))
    receiver.status = 500
    started = time.monotonic()
    handler(event(receiver, "Create", {}), Context(seconds=8))
    assert time.monotonic() - started < 8
    assert len(receiver.attempts) >= 2


def test_an_event_without_a_response_url_runs_nothing(receiver, secret, local, caplog):
    caplog.set_level(logging.INFO)
    request = event(receiver, "Create", {"SecretArn": secret})
    del request["ResponseURL"]
    assert handler(request, Context()) is None
    assert not local.exists() and receiver.attempts == []
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert [record.getMessage() for record in errors] == [
        "the event has no ResponseURL: nothing was run (is this function a custom resource's ServiceToken?)"
    ]


def test_no_secret_in_any_log_at_debug(receiver, secret, local, caplog):
    caplog.set_level(logging.DEBUG)
    handler(event(receiver, "Create", {"SecretArn": secret}), Context())
    assert last(receiver)["Status"] == "SUCCESS"
    assert "DEBUG    botocore" in caplog.text  # botocore did log at DEBUG
    assert "(a record of botocore.parsers withheld by dbtool: it holds a secret)" in caplog.text
    assert LOCAL_PASSWORD not in caplog.text


def test_a_cluster_still_being_created_is_waited_for(receiver, data_api, project, monkeypatch):
    """A writer that does not exist yet (404) or is not available (504 on BeginTransaction) is waited for."""
    monkeypatch.setenv("DBTOOL_PROJECT_ROOT", str(project))
    monkeypatch.delenv("PROD_DATA_API_CLUSTER_ARN")
    monkeypatch.delenv("PROD_DB_SECRET_ID")
    data_api.server.fail_next("DatabaseNotFoundException", "The cluster has no writer", status=404, count=2)
    properties = {
        "SecretArn": data_api.secret_arn,
        "ClusterArn": "arn:aws:rds:us-east-1:123456789012:cluster:cruddur-aurora",
    }
    handler(event(receiver, "Create", properties), Context())
    assert last(receiver)["Status"] == "SUCCESS", last(receiver)
    assert data_api.db.exists()
