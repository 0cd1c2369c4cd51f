"""Corrections, outside PS3.18 (scope update): Microsoft's bulk update of patient and study
attributes, and a patient merge. Both answer 200 with what was corrected."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from dicomweb_server.services.corrections import Updated
from dicomweb_server.services.errors import InvalidRequest
from dicomweb_server.web.admin import json_answer, json_body
from dicomweb_server.web.auth import caller
from dicomweb_server.web.context import container
from dicomweb_server.web.threads import in_thread


async def bulk_update(request: Request) -> Response:
    """POST /studies/$bulkUpdate {"studyInstanceUids": [...] | "patientId": "...",
    "changeDataset": {DICOM JSON}}."""
    body = await json_body(request)
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    unknown = set(body) - {"studyInstanceUids", "patientId", "changeDataset"}
    if unknown:
        raise InvalidRequest(f"unknown member(s): {', '.join(sorted(unknown))}")
    done = await in_thread(
        container(request).corrections.update,
        caller(request),
        body.get("changeDataset"),
        body.get("studyInstanceUids"),
        body.get("patientId"),
    )
    return _updated(done)


async def merge_patient(request: Request) -> Response:
    """POST /patients/{patient}/merge {"into": "<PatientID>"}."""
    body = await json_body(request)
    into = body.get("into") if isinstance(body, dict) else None
    if not isinstance(into, str) or not into:
        raise InvalidRequest('the body must be {"into": "<the PatientID to merge into>"}')
    done = await in_thread(
        container(request).corrections.merge, caller(request), request.path_params["patient"], into
    )
    return _updated(done)


def _updated(done: Updated) -> Response:
    return json_answer({"studies": done.studies, "instances": done.instances})
