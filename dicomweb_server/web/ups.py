"""UPS-RS: the Worklist Service (PS3.18 chapter 11).

Bodies are one workitem as `application/dicom+json` (an array of one object, or the object)
or in the Native DICOM Model (`application/dicom+xml`, or `multipart/related;
type="application/dicom+xml"` with one part); answers in the media type asked for (11.1.3).
A refusal answers the status, `Warning: 299` text and DICOM status the standard names
(`services/errors.WorkitemRefused`, mapped in `web/errors.py`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response, StreamingResponse
from starlette.websockets import WebSocket

from dicomweb_server.dicom import ups
from dicomweb_server.dicom.depth import check_json
from dicomweb_server.dicom.errors import InvalidQuery
from dicomweb_server.dicom.json_model import validate_json
from dicomweb_server.dicom.matching import parse_boolean, parse_search
from dicomweb_server.dicom.media_types import DICOM_JSON, DICOM_XML, MULTIPART_RELATED
from dicomweb_server.dicom.xml_model import native_to_json
from dicomweb_server.services.context import Caller
from dicomweb_server.services.errors import (
    InvalidRequest,
    ServiceError,
    UnsupportedMediaType,
)
from dicomweb_server.services.workitems import Answer
from dicomweb_server.web.auth import (
    authenticate_first_message,
    caller,
    while_authorized,
)
from dicomweb_server.web.capabilities import produces
from dicomweb_server.web.context import container, index_read, path_uid, read_body
from dicomweb_server.web.encoding import json_response
from dicomweb_server.web.media import negotiate_json, parse_media_type
from dicomweb_server.web.paths import WORKITEM
from dicomweb_server.web.sockets import accept, pump, refuse
from dicomweb_server.web.threads import in_thread
from dicomweb_server.web.urls import base_url, next_page
from dicomweb_server.web.xml import xml_response

# A workitem is a few kilobytes; a body larger than this is refused unread.
MAX_WORKITEM_BYTES = 1024 * 1024
WARN_AGENT = "dicomweb-server"
KEEPALIVE_SECONDS = 15.0


def warning(text: str) -> str:
    """A Warning header value (RFC 9111 5.5 form: code, agent, quoted text)."""
    return f'299 {WARN_AGENT} "{text}"'


def _one_part(body: bytes, boundary: str) -> tuple[str, bytes]:
    """The content type and content of the only part of a small multipart body."""
    delimiter = b"--" + boundary.encode("latin-1")
    pieces = body.split(delimiter)
    parts = [p for p in pieces[1:] if not p.startswith(b"--")]
    if len(parts) != 1:
        raise InvalidRequest("the multipart body must hold exactly one workitem")
    head, sep, content = parts[0].partition(b"\r\n\r\n")
    if not sep:
        raise InvalidRequest("the multipart part has no header end")
    content_type = DICOM_XML
    for line in head.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-type":
            content_type = parse_media_type(value.strip()).type
    return content_type, content.removesuffix(b"\r\n")


async def dataset_body(request: Request, optional: bool = False) -> dict[str, Any]:
    """The request's one data set as DICOM JSON (415 for another media type, 400 when it is
    not one valid data set; an empty body is an empty data set where `optional`)."""
    body = await read_body(request, MAX_WORKITEM_BYTES, "a workitem body")
    if not body.strip() and optional:
        return {}
    media = parse_media_type(request.headers.get("content-type") or "application/octet-stream")
    kind = media.type
    if kind == MULTIPART_RELATED:
        boundary = media.params.get("boundary")
        if not boundary:
            raise InvalidRequest("the multipart/related Content-Type has no boundary parameter")
        kind, body = _one_part(body, boundary)
    if b"\x00" in body or b"\\u0000" in body:
        raise InvalidRequest("the workitem holds a NUL character")
    try:
        if kind in (DICOM_JSON, "application/json"):
            found = orjson.loads(body)
            if isinstance(found, list):
                if len(found) != 1:
                    raise InvalidRequest("the body must be an array of exactly one workitem")
                found = found[0]
        elif kind in (DICOM_XML, "application/xml"):
            found = native_to_json(body)
        else:
            raise UnsupportedMediaType(
                f"a workitem is {DICOM_JSON}, {DICOM_XML} or {MULTIPART_RELATED}; "
                f'type="{DICOM_XML}"'
            )
        check_json(found, "the workitem")
        validate_json(found)
    except (orjson.JSONDecodeError, ValueError) as exc:
        if isinstance(exc, ServiceError):
            raise
        raise InvalidRequest(f"the workitem is not a valid data set: {exc}") from exc
    return {k.upper(): v for k, v in found.items()}


def _answer(
    status: int, answer: Answer | None = None, headers: dict[str, str] | None = None
) -> Response:
    response = Response(status_code=status, headers=headers)
    if answer is not None and answer.warning:
        response.headers.append("Warning", warning(answer.warning))
    return response


def _workitem_url(request: HTTPConnection, uid: str) -> str:
    return base_url(request) + WORKITEM.format(workitem=uid)


def _query_uid(request: Request, *names: str) -> str | None:
    """A UID given as `?name=UID`, or as the whole query string (`?UID`, the form of the
    PS3.18 request lines `/workitems?{workitem}`)."""
    for name in names:
        for key, value in request.query_params.multi_items():
            if key.lower() == name.lower():
                return value
    bare = request.url.query
    if bare and "=" not in bare and "&" not in bare:
        return bare
    return None


# -- Create (11.4) ------------------------------------------------------------------------


async def create_workitem(request: Request) -> Response:
    workitem = await dataset_body(request)
    uid = _query_uid(request, "workitem", "AffectedSOPInstanceUID")
    made = await in_thread(container(request).workitems.create, caller(request), workitem, uid)
    url = _workitem_url(request, made.uid)
    return _answer(201, made, {"Location": url, "Content-Location": url})


# -- Retrieve (11.5) and Search (11.9) ----------------------------------------------------


def _datasets(found: list[dict[str, Any]]) -> bytes:
    return orjson.dumps(found)


@produces(DICOM_JSON, f'{MULTIPART_RELATED}; type="{DICOM_XML}"')
async def retrieve_workitem(request: Request) -> Response:
    media_type = negotiate_json(request.headers.get("accept"))
    uid = path_uid(request, "workitem")
    found = await index_read(request, container(request).workitems.retrieve, caller(request), uid)
    body = _datasets([found])
    if media_type == DICOM_XML:
        return xml_response(body)
    response = await json_response(request, body, media_type)
    response.headers["Content-Location"] = _workitem_url(request, uid)
    return response


@produces(DICOM_JSON, f'{MULTIPART_RELATED}; type="{DICOM_XML}"')
async def search_workitems(request: Request) -> Response:
    media_type = negotiate_json(request.headers.get("accept"))
    search = parse_search(request.query_params.multi_items())
    found = await index_read(request, container(request).workitems.search, caller(request), search)
    if not found.results:
        # PS3.18 11.9.3.1: no match is 204 No Content.
        response = Response(status_code=204)
    elif media_type == DICOM_XML:
        response = xml_response(_datasets(found.results))
    else:
        response = await json_response(request, _datasets(found.results), media_type)
    for text in found.warnings:
        response.headers.append("Warning", warning(text))
    if found.next_offset is not None:
        response.headers["Link"] = f'<{next_page(request, found.next_offset)}>; rel="next"'
    return response


# -- Update (11.6), Change State (11.7), Request Cancellation (11.8) -----------------------


async def update_workitem(request: Request) -> Response:
    uid = path_uid(request, "workitem")
    changes = await dataset_body(request)
    transaction = _query_uid(request, "transaction", "transaction-uid", "TransactionUID")
    done = await in_thread(
        container(request).workitems.update, caller(request), uid, changes, transaction
    )
    return _answer(200, done, {"Content-Location": _workitem_url(request, uid)})


async def change_workitem_state(request: Request) -> Response:
    uid = path_uid(request, "workitem")
    body = await dataset_body(request)
    requested = ups.first(body, ups.PROCEDURE_STEP_STATE)
    transaction = ups.first(body, ups.TRANSACTION_UID)
    if isinstance(requested, str) and requested.strip() == "CANCELLED":
        # PS3.18 11.7.1.4 spells it so once; the attribute's value is CANCELED.
        requested = ups.CANCELED
    done = await in_thread(
        container(request).workitems.change_state,
        caller(request),
        uid,
        requested.strip() if isinstance(requested, str) else None,
        transaction if isinstance(transaction, str) else None,
    )
    return _answer(200, done)


async def request_cancellation(request: Request) -> Response:
    uid = path_uid(request, "workitem")
    body = await dataset_body(request, optional=True)
    done = await in_thread(container(request).workitems.request_cancel, caller(request), uid, body)
    return _answer(202, done)


# -- Subscribe (11.10), Unsubscribe (11.11), Suspend (11.12) -------------------------------


def _channel_url(request: HTTPConnection, aetitle: str) -> str:
    url = base_url(request)
    scheme, _, rest = url.partition("://")
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/subscribers/{aetitle}"


async def subscribe(request: Request) -> Response:
    target = path_uid(request, "workitem")
    aetitle = request.path_params["aetitle"]
    deletion_lock, filter_text = False, None
    for name, value in request.query_params.multi_items():
        lowered = name.lower()
        if lowered == "deletionlock":
            deletion_lock = parse_boolean(name, value)
        elif lowered == "filter":
            filter_text = value
        else:
            raise InvalidQuery(f"unknown parameter {name!r}; subscribe takes deletionlock, filter")
    await in_thread(
        container(request).workitems.subscribe,
        caller(request),
        target,
        aetitle,
        deletion_lock,
        filter_text,
    )
    container(request).channels.wake()
    # PS3.18 11.10.3.2: Content-Location is the WebSocket channel of the subscriber.
    return Response(status_code=201, headers={"Content-Location": _channel_url(request, aetitle)})


async def unsubscribe(request: Request) -> Response:
    return await _subscription_change(request, container(request).workitems.unsubscribe)


def _of_filtered_worklist(
    handler: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """`handler` on the Filtered Worklist's own path (which names no workitem)."""

    async def filtered(request: Request) -> Response:
        request.scope["path_params"] = {
            **request.path_params,
            "workitem": ups.FILTERED_SUBSCRIPTION,
        }
        return await handler(request)

    return filtered


