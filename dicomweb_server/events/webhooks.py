"""Webhook deliveries over HTTP(S) with the standard library: one POST, a bounded wait,
redirects not followed (a receiver that moved is reconfigured, not chased), the answer's
body read only a little and dropped."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

from dicomweb_server.services.ports.webhooks import DeliveryFailed

_MAX_ANSWER_BYTES = 64 * 1024


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class UrllibWebhookSender:
    def __init__(self) -> None:
        self._opener = urllib.request.build_opener(_NoRedirects())

    def post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with self._opener.open(request, timeout=timeout) as answer:
                answer.read(_MAX_ANSWER_BYTES)
                return int(answer.status)
        except urllib.error.HTTPError as exc:
            exc.close()
            return int(exc.code)
        except (OSError, ValueError) as exc:
            raise DeliveryFailed(type(exc).__name__) from None
