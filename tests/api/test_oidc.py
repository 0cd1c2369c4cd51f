"""DICOMWEB_AUTH=oidc (issue 14): bearer tokens of a local OpenID provider (discovery, JWKS
and introspection over a real loopback HTTP server, keys generated here), verified by a real
server: every way a token can be wrong answers 401 with the reason, a token without the
route's scope 403, and a rotation of the provider's keys is followed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import make_settings, private_server
from tests.factories import make_instance, to_bytes
from tests.helpers import multipart_body
from tests.oidc_provider import CLIENT, Provider, new_key, oidc_provider


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    with oidc_provider("RS256", "ES256") as found:
        yield found


def _server(tmp: Path, provider: Provider, **extra: Any) -> Any:
    settings = make_settings(
        tmp,
        auth=extra.pop("auth", "oidc"),
        oidc_issuer=provider.issuer,
        oidc_client_id=CLIENT[0],
        oidc_client_secret=CLIENT[1],
        **extra,
    )
    return private_server(settings)


@pytest.fixture(scope="module")
def archive_client(
    provider: Provider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[httpx.Client]:
    with _server(
        tmp_path_factory.mktemp("oidc"),
        provider,
        oidc_introspect=True,
        auth="oidc,api-key",
        # Many bad tokens from one address below; the limit itself is tested with keys.
        auth_failures_per_minute=1000,
    ) as (client, container):
        client.container = container  # type: ignore[attr-defined]
        yield client


def _refused(answer: httpx.Response, reason: str) -> None:
    assert answer.status_code == 401, answer.text
    assert reason in answer.json()["error"], answer.json()
    assert answer.headers["www-authenticate"].startswith("Bearer")


def test_a_valid_token_reads_and_its_scope_decides_writes(
    archive_client: httpx.Client, provider: Provider
) -> None:
    reader = provider.token()
    assert archive_client.get("/studies", headers=_auth(reader)).status_code == 200
    body, content_type = multipart_body([to_bytes(make_instance())])
    headers = {"Content-Type": content_type}
    denied = archive_client.post("/studies", content=body, headers={**headers, **_auth(reader)})
    assert denied.status_code == 403 and "write" in denied.json()["error"]
    writer = provider.token(scope="openid dicomweb.read dicomweb.write")
    stored = archive_client.post("/studies", content=body, headers={**headers, **_auth(writer)})
    assert stored.status_code == 200
    # ES256 is accepted as RS256 is.
    es = provider.token(provider.keys[1])
    assert len(archive_client.get("/studies", headers=_auth(es)).json()) >= 1


def test_every_bad_token_is_refused_with_its_reason(
    archive_client: httpx.Client, provider: Provider
) -> None:
    now = int(time.time())
    missing = archive_client.get("/studies")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'Bearer realm="dicomweb"'
    cases = {
        "expired": provider.token(exp=now - 3600, iat=now - 7200),
        "not valid yet": provider.token(nbf=now + 3600),
        "another audience": provider.token(aud="someone-else"),
        "another issuer": provider.token(iss="https://evil.example/realms/test"),
        "signature does not verify": provider.token()[:-6] + "AAAAAA",
        "'none'": provider.unsigned(),
        "'HS256'": provider.hs256_with_public_key(),
        "not a well-formed JWT": "abc.def.ghi",
        "lacks the 'exp' claim": provider.token(exp=None),
    }
    for reason, token in cases.items():
        answer = archive_client.get("/studies", headers=_auth(token))
        _refused(answer, reason)
        assert 'error="invalid_token"' in answer.headers["www-authenticate"], reason
    # A token signed by a key the provider never published.
    stranger = new_key()
    _refused(archive_client.get("/studies", headers=_auth(provider.token(stranger))), "key")


def test_clock_skew_is_allowed_within_the_leeway(
    archive_client: httpx.Client, provider: Provider
) -> None:
    now = int(time.time())
    late = provider.token(exp=now - 20)  # within the 60 s leeway
    assert archive_client.get("/studies", headers=_auth(late)).status_code == 200
    early = provider.token(nbf=now + 20)
    assert archive_client.get("/studies", headers=_auth(early)).status_code == 200


def test_a_rotated_key_is_fetched_once(provider: Provider, tmp_path: Path) -> None:
    with _server(tmp_path, provider, oidc_introspect=False) as (client, _):
        assert client.get("/studies", headers=_auth(provider.token())).status_code == 200
        fetched = provider.jwks_fetches
        # The provider rotates: a new key, the old one still published.
        rotated = new_key()
        provider.keys.append(rotated)
        try:
            token = provider.token(rotated)
            assert client.get("/studies", headers=_auth(token)).status_code == 200
            assert provider.jwks_fetches == fetched + 1
            # Known now: no more fetches.
            assert client.get("/studies", headers=_auth(token)).status_code == 200
            # An unknown kid right after a refetch does not make the server fetch again
            # (rate-limited): refused without asking the provider.
            stranger = new_key()
            _refused(client.get("/studies", headers=_auth(provider.token(stranger))), "key")
            assert provider.jwks_fetches == fetched + 1
        finally:
            provider.keys.remove(rotated)


def test_claims_that_carry_the_scopes(provider: Provider, tmp_path: Path) -> None:
    body, content_type = multipart_body([to_bytes(make_instance())])
    headers = {"Content-Type": content_type}
    # Keycloak: realm roles.
    with _server(tmp_path / "kc", provider, oidc_scopes_claim="realm_access.roles") as (c, _):
        token = provider.token(scope=None, realm_access={"roles": ["read", "write"]})
        stored = c.post("/studies", content=body, headers={**headers, **_auth(token)})
        assert stored.status_code == 200
        _refused_scope = c.get("/studies", headers=_auth(provider.token()))  # scope claim unused
        assert _refused_scope.status_code == 403
    # Microsoft's role names, as a preset.
    with _server(
        tmp_path / "ms", provider, oidc_scopes_claim="roles", oidc_role_map="microsoft"
    ) as (c, _):
        reader = provider.token(roles=["DicomDataReader"])
        owner = provider.token(roles=["DicomDataOwner"])
        assert c.get("/studies", headers=_auth(reader)).status_code == 200
        assert (
            c.post("/studies", content=body, headers={**headers, **_auth(reader)}).status_code
            == 403
        )
        assert (
            c.post("/studies", content=body, headers={**headers, **_auth(owner)}).status_code == 200
        )


def test_a_smart_patient_token_sees_that_patients_studies_only(
    archive_client: httpx.Client, provider: Provider
) -> None:
    writer = provider.token(scope="write read")
    for patient in ("SMART-1", "SMART-2"):
        body, content_type = multipart_body([to_bytes(make_instance(patient_id=patient))])
        answer = archive_client.post(
            "/studies", content=body, headers={"Content-Type": content_type, **_auth(writer)}
        )
        assert answer.status_code == 200
    patient = provider.token(scope="launch/patient patient/ImagingStudy.read", patient="SMART-1")
    found = archive_client.get("/studies", headers=_auth(patient)).json()
    assert [s["00100020"]["Value"][0] for s in found] == ["SMART-1"]


def test_opaque_tokens_are_introspected(archive_client: httpx.Client, provider: Provider) -> None:
    provider.opaque["opaque-good"] = {
        "active": True,
        "scope": "read",
        "sub": "bob",
        "aud": "dicomweb",
        "iss": provider.issuer,
        "exp": int(time.time()) + 300,
    }
    assert archive_client.get("/studies", headers=_auth("opaque-good")).status_code == 200
    _refused(archive_client.get("/studies", headers=_auth("opaque-unknown")), "not active")


def test_api_keys_work_beside_tokens(archive_client: httpx.Client) -> None:
    container = archive_client.container  # type: ignore[attr-defined]
    key = container.access.create_key("script", {"read"}).secret
    assert archive_client.get("/studies", headers={"X-API-Key": key}).status_code == 200
    assert archive_client.get("/studies", headers=_auth(key)).status_code == 200


def test_an_unreachable_provider_answers_503(tmp_path: Path) -> None:
    with oidc_provider() as gone:
        token = gone.token()
        issuer = gone.issuer
    settings = make_settings(tmp_path, auth="oidc", oidc_issuer=issuer)
    with private_server(settings) as (client, _):
        answer = client.get("/studies", headers=_auth(token))
        assert answer.status_code == 503
        assert "identity provider" in answer.json()["error"]
        assert "127.0.0.1" not in answer.text


def test_bad_oidc_settings_fail_at_start(tmp_path: Path) -> None:
    from dicomweb_server.container import oidc_verifier

    with pytest.raises(ValueError, match="ISSUER"):
        oidc_verifier(make_settings(tmp_path, auth="oidc"))
    with pytest.raises(ValueError, match="https"):
        oidc_verifier(make_settings(tmp_path, auth="oidc", oidc_issuer="http://idp.example"))
    with pytest.raises(ValueError, match="HS256"):
        oidc_verifier(
            make_settings(
                tmp_path, auth="oidc", oidc_issuer="https://idp.example", oidc_algorithms="HS256"
            )
        )
    with pytest.raises(ValueError, match="role map"):
        oidc_verifier(
            make_settings(
                tmp_path, auth="oidc", oidc_issuer="https://idp.example", oidc_role_map="X=all"
            )
        )
