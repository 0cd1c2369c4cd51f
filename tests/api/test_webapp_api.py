"""What the web application reads of the server beside DICOMweb: /ui/config.json (how to
sign in, where the viewer is) and GET {root}/whoami (who the caller is, its scopes)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import RunningServer, make_settings, private_server
from tests.helpers import origin_of
from tests.oidc_provider import oidc_provider


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
def test_open_access(archive: RunningServer, client: httpx.Client) -> None:
    config = httpx.get(archive.url + "/ui/config.json").json()
    assert config == {"root": archive.settings.base_path, "auth": [], "oidc": None, "viewer": None}
    me = client.get("/whoami").json()
    assert me["principal"] is None and me["limited"] is False and me["auth"] == []
    assert {"read", "write", "delete", "admin"} <= set(me["scopes"])


def test_keys_and_tokens(tmp_path: Path) -> None:
    with oidc_provider() as provider:
        settings = make_settings(
            tmp_path / "data",
            auth="oidc,api-key",
            oidc_issuer=provider.issuer,
            ui_oidc_client_id="dicomweb-ui",
            ui_oidc_scope="openid read",
            viewer_url="https://viewer.example/viewer?StudyInstanceUIDs={study}",
        )
        with private_server(settings) as (client, container):
            origin = origin_of(client)
            config = httpx.get(origin + "/ui/config.json").json()
            assert config["auth"] == ["api-key", "oidc"]
            assert config["oidc"] == {
                "issuer": provider.issuer,
                "client_id": "dicomweb-ui",
                "scope": "openid read",
            }
            # No viewer installed: the external one.
            assert config["viewer"] == settings.viewer_url
            assert httpx.get(origin + "/viewer/").status_code == 404
            nobody = client.get("/whoami")
            assert nobody.status_code == 401 and "error" in nobody.json()
            assert client.get("/whoami", headers={"X-API-Key": "nope"}).status_code == 401
            key = container.access.create_key("clerk", {"read", "write"}).secret
            me = client.get("/whoami", headers={"X-API-Key": key}).json()
            assert me["principal"].startswith("key:") and me["scopes"] == [
                "download",
                "read",
                "write",
            ]
            token = provider.token(sub="bob", scope="openid read")
            me = client.get("/whoami", headers={"Authorization": f"Bearer {token}"}).json()
            assert me["principal"] == "oidc:bob" and me["scopes"] == ["download", "read"]
            # The page may reach the provider (its token endpoint), nothing else.
            policy = httpx.get(origin + "/ui/").headers["content-security-policy"]
            assert "connect-src 'self' http://127.0.0.1:" in policy


def test_the_app_files(tmp_path: Path) -> None:
    with private_server(make_settings(tmp_path / "data")) as (client, _):
        origin = origin_of(client)
        for name, kind in (
            ("app.js", "text/javascript"),
            ("logic.js", "text/javascript"),
            ("app.css", "text/css"),
            ("icon.svg", "image/svg+xml"),
        ):
            answer = httpx.get(f"{origin}/ui/{name}")
            assert answer.status_code == 200 and answer.headers["content-type"].startswith(kind)
            assert answer.headers["x-content-type-options"] == "nosniff"
        for missing in ("nothing.js", "..%2Fsettings.py", "index.html", "App.js", "a.py"):
            assert httpx.get(f"{origin}/ui/{missing}").status_code == 404, missing
