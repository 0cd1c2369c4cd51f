"""Prometheus metrics at `GET /metrics` (beside `/health`, outside the DICOMweb root).

Counters and histograms are prometheus-client's; with several server processes `serve` sets
PROMETHEUS_MULTIPROC_DIR before they start, each writes its own files there and a scrape of
any process sums them all. The gauges read at scrape time (the database pool, the audit
trail, the webhook backlog, the metadata cache) come from the answering process's own
container (`Archive.gauges`); the webhook backlog is the database's, the same from any.

Labels are bounded: the route is the route table's path template (`/studies/{study}`), never
the path asked for; methods and statuses are HTTP's.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import REGISTRY, Collector
from starlette.requests import Request
from starlette.responses import Response

from dicomweb_server.dicom.store_status import StoreResult
from dicomweb_server.web.context import Archive, container
from dicomweb_server.web.threads import in_thread

REQUESTS = Counter(
    "dicomweb_http_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
LATENCY = Histogram(
    "dicomweb_http_request_duration_seconds",
    "Time from a request's start to the end of its response",
    ["method", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
BYTES_IN = Counter("dicomweb_http_request_bytes_total", "Request body bytes received", ["route"])
BYTES_OUT = Counter("dicomweb_http_response_bytes_total", "Response body bytes sent", ["route"])
STORED = Counter("dicomweb_instances_stored_total", "Instances stored (STOW-RS)")
FAILED = Counter(
    "dicomweb_ingest_failures_total",
    "Instances refused on ingest, by PS3.18 failure reason (hex)",
    ["reason"],
)


# The labelled series of each (method, route, status) seen, kept: looking them up by label
# values costs more than the counting (the labels are bounded, so this is too).
_SERIES: dict[tuple[str, str, int], tuple[Any, Any, Any, Any]] = {}


def observe(method: str, route: str, status: int, seconds: float, received: int, sent: int) -> None:
    series = _SERIES.get((method, route, status))
    if series is None:
        series = (
            REQUESTS.labels(method, route, str(status)),
            LATENCY.labels(method, route),
            BYTES_IN.labels(route),
            BYTES_OUT.labels(route),
        )
        _SERIES[(method, route, status)] = series
    requests, latency, bytes_in, bytes_out = series
    requests.inc()
    latency.observe(seconds)
    if received:
        bytes_in.inc(received)
    if sent:
        bytes_out.inc(sent)


def count_ingest(result: StoreResult) -> None:
    stored = sum(1 for o in result.outcomes if o.stored)
    if stored:
        STORED.inc(stored)
    for outcome in result.outcomes:
        if not outcome.stored:
            FAILED.labels(f"{outcome.failure_reason or 0:04X}").inc()


class _Gauges(Collector):
    def __init__(self, values: dict[str, tuple[str, float]]) -> None:
        self._values = values

    def collect(self):  # type: ignore[no-untyped-def]
        for name, (text, value) in sorted(self._values.items()):
            family = GaugeMetricFamily(f"dicomweb_{name}", text)
            family.add_metric([], value)
            yield family


def _exposition(archive: Archive) -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        shared = CollectorRegistry()
        MultiProcessCollector(shared)  # type: ignore[no-untyped-call]
        text = generate_latest(shared)
    else:
        text = generate_latest(REGISTRY)
    gauges = CollectorRegistry()
    gauges.register(_Gauges(archive.gauges()))
    return text + generate_latest(gauges)


async def metrics(request: Request) -> Response:
    body = await in_thread(_exposition, container(request))
    return Response(body, media_type=CONTENT_TYPE_LATEST)
