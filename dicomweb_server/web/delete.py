"""Removal, outside PS3.18 (scope delete). Delete a study, series or instance as Microsoft's
DICOM service does: 204, or 404 when nothing such is stored (or the caller may not see it).
Reject one as dcm4chee does for IOCM (what OHIF's `supportsReject` calls): 204; and restore
what was rejected: 200 with the counts."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from dicomweb_server.services.reject import Restored
from dicomweb_server.web.auth import caller
from dicomweb_server.web.context import container, scope_uids
from dicomweb_server.web.threads import in_thread


async def delete_resource(request: Request) -> Response:
    study, series, instance = scope_uids(request)
    await in_thread(container(request).delete.delete, caller(request), study, series, instance)
    return Response(status_code=204)


async def reject_resource(request: Request) -> Response:
    """POST .../reject/{CodeValue}^{CodingSchemeDesignator} (PS3.16 CID 7011)."""
    study, series, instance = scope_uids(request)
    code = request.path_params["code"]
    done = await in_thread(
        container(request).reject.reject, caller(request), code, study, series, instance
    )
    if isinstance(done, Restored):
        return _restored(done)
    return Response(status_code=204)


async def restore_resource(request: Request) -> Response:
    """POST .../restore: the rejected instances back, as they were stored."""
    study, series, instance = scope_uids(request)
    done = await in_thread(
        container(request).reject.restore, caller(request), study, series, instance
    )
    return _restored(done)


def _restored(done: Restored) -> Response:
    return JSONResponse({"restored": done.restored, "superseded": done.superseded})
