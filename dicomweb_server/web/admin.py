"""Administration outside PS3.18 (scope admin): the access-control labels of a study, and
the API keys (`GET/POST {root}/keys`, `DELETE {root}/keys/{id}`; the CLI does the same).

`GET {root}/studies/{study}/labels` answers `{"labels": [...]}`; `PUT` with the same body
makes them the study's labels. Keys and tokens limited to labels see only the studies that
carry one of theirs.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from dicomweb_server.services.errors import (
    InvalidRequest,
    NotFound,
    UnsupportedMediaType,
)
from dicomweb_server.services.ports.access import StoredKey
from dicomweb_server.web.auth import caller
from dicomweb_server.web.context import container, path_uid, read_body
from dicomweb_server.web.threads import in_thread

# An administration request is a small JSON document; anything larger is refused unread.
MAX_JSON_BODY = 64 * 1024


async def json_body(request: Request) -> Any:
    """The request's JSON body, at most MAX_JSON_BODY bytes (415 unless JSON, 413, 400)."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json":
        raise UnsupportedMediaType("the body must be application/json")
    body = await read_body(request, MAX_JSON_BODY, "a JSON body")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc}") from exc


def whole_number(value: object) -> int | None:
    """A JSON integer as JSON Schema counts them (1 and 1.0 alike, never true or false);
    None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    return None


def json_answer(value: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(value), status, media_type="application/json")


def _labels_response(labels: list[str]) -> Response:
    return json_answer({"labels": labels})


async def study_labels(request: Request) -> Response:
    study = path_uid(request, "study")
    found = await in_thread(container(request).access.study_labels, caller(request), study)
    return _labels_response(found)


async def set_study_labels(request: Request) -> Response:
    study = path_uid(request, "study")
    body = await json_body(request)
    labels = body.get("labels") if isinstance(body, dict) else None
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        raise InvalidRequest('the body must be {"labels": ["label", ...]}')
    found = await in_thread(
        container(request).access.set_study_labels, caller(request), study, labels
    )
    return _labels_response(found)


def _described(key: StoredKey) -> dict[str, object]:
    """A key as the administration API shows it (never its secret or hash)."""
    return {
        "id": key.key_id,
        "name": key.name,
        "scopes": sorted(key.scopes),
        "labels": None if key.labels is None else sorted(key.labels),
        "created": key.created_at,
        "expires": key.expires_at,
        "last_used": key.last_used_at,
        "state": key.state(time.time()),
    }


async def list_keys(request: Request) -> Response:
    found = await in_thread(container(request).access.list_keys, caller(request))
    return json_answer([_described(k) for k in found])


async def create_key(request: Request) -> Response:
    """`{"name", "scopes": [...], "expires_in"?: seconds, "labels"?: [...]}`: 201 with the
    key, shown this once."""
    body = await json_body(request)
    if not isinstance(body, dict):
        raise InvalidRequest('the body must be {"name": "...", "scopes": ["read"]}')
    name, scopes = body.get("name"), body.get("scopes")
    expires, labels = body.get("expires_in"), body.get("labels")
    if (
        not isinstance(name, str)
        or not isinstance(scopes, list)
        or not all(isinstance(s, str) for s in scopes)
        or not (expires is None or whole_number(expires) is not None)
        or not (
            labels is None or (isinstance(labels, list) and all(isinstance(x, str) for x in labels))
        )
    ):
        raise InvalidRequest(
            'the body must be {"name": "...", "scopes": ["read"], "expires_in": seconds, '
            '"labels": ["..."]}'
        )
    expires = None if expires is None else whole_number(expires)
    if expires is not None and expires < 60:
        raise InvalidRequest("expires_in must be at least 60 seconds")
    made = await in_thread(
        container(request).access.create_key,
        name,
        set(scopes),
        expires,
        None if labels is None else frozenset(labels),
        caller(request),
    )
    return json_answer({**_described(made.key), "key": made.secret}, 201)


async def revoke_key(request: Request) -> Response:
    key_id = request.path_params["key"]
    done = await in_thread(container(request).access.revoke_key, key_id, caller(request))
    if not done:
        raise NotFound(f"no active key {key_id}")
    return Response(status_code=204)
