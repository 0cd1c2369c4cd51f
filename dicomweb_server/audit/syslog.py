"""Audit messages to an audit record repository over syslog (IHE ATNA): RFC 5424 messages
carrying the XML AuditMessage, over TLS (RFC 5425) or TCP with octet-counting frames, or one
a datagram over UDP (RFC 5426)."""

from __future__ import annotations

import os
import socket
import ssl
from datetime import UTC, datetime
from urllib.parse import urlsplit

from dicomweb_server.services.audit import SUCCESS, AuditMessage, as_xml

# Facility 10 (security/authorization, RFC 5424 6.2.1); notice for successes, warning else.
_FACILITY = 10
_NOTICE, _WARNING = 5, 4
# PS3.15 A.5: the MSGID of a DICOM audit message.
_MSGID = "DICOM+RFC3881"
_UDP_MAX = 65_000


def frame(message: AuditMessage, hostname: str, app: str = "dicomweb-server") -> bytes:
    """One RFC 5424 message: header, no structured data, a UTF-8 (BOM) XML body."""
    severity = _NOTICE if message.outcome == SUCCESS else _WARNING
    stamp = datetime.fromtimestamp(message.at, UTC).isoformat(timespec="milliseconds")
    header = (
        f"<{_FACILITY * 8 + severity}>1 {stamp.replace('+00:00', 'Z')} {hostname} {app} "
        f"{os.getpid()} {_MSGID} - "
    )
    return header.encode("ascii") + b"\xef\xbb\xbf" + as_xml(message).encode("utf-8")


class SyslogSink:
    """`tls://host:port`, `tcp://host:port` or `udp://host:port`; for TLS, `ca_file` is the
    repository's CA (the system's when None) and `cert_file`/`key_file` this node's
    certificate for mutual authentication (ATNA node authentication)."""

    def __init__(
        self,
        url: str,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        timeout: float = 5.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("tls", "tcp", "udp") or not parts.hostname or not parts.port:
            raise ValueError("DICOMWEB_AUDIT_SYSLOG must be tls://, tcp:// or udp://host:port")
        self.name = f"syslog-{parts.scheme}"
        self._scheme = parts.scheme
        self._address = (parts.hostname, parts.port)
        self._timeout = timeout
        self._hostname = socket.gethostname() or "-"
        self._context: ssl.SSLContext | None = None
        if parts.scheme == "tls":
            self._context = ssl.create_default_context(cafile=ca_file)
            if cert_file:
                self._context.load_cert_chain(cert_file, key_file)
        self._socket: socket.socket | None = None

    def _connected(self) -> socket.socket:
        if self._socket is None:
            if self._scheme == "udp":
                self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            else:
                plain = socket.create_connection(self._address, timeout=self._timeout)
                if self._context is not None:
                    self._socket = self._context.wrap_socket(
                        plain, server_hostname=self._address[0]
                    )
                else:
                    self._socket = plain
        return self._socket

    def write(self, messages: list[AuditMessage]) -> None:
        frames = [frame(m, self._hostname) for m in messages]
        try:
            sock = self._connected()
            if self._scheme == "udp":
                for data in frames:
                    sock.sendto(data[:_UDP_MAX], self._address)
            else:
                # RFC 5425 4.3 / RFC 6587 3.4.1: octet counting, "LEN SP MSG".
                sock.sendall(b"".join(str(len(f)).encode() + b" " + f for f in frames))
        except OSError:
            self.close()  # reconnect on the next batch
            raise

    def close(self) -> None:
        if self._socket is not None:
            try:
                self._socket.close()
            finally:
                self._socket = None
