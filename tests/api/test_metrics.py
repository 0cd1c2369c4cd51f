"""Prometheus metrics (issue 18): `/metrics` scraped and parsed with prometheus-client's own
text parser, in one process and summed over two worker processes."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydicom.uid import generate_uid

from tests.conftest import RunningServer, make_settings, start_serve
from tests.factories import make_instance
from tests.helpers import multipart_body, stow


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = httpx.get(url + "/metrics", timeout=30)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    found = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def _value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def test_requests_ingest_and_gauges_are_counted(
    client: httpx.Client, archive: RunningServer
) -> None:
    if archive.backend != "sqlite":
        pytest.skip("the metrics do not depend on the backends")
    before = _scrape(archive.url)
    study = generate_uid()
    assert stow(client, [make_instance(study) for _ in range(3)]).status_code == 200
    body, content_type = multipart_body([b"not DICOM"])
    assert (
        client.post("/studies", content=body, headers={"Content-Type": content_type}).status_code
        == 409
    )
    assert client.get(f"/studies/{study}/metadata").status_code == 200
    assert client.get(f"/studies/{generate_uid()}/metadata").status_code == 404
    after = _scrape(archive.url)

    def grew(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    route = "/studies/{study}/metadata"
    assert grew("dicomweb_http_requests_total", method="GET", route=route, status="200") == 1
    assert grew("dicomweb_http_requests_total", method="GET", route=route, status="404") == 1
    assert grew("dicomweb_http_request_duration_seconds_count", method="GET", route=route) == 2
    assert grew("dicomweb_http_request_bytes_total", route="/studies") > 3 * 1000
    assert grew("dicomweb_http_response_bytes_total", route=route) > 0
    assert grew("dicomweb_instances_stored_total") == 3
    assert (
        sum(
            v - _value(before, n, **dict(labels))
            for (n, labels), v in after.items()
            if n == "dicomweb_ingest_failures_total"
        )
        == 1
    )
    for gauge in (
        "dicomweb_db_pool_checked_out",
        "dicomweb_webhook_backlog",
        "dicomweb_audit_messages_dropped",
        "dicomweb_audit_sink_failures",
    ):
        assert (gauge, ()) in after
    # No patient data, no raw paths: labels are route templates.
    assert study not in httpx.get(archive.url + "/metrics").text


def test_two_worker_processes_are_summed(tmp_path: Path, archive: RunningServer) -> None:
    if archive.backend != "postgresql":
        pytest.skip("several processes share PostgreSQL")
    settings = make_settings(tmp_path, archive.settings.database_url, workers=2)
    process, base = start_serve(settings)
    try:
        root = base.removesuffix(settings.base_path)
        # New connections each time: the kernel spreads them over both workers.
        for _ in range(40):
            with httpx.Client(base_url=base, timeout=30) as fresh:
                assert fresh.get("/studies").status_code == 200
        found = _scrape(root)
        assert (
            _value(
                found, "dicomweb_http_requests_total", method="GET", route="/studies", status="200"
            )
            >= 40
        )
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_metrics_need_the_metrics_scope_when_access_is_controlled(
    tmp_path: Path, archive: RunningServer
) -> None:
    """With access control on, /metrics (the archive's use: routes, counts, backlog) needs a
    credential with scope metrics, or admin; /health and /ready stay open."""
    if archive.backend != "sqlite":
        pytest.skip("access control does not depend on the backends")
    from tests.conftest import private_server

    with private_server(make_settings(tmp_path, auth="api-key")) as (client, container):
        root = str(client.base_url).rstrip("/").removesuffix(container.settings.base_path)
        assert httpx.get(root + "/metrics").status_code == 401
        assert httpx.get(root + "/health").status_code == 200
        for scopes, status in (({"read"}, 403), ({"metrics"}, 200), ({"admin"}, 200)):
            key = container.access.create_key("k", scopes).secret
            answer = httpx.get(root + "/metrics", headers={"Authorization": f"Bearer {key}"})
            assert answer.status_code == status, (scopes, answer.text)
