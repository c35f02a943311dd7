"""CloudFormation's side of a custom resource, on loopback: the events it sends and the receiver of the replies."""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    """CloudFormation's side of the reply: every PUT body and its Content-Type, in order.

    ``status`` is what it answers each PUT (200, or 403 as an expired presigned URL does, or 500).
    """

    def __init__(self) -> None:
        self.replies: list[dict[str, Any]] = []
        self.sizes: list[int] = []
        self.content_types: list[str | None] = []
        self.attempts: list[float] = []  # when each PUT arrived (monotonic)
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.attempts.append(time.monotonic())
                if receiver.status == 200:
                    receiver.sizes.append(len(body))
                    receiver.content_types.append(self.headers.get("Content-Type"))
                    receiver.replies.append(json.loads(body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/cfn-response?X-Amz-SignedHeaders=host"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class Context:
    """A Lambda context with a clock."""

    def __init__(self, seconds: float = 300) -> None:
        self.deadline = time.monotonic() + seconds
        self.log_stream_name = "2026/12/01/[$LATEST]0123456789abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return int((self.deadline - time.monotonic()) * 1000)


def event(receiver: Receiver, request: str, properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "RequestType": request,
        "ResponseURL": receiver.url,
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/app/1",
        "RequestId": str(uuid.uuid4()),
        "ResourceType": "Custom::DbtoolUp",
        "LogicalResourceId": "Database",
        "ResourceProperties": {"ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:up", **properties},
        **extra,
    }


def last(receiver: Receiver) -> dict[str, Any]:
    assert receiver.content_types[-1] == "", receiver.content_types  # what the presigned URL was signed for
    return receiver.replies[-1]
