"""The RDS security group rule command."""

from __future__ import annotations

import json
import os
from typing import Any

import click

from dbtool.cli.main import (
    cli,
    current_project,
)
from dbtool.errors import DbtoolError


@cli.command("update-sg-rule")
@click.option("--ip", default=None, help="Address to allow (default: $GITPOD_IP, else detected over HTTPS).")
@click.option("--group-id", default=None, metavar="SG_ID", help="The RDS security group (default: $DB_SG_ID).")
@click.option(
    "--owner", default=None, help="Whose rule (default: $DBTOOL_SG_OWNER, $GITHUB_USER, $GITPOD_GIT_USER_EMAIL, user)."
)
@click.option(
    "--port", type=click.IntRange(1, 65535), default=None, help="Port (default: PROD_CONNECTION_URL's, else 5432)."
)
@click.option("--dry-run", is_flag=True, help="Check permissions with EC2's DryRun and print what would change.")
@click.option("--revoke", is_flag=True, help="Remove my rule instead.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="For workspace start: silent on success; on failure warn and exit 0.")
@click.option(
    "--allow-non-global", is_flag=True, help="Accept a private or loopback address (tests, private networks)."
)
def update_sg_rule(quiet: bool, as_json: bool, **options: Any) -> None:
    """Point my ingress rule of the RDS security group at this workspace's IP.  Example: dbtool update-sg-rule"""
    try:
        outcome = _update_sg_rule(**options)
    except DbtoolError as error:
        if not quiet:
            raise
        click.echo(f"warning: {error} (the RDS security group was not updated)", err=True)
        return
    if as_json:
        click.echo(json.dumps(outcome.as_dict(), indent=2))
    elif not quiet:
        from dbtool.aws.sgrule import describe_outcome

        for line, to_stderr in describe_outcome(outcome):
            click.echo(line, err=to_stderr)


def _update_sg_rule(
    ip: str | None,
    group_id: str | None,
    owner: str | None,
    port: int | None,
    dry_run: bool,
    revoke: bool,
    allow_non_global: bool,
) -> Any:
    from dbtool.aws import sgrule
    from dbtool.aws.clients import client_in_background
    from dbtool.targets.resolve import prod_port

    config = current_project()
    ec2 = client_in_background(config, "ec2")  # while the IP is found

    def setting(name: str) -> str | None:
        found = config.value(name)
        return found.strip() if found else None

    cidr = ""
    if not revoke:
        from dbtool.aws.publicip import find_public_ip

        cidr = find_public_ip(given=ip, environ=os.environ, allow_non_global=allow_non_global).cidr
    owner = owner or sgrule.default_owner(config)
    request = sgrule.RuleRequest(
        group_id=group_id or setting("DB_SG_ID"),
        owner=owner,
        port=port or prod_port(config),
        cidr=cidr,
        description=sgrule.description(owner, sgrule.workspace_name(os.environ), sgrule.utc_now()),
        rule_id=setting("DB_SG_RULE_ID"),
    )
    change = sgrule.revoke_rule if revoke else sgrule.update_rule
    return change(ec2(), request, dry_run=dry_run)
