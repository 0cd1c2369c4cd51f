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
