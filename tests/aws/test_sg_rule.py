"""rds-update-sg-rule against moto running as a real HTTP server, through the real bin/ script.

The address comes from GITPOD_IP, --ip or an IP service played by a local HTTP server; EC2 is moto.
Every refusal is checked to have left the group's rules exactly as they were.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.conftest import Aws
from tests.helpers import error_line, script
from tests.services import IpService, SilentPort, closed_port_url

FIRST_IP, SECOND_IP = "52.95.110.1", "34.201.7.42"  # global unicast; documentation ranges are not


@pytest.fixture
def group(aws: Aws, project: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """The RDS instance's security group, named by DB_SG_ID, and alice's workspace."""
    group_id = aws.client("ec2").create_security_group(GroupName="rds", Description="cruddur rds")["GroupId"]
    monkeypatch.setenv("DB_SG_ID", group_id)
    monkeypatch.setenv("GITHUB_USER", "alice")
    monkeypatch.setenv("GITPOD_WORKSPACE_ID", "cruddur-ws-1")
    return group_id


def ingress(aws: Aws, group_id: str) -> list[dict[str, Any]]:
    rules = aws.client("ec2").describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [group_id]}])
    return sorted(
        (rule for rule in rules["SecurityGroupRules"] if not rule["IsEgress"]), key=lambda r: r["SecurityGroupRuleId"]
    )


def tags(rule: dict[str, Any]) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in rule.get("Tags", [])}


def sg_rule(*args: str, ip: str | None = FIRST_IP, **env: str) -> Any:
    return script("rds-update-sg-rule", *args, env={"GITPOD_IP": ip, **env} if ip else env)


def untagged_rule(aws: Aws, group_id: str, cidr: str, port: int = 5432) -> str:
    """A rule as the old script or the console made it: no owner tag."""
    response = aws.client("ec2").authorize_security_group_ingress(
        GroupId=group_id,
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": port, "ToPort": port, "IpRanges": [{"CidrIp": cidr}]}],
    )
    return response["SecurityGroupRules"][0]["SecurityGroupRuleId"]


def test_first_run_creates_my_tagged_rule(aws, group):
    run = sg_rule()
    assert run.code == 0, run.err
    [rule] = ingress(aws, group)
    assert run.out.strip() == (
        f"created rule {rule['SecurityGroupRuleId']} allowing {FIRST_IP}/32 on port 5432 in {group} (owner alice)"
    )
    assert (rule["CidrIpv4"], rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == (
        f"{FIRST_IP}/32",
        "tcp",
        5432,
        5432,
    )
    assert tags(rule) == {"dbtool:owner": "alice"}
    assert rule["Description"].startswith("dbtool alice cruddur-ws-1 20")


def test_same_ip_changes_nothing(aws, group):
    assert sg_rule().code == 0
    before = ingress(aws, group)
    run = sg_rule()
    assert run.code == 0, run.err
    assert "nothing changed" in run.out
    assert ingress(aws, group) == before  # description (with its time) untouched too


def test_new_ip_modifies_the_same_rule_in_place(aws, group):
    assert sg_rule().code == 0
    [before] = ingress(aws, group)
    run = sg_rule(ip=SECOND_IP)
    assert run.code == 0, run.err
    [after] = ingress(aws, group)
    assert after["SecurityGroupRuleId"] == before["SecurityGroupRuleId"]
    assert after["CidrIpv4"] == f"{SECOND_IP}/32" and tags(after) == {"dbtool:owner": "alice"}
    assert run.out.strip() == (
        f"updated rule {after['SecurityGroupRuleId']}: {FIRST_IP}/32 -> {SECOND_IP}/32 on port 5432 in {group}"
    )


def test_teammates_keep_their_own_rules(aws, group):
    assert sg_rule().code == 0
    assert sg_rule(ip=SECOND_IP, GITHUB_USER="bob").code == 0
    assert sg_rule(ip="35.1.2.3").code == 0  # alice moves: bob's rule must stay
    owners = {tags(rule)["dbtool:owner"]: rule["CidrIpv4"] for rule in ingress(aws, group)}
    assert owners == {"alice": "35.1.2.3/32", "bob": f"{SECOND_IP}/32"}


def test_owner_is_overridable_and_falls_back_to_gitpod_email(aws, group):
    assert sg_rule(GITHUB_USER="", GITPOD_GIT_USER_EMAIL="carol@example.com").code == 0
    assert sg_rule("--owner", "ci-bot", ip=SECOND_IP).code == 0
    assert sorted(tags(rule)["dbtool:owner"] for rule in ingress(aws, group)) == ["carol@example.com", "ci-bot"]


def test_my_rule_deleted_by_someone_is_recreated(aws, group):
    assert sg_rule().code == 0
    [old] = ingress(aws, group)
    aws.client("ec2").revoke_security_group_ingress(GroupId=group, SecurityGroupRuleIds=[old["SecurityGroupRuleId"]])
    run = sg_rule()
    assert run.code == 0, run.err
    [new] = ingress(aws, group)
    assert new["SecurityGroupRuleId"] != old["SecurityGroupRuleId"] and tags(new) == {"dbtool:owner": "alice"}


def test_legacy_rule_id_is_modified_in_place_without_a_group(aws, group, monkeypatch):
    rule_id = untagged_rule(aws, group, "1.1.1.1/32")
    monkeypatch.delenv("DB_SG_ID")  # the rule knows its group
    run = sg_rule(DB_SG_RULE_ID=rule_id)
    assert run.code == 0, run.err
    [rule] = ingress(aws, group)
    assert (rule["SecurityGroupRuleId"], rule["CidrIpv4"]) == (rule_id, f"{FIRST_IP}/32")
    assert "updated rule" in run.out


def test_legacy_rule_id_that_no_longer_exists_is_recreated_and_reported(aws, group):
    rule_id = untagged_rule(aws, group, "1.1.1.1/32")
    aws.client("ec2").revoke_security_group_ingress(GroupId=group, SecurityGroupRuleIds=[rule_id])
    run = sg_rule(DB_SG_RULE_ID=rule_id)
    assert run.code == 0, run.err
    [rule] = ingress(aws, group)
    assert rule["CidrIpv4"] == f"{FIRST_IP}/32" and tags(rule) == {"dbtool:owner": "alice"}
    assert run.err.strip() == (
        f"warning: rule {rule_id} (DB_SG_RULE_ID) no longer existed "
        f"(update DB_SG_RULE_ID to {rule['SecurityGroupRuleId']})"
    )


def test_stale_legacy_rule_id_falls_back_to_my_tagged_rule(aws, group):
    assert sg_rule().code == 0
    [mine] = ingress(aws, group)
    gone = untagged_rule(aws, group, "1.1.1.1/32")
    aws.client("ec2").revoke_security_group_ingress(GroupId=group, SecurityGroupRuleIds=[gone])
    run = sg_rule(ip=SECOND_IP, DB_SG_RULE_ID=gone)
    assert run.code == 0, run.err
    [after] = ingress(aws, group)
    assert after["SecurityGroupRuleId"] == mine["SecurityGroupRuleId"] and after["CidrIpv4"] == f"{SECOND_IP}/32"
    assert f"update DB_SG_RULE_ID to {mine['SecurityGroupRuleId']}" in run.err


def test_legacy_rule_id_in_another_group_is_refused(aws, group):
    other = aws.client("ec2").create_security_group(GroupName="web", Description="web")["GroupId"]
    rule_id = untagged_rule(aws, other, "1.1.1.1/32")
    line = error_line(sg_rule(DB_SG_RULE_ID=rule_id))
    assert f"rule {rule_id} belongs to {other}, not {group}" in line
    assert ingress(aws, other)[0]["CidrIpv4"] == "1.1.1.1/32" and ingress(aws, group) == []


def test_address_already_allowed_by_an_untagged_rule_is_success(aws, group):
    untagged_rule(aws, group, f"{FIRST_IP}/32")
    before = ingress(aws, group)
    run = sg_rule()
    assert run.code == 0, run.err
    assert "already allowed on port 5432" in run.out and ingress(aws, group) == before


def test_port_comes_from_the_prod_url(aws, group):
    run = sg_rule(PROD_CONNECTION_URL="postgresql://u:p@db.example.com:6543/cruddur")
    assert run.code == 0, run.err
    [rule] = ingress(aws, group)
    assert (rule["FromPort"], rule["ToPort"]) == (6543, 6543)
    assert "p@" not in run.all


@pytest.mark.parametrize(
    ("setup_ip", "args"),
    [(None, ()), (FIRST_IP, ()), (FIRST_IP, ("--revoke",))],
    ids=["would-create", "would-modify", "would-revoke"],
)
def test_dry_run_changes_nothing(aws, group, setup_ip, args):
    if setup_ip:
        assert sg_rule(ip=setup_ip).code == 0
    before = ingress(aws, group)
    run = sg_rule("--dry-run", *args, ip=SECOND_IP)
    assert run.code == 0, run.err
    assert run.out.startswith("would ") and "nothing was changed" in run.out
    assert ingress(aws, group) == before


def test_revoke_removes_only_my_rule(aws, group):
    assert sg_rule().code == 0
    assert sg_rule(ip=SECOND_IP, GITHUB_USER="bob").code == 0
    run = sg_rule("--revoke")
    assert run.code == 0, run.err
    assert [tags(rule)["dbtool:owner"] for rule in ingress(aws, group)] == ["bob"]
    again = sg_rule("--revoke")
    assert again.code == 0 and "nothing to revoke" in again.out


def test_json_outcome(aws, group):
    run = sg_rule("--json")
    assert run.code == 0, run.err
    outcome = json.loads(run.out)
    [rule] = ingress(aws, group)
    assert outcome == {
        "action": "created",
        "group_id": group,
        "rule_id": rule["SecurityGroupRuleId"],
        "cidr": f"{FIRST_IP}/32",
        "port": 5432,
        "owner": "alice",
        "previous_cidr": None,
        "replaced_rule_id": None,
        "dry_run": False,
    }


def test_detected_ip_is_used(aws, group, ip_service: IpService):
    ip_service.answer(f"{SECOND_IP}\n")
    run = sg_rule(ip=None)
    assert run.code == 0, run.err
    assert ingress(aws, group)[0]["CidrIpv4"] == f"{SECOND_IP}/32" and ip_service.requests == 1


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        ("", "gave an empty address"),
        ("not-an-ip", "gave 'not-an-ip', which is not an IP address"),
        ("<html><body><h1>502 Bad Gateway</h1></body></html>", "which is not an IP address"),
        ("10.0.0.5", "gave 10.0.0.5, a private"),
        ("100.64.1.1", "gave 100.64.1.1, a private, loopback or shared address"),
        ("127.0.0.1", "gave 127.0.0.1, a private"),
        ("2600:1f18::1", "gave the IPv6 address 2600:1f18::1; the rule needs IPv4"),
        ("0.0.0.0", "gave 0.0.0.0, which is not a unicast host address"),
        ("52.95.110.0/24", "which is not an IP address"),
        ("224.0.0.1", "not a unicast host address"),
    ],
)
def test_bad_answers_from_the_ip_service_are_refused_and_nothing_changes(aws, group, ip_service, answer, says):
    assert sg_rule(ip=FIRST_IP).code == 0
    before = ingress(aws, group)
    ip_service.answer(answer)
    run = sg_rule(ip=None)
    line = error_line(run)
    assert run.code == 1
    assert line.startswith("error: could not detect this workspace's public IPv4 address: ") and says in line
    assert "(pass --ip with your public IPv4 address, or set GITPOD_IP)" in line
    assert ingress(aws, group) == before


def test_an_http_error_from_the_service_is_refused(aws, group, ip_service):
    ip_service.answer(FIRST_IP, status=503)
    line = error_line(sg_rule(ip=None))
    assert f"{ip_service.url} answered HTTP 503 Service Unavailable" in line and ingress(aws, group) == []


def test_bad_gitpod_ip_is_refused_without_asking_a_service(aws, group, ip_service):
    line = error_line(sg_rule(ip="192.168.1.20"))
    assert "GITPOD_IP gave 192.168.1.20, a private" in line and "--allow-non-global" in line
    assert ip_service.requests == 0 and ingress(aws, group) == []


def test_allow_non_global_accepts_a_private_address(aws, group):
    run = sg_rule("--allow-non-global", ip="10.1.2.3")
    assert run.code == 0, run.err
    assert ingress(aws, group)[0]["CidrIpv4"] == "10.1.2.3/32"


def test_next_service_is_tried_after_a_bad_answer(aws, group, ip_service, monkeypatch):
    good = IpService()
    try:
        good.answer(SECOND_IP)
        ip_service.answer("<html>captive portal</html>")
        monkeypatch.setenv("DBTOOL_IP_SERVICES", f"{closed_port_url()},{ip_service.url},{good.url}")
        run = sg_rule(ip=None)
    finally:
        good.close()
    assert run.code == 0, run.err
    assert ingress(aws, group)[0]["CidrIpv4"] == f"{SECOND_IP}/32"


def test_unreachable_ip_service_fails_within_seconds(aws, group, monkeypatch):
    silent = SilentPort()
    try:
        monkeypatch.setenv("DBTOOL_IP_SERVICES", f"{silent.url},{closed_port_url()}")
        started = time.monotonic()
        run = sg_rule(ip=None)
        elapsed = time.monotonic() - started
    finally:
        silent.close()
    line = error_line(run)
    assert f"{silent.url} unreachable (timed out)" in line and "unreachable (Connection refused)" in line
    assert elapsed < 10  # one 3 s timeout plus start-up, not a hang
    assert ingress(aws, group) == []
