"""Every AWS failure is one line that says what to fix, and leaves the security group as it was.

Most are real answers from moto's HTTP server; the codes moto cannot produce (a denied permission,
the rule limit) come from botocore's Stubber on a real client, which also proves that nothing else
was called after the failure.
"""

from __future__ import annotations

import pytest
from botocore.stub import Stubber

from dbtool.aws.clients import AwsError
from dbtool.aws.sgrule import OWNER_TAG, RuleRequest, update_rule
from tests.aws.test_sg_rule import FIRST_IP, ingress
from tests.conftest import Aws
from tests.helpers import dbtool, error_line, script

GROUP = "sg-0123456789abcdef0"


@pytest.fixture
def group(aws: Aws, project, monkeypatch: pytest.MonkeyPatch) -> str:
    group_id = aws.client("ec2").create_security_group(GroupName="rds", Description="rds")["GroupId"]
    monkeypatch.setenv("DB_SG_ID", group_id)
    monkeypatch.setenv("GITPOD_IP", FIRST_IP)
    return group_id


def test_group_not_found(aws, group, monkeypatch):
    monkeypatch.setenv("DB_SG_ID", GROUP)
    line = error_line(dbtool("update-sg-rule"))
    assert line == (
        f"error: security group {GROUP} not found in region us-east-1 (check DB_SG_ID and AWS_DEFAULT_REGION)"
    )


