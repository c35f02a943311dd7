"""Targets declared in dbtool.toml ([targets.NAME]) beside local and prod, against real servers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import CLUSTER_ARN, DBNAME, LOCAL_PASSWORD, LOCAL_USER, Server
from tests.helpers import dbtool, error_line, in_terminal, script


def declare(project: Path, text: str) -> None:
    (project / "dbtool.toml").write_text(text)


STAGING = '[targets.staging]\nurl_env = "STAGING_URL"\nprotected = true\n'


def test_a_protected_target_refuses_without_yes_then_works_with_it(local: Server, project, monkeypatch):
    declare(project, STAGING)
    monkeypatch.setenv("STAGING_URL", local.url())
    monkeypatch.delenv("CONNECTION_URL")
    refused = dbtool("create", "staging")
    assert refused.code == 1
    assert error_line(refused) == (
        f"error: refusing to change protected target staging {LOCAL_USER}@127.0.0.1:{local.cluster.port}/{DBNAME}"
        " without confirmation (run it in a terminal to be asked, or pass --yes)"
    )
    assert not local.exists()
    created = dbtool("create", "staging", "--yes")
    assert created.code == 0, created.all
    assert local.exists()
    setup = dbtool("setup", "staging", "--yes")
    assert setup.code == 0, setup.all
    assert setup.out.startswith("setting up protected target staging ")
    assert "template" not in setup.out and local.templates() == []  # writes ask first: no template


def test_a_protected_target_asks_on_a_terminal(local: Server, project):
    declare(project, STAGING)
    env = {"STAGING_URL": local.url(), "DBTOOL_PROJECT_ROOT": str(project)}
    code, screen = in_terminal(["db-create", "staging"], DBNAME, env)
    assert code == 0, screen
    assert "protected target staging" in screen and local.exists()


def test_an_unprotected_target_through_its_bin_script(local: Server, project):
    declare(project, '[targets.review]\nurl_env = "REVIEW_URL"\n')
    run = script("db-setup", "review", env={"REVIEW_URL": local.url(), "DBTOOL_PROJECT_ROOT": str(project)})
    assert run.code == 0, run.all
    assert run.out.startswith(f"setting up {LOCAL_USER}@127.0.0.1")
    assert "schema-load" in run.out


def test_an_unknown_target_is_a_usage_error_listing_the_known_ones(project):
    declare(project, STAGING + '[targets.review]\nurl_env = "REVIEW_URL"\n')
    run = dbtool("migrate", "status", "stagin")
    assert run.code == 2
    assert "unknown target 'stagin' (did you mean 'staging'? known: local, prod, staging, review)" in error_line(run)


def test_the_help_lists_the_declared_targets(project):
    declare(project, STAGING)
    assert "Usage: dbtool setup [OPTIONS] [local|prod|staging]" in dbtool("setup", "--help").out


def test_a_target_whose_variable_is_unset_names_it(project):
    declare(project, STAGING)
    line = error_line(dbtool("sessions", "staging"))
    assert line.startswith("error: STAGING_URL is not set (the URL of target staging) (set it in the environment")
    assert "dbtool.toml [targets.staging] names it" in line


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[targets.Staging]\nurl_env = 'X'\n", "targets.Staging is not a target name"),
        ("[targets.staging]\nurl = 'X'\n", "targets.staging: unknown key 'url'"),
        ("[targets.staging]\nurl_env = 'X'\nprotected = 'yes'\n", "targets.staging.protected must be a boolean"),
        ("[targets.staging]\nprotected = true\n", "targets.staging says nothing about where it is"),
        ("[targets.staging]\nurl_env = 'not a variable'\n", "url_env must name an environment variable"),
        ("[targets.a]\ndata_api_cluster_arn = 'arn:x'\n", "targets.a: data_api_cluster_arn needs secret_id"),
    ],
)
def test_a_malformed_target_table_is_one_line(project, text, message):
    declare(project, text)
    line = error_line(dbtool("sessions", "local"))
    assert line.startswith("error: ") and message in line, line


def test_credentials_from_a_secret_and_prods_own_settings_stay_prods(local: Server, project, aws, monkeypatch):
    value = {"username": LOCAL_USER, "password": LOCAL_PASSWORD, "host": "127.0.0.1", "port": local.cluster.port}
    aws.client("secretsmanager").create_secret(Name="app/staging", SecretString=json.dumps(value))
    declare(project, '[targets.staging]\nsecret_id = "app/staging"\n')
    # prod's variables must not leak into another target: this secret does not exist, IAM is not asked for.
    monkeypatch.setenv("PROD_DB_SECRET_ID", "prod/missing")
    monkeypatch.setenv("PROD_DB_IAM_AUTH", "1")
    monkeypatch.delenv("CONNECTION_URL")
    line = error_line(dbtool("create", "staging"))
    assert "names no database" in line  # neither a URL nor the secret says which database
    value["dbname"] = DBNAME
    aws.client("secretsmanager").put_secret_value(SecretId="app/staging", SecretString=json.dumps(value))
    run = dbtool("create", "staging")
    assert run.code == 0, run.all
    assert local.exists()
    assert LOCAL_PASSWORD not in run.all


def test_an_aurora_target_through_the_data_api(data_api, project, monkeypatch):
    for name in ("PROD_DATA_API_CLUSTER_ARN", "PROD_DB_SECRET_ID"):
        monkeypatch.delenv(name)
    declare(project, f'[targets.aurora]\ndata_api_cluster_arn = "{CLUSTER_ARN}"\nsecret_id = "cruddur/aurora"\n')
    run = dbtool("create", "aurora", "--yes")
    assert run.code == 0, run.all
    assert data_api.db.exists()
    assert dbtool("wait", "aurora").out.startswith("cruddur-aurora/cruddur (RDS Data API) accepts connections")


def test_doctor_and_connect_on_a_named_target(local: Server, project, monkeypatch):
    declare(project, STAGING)
    monkeypatch.setenv("STAGING_URL", local.url())
    local.create()
    run = dbtool("doctor", "staging")
    assert run.code == 0, run.all
    assert "STAGING_URL from environment" in run.out
    assert not any(line.startswith("FAIL") for line in run.out.splitlines())


def test_errors_about_a_declared_targets_settings_name_its_keys_not_prods_variables(project, aws, monkeypatch):
    declare(project, '[targets.staging]\nsecret_id = "app/missing"\nurl_env = "STAGING_URL"\n')
    monkeypatch.setenv("STAGING_URL", "postgresql://db.example.com/app")
    line = error_line(dbtool("sessions", "staging"))
    assert "(check secret_id in dbtool.toml [targets.staging] and AWS_DEFAULT_REGION)" in line, line
    assert "PROD_" not in line
    declare(project, '[targets.staging]\niam_auth = true\nurl_env = "STAGING_URL"\n')
    line = error_line(dbtool("sessions", "staging"))
    assert line.startswith("error: iam_auth in dbtool.toml [targets.staging] needs the database user in STAGING_URL")


def test_a_declared_targets_connection_errors_name_its_own_variable(project, monkeypatch):
    from dbtool.local.cluster import free_port

    declare(project, '[targets.staging]\nurl_env = "STAGING_URL"\n')
    monkeypatch.setenv("STAGING_URL", f"postgresql://u:pw@127.0.0.1:{free_port()}/app")
    line = error_line(dbtool("migrate", "status", "staging"))
    assert "STAGING_URL" in line and "CONNECTION_URL" not in line, line
