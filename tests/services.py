"""Small real servers on 127.0.0.1 that stand in for the internet: an IP-echo service, a silent port, a blackhole."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from dbtool.local.cluster import free_port


class IpService:
    """A plain-text "what is my IP" service whose answer (body and status) a test sets."""

    def __init__(self) -> None:
        self.body = b""
        self.status = 200
        self.requests = 0
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                service.requests += 1
                self.send_response(service.status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(service.body)))
                self.end_headers()
                self.wfile.write(service.body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def answer(self, body: str | bytes, status: int = 200) -> None:
        self.body = body.encode() if isinstance(body, str) else body
        self.status = status

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class SilentPort:
    """A port that accepts TCP connections and never says a word: a service that hangs."""

    def __init__(self) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(16)
        self.port = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/"

    def close(self) -> None:
        self._socket.close()


class BannerPort:
    """A service that greets every connection first, as SSH or MySQL do: open, but not PostgreSQL."""

    def __init__(self, banner: bytes = b"SSH-2.0-OpenSSH_9.6\r\n") -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(16)
        self.port = self._socket.getsockname()[1]
        threading.Thread(target=self._serve, args=(banner,), daemon=True).start()

    def _serve(self, banner: bytes) -> None:
        while True:
            try:
                conn, _ = self._socket.accept()
            except OSError:
                return  # closed
            with conn:
                conn.sendall(banner)

    def close(self) -> None:
        self._socket.close()


class BlackholePort:
    """A port where new TCP connections hang unanswered, as behind a security group that drops packets.

    Its listen queue holds one connection, which this class fills itself; Linux then drops further
    SYNs, so a client's connect() times out instead of being refused, all on loopback.
    """

    def __init__(self) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(0)
        self.port = self._socket.getsockname()[1]
        self._filler = socket.create_connection(("127.0.0.1", self.port), timeout=5)

    def close(self) -> None:
        self._filler.close()
        self._socket.close()


def closed_port_url() -> str:
    """A URL on a port nothing listens on."""
    return f"http://127.0.0.1:{free_port()}/"
