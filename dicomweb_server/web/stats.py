"""Data-mining views (outside PS3.18; scope read, the report admin):

- `GET {root}/stats`: `{"studies", "series", "instances", "bytes"}` the caller may see.
- `GET {root}/aggregate/{studies|series|instances}?groupby=Modality,StationName&<QIDO keys>`:
  `{"groupby": [...], "groups": [{"values": {...}, "studies", "series", "instances",
  "bytes"}]}`, largest first (`limit` groups at most).
- `GET {root}/reports/consistency?limit=`: `{"inconsistencies": [{"kind", "subject",
  "values"}]}`.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from dicomweb_server.dicom.attributes import Level, keyword_of
from dicomweb_server.dicom.errors import InvalidQuery
from dicomweb_server.dicom.matching import parse_search
from dicomweb_server.dicom.numbers import parse_integer
from dicomweb_server.web.admin import json_answer
from dicomweb_server.web.auth import caller
from dicomweb_server.web.context import container
from dicomweb_server.web.threads import in_thread

_LEVELS = {"studies": Level.STUDY, "series": Level.SERIES, "instances": Level.INSTANCE}


async def read_stats(request: Request) -> Response:
    found = await in_thread(container(request).stats.totals, caller(request))
    return json_answer(
        {
            "studies": found.studies,
            "series": found.series,
            "instances": found.instances,
            "bytes": found.bytes,
        }
    )


async def read_aggregate(request: Request) -> Response:
    level = _LEVELS.get(request.path_params["level"])
    if level is None:
        raise InvalidQuery("aggregate studies, series or instances")
    params = request.query_params.multi_items()
    group_by = ",".join(v for n, v in params if n.lower() == "groupby")
    search = parse_search((n, v) for n, v in params if n.lower() != "groupby")
    tags, groups = await in_thread(
        container(request).stats.aggregate, caller(request), level, group_by, search
    )
    names = [keyword_of(t) for t in tags]
    return json_answer(
        {
            "groupby": names,
            "groups": [
                {
                    "values": dict(zip(names, g.values, strict=True)),
                    "studies": g.studies,
                    "series": g.series,
                    "instances": g.instances,
                    "bytes": g.bytes,
                }
                for g in groups
            ],
        }
    )


async def read_consistency_report(request: Request) -> Response:
    limit = 1000
    for name, value in request.query_params.multi_items():
        if name.lower() != "limit":
            raise InvalidQuery(f"unknown parameter {name!r}; the report takes limit")
        limit = parse_integer(value, "limit", 1, 10_000)
    found = await in_thread(container(request).stats.inconsistencies, caller(request), limit)
    return json_answer(
        {
            "inconsistencies": [
                {"kind": f.kind, "subject": f.subject, "values": f.values} for f in found
            ]
        }
    )