def test_wrong_region_names_the_region(aws, group, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    line = error_line(dbtool("update-sg-rule"))
    assert f"security group {group} not found in region eu-west-1" in line
    assert ingress(aws, group) == []


def test_region_from_dotenv(aws, group, monkeypatch, project):
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    (project / ".env").write_text("AWS_REGION=us-east-1\n")
    assert dbtool("update-sg-rule").code == 0
    assert len(ingress(aws, group)) == 1


def test_no_region(aws, group, monkeypatch):
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    line = error_line(dbtool("update-sg-rule"))
    assert line == "error: no AWS region configured (set AWS_DEFAULT_REGION, e.g. us-east-1)"


def test_no_credentials(aws, group, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    line = error_line(dbtool("update-sg-rule"))
    assert line.startswith("error: no AWS credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")


def test_quiet_never_breaks_a_workspace_start(aws, group, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    run = script("rds-update-sg-rule", "--quiet")
    assert run.code == 0 and run.out == ""
    assert run.err.startswith("warning: no AWS credentials found (") and "was not updated" in run.err
    assert "Traceback" not in run.err and len(run.err.splitlines()) == 1


def test_quiet_success_prints_nothing(aws, group):
    run = script("rds-update-sg-rule", "--quiet")
    assert (run.code, run.out, run.err) == (0, "", "")
    assert len(ingress(aws, group)) == 1


def test_quiet_still_fails_on_usage_mistakes(aws, group):
    run = dbtool("update-sg-rule", "--quiet", "--port", "0")
    assert run.code == 2 and "--port" in error_line(run)


def test_no_group_configured(aws, group, monkeypatch):
    monkeypatch.delenv("DB_SG_ID")
    line = error_line(dbtool("update-sg-rule"))
    assert line == "error: no security group given (set DB_SG_ID to the RDS security group or pass --group-id)"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("DB_SG_RULE_ID", "rule-5", "error: 'rule-5' is not a security group rule id (DB_SG_RULE_ID looks like sgr-"),
        ("DB_SG_RULE_ID", "sg-0123456789abcdef0", "is not a security group rule id"),
        ("DB_SG_ID", "launch-wizard-1", "error: 'launch-wizard-1' is not a security group id (DB_SG_ID looks like sg-"),
    ],
)
def test_malformed_ids_are_refused_before_anything_is_created(aws, group, monkeypatch, variable, value, message):
    monkeypatch.setenv(variable, value)
    assert message in error_line(dbtool("update-sg-rule"))
    assert ingress(aws, group) == []


def test_rejected_credentials(aws, group):
    ec2 = aws.client("ec2")  # moto accepts any key; EC2 answers a revoked one with AuthFailure
    with Stubber(ec2) as stub:
        stub.add_client_error("describe_security_group_rules", "AuthFailure", "AWS was not able to validate")
        with pytest.raises(AwsError, match=r"AWS rejected the credentials \(AuthFailure\)"):
            update_rule(ec2, request(group))
        stub.assert_no_pending_responses()


def request(group_id: str, **changes: object) -> RuleRequest:
    fields: dict = {
        "group_id": group_id,
        "owner": "alice",
        "port": 5432,
        "cidr": f"{FIRST_IP}/32",
        "description": "dbtool alice ws 2026-11-23T10:00Z",
    }
    return RuleRequest(**(fields | changes))


def owned_rules_call(group_id: str) -> dict:
    return {
        "Filters": [
            {"Name": "group-id", "Values": [group_id]},
            {"Name": f"tag:{OWNER_TAG}", "Values": ["alice"]},
        ]
    }


@pytest.mark.parametrize("code", ["UnauthorizedOperation", "AccessDenied"])
def test_permission_denied_lists_the_iam_actions(aws, group, code):
    ec2 = aws.client("ec2")
    with Stubber(ec2) as stub:
        stub.add_response("describe_security_group_rules", {"SecurityGroupRules": []}, owned_rules_call(group))
        stub.add_response("describe_security_groups", {"SecurityGroups": [{"GroupId": group}]}, {"GroupIds": [group]})
        stub.add_client_error("authorize_security_group_ingress", code, "You are not authorized")
        with pytest.raises(AwsError) as caught:
            update_rule(ec2, request(group))
        stub.assert_no_pending_responses()
    assert str(caught.value).startswith(
        f"AWS denied AuthorizeSecurityGroupIngress ({code}) (the IAM user or role needs: "
    )
    for action in ("ec2:AuthorizeSecurityGroupIngress", "ec2:ModifySecurityGroupRules", "ec2:CreateTags"):
        assert action in str(caught.value)
    assert ingress(aws, group) == []  # the stubbed client never reached moto


def test_denied_describe_stops_before_any_change(aws, group):
    ec2 = aws.client("ec2")
    with Stubber(ec2) as stub:
        stub.add_client_error("describe_security_group_rules", "UnauthorizedOperation", "not authorized")
        with pytest.raises(AwsError, match=r"AWS denied DescribeSecurityGroupRules"):
            update_rule(ec2, request(group))
        stub.assert_no_pending_responses()  # and no write was attempted: the stub would have failed it


def test_rule_limit_reached(aws, group):
    ec2 = aws.client("ec2")
    with Stubber(ec2) as stub:
        stub.add_response("describe_security_group_rules", {"SecurityGroupRules": []}, owned_rules_call(group))
        stub.add_response("describe_security_groups", {"SecurityGroups": [{"GroupId": group}]}, {"GroupIds": [group]})
        stub.add_client_error(
            "authorize_security_group_ingress", "RulesPerSecurityGroupLimitExceeded", "The maximum number of rules"
        )
        with pytest.raises(AwsError) as caught:
            update_rule(ec2, request(group))
    assert str(caught.value).startswith(f"security group {group} has reached its limit of inbound rules")
    assert "--revoke --owner" in str(caught.value)


def test_dry_run_without_permission_is_denied_not_would(aws, group):
    ec2 = aws.client("ec2")
    with Stubber(ec2) as stub:
        stub.add_response("describe_security_group_rules", {"SecurityGroupRules": []}, owned_rules_call(group))
        stub.add_response("describe_security_groups", {"SecurityGroups": [{"GroupId": group}]}, {"GroupIds": [group]})
        stub.add_client_error("authorize_security_group_ingress", "UnauthorizedOperation", "not authorized")
        with pytest.raises(AwsError, match="AWS denied AuthorizeSecurityGroupIngress"):
            update_rule(ec2, request(group), dry_run=True)


def test_aws_unreachable(group, monkeypatch):
    from tests.services import closed_port_url

    monkeypatch.setenv("AWS_ENDPOINT_URL", closed_port_url().rstrip("/"))
    line = error_line(dbtool("update-sg-rule"))
    assert line.startswith("error: cannot reach http://127.0.0.1:") and "AWS_ENDPOINT_URL" in line
