"""The archive's own bearer tokens: `<kind>_<id>_<secret>` for API keys (`dwk`), share links
(`dwl`) and share sessions (`dws`).

The id (16 hex digits) finds the row; the secret (32 random bytes, URL-safe base64) is kept
only as its SHA-256 and compared in constant time. 32 random bytes need no slow hash.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

_TOKEN = re.compile(r"(dw[kls])_([a-z0-9]{16})_([A-Za-z0-9_-]{43})", re.ASCII)


@dataclass(frozen=True)
class NewToken:
    id: str
    text: str  # the whole token, shown once
    digest: str  # what is kept of its secret


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_token(kind: str) -> NewToken:
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return NewToken(token_id, f"{kind}_{token_id}_{secret}", digest(secret))


@dataclass(frozen=True)
class Presented:
    id: str
    secret: str

    def matches(self, kept_digest: str) -> bool:
        """Whether the secret is the one `kept_digest` was made of (constant time)."""
        return hmac.compare_digest(kept_digest, digest(self.secret))


def parse_token(kind: str, text: str) -> Presented | None:
    """The id and secret of a token of `kind`, or None when the text is not one."""
    match = _TOKEN.fullmatch(text)
    if match is None or match.group(1) != kind:
        return None
    return Presented(match.group(2), match.group(3))
