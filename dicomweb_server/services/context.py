"""Who is asking: the `Caller` every use case is handed.

A plain value, made by the web layer's middleware from the request's credential (the DIMSE
gateway will make one from the association): the principal, its scopes and the studies it may
see. With DICOMWEB_AUTH=none every caller is anonymous and may do everything.
"""

from __future__ import annotations

from dataclasses import dataclass

from dicomweb_server.services.errors import (
    Forbidden,
    TooManyRequests,
    Unauthenticated,
    Unavailable,
)

READ = "read"
WRITE = "write"
DELETE = "delete"
ADMIN = "admin"
# Share studies one can see (an admin shares any).
SHARE = "share"
# Whole objects (WADO-RS instances, zip, WADO-URI application/dicom): part of read, except for
# a share link with view rights, which gets metadata, frames and renderings only.
DOWNLOAD = "download"
# Create and change UPS-RS workitems (searching and subscribing need read).
WORKITEMS = "workitems"
# Correct patient and study attributes, merge patients.
UPDATE = "update"
# Scrape /metrics (a monitoring system's key; admin includes it).
METRICS = "metrics"
EVERY_SCOPE = frozenset({READ, DOWNLOAD, WRITE, UPDATE, DELETE, WORKITEMS, SHARE, ADMIN, METRICS})
# What each scope a key can be given lets it do (the CLI's and the web app's help).
SCOPE_MEANINGS = {
    READ: "search and retrieve (QIDO-RS, WADO-RS, WADO-URI, renderings, change feed, worklist)",
    WRITE: "store (STOW-RS, C-STORE, import)",
    UPDATE: "correct patient and study attributes, merge patients",
    DELETE: "delete, reject and restore studies, series and instances",
    WORKITEMS: "create and change UPS-RS workitems",
    SHARE: "make share links of the studies it can see",
    ADMIN: "keys, labels, webhooks, audit, shares and reports (includes share and metrics)",
    METRICS: "scrape /metrics",
}


def granted(scopes: frozenset[str] | set[str]) -> frozenset[str]:
    """The scopes a key or token carries, as checked: read includes download, admin share and
    metrics."""
    found = set(scopes)
    if READ in found:
        found.add(DOWNLOAD)
    if ADMIN in found:
        found.update((SHARE, METRICS))
    return frozenset(found)


# What only a caller who sees every study may hold: the administration (keys, labels, the
# audit of every study, every share) and the archive-wide metrics.
WHOLE_ARCHIVE = frozenset({ADMIN, METRICS})


def confined(scopes: frozenset[str], studies: StudyScope | None) -> frozenset[str]:
    """The scopes a caller limited to some studies keeps: never admin or metrics (a key or
    token limited to labels that claimed them would reach studies outside its labels)."""
    return scopes if studies is None else scopes - WHOLE_ARCHIVE


@dataclass(frozen=True)
class StudyScope:
    """The studies a limited caller may see: those carrying one of `labels` (access-control
    labels set at ingest or by an admin), those of the patients `patient_ids`, and the studies
    `study_uids`; a study matching any of them is visible. `series_uids`, when set, limits the
    visible series and instances of those studies (a share of one series).

    Applied inside the queries (QIDO pages and counts agree with it) and by every retrieve,
    which answers 404 outside it: a study outside the scope cannot be told from one that is
    not there."""

    labels: frozenset[str] = frozenset()
    patient_ids: frozenset[str] = frozenset()
    study_uids: frozenset[str] = frozenset()
    series_uids: frozenset[str] | None = None


@dataclass(frozen=True)
class Caller:
    principal: str | None  # None: anonymous
    scopes: frozenset[str]
    # The studies the caller may see; None: every study.
    studies: StudyScope | None
    request_id: str = "-"
    # Why a caller without scopes has none (no credential, or one that failed), and whether
    # it sent a token at all (RFC 6750 3.1: error="invalid_token" then).
    refusal: str | None = None
    sent_token: bool = False
    # Seconds until a client that failed too often may try again (429).
    throttled_for: int | None = None
    # The credential could not be checked (the identity provider is unreachable): 503.
    unchecked: bool = False
    # The network address the request came from (for the audit trail).
    client: str | None = None

    @classmethod
    def refused(
        cls, reason: str, request_id: str = "-", token: bool = False, unchecked: bool = False
    ) -> Caller:
        """A caller whose credential is missing or unusable: no scopes, and the reason."""
        return cls(None, frozenset(), StudyScope(), request_id, reason, token, unchecked=unchecked)

    @classmethod
    def anonymous(cls, request_id: str = "-", client: str | None = None) -> Caller:
        """A caller with no identity, allowed everything (the server has no access control
        yet)."""
        return cls(None, EVERY_SCOPE, None, request_id, client=client)

    def require(self, scope: str) -> None:
        """Unauthenticated when the caller has no credential that works, Forbidden unless it
        has `scope`. Which studies it may see is the study scope's business (404 outside)."""
        self.identified()
        if scope not in self.scopes:
            raise Forbidden(f"this request may not {scope}")

    def identified(self) -> None:
        """Unauthenticated (or 429, 503) unless the caller's credential works."""
        if self.throttled_for is not None:
            raise TooManyRequests(
                "too many failed authentications from this address; try again later",
                retry_after=self.throttled_for,
            )
        if self.refusal is not None and self.unchecked:
            raise Unavailable(self.refusal)
        if self.refusal is not None:
            raise Unauthenticated(self.refusal, invalid_token=self.sent_token)
