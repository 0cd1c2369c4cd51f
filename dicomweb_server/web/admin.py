"""Administration outside PS3.18: the access-control labels of a study (scope admin).

`GET {root}/studies/{study}/labels` answers `{"labels": [...]}`; `PUT` with the same body
makes them the study's labels. Keys and tokens limited to labels see only the studies that
carry one of theirs.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from dicomweb_server.services.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from dicomweb_server.web.auth import caller
from dicomweb_server.web.context import container, path_uid

# An administration request is a small JSON document; anything larger is refused unread.
MAX_JSON_BODY = 64 * 1024


async def json_body(request: Request) -> Any:
    """The request's JSON body, at most MAX_JSON_BODY bytes (415 unless JSON, 413, 400)."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json":
        raise UnsupportedMediaType("the body must be application/json")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_JSON_BODY:
            raise PayloadTooLarge(f"the body is longer than {MAX_JSON_BODY} bytes")
    try:
        return orjson.loads(bytes(body))
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc}") from exc


def json_answer(value: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(value), status, media_type="application/json")


def _labels_response(labels: list[str]) -> Response:
    return json_answer({"labels": labels})


async def study_labels(request: Request) -> Response:
    study = path_uid(request, "study")
    found = await run_in_threadpool(container(request).access.study_labels, caller(request), study)
    return _labels_response(found)


async def set_study_labels(request: Request) -> Response:
    study = path_uid(request, "study")
    body = await json_body(request)
    labels = body.get("labels") if isinstance(body, dict) else None
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        raise InvalidRequest('the body must be {"labels": ["label", ...]}')
    found = await run_in_threadpool(
        container(request).access.set_study_labels, caller(request), study, labels
    )
    return _labels_response(found)
