"""The Lambda entry points: a raw CloudFormation custom resource, the CDK Provider's ``on_event``, a CDK Trigger.

``handler`` answers CloudFormation itself, always: on success, on any error, and, from a timer,
shortly before the Lambda's time runs out (a handler that dies silently leaves the stack waiting
an hour, then an hour more for the rollback's Delete). The reply is a PUT of JSON to the presigned
``ResponseURL`` with an empty Content-Type, retried a few times, and never over CloudFormation's
4,096 bytes: a long Reason keeps its end, where the file and line are.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from dbtool.deploy.cloudformation import FAILED_CREATE_ID, Outcome, run
from dbtool.deploy.forward import project_root

logger = logging.getLogger("dbtool.deploy")

MAX_BODY = 4096
TIMEOUT_MARGIN = 5.0  # seconds before the Lambda's end at which the timer answers FAILED
PUT_ATTEMPTS = 5
PUT_TIMEOUT = 10.0


def handler(event: dict[str, Any], context: Any) -> dict[str, Any] | None:
    """A raw custom resource (``ServiceToken`` = this function), or a CDK Trigger when the event is empty."""
    _configure_logging()
    if not event or "RequestType" not in event:
        return trigger(event, context)
    remaining = _remaining(context)
    deadline = time.monotonic() + remaining - TIMEOUT_MARGIN
    reply = _Reply(event)
    timer = threading.Timer(max(0.0, remaining - TIMEOUT_MARGIN), reply.time_out)
    timer.daemon = True
    timer.start()
    try:
        outcome = run(
            event["RequestType"],
            event.get("ResourceProperties") or {},
            event.get("PhysicalResourceId"),
            deadline=deadline,
        )
    except BaseException as error:  # anything at all: CloudFormation must hear back
        logger.exception("unexpected failure")
        outcome = Outcome("FAILED", event.get("PhysicalResourceId") or FAILED_CREATE_ID, reason=_what(error))
    finally:
        timer.cancel()
    reply.send(outcome)
    return None


def on_event(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """For the CDK Provider framework: the reply's fields, or an exception whose message is the Reason."""
    _configure_logging()
    remaining = _remaining(context)
    outcome = run(
        event["RequestType"],
        event.get("ResourceProperties") or {},
        event.get("PhysicalResourceId"),
        deadline=time.monotonic() + remaining - TIMEOUT_MARGIN,
    )
    if outcome.status != "SUCCESS":
        raise RuntimeError(outcome.reason)
    return {"PhysicalResourceId": outcome.physical_id, "Data": outcome.data}


def trigger(event: Any, context: Any) -> dict[str, Any]:
    """A CDK Trigger: no event; the properties come from the environment (``DBTOOL_SECRET_ARN`` and friends)."""
    import os

    properties = {
        name: os.environ[variable]
        for name, variable in (
            ("SecretArn", "DBTOOL_SECRET_ARN"),
            ("Host", "DBTOOL_HOST"),
            ("Port", "DBTOOL_PORT"),
            ("DatabaseName", "DBTOOL_DATABASE"),
            ("ClusterArn", "DBTOOL_CLUSTER_ARN"),
            ("Seed", "DBTOOL_SEED"),
        )
        if os.environ.get(variable)
    }
    remaining = _remaining(context)
    outcome = run(
        "Create", properties, None, deadline=time.monotonic() + remaining - TIMEOUT_MARGIN, root=project_root()
    )
    if outcome.status != "SUCCESS":
        raise RuntimeError(outcome.reason)  # a FunctionError fails the deployment
    return {"PhysicalResourceId": outcome.physical_id, "Data": outcome.data}


class _Reply:
    """Exactly one answer per request, whoever comes first: the run or the timer."""

    def __init__(self, event: dict[str, Any]) -> None:
        self.event = event
        self._lock = threading.Lock()
        self._sent = False

    def time_out(self) -> None:
        fallback = self.event.get("PhysicalResourceId") or FAILED_CREATE_ID
        self.send(Outcome("FAILED", fallback, reason="dbtool ran out of Lambda time before it finished (see the logs)"))

    def send(self, outcome: Outcome) -> None:
        with self._lock:
            if self._sent:
                return
            self._sent = True
        body = reply_body(self.event, outcome)
        logger.info("reply %s %s", outcome.status, outcome.physical_id)
        put(self.event["ResponseURL"], body)


def reply_body(event: dict[str, Any], outcome: Outcome) -> bytes:
    """The JSON reply, at most 4,096 bytes: a long Reason loses its beginning, never its end."""
    reply = {
        "Status": outcome.status,
        "Reason": outcome.reason or outcome.status,
        "PhysicalResourceId": outcome.physical_id,
        "StackId": event.get("StackId", ""),
        "RequestId": event.get("RequestId", ""),
        "LogicalResourceId": event.get("LogicalResourceId", ""),
        "Data": outcome.data,
    }
    body = json.dumps(reply).encode()
    if len(body) <= MAX_BODY:
        return body
    reason = reply["Reason"]
    keep = len(reason) - (len(body) - MAX_BODY) - 16
    while True:  # JSON escaping can make the cut larger than the characters removed
        reply["Reason"] = "… " + reason[len(reason) - max(keep, 0) :]
        body = json.dumps(reply).encode()
        if len(body) <= MAX_BODY or keep <= 0:
            return body
        keep -= len(body) - MAX_BODY + 8


def put(url: str, body: bytes) -> None:
    """PUT the reply to the presigned URL, with the empty Content-Type its signature expects; retried."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        url, data=body, method="PUT", headers={"Content-Type": "", "Content-Length": str(len(body))}
    )
    for attempt in range(1, PUT_ATTEMPTS + 1):
        try:
            with urllib.request.urlopen(request, timeout=PUT_TIMEOUT) as response:
                response.read()
            return
        except (urllib.error.URLError, OSError) as error:
            logger.warning("reply attempt %d failed: %s", attempt, error)
            if attempt < PUT_ATTEMPTS:
                time.sleep(min(2.0 * attempt, 5.0))
    logger.error("could not deliver the reply to CloudFormation")


def _remaining(context: Any) -> float:
    getter = getattr(context, "get_remaining_time_in_millis", None)
    return getter() / 1000 if getter is not None else 900.0


def _what(error: BaseException) -> str:
    from dbtool.deploy.cloudformation import REMEDIES
    from dbtool.errors import DbtoolError

    text = error.phrase(REMEDIES) if isinstance(error, DbtoolError) else str(error)
    return text.strip() or type(error).__name__


def _configure_logging() -> None:
    """dbtool's INFO lines always reach CloudWatch; other libraries' (botocore's) stay at the root's level.

    Lambda's runtime gives the root logger a handler; elsewhere (an emulator, a plain process) one is added. A
    record propagates to the root's handlers whatever the root's own level, so only dbtool's logger is lowered.
    """
    if not logger.handlers and not logging.getLogger().handlers:
        logging.basicConfig()
    logger.setLevel(logging.INFO)
