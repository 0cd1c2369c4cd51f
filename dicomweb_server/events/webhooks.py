"""Webhook deliveries over HTTP(S) with the standard library: one POST, a bounded wait,
redirects not followed (a receiver that moved is reconfigured, not chased), the answer's
body read only a little and dropped.

A receiver must be reachable from the internet at large: an address that is loopback,
private (RFC 1918, unique local), link-local (cloud metadata at 169.254.169.254 among them),
unspecified, multicast or otherwise not global is refused, when the subscription is made and
again at every connection. The name is resolved once per delivery, every address it gives is
checked, and the connection goes to the checked address (TLS still names the host), so a name
cannot be re-pointed at an inside address between the check and the connection.
DICOMWEB_WEBHOOK_ALLOW_PRIVATE lifts the rule for receivers on the inside network.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from typing import Any
from urllib.parse import urlsplit

from dicomweb_server.services.ports.webhooks import DeliveryFailed

_MAX_ANSWER_BYTES = 64 * 1024


def address_fault(address: str) -> str | None:
    """Why a webhook may not be sent to `address` (an IP address); None when it may."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address (cloud metadata services live there)"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global:
        return "an address that is not globally reachable"
    return None


def _resolve(host: str, port: int) -> list[str]:
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return list(dict.fromkeys(str(info[4][0]) for info in found))


class HttpWebhookSender:
    def __init__(self, allow_private: bool = False) -> None:
        self._allow_private = allow_private
        self._tls = ssl.create_default_context()

    def _addresses(self, url: str) -> tuple[list[str], str | None]:
        """The addresses `url`'s host resolves to, and why they may not be used (if so)."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = _resolve(host, port)
        if not addresses:
            return [], "its host name does not resolve"
        if self._allow_private:
            return addresses, None
        for address in addresses:
            fault = address_fault(address)
            if fault is not None:
                return addresses, (
                    f"its host is {fault}; receivers inside the network need "
                    "DICOMWEB_WEBHOOK_ALLOW_PRIVATE=true"
                )
        return addresses, None

    def vet(self, url: str) -> str | None:
        """Why deliveries to `url` would be refused; None when they would be sent."""
        return self._addresses(url)[1]

    def post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        addresses, fault = self._addresses(url)
        if fault is not None:
            raise DeliveryFailed(f"the receiver was not contacted: {fault}")
        parts = urlsplit(url)
        connection = self._connection(parts.scheme, parts.hostname or "", parts.port, timeout)
        pinned = addresses[0]

        def connect(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
            # The checked address, never a second resolution of the name.
            return socket.create_connection((pinned, address[1]), *args, **kwargs)

        connection._create_connection = connect  # type: ignore[attr-defined]
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        try:
            connection.request("POST", target, body=body, headers=headers)
            answer = connection.getresponse()
            answer.read(_MAX_ANSWER_BYTES)
            return int(answer.status)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise DeliveryFailed(type(exc).__name__) from None
        finally:
            connection.close()

    def _connection(
        self, scheme: str, host: str, port: int | None, timeout: float
    ) -> http.client.HTTPConnection:
        if scheme == "https":
            return http.client.HTTPSConnection(host, port, timeout=timeout, context=self._tls)
        return http.client.HTTPConnection(host, port, timeout=timeout)
