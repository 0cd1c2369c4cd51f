"""The client address is the real one (issue 31): X-Forwarded-For is believed from the
proxies DICOMWEB_TRUSTED_PROXIES names and from nobody else, so a client cannot escape the
limit on failed credentials by claiming other addresses, and clients behind a trusted proxy
are limited each by its own address, not all by the proxy's."""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx
import pytest

from tests.conftest import RunningServer, make_settings, start_serve


def _tries(base: str, addresses: list[str]) -> list[int]:
    """A wrong key (each under a key id of its own: only the address is common) from each."""
    answers = []
    for address in addresses:
        wrong = f"Bearer dwk_{secrets.token_hex(8)}_{'x' * 43}"
        headers = {"Authorization": wrong, "X-Forwarded-For": address}
        answers.append(httpx.get(f"{base}/studies", headers=headers).status_code)
    return answers


def test_forwarded_addresses_are_believed_from_trusted_proxies_only(
    archive: RunningServer, tmp_path: Path
) -> None:
    if archive.backend != "sqlite":
        pytest.skip("the client's address does not depend on the backends")
    common = {"auth": "api-key", "auth_failures_per_minute": 3}
    untrusted = make_settings(tmp_path / "a", **common)
    process, base = start_serve(untrusted)
    try:
        # Loopback is no trusted proxy here: a claimed address changes nothing.
        assert _tries(base, ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]) == [
            401,
            401,
            401,
            429,
        ]
    finally:
        process.terminate()
        process.wait(timeout=30)
    behind = make_settings(tmp_path / "b", trusted_proxies="127.0.0.1", **common)
    process, base = start_serve(behind)
    try:
        # Behind a trusted proxy: each client is limited by its own address.
        assert _tries(base, ["10.0.0.1"] * 4) == [401, 401, 401, 429]
        assert _tries(base, ["10.0.0.2"]) == [401]
    finally:
        process.terminate()
        process.wait(timeout=30)
