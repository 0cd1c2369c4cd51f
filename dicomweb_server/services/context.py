"""Who is asking: the `Caller` every use case is handed.

A plain value, made by the web layer's middleware from the request (the DIMSE gateway will
make one from the association). Today every caller is anonymous and may do everything; the
access control issue fills in the principal, its scopes and the studies it may see, and the
checks below start refusing.
"""

from __future__ import annotations

from dataclasses import dataclass

from dicomweb_server.services.errors import Forbidden

READ = "read"
WRITE = "write"
EVERY_SCOPE = frozenset({READ, WRITE})


@dataclass(frozen=True)
class Caller:
    principal: str | None  # None: anonymous
    scopes: frozenset[str]
    # The studies the caller may see; None: every study.
    studies: frozenset[str] | None
    request_id: str = "-"

    @classmethod
    def anonymous(cls, request_id: str = "-") -> Caller:
        """A caller with no identity, allowed everything (the server has no access control
        yet)."""
        return cls(None, EVERY_SCOPE, None, request_id)

    def require(self, scope: str, study_uid: str | None = None) -> None:
        """Forbidden unless the caller has `scope` (and may see `study_uid`, when given)."""
        if scope not in self.scopes:
            raise Forbidden(f"this request may not {scope}")
        if study_uid is not None and self.studies is not None and study_uid not in self.studies:
            raise Forbidden(f"this request may not {scope} study {study_uid}")
