"""Keep one ingress rule of the RDS security group pointed at this developer's current address.

The old script modified one hand-copied rule id: shared by a team, the last workspace to start
locked everybody else out, and a deleted rule broke it for good. Here each developer owns their
rule, found by a tag (``dbtool:owner``), so teammates never overwrite each other. A changed
address is modified in place (same rule id, same tags, no window without access); a missing rule
is created with its tag in the same call, so no untagged rule is ever left behind. The functions
take an EC2 client so that tests can hand them one stubbed with error codes moto cannot produce.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from dbtool.aws.clients import AwsError, aws_errors

if TYPE_CHECKING:
    from dbtool.aws.clients import Settings

OWNER_TAG = "dbtool:owner"
IAM_ACTIONS = (
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeSecurityGroupRules",
    "ec2:AuthorizeSecurityGroupIngress",
    "ec2:ModifySecurityGroupRules",
    "ec2:RevokeSecurityGroupIngress",
    "ec2:CreateTags",
)
LIMIT_CODE = "RulesPerSecurityGroupLimitExceeded"
DUPLICATE_CODE = "InvalidPermission.Duplicate"
DRY_RUN_CODE = "DryRunOperation"
RULE_MISSING_CODES = ("InvalidSecurityGroupRuleId.NotFound", "InvalidPermission.NotFound")
# Characters EC2 accepts in a rule description; anything else becomes "_".
DESCRIPTION_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789. _-:/()#,@[]+=&;{}!$*")


@dataclass(frozen=True)
class RuleRequest:
    """What the rule should be: whose, where, which port, from which address."""

    group_id: str | None
    owner: str
    port: int
    cidr: str
    description: str
    rule_id: str | None = None  # DB_SG_RULE_ID, the old way: this exact rule, whoever tagged it


@dataclass(frozen=True)
class Outcome:
    """What happened (or, in a dry run, would happen). ``action`` is one of ACTIONS."""

    action: str
    group_id: str
    rule_id: str | None
    cidr: str | None
    port: int
    owner: str
    previous_cidr: str | None = None
    replaced_rule_id: str | None = None
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


ACTIONS = ("created", "modified", "unchanged", "already-allowed", "revoked", "absent")


def update_rule(ec2: Any, request: RuleRequest, *, dry_run: bool = False) -> Outcome:
    """Make the owner's rule allow ``request.cidr`` on ``request.port``, changing as little as possible."""
    rule, base = _locate(ec2, request, dry_run)
    group_id = base["group_id"]
    # A stored rule id that no longer exists was replaced; the caller tells the user which id to keep.
    stale = request.rule_id if request.rule_id and (rule or {}).get("SecurityGroupRuleId") != request.rule_id else None
    base |= {"cidr": request.cidr, "replaced_rule_id": stale}
    if rule is not None and _allows(rule, request):
        return Outcome("unchanged", rule_id=rule["SecurityGroupRuleId"], **base)
    if rule is not None:
        previous = rule.get("CidrIpv4")
        if None is not _call(ec2.modify_security_group_rules, dry_run, **_modification(group_id, rule, request)):
            return Outcome("modified", rule_id=rule["SecurityGroupRuleId"], previous_cidr=previous, **base)
        return Outcome("already-allowed", rule_id=None, previous_cidr=previous, **base)
    response = _authorize(ec2, group_id, request, dry_run)
    if response is None:
        return Outcome("already-allowed", rule_id=None, **base)
    created = (response.get("SecurityGroupRules") or [{}])[0].get("SecurityGroupRuleId")
    return Outcome("created", rule_id=created, **base)


def revoke_rule(ec2: Any, request: RuleRequest, *, dry_run: bool = False) -> Outcome:
    """Remove the owner's rule (or the stored rule id); no rule is not an error."""
    rule, base = _locate(ec2, request, dry_run)
    group_id = base["group_id"]
    if rule is None:
        return Outcome("absent", rule_id=request.rule_id, cidr=None, **base)
    rule_id = rule["SecurityGroupRuleId"]
    _call(ec2.revoke_security_group_ingress, dry_run, GroupId=group_id, SecurityGroupRuleIds=[rule_id])
    return Outcome("revoked", rule_id=rule_id, cidr=rule.get("CidrIpv4"), **base)


def description(owner: str, workspace: str, when: str) -> str:
    """``dbtool <owner> <workspace> <UTC time>`` in the characters EC2 allows, at most 255 of them."""
    text = f"dbtool {owner} {workspace} {when}"
    return "".join(char if char in DESCRIPTION_CHARS else "_" for char in text)[:255]


