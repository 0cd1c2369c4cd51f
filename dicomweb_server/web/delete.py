"""Delete a study, series or instance (outside PS3.18, as Microsoft's DICOM service does;
scope delete): 204, or 404 when nothing such is stored (or the caller may not see it)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from dicomweb_server.web.auth import caller
from dicomweb_server.web.context import container, scope_uids
from dicomweb_server.web.threads import in_thread


async def delete_resource(request: Request) -> Response:
    study, series, instance = scope_uids(request)
    await in_thread(container(request).delete.delete, caller(request), study, series, instance)
    return Response(status_code=204)
