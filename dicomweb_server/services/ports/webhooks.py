"""The webhooks port: subscriptions, their cursors in the change log, and deliveries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

PENDING = "pending"
DELIVERED = "delivered"
DEAD = "dead"


@dataclass(frozen=True)
class WebhookSubscription:
    subscription_id: str
    url: str
    filter: str  # the query string of a stream's filter
    secret: str
    include_metadata: bool
    base_url: str
    created_by: str
    created_at: float
    cursor: int
    disabled_at: float | None = None
    disabled_reason: str | None = None


@dataclass(frozen=True)
class NewDelivery:
    webhook_id: str
    sequence: int
    study_uid: str
    payload: str


@dataclass(frozen=True)
class Delivery:
    pk: int
    subscription_id: str
    webhook_id: str
    sequence: int
    study_uid: str
    payload: str
    state: str
    attempts: int
    next_attempt_at: float
    last_status: int | None
    last_error: str | None
    done_at: float | None


class WebhookIndex(Protocol):
    def add(self, subscription: WebhookSubscription) -> None: ...

    def get(self, subscription_id: str) -> WebhookSubscription | None: ...

    def every(self) -> list[WebhookSubscription]: ...

    def remove(self, subscription_id: str) -> bool: ...

    def advance(
        self, subscription_id: str, cursor: int, to: int, deliveries: list[NewDelivery], now: float
    ) -> bool:
        """Move the cursor from `cursor` to `to` and add the deliveries, in one transaction;
        False (and nothing done) when another process moved it first."""

    def backlog(self) -> int:
        """How many deliveries are pending, every subscription's."""

    def due(self, now: float, limit: int) -> list[Delivery]:
        """Pending deliveries of enabled subscriptions whose time has come and that no
        sender holds, each the oldest pending one of its subscription and study (deliveries
        of one study go in order)."""

    def lease(self, pk: int, now: float, until: float) -> bool:
        """Hold the delivery until `until`; False when another sender holds it."""

    def finish(
        self,
        pk: int,
        state: str,
        status: int | None,
        error: str | None,
        next_attempt_at: float,
        now: float,
    ) -> None:
        """Record an attempt: delivered, dead, or pending again at `next_attempt_at`."""

    def disable(self, subscription_id: str, reason: str | None, now: float | None) -> bool:
        """Disable the subscription (now None: enable it again)."""

    def deliveries(self, subscription_id: str, state: str, limit: int) -> list[Delivery]: ...

    def redrive(self, subscription_id: str, pks: list[int] | None, now: float) -> int:
        """Dead deliveries (those `pks`, or all) pending again with no attempts counted."""


class DeliveryFailed(Exception):
    """The receiver could not be reached or did not answer in time."""


class WebhookSender(Protocol):
    def vet(self, url: str) -> str | None:
        """Why deliveries to `url` would be refused (an address inside the network, a name
        that does not resolve); None when they would be sent."""
        ...

    def post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        """POST `body`; the receiver's status. DeliveryFailed when there is none (or when the
        receiver's address is refused at the connection)."""
