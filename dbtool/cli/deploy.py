"""Deploy time: the fingerprint a custom resource's Fingerprint property carries, and the Lambda package."""

from __future__ import annotations

from pathlib import Path

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


@deploy.command("package")
@click.option(
    "--out", type=click.Path(path_type=Path, dir_okay=False), default=None, help="Default: dbtool-lambda.zip."
)
@click.option("--arch", type=click.Choice(["x86_64", "arm64"]), default="x86_64", show_default=True)
@click.option("--python", "python", default="3.12", show_default=True, help="The Lambda runtime's Python version.")
@click.option(
    "--find-links",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="Take the wheels from this directory only (offline).",
)
def deploy_package(out: Path | None, arch: str, python: str, find_links: Path | None) -> None:
    """A Lambda zip: dbtool, its wheels, db/ and dbtool.toml.  Example: dbtool deploy package --arch arm64"""
    from dbtool.deploy.package import build_package

    root = project_root()
    built = build_package(root, out or root / "dbtool-lambda.zip", arch=arch, python=python, find_links=find_links)
    click.echo(f"wrote {built.path} ({built.bytes / 1e6:.1f} MB, {built.files} files; handler dbtool.deploy.handler)")
