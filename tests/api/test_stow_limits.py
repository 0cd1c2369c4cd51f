"""STOW-RS limits: 413 with the reason, nothing of the offending part stored."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from dicomweb_server.services.store import StoreLimits
from tests.conftest import RunningServer
from tests.factories import make_instance, to_bytes
from tests.helpers import multipart_body


@pytest.fixture
def limits(archive: RunningServer) -> Iterator[StoreLimits]:
    """Small limits on the running server (DICOMWEB_MAX_*) for one test."""
    store = archive.container.store
    before = store.limits
    store.limits = StoreLimits(request_bytes=200_000, instance_bytes=50_000, parts=3)
    yield store.limits
    store.limits = before


def small() -> bytes:
    return to_bytes(make_instance(rows=16, columns=16))  # about 1.5 kB


def big() -> bytes:
    return to_bytes(make_instance(rows=256, columns=256))  # about 130 kB


def chunked(body: bytes) -> Iterator[bytes]:
    for i in range(0, len(body), 8192):
        yield body[i : i + 8192]


def stored(client: httpx.Client) -> int:
    return len(client.get("/instances").json())


def test_declared_length_over_the_limit_is_refused_before_reading(
    client: httpx.Client, limits: StoreLimits
) -> None:
    body, content_type = multipart_body([big(), big()])
    assert len(body) > limits.request_bytes
    r = client.post("/studies", content=body, headers={"Content-Type": content_type})
    assert r.status_code == 413
    assert "exceeds the limit" in r.json()["error"]
    assert stored(client) == 0


def test_streamed_body_over_the_limit_stops_and_keeps_nothing_of_that_part(
    client: httpx.Client, limits: StoreLimits
) -> None:
    limits.instance_bytes = 10**9
    body, content_type = multipart_body([small(), big(), big()])
    r = client.post("/studies", content=chunked(body), headers={"Content-Type": content_type})
    assert r.status_code == 413
    # The two parts completed before the limit are stored; the one it cut is not.
    assert stored(client) == 2


def test_instance_over_the_limit(client: httpx.Client, limits: StoreLimits) -> None:
    body, content_type = multipart_body([small(), big()])
    r = client.post("/studies", content=chunked(body), headers={"Content-Type": content_type})
    assert r.status_code == 413
    assert "part 2 is larger than 50000 bytes" in r.json()["error"]
    assert stored(client) == 1


def test_too_many_parts(client: httpx.Client, limits: StoreLimits) -> None:
    body, content_type = multipart_body([small() for _ in range(4)])
    r = client.post("/studies", content=body, headers={"Content-Type": content_type})
    assert r.status_code == 413
    assert "more than 3 parts" in r.json()["error"]
    assert stored(client) == 3
    assert not list(client.get("/instances").json())[3:]
