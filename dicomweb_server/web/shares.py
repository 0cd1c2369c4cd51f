"""Share links over HTTP (not PS3.18): made, listed and revoked by an admin (or a caller with
scope share, for the studies it may see); redeemed by their holder for a session token.

- `POST {root}/shares` `{"study", "series"?, "expires_in"?, "max_uses"?, "rights"?, "code"?}`
  answers 201 with the link (`url`, `token`) and, when `code` was asked for, the one-time
  code: both are shown this once.
- `POST {root}/shares/redeem` `{"token", "code"?}` answers the session: `access_token`, a
  bearer token for the shared study's resources, and `expires_in`.
- `GET {root}/shares/open?token=...` redeems a link without a code and, with
  DICOMWEB_SHARE_VIEWER_URL set, redirects to the viewer (OHIF takes the session as its
  `token` URL parameter and sends it as a bearer token); else it answers as redeem does.
- A browser (Accept: text/html) opening the link is sent to the web app's page for share
  links, which asks for the one-time code when the share has one.
- `POST {root}/shares/{id}/code` (an admin, or the share's creator): a new one-time code; a
  code is good for one redemption.
- `GET {root}/shares`, `GET {root}/shares/{id}` (with its latest uses), `DELETE
  {root}/shares/{id}` (revoked at once, in every process).
"""

from __future__ import annotations

import time
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from dicomweb_server.dicom import uids
from dicomweb_server.services.errors import InvalidRequest
from dicomweb_server.services.shares import DEFAULT_SECONDS, Session, describe
from dicomweb_server.web.admin import json_answer, json_body, whole_number
from dicomweb_server.web.auth import caller
from dicomweb_server.web.context import container
from dicomweb_server.web.threads import in_thread
from dicomweb_server.web.urls import urls


def _integer(body: dict[str, object], name: str, default: int | None) -> int | None:
    value = body.get(name, default)
    if value is None:
        return None
    number = whole_number(value)
    if number is None:
        raise InvalidRequest(f"{name} must be an integer")
    return number


async def create_share(request: Request) -> Response:
    body = await json_body(request)
    if not isinstance(body, dict):
        raise InvalidRequest('the body must be an object such as {"study": "1.2.3"}')
    study = uids.require_uid(str(body.get("study", "")), "study")
    series = body.get("series")
    series = None if series is None else uids.require_uid(str(series), "series")
    rights = body.get("rights", "view")
    code = body.get("code", False)
    if not isinstance(rights, str) or not isinstance(code, bool):
        raise InvalidRequest('rights is "view" or "download"; code is true or false')
    made = await in_thread(
        container(request).shares.create,
        caller(request),
        study,
        series,
        _integer(body, "expires_in", DEFAULT_SECONDS) or 0,
        _integer(body, "max_uses", None),
        rights,
        code,
    )
    answer = {
        **describe(made.share),
        "token": made.token,
        "url": urls(request).share_link(made.token),
    }
    if made.code is not None:
        answer["one_time_code"] = made.code
    return json_answer(answer, 201)


async def list_shares(request: Request) -> Response:
    found = await in_thread(container(request).shares.shares, caller(request))
    return json_answer([describe(s) for s in found])


async def get_share(request: Request) -> Response:
    share, uses = await in_thread(
        container(request).shares.get, caller(request), request.path_params["share"]
    )
    listed = [{"at": u.at, "client": u.client, "outcome": u.outcome} for u in uses]
    return json_answer({**describe(share), "recent_uses": listed})


async def revoke_share(request: Request) -> Response:
    await in_thread(container(request).shares.revoke, caller(request), request.path_params["share"])
    return Response(status_code=204)


def _session_answer(request: Request, session: Session) -> dict[str, object]:
    share = session.share
    here = urls(request)
    return {
        "access_token": session.token,
        "token_type": "Bearer",
        "expires_in": max(0, int(session.expires_at - time.time())),
        "study": share.study_uid,
        "series": share.series_uid,
        "rights": share.rights,
        "study_url": here.resource(share.study_uid, share.series_uid),
    }


async def redeem_share(request: Request) -> Response:
    body = await json_body(request)
    token = body.get("token") if isinstance(body, dict) else None
    code = body.get("code") if isinstance(body, dict) else None
    if not isinstance(token, str) or not (code is None or isinstance(code, str)):
        raise InvalidRequest('the body must be {"token": "dwl_...", "code": "123456"}')
    session = await in_thread(container(request).shares.redeem, token, code, caller(request).client)
    return json_answer(_session_answer(request, session))


async def create_viewer_session(request: Request) -> Response:
    """A session limited to the study, for the viewer the caller opens (its `token` URL
    parameter): the caller's own credential never goes into a URL."""
    study = uids.require_uid(request.path_params["study"], "study")
    session = await in_thread(container(request).shares.viewer_session, caller(request), study)
    return json_answer(_session_answer(request, session), 201)


async def new_share_code(request: Request) -> Response:
    code = await in_thread(
        container(request).shares.new_code, caller(request), request.path_params["share"]
    )
    return json_answer({"one_time_code": code})


def _from_a_browser(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


async def open_share(request: Request) -> Response:
    token = request.query_params.get("token")
    if not token:
        raise InvalidRequest("the share link's token parameter is missing")
    archive = container(request)
    if _from_a_browser(request) and (
        not archive.shares.viewer_url or await in_thread(archive.shares.asks_for_code, token)
    ):
        # A person: the web app's page for share links asks for the one-time code when the
        # share has one, then shows the study (the link in the fragment, never sent on).
        target = f"/ui/#/shared/{quote(token, safe='')}"
        return RedirectResponse(target, 303, headers={"Referrer-Policy": "no-referrer"})
    session = await in_thread(archive.shares.redeem, token, None, caller(request).client)
    viewer = archive.shares.viewer_url
    if viewer:
        share = session.share
        target = viewer.replace("{study}", quote(share.study_uid, safe="")).replace(
            "{token}", quote(session.token, safe="")
        )
        # The session is in the viewer's URL; tell the browser not to pass this one on.
        return RedirectResponse(target, 303, headers={"Referrer-Policy": "no-referrer"})
    return json_answer(_session_answer(request, session))
