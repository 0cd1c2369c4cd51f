"""Who may call: API keys made, listed, revoked, and turned into the request's Caller.

A key is `dwk_<id>_<secret>` (services/tokens.py). Every use reads the row, so a revocation
or an expiry takes effect at once in every process; the last-used time is written at most
once a minute per key and process.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace

from dicomweb_server.services import audit
from dicomweb_server.services.audit import AuditTrail
from dicomweb_server.services.context import (
    ADMIN,
    DELETE,
    METRICS,
    READ,
    SHARE,
    UPDATE,
    WHOLE_ARCHIVE,
    WORKITEMS,
    WRITE,
    Caller,
    StudyScope,
    confined,
    granted,
)
from dicomweb_server.services.errors import InvalidRequest, NotFound, Unauthenticated, Unavailable
from dicomweb_server.services.limits import FailureLimit
from dicomweb_server.services.oidc import OidcVerifier
from dicomweb_server.services.ports.access import KeyIndex, LabelIndex, StoredKey
from dicomweb_server.services.ports.limits import FailureLog
from dicomweb_server.services.shares import ShareService
from dicomweb_server.services.tokens import Presented, new_token, parse_token

# The scopes a key may carry (the route table names one per route; PS3.18 knows none).
KEY_SCOPES = frozenset({READ, WRITE, UPDATE, DELETE, WORKITEMS, SHARE, ADMIN, METRICS})
_TOUCH_EVERY = 60.0
# Credentials whose check is kept for the next request, at most.
_CHECKED_KEPT = 1000


@dataclass(frozen=True)
class NewKey:
    key: StoredKey
    # The whole key, shown once: only its hash is kept.
    secret: str


class AccessService:
    def __init__(
        self,
        keys: KeyIndex,
        labels: LabelIndex,
        mode: str = "none",
        failures_per_minute: int = 10,
        oidc: OidcVerifier | None = None,
        shares: ShareService | None = None,
        audit: AuditTrail | None = None,
        failure_log: FailureLog | None = None,
    ) -> None:
        self._shares = shares
        self._audit = audit or AuditTrail([])
        self._keys = keys
        self._labels = labels
        # The kinds of credential taken: "api-key", "oidc" (DICOMWEB_AUTH lists them).
        self.kinds = frozenset(k.strip() for k in mode.split(",")) - {"none"}
        if "oidc" in self.kinds and oidc is None:
            raise ValueError("DICOMWEB_AUTH=oidc needs DICOMWEB_OIDC_ISSUER")
        self._oidc = oidc
        self._failures = FailureLimit(failures_per_minute, failure_log)
        self._touched: dict[str, float] = {}
        self._lock = threading.Lock()
        # Keys checked on the loop: the credential as presented -> the key row it matched
        # and what the check made of it. Used again only while the key index hands back
        # that very row (it rereads after any commit), so a revocation still counts at once.
        self._checked: dict[str, tuple[StoredKey, frozenset[str], StudyScope | None]] = {}

    def create_key(
        self,
        name: str,
        scopes: set[str],
        expires_in_seconds: float | None = None,
        labels: frozenset[str] | None = None,
        caller: Caller | None = None,
    ) -> NewKey:
        """A new key; with `labels`, it sees only the studies carrying one of them."""
        if caller is not None:
            caller.require(ADMIN)
        unknown = scopes - KEY_SCOPES
        if not scopes or unknown:
            raise InvalidRequest(
                f"scopes must be some of {', '.join(sorted(KEY_SCOPES))}"
                + (f"; not {', '.join(sorted(unknown))}" if unknown else "")
            )
        if not name.strip():
            raise InvalidRequest("a key needs a name")
        if labels is not None:
            labels = frozenset(label.strip() for label in labels if label.strip())
            if not labels:
                raise InvalidRequest("a key limited to labels needs at least one label")
            whole = sorted(scopes & WHOLE_ARCHIVE)
            if whole:
                raise InvalidRequest(
                    f"a key limited to labels cannot have {' or '.join(whole)}: those reach "
                    "every study (keys, labels and audit of all); make it without the labels, "
                    "or without those scopes"
                )
        token = new_token("dwk")
        key_id = token.id
        now = time.time()
        stored = StoredKey(
            key_id,
            name.strip(),
            token.digest,
            frozenset(scopes),
            now,
            now + expires_in_seconds if expires_in_seconds is not None else None,
            labels=labels,
        )
        self._keys.add_key(stored)
        self._audit.record(
            audit.security_alert(
                caller, audit.USER_SECURITY_ATTRIBUTES_CHANGED, f"key:{key_id}", "API key created"
            )
        )
        return NewKey(stored, token.text)

    def list_keys(self, caller: Caller | None = None) -> list[StoredKey]:
        """Every key (admin, over HTTP; the CLI is the machine's own administrator)."""
        if caller is not None:
            caller.require(ADMIN)
        return self._keys.keys()

    def revoke_key(self, key_id: str, caller: Caller | None = None) -> bool:
        if caller is not None:
            caller.require(ADMIN)
        revoked = self._keys.revoke_key(key_id, time.time())
        if revoked:
            self._audit.record(
                audit.security_alert(
                    caller,
                    audit.USER_SECURITY_ATTRIBUTES_CHANGED,
                    f"key:{key_id}",
                    "API key revoked",
                )
            )
        return revoked

    def caller(
        self, credential: str | None, request_id: str = "-", client: str | None = None
    ) -> Caller:
        """The caller a request's credential stands for. Without access control (mode none)
        everyone may do everything; otherwise a missing or unusable credential makes a
        caller with no scopes, whose first scoped call is answered 401 with the reason."""
        if not self.kinds:
            return Caller.anonymous(request_id)
        if not credential:
            wanted = "an API key" if self.kinds == {"api-key"} else "a bearer token"
            return Caller.refused(f"this request needs {wanted}", request_id, token=False)
        # An API key names its id: failures are counted per key too (guessing one key's
        # secret from many addresses).
        presented = parse_token("dwk", credential)
        principal = f"key:{presented.id}" if presented else None
        try:
            # A credential that works always passes: the limits below weigh on failures
            # only, so nobody's failures lock out someone else's valid key or address.
            return self._verified_caller(credential, presented, request_id)
        except Unavailable as exc:
            return Caller.refused(str(exc), request_id, token=True, unchecked=True)
        except Unauthenticated as exc:
            # Counted where every process sees them (the database): N processes allow no
            # more guesses than one. Past the limit, failures are answered 429.
            wait = self._failures.blocked(client, principal)
            self._failures.failed(client, principal)
            if wait is not None:
                return replace(Caller.refused("", request_id, token=True), throttled_for=wait)
            # PS3.15 A.5.3.12: a failed authentication, with who it claimed to be.
            claimed = principal or ("share session" if credential.startswith("dws_") else "token")
            self._audit.record(audit.authentication(claimed, client, str(exc), request_id))
            return Caller.refused(str(exc), request_id, token=True)

    def known_caller(
        self, credential: str | None, request_id: str = "-", client: str | None = None
    ) -> Caller | None:
        """The caller of a valid API key, found by reads alone (the key's row, read on every
        request, so a revocation in any process counts at once); None when the request needs
        more than reads: another kind of credential, a failure to count, a last use to note.
        Then `caller` is asked."""
        if "api-key" not in self.kinds or not credential or not credential.startswith("dwk_"):
            return None
        checked = self._checked.get(credential)
        if checked is not None:
            # The same row as when this credential was checked: no digest to make again.
            kept, scopes, studies = checked
            if (
                self._keys.key(kept.key_id) is kept
                and (kept.expires_at is None or kept.expires_at > time.time())
                and not self._touch_due(kept.key_id)
            ):
                return Caller(f"key:{kept.key_id}", scopes, studies, request_id, client=client)
        presented = parse_token("dwk", credential)
        if presented is None or self._touch_due(presented.id):
            return None
        try:
            key = self._verified(presented)
        except Unauthenticated:
            return None
        made = self._key_caller(key, request_id, client)
        if len(self._checked) >= _CHECKED_KEPT:
            self._checked.clear()
        self._checked[credential] = (key, made.scopes, made.studies)
        return made

    def _key_caller(self, key: StoredKey, request_id: str, client: str | None = None) -> Caller:
        studies = None if key.labels is None else StudyScope(labels=key.labels)
        # A limited key made before the rule above keeps none of admin's reach.
        scopes = confined(granted(key.scopes), studies)
        return Caller(f"key:{key.key_id}", scopes, studies, request_id, client=client)

    def _verified_caller(
        self, credential: str, presented: Presented | None, request_id: str
    ) -> Caller:
        if self._shares is not None and credential.startswith("dws_"):
            return self._shares.caller(credential, request_id)
        if self._oidc is not None and not (
            "api-key" in self.kinds and credential.startswith("dwk_")
        ):
            return self._oidc.caller(credential, request_id)
        key = self._verified(presented)
        self._touch(key.key_id)
        return self._key_caller(key, request_id)

    def study_labels(self, caller: Caller, study_uid: str) -> list[str]:
        """The access-control labels of a study (admin)."""
        caller.require(ADMIN)
        found = self._labels.labels(study_uid)
        if found is None:
            raise NotFound(f"no study {study_uid} is stored")
        return found

    def set_study_labels(self, caller: Caller, study_uid: str, labels: list[str]) -> list[str]:
        """Make `labels` the study's access-control labels (admin); the labels it has now."""
        caller.require(ADMIN)
        wanted = frozenset(label.strip() for label in labels)
        if "" in wanted or any(len(label) > 256 for label in wanted) or len(wanted) > 100:
            raise InvalidRequest("labels are 1 to 256 characters each, at most 100 of them")
        if not self._labels.set_labels(study_uid, wanted):
            raise NotFound(f"no study {study_uid} is stored")
        self._audit.record(
            audit.security_alert(
                caller,
                audit.OBJECT_SECURITY_ATTRIBUTES_CHANGED,
                f"study:{study_uid}",
                "study labels set",
                [study_uid],
            )
        )
        return sorted(wanted)

    def _verified(self, presented: Presented | None) -> StoredKey:
        key = self._keys.key(presented.id) if presented else None
        if presented is None or key is None or not presented.matches(key.secret_sha256):
            raise Unauthenticated("the API key is not one this archive issued")
        if key.revoked_at is not None:
            raise Unauthenticated("the API key has been revoked")
        if key.expires_at is not None and key.expires_at <= time.time():
            raise Unauthenticated("the API key has expired")
        return key

    def _touch_due(self, key_id: str, now: float | None = None) -> bool:
        """Whether the key's last use is to be noted (at most every _TOUCH_EVERY seconds)."""
        at = time.time() if now is None else now
        return at - self._touched.get(key_id, 0.0) >= _TOUCH_EVERY

    def _touch(self, key_id: str) -> None:
        now = time.time()
        with self._lock:
            if not self._touch_due(key_id, now):
                return
            self._touched[key_id] = now
        self._keys.key_used(key_id, now)
