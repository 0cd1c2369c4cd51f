"""Secrets kept encrypted at rest (webhook secrets): AES-256-GCM under a key derived from the
setting (SHA-256 of its text), the row's own id as associated data so a sealed value cannot
be moved to another row. A sealed value reads `sealed1:` and base64 of nonce and ciphertext;
a value without the prefix was stored before a key was set and is read as it is."""

from __future__ import annotations

import base64
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "sealed1:"


class Sealer:
    def __init__(self, key_text: str | None) -> None:
        self._aead = AESGCM(hashlib.sha256(key_text.encode()).digest()) if key_text else None

    def seal(self, value: str, row_id: str) -> str:
        if self._aead is None:
            return value
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, value.encode(), row_id.encode())
        return PREFIX + base64.b64encode(nonce + sealed).decode()

    def open(self, stored: str, row_id: str) -> str | None:
        """The value; None when it is sealed and cannot be opened (no key, another key)."""
        if not stored.startswith(PREFIX):
            return stored
        if self._aead is None:
            return None
        try:
            raw = base64.b64decode(stored[len(PREFIX) :], validate=True)
            return self._aead.decrypt(raw[:12], raw[12:], row_id.encode()).decode()
        except (InvalidTag, ValueError):  # binascii.Error is a ValueError
            return None