subscribe_filtered = _of_filtered_worklist(subscribe)
unsubscribe_filtered = _of_filtered_worklist(unsubscribe)


async def suspend_subscription(request: Request) -> Response:
    return await _subscription_change(request, container(request).workitems.suspend)


async def _subscription_change(
    request: Request, change: Callable[[Caller, str, str], None]
) -> Response:
    target = path_uid(request, "workitem")
    await in_thread(change, caller(request), target, request.path_params["aetitle"])
    return Response(status_code=200)


# -- outside PS3.18 ------------------------------------------------------------------------


async def delete_workitem(request: Request) -> Response:
    uid = path_uid(request, "workitem")
    await in_thread(container(request).workitems.delete, caller(request), uid)
    return Response(status_code=204)


# -- the event channel (PS3.18 8.10.4 Open Notification Connection, 8.10.5) ---------------


async def event_channel(websocket: WebSocket) -> None:
    """One text message per event report (application/dicom+json, 11.13), from the first
    the AE title has not been sent. Closed at once with the reason when it cannot be
    opened: 1008 (credential, scope, another caller's AE title), 1013 (try later)."""
    archive = container(websocket)
    await authenticate_first_message(websocket)
    try:
        aetitle = await in_thread(
            archive.workitems.channel_owner_check,
            caller(websocket),
            websocket.path_params["aetitle"],
        )
    except (ServiceError, InvalidQuery) as exc:
        await refuse(websocket, exc)
        return
    await accept(websocket)
    reports = archive.channels.reports(aetitle, KEEPALIVE_SECONDS)

    async def send() -> None:
        async for batch in while_authorized(websocket, reports):
            for report in batch.reports:
                await websocket.send_text(orjson.dumps(report).decode())
            archive.channels.sent(aetitle, batch)
        await websocket.close(1008, "the credential no longer gives read")

    try:
        await pump(websocket, send)
    finally:
        await reports.aclose()  # type: ignore[attr-defined]


