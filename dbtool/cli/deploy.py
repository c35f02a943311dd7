"""Deploy time: the fingerprint a custom resource's Fingerprint property carries."""

from __future__ import annotations

import click

from dbtool.cli.main import cli, project_root


@cli.group()
def deploy() -> None:
    """Running up at deploy time (Lambda, CloudFormation, CDK).  Example: dbtool deploy fingerprint"""


@deploy.command("fingerprint")
def deploy_fingerprint() -> None:
    """SHA-256 of db/schema.sql, db/seed.sql, db/migrations and dbtool.toml.  Example: dbtool deploy fingerprint"""
    from dbtool.deploy.fingerprint import fingerprint

    click.echo(fingerprint(project_root()))
