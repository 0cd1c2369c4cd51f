"""Webhooks: a subscription (scope admin) follows the change log; each entry its filter takes
becomes a delivery, a CloudEvent (CloudEvents 1.0, structured JSON) signed per Standard
Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`), sent until the receiver
answers 2xx, retried with exponential backoff and jitter, in order per study, and after
`max_attempts` failures kept as a dead letter that the API can re-drive. A receiver answering
410 Gone disables its subscription.

Deliveries are rows: made in the transaction that moves the subscription's cursor, leased by
the process that sends them, so a crash or a restart loses none (at least once: a receiver
dedups on `webhook-id`, the same on every attempt).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import random
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

import orjson

from dicomweb_server.services.changes import (
    Alarm,
    ChangeFeed,
    ChangeFilter,
    entry_fields,
    parse_filter,
)
from dicomweb_server.services.context import ADMIN, READ, Caller
from dicomweb_server.services.errors import InvalidRequest, NotFound
from dicomweb_server.services.ports.changes import Change
from dicomweb_server.services.ports.webhooks import (
    DEAD,
    DELIVERED,
    PENDING,
    Delivery,
    DeliveryFailed,
    NewDelivery,
    WebhookIndex,
    WebhookSender,
    WebhookSubscription,
)

log = logging.getLogger("dicomweb_server.webhooks")

SECRET_PREFIX = "whsec_"
EVENT_TYPES = {
    "create": "org.dicomweb.instance.created",
    "update": "org.dicomweb.instance.updated",
    "delete": "org.dicomweb.instance.deleted",
    "series-stable": "org.dicomweb.series.stable",
    "study-stable": "org.dicomweb.study.stable",
}
_BATCH = 500
# Stores committing within this long of each other are turned into deliveries in one round.
_COALESCE_SECONDS = 0.01


class AnswerUrls(Protocol):
    """The URLs of the archive's resources under one base URL (web/urls.Urls)."""

    def resource(
        self, study: str, series: str | None = None, instance: str | None = None
    ) -> str: ...

    def with_base(self, texts: list[str]) -> bytes: ...


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    base_seconds: float = 1.0
    max_seconds: float = 600.0
    timeout_seconds: float = 10.0

    def delay(self, attempts: int) -> float:
        """The wait after the `attempts`-th failure: doubling from `base_seconds` up to
        `max_seconds`, with full jitter over its upper half (never a herd of retries)."""
        ceiling: float = min(self.base_seconds * 2.0 ** (attempts - 1), self.max_seconds)
        return ceiling * random.uniform(0.5, 1.0)


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _secret_bytes(secret: str) -> bytes:
    if not secret.startswith(SECRET_PREFIX):
        raise InvalidRequest(f"a webhook secret is {SECRET_PREFIX} and base64 of 24 to 64 bytes")
    try:
        raw = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except ValueError:
        raise InvalidRequest("the webhook secret's base64 does not decode") from None
    if not 24 <= len(raw) <= 64:
        raise InvalidRequest("a webhook secret holds 24 to 64 bytes")
    return raw


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks: `v1,` and base64 of HMAC-SHA256 over `id.timestamp.body`."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(_secret_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _filter_of(text: str) -> ChangeFilter:
    return parse_filter(parse_qsl(text, keep_blank_values=True))


