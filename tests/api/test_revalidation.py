"""Revalidation is answered from index facts: a 304 builds no body (PS3.18 8.8; RFC 9110
13.1.2). The server here is a private one, so its services can be watched without touching
the shared test server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dicomweb_server.container import Container
from tests.conftest import make_settings, private_server
from tests.factories import make_instance
from tests.helpers import stow


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[tuple[httpx.Client, dict[str, int], Container]]:
    with private_server(make_settings(tmp_path)) as (client, container):
        calls = {"metadata": 0, "render": 0, "cached": 0}
        for name in calls:
            service = container.retrieve if name == "metadata" else container.render
            original = getattr(service, name)

            def counted(*args: Any, _name: str = name, _original: Any = original) -> Any:
                calls[_name] += 1
                return _original(*args)

            setattr(service, name, counted)
        yield client, calls, container


def test_a_304_on_metadata_reads_no_metadata(watched: Any) -> None:
    client, calls, _ = watched
    series = [make_instance(series_uid="1.2.3.4.5", study_uid="1.2.3.4") for _ in range(40)]
    assert stow(client, series).status_code == 200
    url = "/studies/1.2.3.4/series/1.2.3.4.5/metadata"
    first = client.get(url)
    assert first.status_code == 200 and len(first.json()) == 40 and calls["metadata"] == 1
    again = client.get(url, headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and calls["metadata"] == 1
    # A new instance changes the tag: the next revalidation gets the grown series.
    assert (
        stow(client, [make_instance(series_uid="1.2.3.4.5", study_uid="1.2.3.4")]).status_code
        == 200
    )
    grown = client.get(url, headers={"If-None-Match": first.headers["etag"]})
    assert grown.status_code == 200 and len(grown.json()) == 41 and calls["metadata"] == 2


def test_a_304_on_a_rendering_renders_nothing(watched: Any) -> None:
    client, calls, _ = watched
    ds = make_instance(study_uid="1.2.3.9", series_uid="1.2.3.9.1", rows=16, columns=16)
    assert stow(client, [ds]).status_code == 200
    png = "image/png"
    for url, other_type in (
        (f"/studies/1.2.3.9/series/1.2.3.9.1/instances/{ds.SOPInstanceUID}/rendered", png),
        ("/studies/1.2.3.9/rendered", f'multipart/related; type="{png}"'),
        ("/studies/1.2.3.9/thumbnail", png),
    ):

        def images_made() -> int:
            return calls["render"] + calls["cached"]

        before = images_made()
        first = client.get(url)
        assert first.status_code == 200 and images_made() > before, url
        before = images_made()
        again = client.get(url, headers={"If-None-Match": first.headers["etag"]})
        assert again.status_code == 304 and images_made() == before, url
        other = client.get(
            url, headers={"If-None-Match": first.headers["etag"], "Accept": other_type}
        )
        assert other.status_code == 200, url


def test_a_study_rendering_asks_the_index_once(watched: Any) -> None:
    """The instances of a rendered or thumbnail study come with their value offsets in one
    index query, not one per instance."""
    client, _, container = watched
    index = container.render._index
    asked = {"pixels": 0, "layouts": 0, "instances": 0}
    for name in asked:
        original = getattr(index, name)

        def counted(*args: Any, _name: str = name, _original: Any = original, **kw: Any) -> Any:
            asked[_name] += 1
            return _original(*args, **kw)

        setattr(index, name, counted)
    study = [make_instance(study_uid="1.2.3.7", rows=8, columns=8) for _ in range(5)]
    assert stow(client, study).status_code == 200
    rendered = client.get("/studies/1.2.3.7/rendered")
    assert rendered.status_code == 200 and rendered.content.count(b"image/jpeg") >= 5
    assert client.get("/studies/1.2.3.7/thumbnail").status_code == 200
    assert asked == {"pixels": 0, "layouts": 2, "instances": 0}
