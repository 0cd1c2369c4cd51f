"""The URLs in answers never come blindly from the request's Host header when
DICOMWEB_ALLOWED_HOSTS lists the hosts (issue 14)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import make_settings, private_server
from tests.factories import make_instance
from tests.helpers import stow


def test_a_forged_host_gets_the_listed_hosts_urls(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, allowed_hosts="archive.example:8443, pacs.example")
    with private_server(settings) as (client, _):
        ds = make_instance()
        assert stow(client, [ds]).status_code == 200

        def retrieve_url(host: str) -> str:
            (found,) = client.get("/studies", headers={"Host": host}).json()
            return str(found["00081190"]["Value"][0])

        assert retrieve_url("evil.example").startswith("http://archive.example:8443/dicomweb/")
        assert retrieve_url("pacs.example").startswith("http://pacs.example/dicomweb/")
        assert retrieve_url("PACS.example").startswith("http://PACS.example/dicomweb/")


def test_the_next_page_and_the_slash_redirect_never_come_from_the_request(
    tmp_path: Path,
) -> None:
    """QIDO-RS's Link: rel="next" is under DICOMWEB_PUBLIC_BASE_URL (behind a TLS proxy it
    is https, never the request's http), or a listed host; a trailing-slash redirect is
    relative, so a forged Host is reflected nowhere (issue 31)."""
    public = make_settings(tmp_path, public_base_url="https://pacs.example/dicomweb")
    with private_server(public) as (client, _):
        assert stow(client, [make_instance(), make_instance()]).status_code == 200
        page = client.get("/studies", params={"limit": 1}, headers={"Host": "evil.example"})
        link = page.headers["link"]
        assert link.startswith("<https://pacs.example/dicomweb/studies?"), link
        assert "offset=1" in link and "evil" not in link
        moved = client.get("/studies/?limit=1", headers={"Host": "evil.example"})
        assert moved.status_code == 307
        assert moved.headers["location"] == "/dicomweb/studies?limit=1"
        assert client.get("/no-such-thing/").status_code == 404
    listed = make_settings(tmp_path / "listed", allowed_hosts="archive.example")
    with private_server(listed) as (client, _):
        assert stow(client, [make_instance(), make_instance()]).status_code == 200
        page = client.get("/studies", params={"limit": 1}, headers={"Host": "evil.example"})
        assert page.headers["link"].startswith("<http://archive.example/dicomweb/studies?")
