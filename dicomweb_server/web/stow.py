"""STOW-RS: Store Instances (PS3.18 10.5)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from dicomweb_server.dicom import numbers, store_status
from dicomweb_server.dicom.media_types import DICOM, DICOM_JSON, DICOM_XML, MULTIPART_RELATED
from dicomweb_server.dicom.store_status import InstanceOutcome, StoreResult
from dicomweb_server.services.errors import (
    InvalidRequest,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
)
from dicomweb_server.services.spool import RequestSpool
from dicomweb_server.services.store import StorePart, StoreService
from dicomweb_server.web import metrics
from dicomweb_server.web.auth import caller
from dicomweb_server.web.capabilities import produces
from dicomweb_server.web.context import container, path_uid
from dicomweb_server.web.media import parse_media_type
from dicomweb_server.web.multipart import MultipartReader, ReceivedPart
from dicomweb_server.web.threads import in_thread
from dicomweb_server.web.urls import Urls, urls

# Body chunks are parsed in batches of about this many bytes, each in one thread hop.
_STEP_BYTES = 1 << 20

_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]", re.ASCII)


@produces(DICOM_JSON)
async def store_instances(request: Request) -> Response:
    study_uid = path_uid(request, "study") if "study" in request.path_params else None
    boundary = _boundary(request.headers.get("content-type"))
    store = container(request).store
    declared = request.headers.get("content-length")
    if (
        declared is not None
        and numbers.parse_integer(declared, "Content-Length") > store.limits.request_bytes
    ):
        # Refused before a byte of the body is read.
        raise PayloadTooLarge(
            f"the request body of {declared} bytes exceeds the limit of "
            f"{store.limits.request_bytes} bytes"
        )
    with store.admission(), store.request_spool() as spool:
        result = await _receive(request, store, spool, boundary, study_uid)
    metrics.count_ingest(result)
    # The studies that received instances, for the audit trail (web/audit.py).
    request.state.audit_studies = [o.study_uid for o in result.outcomes if o.stored and o.study_uid]
    return _response(result, urls(request), study_uid)


async def _receive(
    request: Request,
    store: StoreService,
    spool: RequestSpool,
    boundary: str,
    study_uid: str | None,
) -> StoreResult:
    """Read the body part by part, checking and staging each instance as soon as its part
    is complete; they are indexed in batches, the last when the body ends, before the
    answer (an acknowledged instance is durable).

    Parts of the metadata form wait for the end of the body (bulk data may come first).
    Raises PayloadTooLarge when a limit is crossed; parts completed before it stay stored.
    """
    limits = store.limits
    result = StoreResult()
    parts = store.begin(caller(request), study_uid, _labels(request))
    reader = MultipartReader(boundary, spool.open_part, limits.instance_bytes, limits.parts)

    def step(chunks: list[bytes]) -> list[InstanceOutcome]:
        """Parse what arrived and store the parts it completed: one thread hop for both."""
        outcomes: list[InstanceOutcome] = []
        for chunk in chunks:
            done = reader.feed(chunk)
            if done:
                outcomes += parts.add([_store_part(part) for part in done])
        return outcomes

    received = 0
    too_large: str | None = None
    stopped: RequestTimeout | None = None
    pending: list[bytes] = []
    pending_bytes = 0

    def last(chunks: list[bytes], body_ended: bool) -> list[InstanceOutcome]:
        """The rest of the body parsed, then the request's staged objects indexed and its
        metadata form stored if the body was whole: one thread hop for all of it."""
        outcomes = step(chunks)
        cut = body_ended and not reader.finished
        if cut and reader.error is None and reader.limit_exceeded is None:
            result.request_error = "the multipart body ended before its closing boundary"
        result.request_error = reader.error or result.request_error
        whole = (too_large or reader.limit_exceeded) is None and result.request_error is None
        return outcomes + parts.finish(whole and stopped is None)

    try:
        body_ended = False
        try:
            async for chunk in _body(request, limits.idle_seconds):
                allowed = limits.request_bytes - received
                received += len(chunk)
                if received > limits.request_bytes:
                    # Parts that end within the limit are still stored; the one it cuts is not.
                    chunk = chunk[: max(allowed, 0)]
                    too_large = (
                        f"the request body exceeds the limit of {limits.request_bytes} bytes"
                    )
                pending.append(chunk)
                pending_bytes += len(chunk)
                if pending_bytes < _STEP_BYTES and too_large is None:
                    continue
                chunks, pending, pending_bytes = pending, [], 0
                result.outcomes += await in_thread(step, chunks)
                if too_large or reader.error is not None or reader.limit_exceeded is not None:
                    break
            else:
                body_ended = True
        except ClientDisconnect:
            result.request_error = "the client disconnected before the body was complete"
        except RequestTimeout as exc:
            stopped = exc
        # Parts completed before the body ended, however it ended, are stored.
        result.outcomes += await in_thread(last, pending, body_ended)
        too_large = too_large or reader.limit_exceeded
    finally:
        # Nothing of a part cut short is kept, nor the parts of an unfinished metadata form,
        # nor objects staged but not indexed when the request failed.
        reader.discard()
        parts.discard()
    if stopped is not None:
        raise stopped
    if too_large is not None:
        raise PayloadTooLarge(too_large)
    if not result.outcomes and result.request_error is None:
        result.request_error = "the multipart body holds no parts"
    return result


# The access-control labels a gateway gives what it stores (comma-separated), besides those
# of the ingest rule (DICOMWEB_LABEL_ATTRIBUTES).
LABELS_HEADER = "x-access-labels"


def _labels(request: Request) -> frozenset[str]:
    values = request.headers.getlist(LABELS_HEADER)
    labels = frozenset(v.strip() for value in values for v in value.split(",") if v.strip())
    if len(labels) > 100 or any(len(label) > 256 for label in labels):
        raise InvalidRequest(f"{LABELS_HEADER}: at most 100 labels of 1 to 256 characters")
    return labels


async def _body(request: Request, idle_seconds: float) -> AsyncIterator[bytes]:
    """The request body chunk by chunk; a client that sends nothing for `idle_seconds` is
    answered 408 (the request's spool goes with it). One timer for the whole body, moved on
    by each chunk (a cancel scope per chunk cost more than parsing it)."""
    stream = request.stream()
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(None) as idle:
            while True:
                idle.reschedule(loop.time() + idle_seconds)
                try:
                    chunk = await anext(stream)
                except StopAsyncIteration:
                    return
                # No deadline while the consumer works on the chunk: that is not the
                # client's silence, and a timeout must not cancel it.
                idle.reschedule(None)
                yield chunk
    except TimeoutError:
        raise RequestTimeout(
            f"the request body sent nothing for {idle_seconds:g} seconds; nothing of its "
            "unfinished parts was kept"
        ) from None


def _boundary(content_type: str | None) -> str:
    """The boundary of a STOW-RS request body, whose `type` must be one we take."""
    if not content_type:
        raise UnsupportedMediaType(
            f'a STOW-RS request needs Content-Type: {MULTIPART_RELATED}; type="{DICOM}"'
        )
    media = parse_media_type(content_type)
    if media.type != MULTIPART_RELATED:
        raise UnsupportedMediaType(
            f'STOW-RS takes {MULTIPART_RELATED}; type="{DICOM}", not {media.type}'
        )
    related = media.params.get("type", DICOM).lower()
    if related not in (DICOM, DICOM_JSON, DICOM_XML):
        raise UnsupportedMediaType(
            f'STOW-RS takes parts of type "{DICOM}", or "{DICOM_JSON}" or "{DICOM_XML}" with '
            f'bulk data; "{related}" is not supported'
        )
    boundary = media.params.get("boundary")
    if not boundary:
        raise InvalidRequest("the multipart/related Content-Type has no boundary parameter")
    if not _BOUNDARY.fullmatch(boundary):
        # RFC 2046 5.1.1: 1 to 70 characters of a small set, not ending in a space.
        raise InvalidRequest(
            "the multipart boundary must be 1 to 70 letters, digits or '()+_,-./:=? ' "
            "(RFC 2046 5.1.1)"
        )
    return boundary


def _store_part(part: ReceivedPart) -> StorePart:
    """A received part as the store service takes it: its Content-Type parsed."""
    declared = part.content_type
    try:
        media = parse_media_type(declared) if declared else None
    except InvalidRequest:
        media = None
    return StorePart(
        part.path,
        None if declared is None else (media.type if media else ""),
        declared,
        media.params.get("transfer-syntax") if media else None,
        part.headers.get("content-location"),
    )


def _response(result: StoreResult, here: Urls, study_uid: str | None) -> Response:
    body = store_status.response_dataset(result, here.study, here.instance, study_uid)
    return Response(
        orjson.dumps(body),
        status_code=store_status.response_status(result),
        media_type=DICOM_JSON,
    )
