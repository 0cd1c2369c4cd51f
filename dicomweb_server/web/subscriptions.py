"""Webhook subscriptions (outside PS3.18; scope admin).

- `POST {root}/subscriptions` `{"url", "filter"?: "modality=CT&action=create", "secret"?:
  "whsec_...", "include_metadata"?: false}`: 201 with the subscription and its secret (made
  when none is given; shown in this answer only).
- `GET {root}/subscriptions`, `GET` / `DELETE {root}/subscriptions/{id}`.
- `POST {root}/subscriptions/{id}/enable`: deliver again after a 410 disabled it.
- `GET {root}/subscriptions/{id}/dead-letters`, `POST .../dead-letters/redrive` (`{"ids"?:
  [...]}`; none: every dead letter).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from dicomweb_server.services.errors import InvalidRequest
from dicomweb_server.services.ports.webhooks import Delivery, WebhookSubscription
from dicomweb_server.web.admin import json_answer, json_body
from dicomweb_server.web.auth import caller
from dicomweb_server.web.context import container
from dicomweb_server.web.threads import in_thread
from dicomweb_server.web.urls import base_url


def _described(sub: WebhookSubscription, secret: bool = False) -> dict[str, Any]:
    found: dict[str, Any] = {
        "id": sub.subscription_id,
        "url": sub.url,
        "filter": sub.filter,
        "include_metadata": sub.include_metadata,
        "created": sub.created_at,
        "created_by": sub.created_by,
        "state": "disabled" if sub.disabled_at is not None else "active",
        "disabled_reason": sub.disabled_reason,
    }
    if secret:
        found["secret"] = sub.secret
    return found


def _letter(d: Delivery) -> dict[str, Any]:
    return {
        "id": d.pk,
        "webhook_id": d.webhook_id,
        "sequence": d.sequence,
        "attempts": d.attempts,
        "last_status": d.last_status,
        "last_error": d.last_error,
        "failed_at": d.done_at,
        "event": orjson.loads(d.payload),
    }


async def create_subscription(request: Request) -> Response:
    body = await json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("url"), str):
        raise InvalidRequest('the body must be {"url": "https://...", "filter": "modality=CT"}')
    url, text = body["url"], body.get("filter", "")
    secret, metadata = body.get("secret"), body.get("include_metadata", False)
    if not (
        isinstance(text, str)
        and (secret is None or isinstance(secret, str))
        and isinstance(metadata, bool)
    ):
        raise InvalidRequest("filter and secret are strings, include_metadata is true or false")
    made = await in_thread(
        container(request).webhooks.create,
        caller(request),
        url,
        text,
        secret,
        metadata,
        base_url(request),
    )
    return json_answer(_described(made, secret=True), 201)


async def list_subscriptions(request: Request) -> Response:
    found = await in_thread(container(request).webhooks.every, caller(request))
    return json_answer([_described(s) for s in found])


async def get_subscription(request: Request) -> Response:
    found = await in_thread(
        container(request).webhooks.get, caller(request), request.path_params["subscription"]
    )
    return json_answer(_described(found))


async def delete_subscription(request: Request) -> Response:
    await in_thread(
        container(request).webhooks.delete, caller(request), request.path_params["subscription"]
    )
    return Response(status_code=204)


async def enable_subscription(request: Request) -> Response:
    found = await in_thread(
        container(request).webhooks.enable, caller(request), request.path_params["subscription"]
    )
    return json_answer(_described(found))


async def read_dead_letters(request: Request) -> Response:
    found = await in_thread(
        container(request).webhooks.dead_letters,
        caller(request),
        request.path_params["subscription"],
        1000,
    )
    return json_answer([_letter(d) for d in found])


async def redrive_dead_letters(request: Request) -> Response:
    ids = None
    if request.headers.get("content-type"):
        body = await json_body(request)
        ids = body.get("ids") if isinstance(body, dict) else None
        if ids is not None and not (
            isinstance(ids, list)
            and all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
        ):
            raise InvalidRequest('the body must be {"ids": [dead letter id, ...]} or empty')
    moved = await in_thread(
        container(request).webhooks.redrive,
        caller(request),
        request.path_params["subscription"],
        ids,
    )
    return json_answer({"redriven": moved})
