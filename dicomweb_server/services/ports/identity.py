"""The identity port: JSON documents of an OpenID provider (discovery, JWKS, introspection)."""

from __future__ import annotations

from typing import Any, Protocol


class ProviderUnreachable(Exception):
    """The identity provider did not answer, or not with JSON; the message names no host."""


class JsonClient(Protocol):
    def get_json(self, url: str) -> Any:
        """The JSON document at `url` (ProviderUnreachable when there is none)."""

    def post_form(self, url: str, form: dict[str, str], auth: tuple[str, str] | None) -> Any:
        """POST `form` (application/x-www-form-urlencoded, HTTP Basic `auth` when given) and
        the JSON answer (RFC 7662 token introspection)."""
