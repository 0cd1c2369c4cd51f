"""Responses in the Native DICOM Model: one XML document per data set (PS3.19 A.1)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from dicomweb_server.dicom.media_types import DICOM_XML
from dicomweb_server.dicom.xml_model import json_to_native
from dicomweb_server.web.multipart import MultipartBody, OutgoingPart


def xml_response(json_array: bytes) -> Response:
    """The data sets of a DICOM JSON array as `multipart/related; type=application/dicom+xml`."""
    datasets: list[dict[str, Any]] = orjson.loads(json_array)
    documents = [json_to_native(ds) for ds in datasets]
    body = MultipartBody([OutgoingPart.of(DICOM_XML, d) for d in documents])
    media_type = f'multipart/related; type="{DICOM_XML}"; boundary={body.boundary}'
    return Response(body.read(), media_type=media_type)
