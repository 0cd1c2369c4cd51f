"""The UID service (outside PS3.18): `POST {root}/uids?count=N` answers a JSON array of N
fresh UIDs (at most 1000), under DICOMWEB_UID_ROOT or, without one, under 2.25 (PS3.5 B.2)."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from dicomweb_server.dicom.errors import InvalidQuery
from dicomweb_server.dicom.numbers import parse_integer
from dicomweb_server.dicom.uids import new_uid
from dicomweb_server.web.context import container

MAX_COUNT = 1000


async def create_uids(request: Request) -> Response:
    count = 1
    for name, value in request.query_params.multi_items():
        if name.lower() != "count":
            raise InvalidQuery(f"unknown parameter {name!r}; the UID service takes count")
        count = parse_integer(value, "count", 1, MAX_COUNT)
    root = container(request).uid_root
    made = [new_uid(root) for _ in range(count)]
    return Response(orjson.dumps(made), 201, media_type="application/json")
