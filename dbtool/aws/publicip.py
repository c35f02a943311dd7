"""This workspace's public IPv4 address, and the check that it is safe to put in a security group.

The old script sent whatever ``curl ifconfig.me`` printed: an empty answer became ``/32``, an IPv6
or HTML answer became garbage in the rule. Here every candidate, typed or detected, must be one
global unicast IPv4 address before anything is changed; a bad answer is named, never used.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from dbtool.errors import DbtoolError

# Plain-text services that answer with the caller's IPv4 address; tried in order.
IP_SERVICES = ("https://checkip.amazonaws.com", "https://api.ipify.org", "https://ipv4.icanhazip.com")
SERVICES_VARIABLE = "DBTOOL_IP_SERVICES"
TIMEOUT_SECONDS = 3.0
MAX_ANSWER_BYTES = 256
IP_HINT = "pass --ip with your public IPv4 address, or set GITPOD_IP"


class InvalidAddress(DbtoolError):
    """An address that must not go into a security group rule."""


@dataclass(frozen=True)
class PublicIp:
    """An address that passed :func:`validate` and where it came from (``--ip``, a variable, a URL)."""

    address: ipaddress.IPv4Address
    source: str

    @property
    def cidr(self) -> str:
        return f"{self.address}/32"


def validate(text: str, source: str, *, allow_non_global: bool = False) -> PublicIp:
    """The address in ``text``, or :class:`InvalidAddress` saying why it is refused."""
    shown = _shown(text)
    candidate = text.strip()
    if not candidate:
        raise InvalidAddress(f"{source} gave an empty address", IP_HINT)
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        raise InvalidAddress(f"{source} gave {shown}, which is not an IP address", IP_HINT) from None
    if not isinstance(address, ipaddress.IPv4Address):
        raise InvalidAddress(f"{source} gave the IPv6 address {address}; the rule needs IPv4", IP_HINT)
    if address.is_unspecified or address.is_multicast or address.is_reserved:
        raise InvalidAddress(f"{source} gave {address}, which is not a unicast host address", IP_HINT)
    if not address.is_global and not allow_non_global:
        raise InvalidAddress(
            f"{source} gave {address}, a private, loopback or shared address that AWS would never see",
            f"{IP_HINT}; --allow-non-global accepts it, for tests and private networks only",
        )
    return PublicIp(address, source)


def find_public_ip(
    *,
    given: str | None,
    environ: Mapping[str, str],
    services: Sequence[str] | None = None,
    allow_non_global: bool = False,
    timeout: float = TIMEOUT_SECONDS,
) -> PublicIp:
    """``--ip``, else ``GITPOD_IP``, else the first service whose answer passes :func:`validate`."""
    if given is not None:
        return validate(given, "--ip", allow_non_global=allow_non_global)
    if environ.get("GITPOD_IP"):
        return validate(environ["GITPOD_IP"], "GITPOD_IP", allow_non_global=allow_non_global)
    if services is None:
        configured = environ.get(SERVICES_VARIABLE, "")
        services = [url.strip() for url in configured.split(",") if url.strip()] or IP_SERVICES
    problems = []
    for url in services:
        try:
            return validate(_fetch(url, timeout), url, allow_non_global=allow_non_global)
        except InvalidAddress as error:
            problems.append(error.message)
        except OSError as error:
            problems.append(f"{url} unreachable ({_reason(error)})")
    raise InvalidAddress(f"could not detect this workspace's public IPv4 address: {'; '.join(problems)}", IP_HINT)


def _fetch(url: str, timeout: float) -> str:
    """The body of a GET, at most MAX_ANSWER_BYTES: a service answers with a short line or is wrong."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers={"User-Agent": "dbtool", "Accept": "text/plain"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body: bytes = response.read(MAX_ANSWER_BYTES + 1)
    except urllib.error.HTTPError as error:
        raise InvalidAddress(f"{url} answered HTTP {error.code} {error.reason}") from None
    if len(body) > MAX_ANSWER_BYTES:
        return body[:40].decode("utf-8", "replace") + "…"
    return body.decode("utf-8", "replace")


def _reason(error: OSError) -> str:
    """``Connection refused``, ``timed out``: urllib wraps the socket's error, whose text is the useful part."""
    reason = getattr(error, "reason", None) or error
    if isinstance(reason, OSError):
        return reason.strerror or str(reason) or type(reason).__name__
    return str(reason)


def _shown(text: str) -> str:
    """An answer as it may be printed: one short line, quoted."""
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= 40 else flat[:40] + "…")
