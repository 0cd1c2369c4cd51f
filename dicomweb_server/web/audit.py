"""The audit trail at the web's edge: one DICOM Audit Message per DICOMweb transaction (the
route table names its kind), and `GET {root}/audit` (scope admin) reading the audit table.

Query (PS3.15 A.5.3.10) for QIDO-RS, with the query as sent; DICOM Instances Transferred
(A.5.3.7) for STOW-RS (C, the studies that received instances) and for every retrieve
(R: WADO-RS at any level, frames, bulk data, renderings, thumbnails, WADO-URI). The outcome
follows the answer: success, minor failure (4xx) or serious failure (5xx). Audit messages
name patients' studies and queries: they are security records, kept by the sinks, never
written to the request log.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from dicomweb_server.dicom.numbers import parse_integer
from dicomweb_server.services import audit
from dicomweb_server.services.errors import InvalidRequest
from dicomweb_server.web.access import without_credentials
from dicomweb_server.web.admin import json_answer
from dicomweb_server.web.auth import caller
from dicomweb_server.web.context import container
from dicomweb_server.web.threads import in_thread

QUERY, RETRIEVE, STORE = "query", "retrieve", "store"


def record(request: Request, kind: str, status: int) -> None:
    """The audit message of one transaction (nothing when no sink is configured)."""
    trail = container(request).audit
    if not trail.enabled:
        return
    who = caller(request)
    outcome = audit.outcome_of(status)
    params = request.path_params
    studies = [params["study"]] if "study" in params else []
    if not studies and kind != QUERY and request.query_params.get("studyUID"):
        studies = [request.query_params["studyUID"]]  # WADO-URI
    if kind == QUERY:
        # As sent, but for anything that looks like a credential (PS3.15 A.5.3.10 keeps the
        # query; a key put in a URL by mistake must not reach every audit reader).
        query = without_credentials(request.scope["query_string"].decode("latin-1"))
        text = request.scope["path"] + (f"?{query}" if query else "")
        trail.record(audit.query(who, text, outcome, studies))
        return
    if kind == STORE:
        studies = getattr(request.state, "audit_studies", None) or studies
    trail.record(audit.transfer(who, studies, outcome, stored=kind == STORE, note=f"HTTP {status}"))


async def read_audit(request: Request) -> Response:
    """Kept audit messages, oldest first: `after` (the `next` of the previous page), `since`
    (seconds since the epoch), `study`, `limit` (at most 1000)."""
    query = request.query_params
    after = parse_integer(query.get("after", "0"), "after", 0, 2**62)
    limit = parse_integer(query.get("limit", "100"), "limit", 1, 1000)
    since = None
    if "since" in query:
        try:
            since = float(query["since"])
        except ValueError:
            raise InvalidRequest("since is seconds since the epoch") from None
    trail = container(request).audit
    found = await in_thread(
        trail.read, caller(request), after, since, query.get("study"), limit, request.url.path
    )
    return json_answer(
        {
            "events": [e.message for e in found],
            "next": found[-1].number if len(found) == limit else None,
            "sink_failures": dict(trail.failures),
            "dropped": trail.dropped,
        }
    )
