"""``dbtool.cdk.DatabaseInitializer``, the CDK construct (the ``dbtool[cdk]`` extra): see :mod:`dbtool.deploy.cdk`."""

from dbtool.deploy.cdk import DatabaseInitializer

__all__ = ["DatabaseInitializer"]
