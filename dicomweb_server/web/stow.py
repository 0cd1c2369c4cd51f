"""STOW-RS: Store Instances (PS3.18 10.5)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from dicomweb_server.dicom import numbers
from dicomweb_server.dicom.assemble import BulkPart
from dicomweb_server.dicom.media_types import DICOM, DICOM_JSON, DICOM_XML, MULTIPART_RELATED
from dicomweb_server.services.errors import (
    InvalidRequest,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
)
from dicomweb_server.services.spool import RequestSpool
from dicomweb_server.services.store import (
    CANNOT_UNDERSTAND,
    InstanceOutcome,
    StoreResult,
    StoreService,
    response_status,
)
from dicomweb_server.web.context import base_url, container, path_uid
from dicomweb_server.web.media import parse_media_type
from dicomweb_server.web.multipart import MultipartReader, ReceivedPart

_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]", re.ASCII)


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
    return _response(result, base_url(request), study_uid)


async def _receive(
    request: Request,
    store: StoreService,
    spool: RequestSpool,
    boundary: str,
    study_uid: str | None,
) -> StoreResult:
    """Read the body part by part, storing each instance as soon as its part is complete.

    Parts of the metadata form wait for the end of the body (bulk data may come first).
    Raises PayloadTooLarge when a limit is crossed; parts completed before it stay stored.
    """
    limits = store.limits
    result = StoreResult()
    described = _Described()
    reader = MultipartReader(boundary, spool.open_part, limits.instance_bytes, limits.parts)
    received = 0
    too_large: str | None = None
    try:
        async for chunk in _body(request, limits.idle_seconds):
            allowed = limits.request_bytes - received
            received += len(chunk)
            if received > limits.request_bytes:
                # Parts that end within the limit are still stored; the one it cuts is not.
                chunk = chunk[: max(allowed, 0)]
                too_large = f"the request body exceeds the limit of {limits.request_bytes} bytes"
            done = await run_in_threadpool(reader.feed, chunk)
            if done:
                result.outcomes += await run_in_threadpool(
                    _store_parts, store, done, study_uid, described
                )
            if too_large or reader.error is not None or reader.limit_exceeded is not None:
                break
        else:
            if not reader.finished:
                result.request_error = "the multipart body ended before its closing boundary"
        too_large = too_large or reader.limit_exceeded
        result.request_error = reader.error or result.request_error
        if described.metadata and too_large is None and result.request_error is None:
            parts, described = described, _Described()
            result.outcomes += await run_in_threadpool(
                store.store_from_metadata, parts.metadata, parts.bulk, study_uid
            )
    except ClientDisconnect:
        result.request_error = "the client disconnected before the body was complete"
    finally:
        # Nothing of a part cut short is kept, nor the parts of an unfinished metadata form.
        reader.discard()
        described.discard()
    if too_large is not None:
        raise PayloadTooLarge(too_large)
    if not result.outcomes and result.request_error is None:
        result.request_error = "the multipart body holds no parts"
    return result


async def _body(request: Request, idle_seconds: float) -> AsyncIterator[bytes]:
    """The request body chunk by chunk; a client that sends nothing for `idle_seconds` is
    answered 408 (the request's spool goes with it)."""
    stream = request.stream()
    while True:
        try:
            with anyio.fail_after(idle_seconds):
                chunk = await anext(stream)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise RequestTimeout(
                f"the request body sent nothing for {idle_seconds:g} seconds; nothing of its "
                "unfinished parts was kept"
            ) from None
        yield chunk


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


@dataclass
class _Described:
    """Parts of the metadata-and-bulk-data form, kept until the body has been read."""

    metadata: list[Path] = field(default_factory=list)
    bulk: dict[str, BulkPart] = field(default_factory=dict)

    def discard(self) -> None:
        for path in [*self.metadata, *(p.path for p in self.bulk.values())]:
            path.unlink(missing_ok=True)


def _store_parts(
    store: StoreService,
    parts: list[ReceivedPart],
    study_uid: str | None,
    described: _Described,
) -> list[InstanceOutcome]:
    outcomes = []
    for part in parts:
        declared = part.content_type
        try:
            media = parse_media_type(declared) if declared else None
        except InvalidRequest:
            media = None
        part_type = DICOM if declared is None else (media.type if media else declared)
        if part_type == DICOM:
            outcomes.append(store.store(part.path, study_uid))
        elif part_type in (DICOM_JSON, DICOM_XML):
            # The file's suffix tells the service how to read it.
            suffix = ".json" if part_type == DICOM_JSON else ".xml"
            described.metadata.append(part.path.rename(part.path.with_suffix(suffix)))
        elif media is not None and "content-location" in part.headers:
            # A bulk data part of the metadata form, found later by its Content-Location.
            location = part.headers["content-location"]
            described.bulk[location] = BulkPart(
                part.path, media.type, media.params.get("transfer-syntax")
            )
        else:
            part.path.unlink(missing_ok=True)
            outcomes.append(
                InstanceOutcome(
                    None,
                    None,
                    failure_reason=CANNOT_UNDERSTAND,
                    message=f"part of type {declared!r} is neither {DICOM}, nor metadata "
                    f"({DICOM_JSON}, {DICOM_XML}), nor bulk data with a Content-Location",
                )
            )
    return outcomes


def _response(result: StoreResult, base: str, study_uid: str | None) -> Response:
    body: dict[str, Any] = {}
    studies = {o.study_uid for o in result.outcomes if o.stored}
    if study_uid is not None or len(studies) == 1:
        body["00081190"] = {"vr": "UR", "Value": [f"{base}/studies/{study_uid or studies.pop()}"]}
    failed = [_failed_item(o) for o in result.outcomes if not o.stored]
    if result.request_error is not None:
        failed.append(
            {
                "00081197": {"vr": "US", "Value": [CANNOT_UNDERSTAND]},
                "00000902": {"vr": "LO", "Value": [result.request_error]},
            }
        )
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": failed}
    stored = [_stored_item(o, base) for o in result.outcomes if o.stored]
    if stored:
        body["00081199"] = {"vr": "SQ", "Value": stored}
    return Response(orjson.dumps(body), status_code=response_status(result), media_type=DICOM_JSON)


def _uid(value: str | None) -> dict[str, Any]:
    return {"vr": "UI", "Value": [value]} if value else {"vr": "UI"}


def _stored_item(o: InstanceOutcome, base: str) -> dict[str, Any]:
    item = {
        "00081150": _uid(o.sop_class_uid),
        "00081155": _uid(o.sop_instance_uid),
        "00081190": {
            "vr": "UR",
            "Value": [
                f"{base}/studies/{o.study_uid}/series/{o.series_uid}/instances/{o.sop_instance_uid}"
            ],
        },
    }
    if o.warning_reason is not None:
        item["00081196"] = {"vr": "US", "Value": [o.warning_reason]}
        item["00000902"] = {"vr": "LO", "Value": [o.message[:1024]]}
    return item


def _failed_item(o: InstanceOutcome) -> dict[str, Any]:
    # Error Comment (0000,0902) carries the reason in words beside the PS3.18 I.2 code.
    return {
        "00081150": _uid(o.sop_class_uid),
        "00081155": _uid(o.sop_instance_uid),
        "00081197": {"vr": "US", "Value": [o.failure_reason]},
        "00000902": {"vr": "LO", "Value": [o.message[:1024]]},
    }