class Webhooks:
    def __init__(
        self,
        index: WebhookIndex,
        sender: WebhookSender,
        feed: ChangeFeed,
        urls_for: Callable[[str], AnswerUrls],
        policy: RetryPolicy | None = None,
        poll_seconds: float = 1.0,
    ) -> None:
        self._index = index
        self._sender = sender
        self._feed = feed
        self._urls_for = urls_for
        self.policy = policy or RetryPolicy()
        self._poll = poll_seconds
        # A store committed, or a subscription was made (callable from any thread).
        self.wake = Alarm()
        self._pool = ThreadPoolExecutor(8, thread_name_prefix="webhook")
        # Enabled subscriptions at the last look (this process wakes for stores only then).
        self._known = 0

    # The API (scope admin).

    def backlog(self) -> int:
        """Deliveries pending, every subscription's (the metrics)."""
        return self._index.backlog()

    def create(
        self,
        caller: Caller,
        url: str,
        filter_text: str,
        secret: str | None,
        include_metadata: bool,
        base_url: str,
    ) -> WebhookSubscription:
        caller.require(ADMIN)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 2048:
            raise InvalidRequest("the webhook url must be an http or https URL")
        _filter_of(filter_text)  # refused now, not at the first delivery
        fault = self._sender.vet(url)
        if fault is not None:
            raise InvalidRequest(f"the webhook receiver is refused: {fault}")
        secret = secret or new_secret()
        _secret_bytes(secret)
        made = WebhookSubscription(
            subscription_id=secrets.token_hex(8),
            url=url,
            filter=filter_text,
            secret=secret,
            include_metadata=include_metadata,
            base_url=base_url,
            created_by=caller.principal or "anonymous",
            created_at=time.time(),
            # From now on: what is committed once the subscription exists.
            cursor=self._feed.log.newest(),
        )
        self._index.add(made)
        self._known += 1
        self.wake()
        return made

    def every(self, caller: Caller) -> list[WebhookSubscription]:
        caller.require(ADMIN)
        return self._index.every()

    def get(self, caller: Caller, subscription_id: str) -> WebhookSubscription:
        caller.require(ADMIN)
        found = self._index.get(subscription_id)
        if found is None:
            raise NotFound(f"no subscription {subscription_id}")
        return found

    def delete(self, caller: Caller, subscription_id: str) -> None:
        caller.require(ADMIN)
        if not self._index.remove(subscription_id):
            raise NotFound(f"no subscription {subscription_id}")

    def enable(self, caller: Caller, subscription_id: str) -> WebhookSubscription:
        self.get(caller, subscription_id)
        self._index.disable(subscription_id, None, None)
        self._known += 1
        self.wake()
        return self.get(caller, subscription_id)

    def dead_letters(self, caller: Caller, subscription_id: str, limit: int) -> list[Delivery]:
        self.get(caller, subscription_id)
        return self._index.deliveries(subscription_id, DEAD, limit)

    def redrive(self, caller: Caller, subscription_id: str, pks: list[int] | None) -> int:
        self.get(caller, subscription_id)
        moved = self._index.redrive(subscription_id, pks, time.time())
        self.wake()
        return moved

    # The work, in any process: entries into deliveries, deliveries to their receivers.

    def fill(self) -> int:
        """Turn new log entries into deliveries, for every enabled subscription."""
        made = 0
        subscriptions = self._index.every()
        self._known = sum(s.disabled_at is None for s in subscriptions)
        for sub in subscriptions:
            if sub.disabled_at is None:
                made += self._fill_one(sub)
        return made

    def _fill_one(self, sub: WebhookSubscription) -> int:
        try:
            wanted = _filter_of(sub.filter)
        except Exception:  # noqa: BLE001 - a filter valid when made; never stop the rest
            log.warning("subscription %s has a filter that no longer parses", sub.subscription_id)
            return 0
        # The subscriber is the archive's admin: every study, its filter only.
        admin = Caller(sub.created_by, frozenset({READ, ADMIN}), None)
        made, cursor, raced = 0, sub.cursor, 0
        while True:
            batch = self._feed.log.read(cursor, _BATCH, None, sub.include_metadata)
            if not batch:
                return made
            chosen = self._feed.select(admin, wanted, batch)
            new = [self._delivery(sub, c) for c in chosen]
            if not self._index.advance(
                sub.subscription_id, cursor, batch[-1].sequence, new, time.time()
            ):
                # Another process moved the cursor meanwhile: go on from where it is now
                # (the entries it took are its own; the newer ones may not be).
                raced += 1
                now = self._index.get(sub.subscription_id)
                if now is None or now.disabled_at is not None or raced > 10:
                    return made
                cursor = now.cursor
                continue
            made += len(new)
            cursor = batch[-1].sequence
            if len(batch) < _BATCH:
                return made

    def _delivery(self, sub: WebhookSubscription, change: Change) -> NewDelivery:
        urls = self._urls_for(sub.base_url)
        webhook_id = f"msg_{sub.subscription_id}_{change.sequence}"
        data: dict[str, Any] = entry_fields(change)
        data["StudyUrl"] = urls.resource(change.study_uid)
        if change.series_uid is not None:
            data["SeriesUrl"] = urls.resource(change.study_uid, change.series_uid)
            if change.sop_uid is not None:
                data["InstanceUrl"] = urls.resource(
                    change.study_uid, change.series_uid, change.sop_uid
                )
        if change.metadata is not None:
            data["Metadata"] = orjson.loads(urls.with_base([change.metadata]))[0]
        event = {
            "specversion": "1.0",
            "id": webhook_id,
            "source": sub.base_url,
            "type": EVENT_TYPES.get(change.action, f"org.dicomweb.{change.action}"),
            "subject": data.get("InstanceUrl", data["StudyUrl"])[len(sub.base_url) :],
            "time": data["Timestamp"],
            "datacontenttype": "application/json",
            "data": data,
        }
        return NewDelivery(
            webhook_id, change.sequence, change.study_uid, orjson.dumps(event).decode()
        )

    def send_due(self) -> int:
        """Send every delivery whose time has come (several receivers at once); how many
        were attempted."""
        now = time.time()
        due = self._index.due(now, 64)
        subscriptions = {s.subscription_id: s for s in self._index.every()}
        held = [
            d
            for d in due
            if d.subscription_id in subscriptions
            and self._index.lease(d.pk, now, now + self.policy.timeout_seconds + 30)
        ]
        list(self._pool.map(lambda d: self._send(subscriptions[d.subscription_id], d), held))
        return len(held)

    def _send(self, sub: WebhookSubscription, delivery: Delivery) -> None:
        body = delivery.payload.encode()
        stamp = int(time.time())
        status: int | None = None
        error: str | None = None
        try:
            signature = sign(sub.secret, delivery.webhook_id, stamp, body)
        except InvalidRequest:
            signature = None
            error = "the subscription's secret cannot be read (DICOMWEB_WEBHOOK_SECRET_KEY)"
        headers = {
            "Content-Type": "application/cloudevents+json",
            "webhook-id": delivery.webhook_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": signature or "",
            "User-Agent": "dicomweb-server",
        }
        if signature is not None:
            try:
                status = self._sender.post(sub.url, body, headers, self.policy.timeout_seconds)
            except DeliveryFailed as exc:
                error = str(exc)
        now = time.time()
        attempts = delivery.attempts + 1
        if status is not None and 200 <= status < 300:
            self._index.finish(delivery.pk, DELIVERED, status, None, now, now)
            return
        if status == 410:
            # The receiver is gone for good: the subscription stops; this delivery waits.
            self._index.disable(sub.subscription_id, "the receiver answered 410 Gone", now)
            self._index.finish(delivery.pk, PENDING, status, "410 Gone", now, now)
            return
        error = error or f"the receiver answered {status}"
        if attempts >= self.policy.max_attempts:
            self._index.finish(delivery.pk, DEAD, status, error, now, now)
            return
        retry_at = now + self.policy.delay(attempts)
        self._index.finish(delivery.pk, PENDING, status, error, retry_at, now)

    # The loop of each process.

    async def run(self) -> None:
        """Fill and send, woken by this process's stores and every poll interval. Wakes
        within a few milliseconds are taken as one round; a process that knows no enabled
        subscription does nothing on a wake, only at the poll (which also finds those made
        through other processes)."""
        self.wake.bind()
        polled = True
        while True:
            if polled or self._known:
                try:
                    await asyncio.to_thread(self.fill)
                    while await asyncio.to_thread(self.send_due):
                        await asyncio.to_thread(self.fill)
                except Exception as exc:  # noqa: BLE001 - the next round tries again
                    log.warning("webhook deliveries failed this round: %s", type(exc).__name__)
            polled = not await self.wake.wait(self._poll)
            if not polled:
                await asyncio.sleep(_COALESCE_SECONDS)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
