"""Share links and one-time codes: one study (or series) handed to a patient or a referring
doctor, without an account.

A share has a link token `dwl_<id>_<secret>` and, when asked for, a six-digit one-time code
sent to the recipient another way. Redeeming the link (with its code, when it has one) counts
one use against `max_uses` and makes a session token `dws_<id>_<secret>`, a bearer token for
`session_seconds` (never past the share's expiry) that reads that study only: QIDO, metadata,
frames, renderings and thumbnails, and whole objects when the share gives download rights.

Every session request reads its share's row, so a revocation stops it at once in every
process. Wrong codes are limited twice: per client address (this process) and per share (in
the database: after MAX_CODE_FAILURES the share is locked for everyone). Every use, refused
ones too, is recorded.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass

from dicomweb_server.services import audit
from dicomweb_server.services.audit import AuditTrail
from dicomweb_server.services.context import (
    ADMIN,
    DOWNLOAD,
    READ,
    SHARE,
    Caller,
    StudyScope,
)
from dicomweb_server.services.errors import (
    InvalidRequest,
    NotFound,
    TooManyRequests,
    Unauthenticated,
)
from dicomweb_server.services.limits import FailureLimit
from dicomweb_server.services.ports.limits import FailureLog
from dicomweb_server.services.ports.search import SearchIndex
from dicomweb_server.services.ports.shares import (
    CODE_USED,
    ShareIndex,
    ShareUse,
    StoredSession,
    StoredShare,
)
from dicomweb_server.services.tokens import digest, new_token, parse_token

RIGHTS = ("view", "download")
CODE_DIGITS = 6
MAX_CODE_FAILURES = 5
CODE_SPENT = "its one-time code has been used; ask who shared it for a new one"
DEFAULT_SECONDS = 7 * 86400
MAX_SECONDS = 90 * 86400


@dataclass(frozen=True)
class NewShare:
    share: StoredShare
    token: str  # the link token, shown once
    code: str | None  # the one-time code, shown once


@dataclass(frozen=True)
class Session:
    token: str
    expires_at: float
    share: StoredShare


class ShareService:
    def __init__(
        self,
        index: ShareIndex,
        studies: SearchIndex,
        session_seconds: int = 3600,
        failures_per_minute: int = 10,
        viewer_url: str | None = None,
        audit: AuditTrail | None = None,
        failure_log: FailureLog | None = None,
    ) -> None:
        self._audit = audit or AuditTrail([])
        self._index = index
        self._studies = studies
        self.session_seconds = session_seconds
        # Where an opened link goes: a viewer URL with {study} and {token} in it (or None).
        self.viewer_url = viewer_url
        self._failures = FailureLimit(failures_per_minute, failure_log)

    # -- administration --------------------------------------------------------------------

    def create(
        self,
        caller: Caller,
        study_uid: str,
        series_uid: str | None = None,
        expires_in: int = DEFAULT_SECONDS,
        max_uses: int | None = None,
        rights: str = "view",
        with_code: bool = False,
    ) -> NewShare:
        """A share of a study or series the caller may see (admin: any; scope share: its
        own study scope)."""
        caller.require(SHARE)
        if rights not in RIGHTS:
            raise InvalidRequest(f"rights must be {' or '.join(RIGHTS)}")
        if not 1 <= expires_in <= MAX_SECONDS:
            raise InvalidRequest(f"expires_in must be 1 to {MAX_SECONDS} seconds")
        if max_uses is not None and not 1 <= max_uses <= 1_000_000:
            raise InvalidRequest("max_uses must be 1 to 1000000")
        if not self._studies.exists(study_uid, series_uid, caller.studies):
            what = f"series {series_uid}" if series_uid else f"study {study_uid}"
            raise NotFound(f"no {what} is stored")
        link = new_token("dwl")
        share_id = link.id
        code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}" if with_code else None
        now = time.time()
        share = StoredShare(
            share_id=share_id,
            study_uid=study_uid,
            series_uid=series_uid,
            rights=rights,
            created_by=caller.principal or "anonymous",
            created_at=now,
            expires_at=now + expires_in,
            max_uses=max_uses,
            uses=0,
            revoked_at=None,
            token_sha256=link.digest,
            code_sha256=None if code is None else digest(f"{share_id}:{code}"),
        )
        self._index.add_share(share)
        self._alert(caller, share_id, f"share created ({rights})", study_uid)
        return NewShare(share, link.text, code)

    def viewer_session(self, caller: Caller, study_uid: str) -> Session:
        """A short-lived session limited to one study, for a viewer the caller opens (OHIF's
        `token` URL parameter): never the caller's own key or token in a URL. It reads the
        study (and downloads it when the caller may), for at most the share session's
        length; made as a one-use share of the caller's, so it is listed, audited and
        revocable like any other."""
        caller.require(READ)
        if not self._studies.exists(study_uid, None, caller.studies):
            raise NotFound(f"no study {study_uid} is stored")
        link = new_token("dwl")
        now = time.time()
        share = StoredShare(
            share_id=link.id,
            study_uid=study_uid,
            series_uid=None,
            rights="download" if DOWNLOAD in caller.scopes else "view",
            created_by=caller.principal or "anonymous",
            created_at=now,
            expires_at=now + self.session_seconds,
            max_uses=1,
            uses=0,
            revoked_at=None,
            token_sha256=link.digest,
        )
        self._index.add_share(share)
        self._alert(caller, share.share_id, "viewer session", study_uid)
        return self.redeem(link.text, None, caller.client)

    def _alert(self, caller: Caller, share_id: str, what: str, study_uid: str) -> None:
        self._audit.record(
            audit.security_alert(
                caller,
                audit.OBJECT_SECURITY_ATTRIBUTES_CHANGED,
                f"share:{share_id}",
                what,
                [study_uid],
            )
        )

    def shares(self, caller: Caller) -> list[StoredShare]:
        caller.require(ADMIN)
        return self._index.shares()

    def get(self, caller: Caller, share_id: str) -> tuple[StoredShare, list[ShareUse]]:
        """The share and its latest 100 uses."""
        caller.require(ADMIN)
        share = self._index.share(share_id)
        if share is None:
            raise NotFound(f"no share {share_id}")
        return share, self._index.uses(share_id, 100)

    def new_code(self, caller: Caller, share_id: str) -> str:
        """A new one-time code for a share that has one (its earlier code, used or not, stops
        working; wrong codes so far are forgotten): for an admin, or the share's creator."""
        caller.require(SHARE)
        share = self._index.share(share_id)
        if share is None or (ADMIN not in caller.scopes and share.created_by != caller.principal):
            raise NotFound(f"no share {share_id}")
        if share.code_sha256 is None:
            raise InvalidRequest("this share has no one-time code; make a share with one")
        code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
        if not self._index.new_code(share_id, digest(f"{share_id}:{code}")):
            raise InvalidRequest("the share has been revoked")
        self._alert(caller, share_id, "new one-time code", share.study_uid)
        return code

    def revoke(self, caller: Caller, share_id: str) -> None:
        caller.require(ADMIN)
        share = self._index.share(share_id)
        if share is None:
            raise NotFound(f"no share {share_id}")
        if self._index.revoke_share(share_id, time.time()):
            self._alert(caller, share_id, "share revoked", share.study_uid)

    # -- recipients ------------------------------------------------------------------------

    def redeem(self, token: str, code: str | None = None, client: str | None = None) -> Session:
        """A session for the holder of a share link (and its code, when it has one); one
        use. Unauthenticated with the reason when the link cannot be used."""
        wait = self._failures.blocked(client)
        if wait is not None:
            raise TooManyRequests(
                "too many failed attempts from this address; try again later", retry_after=wait
            )
        share = self._share_of_link(token)
        if share is None:
            self._failures.failed(client)
            reason = "the share link is not one this archive issued"
            self._audit.record(audit.authentication("share link", client, reason))
            raise Unauthenticated(reason)
        now = time.time()
        refusal = _unusable(share, now)
        if refusal is None and share.code_sha256 is not None:
            refusal = self._check_code(share, code, client)
        # The code (checked above) is consumed by the same statement that counts the use.
        if refusal is None and not self._index.use_share(
            share.share_id, now, MAX_CODE_FAILURES, share.code_sha256
        ):
            now_held = self._index.share(share.share_id) or share
            refusal = _unusable(now_held, now) or (
                CODE_SPENT if now_held.code_sha256 == CODE_USED else "used up"
            )
        user = f"share:{share.share_id}"
        if refusal is not None:
            self._index.record_use(share.share_id, now, client, f"refused: {refusal}")
            self._audit.record(audit.authentication(user, client, refusal))
            raise Unauthenticated(f"the share link cannot be used: {refusal}")
        session = new_token("dws")
        expires = min(now + self.session_seconds, share.expires_at)
        self._index.add_session(
            StoredSession(session.id, share.share_id, session.digest, now, expires)
        )
        self._index.record_use(share.share_id, now, client, "redeemed")
        self._audit.record(audit.authentication(user, client, None))
        return Session(session.text, expires, share)

    def _check_code(self, share: StoredShare, code: str | None, client: str | None) -> str | None:
        if share.code_sha256 == CODE_USED:
            return CODE_SPENT
        if not code:
            return "it needs its one-time code"
        wanted = share.code_sha256 or ""
        if hmac.compare_digest(wanted, digest(f"{share.share_id}:{code.strip()}")):
            return None
        self._failures.failed(client)
        failures = self._index.code_failed(share.share_id)
        if failures >= MAX_CODE_FAILURES:
            return "locked after too many wrong codes"
        return f"wrong code ({MAX_CODE_FAILURES - failures} attempt(s) left)"

    def _share_of_link(self, token: str) -> StoredShare | None:
        """The share a link token names, if this archive issued it (its secret matches)."""
        presented = parse_token("dwl", token)
        share = self._index.share(presented.id) if presented else None
        if presented is None or share is None or not presented.matches(share.token_sha256):
            return None
        return share

    def asks_for_code(self, token: str) -> bool:
        """Whether the share a link names is opened with a one-time code (False for a link
        this archive did not issue: redeeming it says why)."""
        share = self._share_of_link(token)
        return share is not None and share.code_sha256 is not None

    def caller(self, token: str, request_id: str = "-") -> Caller:
        """The caller a session token stands for: read (and download) of the shared study or
        series only. Unauthenticated with the reason when it cannot be used."""
        presented = parse_token("dws", token)
        found = self._index.session(presented.id) if presented else None
        if presented is None or found is None or not presented.matches(found[0].secret_sha256):
            raise Unauthenticated("the share session is not one this archive issued")
        session, share = found
        now = time.time()
        if share.revoked_at is not None:
            raise Unauthenticated("the share has been revoked")
        if session.expires_at <= now or share.expires_at <= now:
            raise Unauthenticated("the share session has expired; open the link again")
        scopes = {READ, DOWNLOAD} if share.rights == "download" else {READ}
        studies = StudyScope(
            study_uids=frozenset({share.study_uid}),
            series_uids=None if share.series_uid is None else frozenset({share.series_uid}),
        )
        return Caller(f"share:{share.share_id}", frozenset(scopes), studies, request_id)


def _unusable(share: StoredShare, now: float) -> str | None:
    """Why the share cannot be used now, or None."""
    if share.revoked_at is not None:
        return "revoked"
    if share.expires_at <= now:
        return "expired"
    if share.code_failures >= MAX_CODE_FAILURES:
        return "locked after too many wrong codes"
    if share.max_uses is not None and share.uses >= share.max_uses:
        return f"used up ({share.uses} of {share.max_uses} uses)"
    return None


def describe(share: StoredShare) -> dict[str, object]:
    """A share as the administration API shows it (no secret, no hash)."""
    return {
        "id": share.share_id,
        "study": share.study_uid,
        "series": share.series_uid,
        "rights": share.rights,
        "created_by": share.created_by,
        "created": share.created_at,
        "expires": share.expires_at,
        "max_uses": share.max_uses,
        "uses": share.uses,
        "revoked": share.revoked_at,
        "code": share.code_sha256 is not None,
        "code_used": share.code_sha256 == CODE_USED,
        "state": _unusable(share, time.time()) or "active",
    }