@produces("text/event-stream")
async def stream_worklist(request: Request) -> Response:
    """Outside PS3.18: the worklist's changes as Server-Sent Events, for a live view read with
    `fetch` (the credential in its header, never in a URL): `event: changed` each time any
    workitem is made, changed or removed, by any process; a comment line in quiet times. The
    view reads the worklist again on each; UPS-RS subscribers use the event channel instead.
    """
    archive = container(request)
    archive.workitems.watch(caller(request))
    changes = archive.channels.worklist_changes(KEEPALIVE_SECONDS)

    async def events() -> AsyncIterator[bytes]:
        try:
            yield b": worklist\n\n"  # the headers and a first byte at once
            async for changed in while_authorized(request, changes):
                yield b"event: changed\ndata: {}\n\n" if changed else b": keep-alive\n\n"
        finally:
            await changes.aclose()  # type: ignore[attr-defined]

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def assign_receiver(request: Request) -> Response:
    """`PUT {root}/subscribers/{aetitle}/owner` `{"owner": "key:<id>"}`: the AE title is that
    caller's (outside PS3.18; scope admin)."""
    try:
        body = orjson.loads(await read_body(request, 4096, "the owner"))
    except orjson.JSONDecodeError:
        raise InvalidRequest('the body must be {"owner": "key:<id>"}') from None
    owner = body.get("owner") if isinstance(body, dict) else None
    if not isinstance(owner, str):
        raise InvalidRequest('the body must be {"owner": "key:<id>"}')
    await in_thread(
        container(request).workitems.assign_receiver,
        caller(request),
        request.path_params["aetitle"],
        owner,
    )
    return Response(status_code=204)
