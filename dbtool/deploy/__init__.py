"""Deploy time: the Lambda / CloudFormation custom resource that runs ``dbtool up``, and its fingerprint.

Lambda handler names: ``dbtool.deploy.handler`` (raw custom resource, or a CDK Trigger when the event is empty)
and ``dbtool.deploy.on_event`` (the CDK Provider framework).
"""

from __future__ import annotations

from typing import Any


def handler(event: dict[str, Any], context: Any) -> Any:
    from dbtool.deploy.entry import handler as run

    return run(event, context)


def on_event(event: dict[str, Any], context: Any) -> Any:
    from dbtool.deploy.entry import on_event as run

    return run(event, context)
