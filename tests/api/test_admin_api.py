"""Administration over HTTP with access control on (issue 14): API keys made, listed and
revoked by an admin key; CORS preflights that carry Authorization from a configured origin."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import make_settings, private_server

VIEWER = "http://viewer.example"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, Any]]:
    settings = make_settings(
        tmp_path_factory.mktemp("admin-api"), auth="api-key", cors_allow_origins=VIEWER
    )
    with private_server(settings) as (client, container):
        yield client, container


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_keys_made_listed_and_revoked_over_http(secured: tuple[httpx.Client, Any]) -> None:
    client, container = secured
    admin = _bearer(container.access.create_key("admin", {"admin"}).secret)
    made = client.post(
        "/keys",
        json={"name": "ward 7 viewer", "scopes": ["read"], "expires_in": 3600, "labels": ["W7"]},
        headers=admin,
    )
    assert made.status_code == 201, made.text
    key = made.json()
    assert key["key"].startswith(f"dwk_{key['id']}_") and key["labels"] == ["W7"]
    reader = _bearer(key["key"])
    assert client.get("/studies", headers=reader).status_code == 200
    listed = {k["id"]: k for k in client.get("/keys", headers=admin).json()}
    assert listed[key["id"]]["state"] == "active" and "key" not in listed[key["id"]]
    assert client.get("/keys", headers=reader).status_code == 403
    assert (
        client.post("/keys", json={"name": "x", "scopes": ["read"]}, headers=reader).status_code
        == 403
    )
    assert client.delete(f"/keys/{key['id']}", headers=admin).status_code == 204
    refused = client.get("/studies", headers=reader)
    assert refused.status_code == 401 and "revoked" in refused.json()["error"]
    assert client.delete(f"/keys/{key['id']}", headers=admin).status_code == 404
    for bad in (
        {"name": "x", "scopes": ["everything"]},
        {"name": "x", "scopes": "read"},
        {"name": "x", "scopes": ["read"], "expires_in": 5},
        {"scopes": ["read"]},
    ):
        assert client.post("/keys", json=bad, headers=admin).status_code == 400, bad


def test_cors_preflight_with_authorization(secured: tuple[httpx.Client, Any]) -> None:
    client, _ = secured
    for method in ("GET", "POST", "PUT", "DELETE"):
        preflight = client.options(
            "/studies",
            headers={
                "Origin": VIEWER,
                "Access-Control-Request-Method": method,
                "Access-Control-Request-Headers": "authorization, accept",
            },
        )
        assert preflight.status_code == 200, (method, preflight.text)
        assert preflight.headers["access-control-allow-origin"] == VIEWER
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    # A preflight needs no credential; the request after it does.
    answer = client.get("/studies", headers={"Origin": VIEWER})
    assert answer.status_code == 401
    assert answer.headers["access-control-allow-origin"] == VIEWER
    other = client.options(
        "/studies",
        headers={"Origin": "http://elsewhere.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in other.headers
