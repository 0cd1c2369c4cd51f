"""The HTTP contract and the health probes (outside the DICOMweb root)."""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from dicomweb_server.web.capabilities import produces
from dicomweb_server.web.context import container
from dicomweb_server.web.threads import in_thread

YAML = "application/yaml"
JSON = "application/json"


@cache
def openapi_text() -> str:
    """The HTTP contract: packaged in a wheel, beside the package in a checkout."""
    packaged = resources.files("dicomweb_server").joinpath("_data/openapi.yaml")
    if packaged.is_file():
        return packaged.read_text("utf-8")
    return (Path(__file__).resolve().parents[2] / "openapi" / "openapi.yaml").read_text("utf-8")


@produces(YAML)
async def openapi(_request: Request) -> Response:
    return Response(openapi_text(), media_type=YAML)


@produces(JSON)
async def health(_request: Request) -> Response:
    """Liveness: the process answers (Kubernetes livenessProbe, load balancers)."""
    return JSONResponse({"status": "ok"})


@produces(JSON)
async def ready(request: Request) -> Response:
    """Readiness: the database and the blob store answer (Kubernetes readinessProbe)."""
    problems = await in_thread(container(request).problems)
    if problems:
        return JSONResponse(
            {"status": "unavailable", "problems": problems},
            status_code=503,
            headers={"Retry-After": "5"},
        )
    return JSONResponse({"status": "ready"})
