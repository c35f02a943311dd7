"""An RDS-like check of IAM auth tokens, plugged into the test server through PostgreSQL's LDAP auth.

RDS checks an IAM token inside the server; a plain PostgreSQL cannot. But PostgreSQL's ``ldap``
method hands the password the client sent to an LDAP server as a simple bind, and this module is a
minimal LDAP server (BindRequest and UnbindRequest only, in BER) that accepts the bind only when the
password is a valid token: a SigV4 presigned ``connect`` for this DB user and host:port, signed with
the test's AWS secret key, not expired. The signature is recomputed here by hand from the SigV4
specification, independently of botocore, so a token botocore got wrong would be refused.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import socket
import threading
from urllib.parse import parse_qsl, quote

BIND_REQUEST, BIND_RESPONSE, UNBIND_REQUEST = 0x60, 0x61, 0x42
SUCCESS, INVALID_CREDENTIALS = 0, 49


class IamTokenVerifier:
    """Accepts an LDAP bind of ``cn=<user>,dc=rds`` whose password is a valid IAM token for ``<user>``."""

    def __init__(self, secret_key: str, region: str) -> None:
        self.secret_key = secret_key
        self.region = region
        self.endpoint = ""  # "host:port" of the database, set once the server's port is known
        self.tokens: list[str] = []
        self.refusals: list[str] = []
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(16)
        self.port = self._socket.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def hba_line(self, user: str) -> str:
        """The pg_hba.conf line that sends ``user``'s password here (over SSL only, as RDS requires)."""
        return (
            f"hostssl all {user} 127.0.0.1/32 ldap ldapserver=127.0.0.1 ldapport={self.port} "
            'ldapprefix="cn=" ldapsuffix=",dc=rds"'
        )

    def close(self) -> None:
        self._socket.close()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(connection,), daemon=True).start()

    def _session(self, connection: socket.socket) -> None:
        with connection:
            while message := _read_tlv(connection):
                message_id, op_tag, op = _ldap_message(message)
                if op_tag != BIND_REQUEST:
                    return  # unbind (or anything else): PostgreSQL is done
                user, password = _bind_request(op)
                problem = self.check(user, password)
                if problem:
                    self.refusals.append(problem)
                else:
                    self.tokens.append(password)
                connection.sendall(_bind_response(message_id, INVALID_CREDENTIALS if problem else SUCCESS))

    def check(self, user: str, token: str) -> str | None:
        """Why ``token`` is not a valid token for ``user`` on this endpoint, or ``None`` when it is."""
        endpoint, _, query = token.partition("/?")
        params = dict(parse_qsl(query, keep_blank_values=True))
        expected = {"Action": "connect", "DBUser": user, "X-Amz-Algorithm": "AWS4-HMAC-SHA256"}
        if endpoint != self.endpoint or any(params.get(key) != value for key, value in expected.items()):
            return f"token is not a connect for {user} at {self.endpoint}"
        stamp = params.get("X-Amz-Date", "")
        try:
            signed_at = datetime.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
        except ValueError:
            return "bad X-Amz-Date"
        age = (datetime.datetime.now(datetime.UTC) - signed_at).total_seconds()
        if not -60 <= age <= int(params.get("X-Amz-Expires", "0")):
            return "token expired"
        date = stamp[:8]
        scope = f"{date}/{self.region}/rds-db/aws4_request"
        if not params.get("X-Amz-Credential", "").endswith("/" + scope):
            return f"token signed for another scope: {params.get('X-Amz-Credential')}"
        canonical_query = "&".join(
            f"{quote(key, safe='-_.~')}={quote(value, safe='-_.~')}"
            for key, value in sorted(params.items())
            if key != "X-Amz-Signature"
        )
        empty_payload = hashlib.sha256(b"").hexdigest()  # a presigned connect signs an empty body
        canonical_request = "\n".join(["GET", "/", canonical_query, f"host:{endpoint}", "", "host", empty_payload])
        string_to_sign = "\n".join(
            ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
        )
        key = ("AWS4" + self.secret_key).encode()
        for part in (date, self.region, "rds-db", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(signature, params.get("X-Amz-Signature", "")):
            return "bad signature"
        return None


def _read_tlv(connection: socket.socket) -> bytes | None:
    """One whole BER element (tag, length, content) from the socket, or ``None`` at end of stream."""
    head = _read(connection, 2)
    if head is None:
        return None
    length = head[1]
    extra = b""
    if length & 0x80:
        extra = _read(connection, length & 0x7F) or b""
        length = int.from_bytes(extra, "big")
    content = _read(connection, length) if length else b""
    return head + extra + (content or b"")


def _read(connection: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _elements(data: bytes) -> list[tuple[int, bytes]]:
    """The (tag, content) pairs of a sequence of BER elements."""
    items, at = [], 0
    while at < len(data):
        tag, length = data[at], data[at + 1]
        at += 2
        if length & 0x80:
            count = length & 0x7F
            length = int.from_bytes(data[at : at + count], "big")
            at += count
        items.append((tag, data[at : at + length]))
        at += length
    return items


def _ldap_message(message: bytes) -> tuple[bytes, int, bytes]:
    [(_, body)] = _elements(message)
    (_, message_id), (op_tag, op), *_ = _elements(body)
    return message_id, op_tag, op


def _bind_request(op: bytes) -> tuple[str, str]:
    _version, (_, name), (_, password) = _elements(op)[:3]
    dn = name.decode()
    user = dn.removeprefix("cn=").removesuffix(",dc=rds")
    return user, password.decode()


def _tlv(tag: int, content: bytes) -> bytes:
    size = len(content)
    length = bytes([size]) if size < 0x80 else bytes([0x80 | 2]) + size.to_bytes(2, "big")
    return bytes([tag]) + length + content


def _bind_response(message_id: bytes, code: int) -> bytes:
    result = _tlv(0x0A, bytes([code])) + _tlv(0x04, b"") + _tlv(0x04, b"")
    return _tlv(0x30, _tlv(0x02, message_id) + _tlv(BIND_RESPONSE, result))
