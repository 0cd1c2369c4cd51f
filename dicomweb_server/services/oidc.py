"""OpenID Connect bearer tokens (RFC 6750) turned into the request's principal and scopes.

The issuer's discovery document (OpenID Connect Discovery 1.0 section 4) gives the JWKS and,
when asked for, the introspection endpoint. A JWT is verified with PyJWT against the JWKS:
signature with an allowed asymmetric algorithm only (RS256, ES256, PS256 by default; `none`
and the HS* family are refused whatever is configured, so a public key can never be used as
an HMAC secret), then `iss`, `aud`, `exp` and `nbf` with a small clock skew. A token naming a
key id the cached JWKS lacks makes one refetch (the provider rotated its keys); such refetches
happen at most once per `refetch_seconds`, and the whole set is refetched after its lifetime.
A token that is not a JWT is asked about with RFC 7662 introspection when that is enabled.

Which claim holds the scopes is configurable (`scope`, `scp`, `roles` or a dotted path such
as Keycloak's `realm_access.roles`); its values map to the archive's scopes by name
(`read`, or `dicomweb.read`), by the role map (Microsoft's DicomDataReader and DicomDataOwner
as a preset), or as SMART on FHIR scopes (`patient/ImagingStudy.read` reads the studies of
the token's `patient` claim only; `user/` and `system/` read every study).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import jwt

from dicomweb_server.services.context import (
    ADMIN,
    DELETE,
    READ,
    SHARE,
    UPDATE,
    WORKITEMS,
    WRITE,
    Caller,
    StudyScope,
    confined,
    granted,
)
from dicomweb_server.services.errors import Unauthenticated, Unavailable
from dicomweb_server.services.ports.identity import JsonClient, ProviderUnreachable

ALLOWED_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "PS384"})
DEFAULT_ALGORITHMS = ("RS256", "ES256", "PS256")
SCOPES = (READ, WRITE, UPDATE, DELETE, WORKITEMS, SHARE, ADMIN)
# Microsoft's DICOM service roles (Azure Health Data Services).
MICROSOFT_ROLES = {
    "DicomDataReader": frozenset({READ}),
    "DicomDataOwner": frozenset({READ, WRITE, UPDATE, DELETE, WORKITEMS}),
}
_SMART_READ = ("ImagingStudy.read", "ImagingStudy.rs", "ImagingStudy.r", "*.read", "*.rs")


@dataclass(frozen=True)
class OidcConfig:
    issuer: str
    audience: str
    scopes_claim: str = "scope"
    role_map: dict[str, frozenset[str]] = field(default_factory=dict)
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    leeway_seconds: int = 60
    patient_claim: str = "patient"
    labels_claim: str | None = None
    introspect: bool = False
    client_id: str | None = None
    client_secret: str | None = None
    refetch_seconds: float = 30.0
    jwks_lifetime_seconds: float = 3600.0


def parse_role_map(text: str) -> dict[str, frozenset[str]]:
    """`microsoft`, or `Role=read,write;Other=admin`: claim values and the scopes they give."""
    mapped: dict[str, frozenset[str]] = {}
    for entry in (e.strip() for e in text.split(";")):
        if not entry:
            continue
        if entry == "microsoft":
            mapped.update(MICROSOFT_ROLES)
            continue
        role, sep, scopes = entry.partition("=")
        granted = frozenset(s.strip() for s in scopes.split(",") if s.strip())
        if not sep or not role.strip() or not granted or not granted <= set(SCOPES):
            raise ValueError(
                f"role map entry {entry!r}: ROLE=scope,scope with scopes of {', '.join(SCOPES)}"
            )
        mapped[role.strip()] = granted
    return mapped


class OidcVerifier:
    def __init__(self, config: OidcConfig, http: JsonClient) -> None:
        bad = set(config.algorithms) - ALLOWED_ALGORITHMS
        if bad or not config.algorithms:
            raise ValueError(
                f"OIDC algorithms must be some of {', '.join(sorted(ALLOWED_ALGORITHMS))}"
                + (f"; not {', '.join(sorted(bad))}" if bad else "")
            )
        self.config = config
        self._http = http
        self._lock = threading.Lock()
        self._discovery: dict[str, Any] | None = None
        # Each key of the JWKS by its id, with the algorithm it declares (None: any).
        self._keys: dict[str, tuple[jwt.PyJWK, str | None]] = {}
        self._fetched_at = float("-inf")
        self._unknown_at = float("-inf")  # the last refetch made for an unknown key id
        self._introspected: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()

    # -- the provider's documents ----------------------------------------------------------

    def _document(self) -> dict[str, Any]:
        if self._discovery is None:
            url = self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
            found = self._http.get_json(url)
            if not isinstance(found, dict) or not isinstance(found.get("jwks_uri"), str):
                raise ProviderUnreachable("the discovery document names no jwks_uri")
            # Discovery 4.3: the issuer it names is the one configured, exactly.
            if found.get("issuer") != self.config.issuer:
                raise ProviderUnreachable("the discovery document names another issuer")
            self._discovery = found
        return self._discovery

    def _refetch(self) -> None:
        found = self._http.get_json(self._document()["jwks_uri"])
        keys: dict[str, tuple[jwt.PyJWK, str | None]] = {}
        entries = found.get("keys", []) if isinstance(found, dict) else []
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            try:
                key = jwt.PyJWK(entry)
            except (jwt.PyJWKError, jwt.InvalidKeyError):
                continue  # a key type or algorithm PyJWT cannot use: not one we accept
            declared = entry.get("alg")
            keys[str(entry.get("kid", ""))] = (key, declared if isinstance(declared, str) else None)
        self._keys = keys
        self._fetched_at = time.monotonic()

    def _key(self, kid: str) -> tuple[jwt.PyJWK, str | None] | None:
        """The JWKS key `kid` ("" for a token without one), refetching the set when it is
        old, or once per refetch interval when the key is unknown (a rotation)."""
        with self._lock:
            now = time.monotonic()
            if now - self._fetched_at > self.config.jwks_lifetime_seconds:
                self._refetch()
            elif kid not in self._keys and now - self._unknown_at > self.config.refetch_seconds:
                # Tokens naming keys nobody published cost one fetch per interval at most.
                self._unknown_at = now
                self._refetch()
            if kid == "" and len(self._keys) == 1:
                return next(iter(self._keys.values()))
            return self._keys.get(kid)

    # -- tokens ----------------------------------------------------------------------------

    def caller(self, token: str, request_id: str = "-") -> Caller:
        """The caller this token stands for; Unauthenticated with the reason when it is not
        valid, Unavailable when the provider cannot be asked."""
        try:
            claims = self._claims(token)
        except ProviderUnreachable as exc:
            raise Unavailable(f"the identity provider cannot be reached: {exc}") from exc
        scopes, studies = self._grants(claims)
        subject = str(claims.get("sub") or claims.get("client_id") or "unknown")
        return Caller(f"oidc:{subject}", confined(granted(scopes), studies), studies, request_id)

    def _claims(self, token: str) -> dict[str, Any]:
        if token.count(".") != 2:
            if self.config.introspect:
                return self._introspect(token)
            raise Unauthenticated("the bearer token is not a JWT")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthenticated("the bearer token is not a well-formed JWT") from exc
        alg = header.get("alg")
        if alg not in self.config.algorithms:
            raise Unauthenticated(f"tokens signed with {alg!r} are not accepted")
        found = self._key(str(header.get("kid", "")))
        if found is None:
            raise Unauthenticated("the token's signing key is not one of the issuer's")
        key, declared = found
        if declared is not None and declared != alg:
            raise Unauthenticated("the token's algorithm is not its key's")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=self.config.audience,
                issuer=self.config.issuer,
                leeway=self.config.leeway_seconds,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated("the token has expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise Unauthenticated("the token is not valid yet") from exc
        except jwt.InvalidAudienceError as exc:
            raise Unauthenticated("the token is meant for another audience") from exc
        except jwt.InvalidIssuerError as exc:
            raise Unauthenticated("the token is from another issuer") from exc
        except jwt.InvalidSignatureError as exc:
            raise Unauthenticated("the token's signature does not verify") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthenticated(f"the token lacks the {exc.claim!r} claim") from exc
        except jwt.PyJWTError as exc:
            raise Unauthenticated("the bearer token is not valid") from exc
        return claims

    def _introspect(self, token: str) -> dict[str, Any]:
        """RFC 7662: the provider says whether an opaque token is active, and its claims;
        active answers are kept until the token's expiry, at most a minute."""
        digest = hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()
        now = time.time()
        with self._lock:
            cached = self._introspected.get(digest)
            if cached is not None and cached[0] > now:
                return cached[1]
        url = self._document().get("introspection_endpoint")
        if not isinstance(url, str):
            raise ProviderUnreachable("the discovery document names no introspection_endpoint")
        auth = None
        if self.config.client_id and self.config.client_secret:
            auth = (self.config.client_id, self.config.client_secret)
        answer = self._http.post_form(url, {"token": token}, auth)
        if not isinstance(answer, dict) or answer.get("active") is not True:
            raise Unauthenticated("the bearer token is not active")
        if answer.get("iss") not in (None, self.config.issuer):
            raise Unauthenticated("the token is from another issuer")
        audience = answer.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if audience is not None and self.config.audience not in audiences:
            raise Unauthenticated("the token is meant for another audience")
        expires = answer.get("exp")
        until = min(now + 60, float(expires)) if isinstance(expires, int | float) else now + 60
        if isinstance(expires, int | float) and expires + self.config.leeway_seconds < now:
            raise Unauthenticated("the token has expired")
        with self._lock:
            self._introspected[digest] = (until, answer)
            while len(self._introspected) > 10_000:
                self._introspected.popitem(last=False)
        return answer

    # -- what a token grants ---------------------------------------------------------------

    def _grants(self, claims: dict[str, Any]) -> tuple[frozenset[str], StudyScope | None]:
        values = _claim_values(claims, self.config.scopes_claim)
        scopes: set[str] = set()
        patient_read = False
        for value in values:
            name = value.removeprefix("dicomweb.").removeprefix("dicomweb:")
            if name in SCOPES:
                scopes.add(name)
            scopes |= self.config.role_map.get(value, frozenset())
            context, _, resource = value.partition("/")
            if resource in _SMART_READ:
                if context == "patient":
                    patient_read = True
                elif context in ("user", "system"):
                    scopes.add(READ)
        studies = None
        if self.config.labels_claim:
            labels = _claim_values(claims, self.config.labels_claim)
            if labels:
                studies = StudyScope(labels=frozenset(labels))
        if patient_read and READ not in scopes:
            # SMART on FHIR: patient-context reads see that patient's studies only.
            patient = claims.get(self.config.patient_claim)
            if isinstance(patient, str) and patient:
                scopes.add(READ)
                studies = StudyScope(patient_ids=frozenset({patient}))
        return frozenset(scopes), studies


def _claim_values(claims: dict[str, Any], path: str) -> list[str]:
    """The string values of a claim named by a dotted path: a space-separated string (the
    `scope` claim of RFC 8693 and 9068) or a list of strings."""
    found: Any = claims
    for part in path.split("."):
        found = found.get(part) if isinstance(found, dict) else None
    if isinstance(found, str):
        return found.split()
    if isinstance(found, list):
        return [v for v in found if isinstance(v, str)]
    return []
