"""The identity port over HTTP(S) with the standard library: small JSON documents, short
timeouts, nothing followed but the provider's own answers."""

from __future__ import annotations

import base64
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import orjson

from dicomweb_server.services.ports.identity import ProviderUnreachable

# A discovery document or a JWKS is a few kilobytes; a larger answer is not one.
MAX_DOCUMENT_BYTES = 1 << 20


class UrllibJsonClient:
    def __init__(self, timeout: float = 5.0) -> None:
        self._timeout = timeout

    def _json(self, request: urllib.request.Request) -> Any:
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as answer:
                body = answer.read(MAX_DOCUMENT_BYTES + 1)
        except urllib.error.HTTPError as exc:
            raise ProviderUnreachable(f"the provider answered {exc.code}") from None
        except (OSError, ValueError) as exc:
            raise ProviderUnreachable(type(exc).__name__) from None
        if len(body) > MAX_DOCUMENT_BYTES:
            raise ProviderUnreachable("the provider's answer is too large")
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            raise ProviderUnreachable("the provider's answer is not JSON") from None

    def get_json(self, url: str) -> Any:
        return self._json(urllib.request.Request(url, headers={"Accept": "application/json"}))

    def post_form(self, url: str, form: dict[str, str], auth: tuple[str, str] | None) -> Any:
        headers = {
            "Accept": "application/json",
            "Content-Type": "application/x-www-form-urlencoded",
        }
        if auth is not None:
            # RFC 7662 2.1 / RFC 6749 2.3.1: client_secret_basic, both parts form-encoded.
            pair = f"{urllib.parse.quote(auth[0])}:{urllib.parse.quote(auth[1])}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        data = urllib.parse.urlencode(form).encode("ascii")
        return self._json(urllib.request.Request(url, data=data, headers=headers))
