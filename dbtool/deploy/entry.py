"""The Lambda entry points: a raw CloudFormation custom resource, the CDK Provider's ``on_event``, a CDK Trigger.

Lambda finds them as ``dbtool.deploy.handler`` and ``dbtool.deploy.on_event`` (re-exported by the package;
this module is not called ``handler``, or importing it would replace the function of that name).

``handler`` answers CloudFormation itself, always: on success, on any error, and, from a timer,
shortly before the Lambda's time runs out (a handler that dies silently leaves the stack waiting
an hour, then an hour more for the rollback's Delete). Once the timer has answered, the run stops at
its next step: no database is created and no migration starts after a FAILED reply. The reply is a
PUT of JSON to the presigned ``ResponseURL`` with an empty Content-Type, retried on network errors
and 5xx (never on a 4xx, never past the Lambda's end), and never over CloudFormation's 4,096 bytes:
every field is bounded, and a long Reason keeps its start (``file:line:column`` and the message)
and its end, cut in the middle on a character boundary.
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
PUT_MARGIN = 0.5  # no reply attempt starts this close to the Lambda's end
# Bytes each copied field may take in a reply (CloudFormation: a physical id is at most 1 KB; logical ids 255
# characters); the Reason gets what is left of the 4,096.
FIELD_LIMITS = {"PhysicalResourceId": 1024, "StackId": 512, "RequestId": 128, "LogicalResourceId": 256}
DATA_LIMIT = 256
REASON_TAIL = 240  # bytes of a cut Reason's end kept (its hint: what was rolled back)
ELLIPSIS = " … "
NO_RESPONSE_URL = "the event has no ResponseURL: nothing was run (is this function a custom resource's ServiceToken?)"
# botocore logs whole response bodies at DEBUG: Secrets Manager's holds the password.
SECRET_MARKERS = ("SecretString", "SecretBinary", '"password"', "'password'")
BOTOCORE_LOGGERS = ("botocore.parsers", "botocore.endpoint", "botocore.httpsession", "botocore.hooks")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any] | None:
    """A raw custom resource (``ServiceToken`` = this function), or a CDK Trigger when the event is empty."""
    _configure_logging()
    if not event or "RequestType" not in event:
        return trigger(event, context)
    if not event.get("ResponseURL"):
        logger.error(NO_RESPONSE_URL)
        return None
    remaining = _remaining(context)
    end = time.monotonic() + remaining
    reply = _Reply(event, end)
    timer = threading.Timer(max(0.0, remaining - TIMEOUT_MARGIN), reply.time_out)
    timer.daemon = True
    timer.start()
    try:
        outcome = run(
            event["RequestType"],
            event.get("ResourceProperties") or {},
            event.get("PhysicalResourceId"),
            deadline=end - TIMEOUT_MARGIN,
            stopped=reply.answered,
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
            ("AllowDrift", "DBTOOL_ALLOW_DRIFT"),
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

    def __init__(self, event: dict[str, Any], end: float) -> None:
        self.event = event
        self.end = end  # the Lambda's end, on the monotonic clock
        self._lock = threading.Lock()
        self._sent = False

    def answered(self) -> bool:
        return self._sent

    def time_out(self) -> None:
        fallback = self.event.get("PhysicalResourceId") or FAILED_CREATE_ID
        self.send(Outcome("FAILED", fallback, reason="dbtool ran out of Lambda time before it finished (see the logs)"))

    def send(self, outcome: Outcome) -> None:
        with self._lock:
            if self._sent:
                return
            self._sent = True
        body = reply_body(self.event, outcome)
        logger.info("reply %s %s", outcome.status, _cut(outcome.physical_id, 200))
        put(self.event["ResponseURL"], body, end=self.end)


def reply_body(event: dict[str, Any], outcome: Outcome) -> bytes:
    """The JSON reply, at most 4,096 bytes whatever the event holds; a long Reason is cut in its middle."""
    reply: dict[str, Any] = {
        "Status": outcome.status,
        "Reason": "",
        "PhysicalResourceId": _cut(outcome.physical_id or FAILED_CREATE_ID, FIELD_LIMITS["PhysicalResourceId"]),
        "StackId": _cut(str(event.get("StackId", "")), FIELD_LIMITS["StackId"]),
        "RequestId": _cut(str(event.get("RequestId", "")), FIELD_LIMITS["RequestId"]),
        "LogicalResourceId": _cut(str(event.get("LogicalResourceId", "")), FIELD_LIMITS["LogicalResourceId"]),
        "Data": {key: _cut(str(value), DATA_LIMIT) for key, value in outcome.data.items()},
    }
    budget = MAX_BODY - len(_encode(reply))
    reply["Reason"] = _fit(outcome.reason or outcome.status, budget)
    return _encode(reply)


def _encode(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def _size(text: str) -> int:
    """Bytes ``text`` takes inside a JSON string (escapes counted)."""
    return len(_encode(text)) - 2


def _cut(text: str, limit: int, *, end: bool = False) -> str:
    """At most ``limit`` bytes of ``text`` as JSON, from its start (or ``end``), never splitting a character."""
    while _size(text) > limit:
        over = max(1, _size(text) - limit)
        data = text.encode()
        data = data[over:] if end else data[: len(data) - over]
        text = data.decode(errors="ignore")
    return text


def _fit(reason: str, budget: int) -> str:
    """The reason in ``budget`` bytes: whole, or its start and its end around an ellipsis."""
    if _size(reason) <= budget:
        return reason
    tail = _cut(reason, min(REASON_TAIL, budget // 4), end=True)
    head = _cut(reason, max(0, budget - _size(tail) - _size(ELLIPSIS)))
    return head + ELLIPSIS + tail


def put(url: str, body: bytes, *, end: float | None = None) -> None:
    """PUT the reply to the presigned URL, with the empty Content-Type its signature expects.

    Network errors and 5xx are retried, no attempt starting after the Lambda's ``end``; a 4xx (an expired
    or wrong URL) will not change, so it is logged and not retried.
    """
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        url, data=body, method="PUT", headers={"Content-Type": "", "Content-Length": str(len(body))}
    )
    end = end if end is not None else time.monotonic() + PUT_ATTEMPTS * PUT_TIMEOUT
    for attempt in range(1, PUT_ATTEMPTS + 1):
        timeout = max(0.5, min(PUT_TIMEOUT, end - time.monotonic()))
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                response.read()
            return
        except urllib.error.HTTPError as error:
            if 400 <= error.code < 500:
                logger.error("CloudFormation refused the reply (HTTP %d %s): not retried", error.code, error.reason)
                return
            logger.warning("reply attempt %d failed: HTTP %d %s", attempt, error.code, error.reason)
        except OSError as error:  # URLError is one
            logger.warning("reply attempt %d failed: %s", attempt, error)
        delay = min(2.0 * attempt, 5.0)
        if attempt == PUT_ATTEMPTS or time.monotonic() + delay > end - PUT_MARGIN:
            break
        time.sleep(delay)
    logger.error("could not deliver the reply to CloudFormation")


def _remaining(context: Any) -> float:
    getter = getattr(context, "get_remaining_time_in_millis", None)
    return getter() / 1000 if getter is not None else 900.0


def _what(error: BaseException) -> str:
    from dbtool.deploy.cloudformation import REMEDIES
    from dbtool.errors import DbtoolError

    text = error.phrase(REMEDIES) if isinstance(error, DbtoolError) else str(error)
    return text.strip() or type(error).__name__


class _WithholdSecrets(logging.Filter):
    """Replaces a record that carries a secret (botocore's DEBUG dump of a Secrets Manager answer) by a notice."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a record that cannot render is not ours to judge
            return True
        if any(marker in text for marker in SECRET_MARKERS):
            record.msg = "(a record of %s withheld by dbtool: it holds a secret)"
            record.args = (record.name,)
        return True


_FILTER = _WithholdSecrets()


def _configure_logging() -> None:
    """dbtool's INFO lines always reach CloudWatch; other libraries' (botocore's) stay at the root's level.

    Lambda's runtime gives the root logger a handler; elsewhere (an emulator, a plain process) one is added. A
    record propagates to the root's handlers whatever the root's own level, so only dbtool's logger is lowered.
    At any level no secret is logged: botocore's loggers that dump bodies, and the root's handlers, withhold
    a record that holds one.
    """
    if not logger.handlers and not logging.getLogger().handlers:
        logging.basicConfig()
    logger.setLevel(logging.INFO)
    for name in BOTOCORE_LOGGERS:
        if _FILTER not in logging.getLogger(name).filters:
            logging.getLogger(name).addFilter(_FILTER)
    for handler_ in logging.getLogger().handlers:
        if _FILTER not in handler_.filters:
            handler_.addFilter(_FILTER)