def _locate(ec2: Any, request: RuleRequest, dry_run: bool) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The rule to work on (or ``None``) and the Outcome fields every action shares."""
    rule = _find_rule(ec2, request)
    group_id = rule["GroupId"] if rule else request.group_id
    assert group_id is not None  # _find_rule checks that there is a group to create the rule in
    return rule, {"group_id": group_id, "port": request.port, "owner": request.owner, "dry_run": dry_run}


def _find_rule(ec2: Any, request: RuleRequest) -> dict[str, Any] | None:
    """The stored rule id's rule, else the owner's rule on this port, else ``None`` (after checking the group)."""
    _check_ids(request)
    not_found = _not_found_messages(request, ec2.meta.region_name)
    with aws_errors(actions=IAM_ACTIONS, not_found=not_found):
        if request.rule_id:
            rule = _rule_by_id(ec2, request.rule_id)
            if rule is not None:
                if request.group_id and rule["GroupId"] != request.group_id:
                    raise AwsError(
                        f"rule {request.rule_id} belongs to {rule['GroupId']}, not {request.group_id}",
                        "check DB_SG_RULE_ID and DB_SG_ID",
                    )
                if rule.get("IsEgress"):
                    raise AwsError(f"rule {request.rule_id} is an outbound rule", "DB_SG_RULE_ID must be inbound")
                return rule
            if not request.group_id:
                raise AwsError(
                    f"rule {request.rule_id} (DB_SG_RULE_ID) no longer exists",
                    "set DB_SG_ID so that a new rule can be created in the group",
                )
        if not request.group_id:
            raise AwsError("no security group given", "set DB_SG_ID to the RDS security group or pass --group-id")
        rules = _owned_rules(ec2, request)
        if not rules:
            ec2.describe_security_groups(GroupIds=[request.group_id])  # InvalidGroup.NotFound -> a clear error
            return None
        on_port = [rule for rule in rules if rule.get("FromPort") == request.port]
        return (on_port or rules)[0]


def _check_ids(request: RuleRequest) -> None:
    """Refuse a mistyped id before asking AWS: a stale-looking rule id must not lead to a new rule."""
    import re

    checks = ((request.group_id, "sg", "DB_SG_ID"), (request.rule_id, "sgr", "DB_SG_RULE_ID"))
    for value, prefix, variable in checks:
        if value and not re.fullmatch(rf"{prefix}-[0-9a-f]{{8,17}}", value):
            raise AwsError(
                f"{value!r} is not a security group{' rule' if prefix == 'sgr' else ''} id",
                f"{variable} looks like {prefix}-0123456789abcdef0",
            )


def _rule_by_id(ec2: Any, rule_id: str) -> dict[str, Any] | None:
    import botocore.exceptions

    try:
        rules = ec2.describe_security_group_rules(SecurityGroupRuleIds=[rule_id])["SecurityGroupRules"]
    except botocore.exceptions.ClientError as error:
        if error.response.get("Error", {}).get("Code") in RULE_MISSING_CODES:
            return None
        raise
    return rules[0] if rules else None


def _owned_rules(ec2: Any, request: RuleRequest) -> list[dict[str, Any]]:
    filters = [
        {"Name": "group-id", "Values": [request.group_id]},
        {"Name": f"tag:{OWNER_TAG}", "Values": [request.owner]},
    ]
    rules: list[dict[str, Any]] = []
    for page in ec2.get_paginator("describe_security_group_rules").paginate(Filters=filters):
        rules.extend(rule for rule in page["SecurityGroupRules"] if not rule.get("IsEgress"))
    return rules


def _allows(rule: dict[str, Any], request: RuleRequest) -> bool:
    return (
        rule.get("CidrIpv4") == request.cidr
        and rule.get("IpProtocol") == "tcp"
        and rule.get("FromPort") == request.port
        and rule.get("ToPort") == request.port
    )


def _modification(group_id: str, rule: dict[str, Any], request: RuleRequest) -> dict[str, Any]:
    return {
        "GroupId": group_id,
        "SecurityGroupRules": [
            {
                "SecurityGroupRuleId": rule["SecurityGroupRuleId"],
                "SecurityGroupRule": {
                    "IpProtocol": "tcp",
                    "FromPort": request.port,
                    "ToPort": request.port,
                    "CidrIpv4": request.cidr,
                    "Description": request.description,
                },
            }
        ],
    }


def _authorize(ec2: Any, group_id: str, request: RuleRequest, dry_run: bool) -> dict[str, Any] | None:
    """Create the rule with its owner tag in one call; ``None`` when an identical rule already exists."""
    permission = {
        "IpProtocol": "tcp",
        "FromPort": request.port,
        "ToPort": request.port,
        "IpRanges": [{"CidrIp": request.cidr, "Description": request.description}],
    }
    tags = [{"ResourceType": "security-group-rule", "Tags": [{"Key": OWNER_TAG, "Value": request.owner}]}]
    return _call(
        ec2.authorize_security_group_ingress,
        dry_run,
        GroupId=group_id,
        IpPermissions=[permission],
        TagSpecifications=tags,
    )


def _call(method: Callable[..., Any], dry_run: bool, **kwargs: Any) -> Any:
    """Call an EC2 write; ``None`` when the rule already exists, ``{}`` when a dry run had the permission."""
    import botocore.exceptions

    with aws_errors(actions=IAM_ACTIONS, not_found=_limit_message(kwargs.get("GroupId", ""))):
        try:
            return method(DryRun=dry_run, **kwargs)
        except botocore.exceptions.ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if code == DRY_RUN_CODE:
                return {}
            if code == DUPLICATE_CODE:
                return None
            raise


def _limit_message(group_id: str) -> dict[str, str]:
    return {
        LIMIT_CODE: f"security group {group_id} has reached its limit of inbound rules; nothing was changed "
        "(remove stale rules, e.g. dbtool update-sg-rule --revoke --owner OLD-OWNER, or ask AWS for a higher quota)"
    }


def _not_found_messages(request: RuleRequest, region: str) -> dict[str, str]:
    group = request.group_id or "(none)"
    message = f"security group {group} not found in region {region} (check DB_SG_ID and AWS_DEFAULT_REGION)"
    return {"InvalidGroup.NotFound": message, "InvalidGroupId.NotFound": message}


OWNER_VARIABLES = ("DBTOOL_SG_OWNER", "GITHUB_USER", "GITPOD_GIT_USER_EMAIL")
WORKSPACE_VARIABLES = ("GITPOD_WORKSPACE_ID", "CODESPACE_NAME")


def default_owner(config: Settings) -> str:
    """Who owns the rule: ``DBTOOL_SG_OWNER``, else the GitHub or Gitpod user, else the OS user."""
    import getpass

    for name in OWNER_VARIABLES:
        if (value := config.value(name)) is not None:
            return value.strip()
    return getpass.getuser()


def workspace_name(environ: Mapping[str, str]) -> str:
    """The Gitpod workspace or codespace, else the host name: which machine last used the rule."""
    import socket

    return next((environ[name] for name in WORKSPACE_VARIABLES if environ.get(name)), socket.gethostname())


def utc_now() -> str:
    import datetime

    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%MZ")


def describe_outcome(outcome: Outcome) -> list[tuple[str, bool]]:
    """What to tell the user, as (line, goes to stderr) pairs; a dry run says what *would* happen."""
    o = outcome
    where = f"port {o.port} in {o.group_id}"
    if o.dry_run:
        done = {
            "created": f"would create a rule allowing {o.cidr} on {where} (owner {o.owner})",
            "modified": f"would update rule {o.rule_id}: {o.previous_cidr} -> {o.cidr} on {where}",
            "revoked": f"would revoke rule {o.rule_id} ({o.cidr}) from {o.group_id}",
            "already-allowed": f"would change nothing: {o.cidr} is already allowed on {where} by another rule",
        }
    else:
        done = {
            "created": f"created rule {o.rule_id} allowing {o.cidr} on {where} (owner {o.owner})",
            "modified": f"updated rule {o.rule_id}: {o.previous_cidr} -> {o.cidr} on {where}",
            "revoked": f"revoked rule {o.rule_id} ({o.cidr}) from {o.group_id}",
            "already-allowed": f"{o.cidr} is already allowed on {where} by another rule; nothing changed",
        }
    done |= {
        "unchanged": f"rule {o.rule_id} already allows {o.cidr} on {where}; nothing changed",
        "absent": f"no rule of {o.owner} in {o.group_id}; nothing to revoke",
    }
    lines = [(done[o.action], False)]
    if o.dry_run and o.action in ("created", "modified", "revoked"):
        lines.append(("dry run: EC2 confirmed the permissions; nothing was changed", False))
    if o.replaced_rule_id and not o.dry_run:
        replacement = f"update DB_SG_RULE_ID to {o.rule_id}" if o.rule_id else "unset DB_SG_RULE_ID"
        lines.append((f"warning: rule {o.replaced_rule_id} (DB_SG_RULE_ID) no longer existed ({replacement})", True))
    return lines
