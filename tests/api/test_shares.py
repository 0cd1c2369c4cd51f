"""Share links and one-time codes (issue 14): made by an admin, redeemed for a session that
reads one study only, used up, expired, revoked at once (also by a second server process on
the same database), codes limited against guessing, every use recorded. A real server in a
thread and a real `serve` process, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from pydicom.uid import generate_uid

from dicomweb_server.container import Container
from tests.conftest import make_settings, private_server, start_serve
from tests.factories import make_instance, to_bytes
from tests.helpers import multipart_body
from tests.integration.test_migrations import pg_schema

STUDY_UID, SERIES_UID, INSTANCE_UID = "0020000D", "0020000E", "00080018"


@dataclass
class Shared:
    client: httpx.Client  # server A, in this process
    other: str  # server B's DICOMweb root: another process on the same database
    container: Container
    admin: dict[str, str]
    studies: list[str]  # two studies, two series each
    series: dict[str, list[str]]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shared(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Shared]:
    url = None
    if request.param == "postgresql":
        url = pg_schema(request.getfixturevalue("pg_url"), "shares")
    settings = make_settings(
        tmp_path_factory.mktemp(f"shares-{request.param}"),
        url,
        auth="api-key",
        auth_failures_per_minute=1000,
        label_attributes="InstitutionName",
    )
    with private_server(settings) as (client, container):
        admin = _bearer(container.access.create_key("admin", {"admin", "read", "write"}).secret)
        studies, series = [], {}
        for _ in range(2):
            study = generate_uid()
            studies.append(study)
            series[study] = [generate_uid(), generate_uid()]
            parts = []
            for number, series_uid in enumerate(series[study], 1):
                ds = make_instance(study_uid=study, series_uid=series_uid, series_number=number)
                ds.InstitutionName = "Ward 1" if study == studies[0] else "Ward 2"
                parts.append(to_bytes(ds))
            body, content_type = multipart_body(parts)
            stored = client.post(
                "/studies", content=body, headers={"Content-Type": content_type, **admin}
            )
            assert stored.status_code == 200, stored.text
        process, other = start_serve(settings)
        try:
            yield Shared(client, other, container, admin, studies, series)
        finally:
            process.terminate()
            process.wait(timeout=30)


def _share(shared: Shared, **body: Any) -> dict[str, Any]:
    made = shared.client.post(
        "/shares", json={"study": shared.studies[0], **body}, headers=shared.admin
    )
    assert made.status_code == 201, made.text
    return made.json()  # type: ignore[no-any-return]


def _redeem(shared: Shared, token: str, code: str | None = None) -> httpx.Response:
    body = {"token": token} if code is None else {"token": token, "code": code}
    return shared.client.post("/shares/redeem", json=body)


def test_a_session_reads_the_shared_study_only(shared: Shared) -> None:
    made = _share(shared, max_uses=1)
    assert made["url"].endswith(f"/shares/open?token={made['token']}")
    assert "token_sha256" not in made and made["uses"] == 0
    session = _redeem(shared, made["token"])
    assert session.status_code == 200, session.text
    assert session.json()["study"] == shared.studies[0]
    viewer = _bearer(session.json()["access_token"])
    c, study, other = shared.client, shared.studies[0], shared.studies[1]
    listed = c.get("/studies", headers=viewer).json()
    assert [s[STUDY_UID]["Value"][0] for s in listed] == [study]
    assert len(c.get("/series", headers=viewer).json()) == 2
    found = c.get(f"/studies/{study}/instances", headers=viewer).json()[0]
    series, instance = found[SERIES_UID]["Value"][0], found[INSTANCE_UID]["Value"][0]
    base = f"/studies/{study}/series/{series}/instances/{instance}"
    for path in (
        f"/studies/{study}/metadata",
        f"{base}/frames/1",
        f"{base}/rendered",
        f"/studies/{study}/thumbnail",
    ):
        assert c.get(path, headers=viewer).status_code == 200, path
    # View rights: no whole objects.
    assert c.get(base, headers=viewer).status_code == 403
    # Another study cannot be found with it, nor can the session write or administer.
    assert c.get(f"/studies/{other}/metadata", headers=viewer).status_code == 404
    assert c.get(f"/studies/{other}/series", headers=viewer).status_code == 404
    body, content_type = multipart_body([to_bytes(make_instance())])
    stow = c.post("/studies", content=body, headers={"Content-Type": content_type, **viewer})
    assert stow.status_code == 403
    assert c.get("/shares", headers=viewer).status_code == 403
    # The session works on the other process too (nothing is kept in one process's memory).
    assert httpx.get(f"{shared.other}/studies/{study}/metadata", headers=viewer).status_code == 200
    # max_uses=1: a second redemption is refused with the reason.
    again = _redeem(shared, made["token"])
    assert again.status_code == 401 and "used up" in again.json()["error"]


def test_a_series_share_and_download_rights(shared: Shared) -> None:
    study = shared.studies[0]
    series = shared.series[study][1]
    made = _share(shared, series=series, rights="download")
    viewer = _bearer(_redeem(shared, made["token"]).json()["access_token"])
    c = shared.client
    seen = c.get(f"/studies/{study}/series", headers=viewer).json()
    assert [s[SERIES_UID]["Value"][0] for s in seen] == [series]
    hidden = shared.series[study][0]
    assert c.get(f"/studies/{study}/series/{hidden}/metadata", headers=viewer).status_code == 404
    whole = c.get(f"/studies/{study}/series/{series}", headers=viewer)
    assert whole.status_code == 200


def test_expired_and_revoked_shares_are_refused_at_once(shared: Shared) -> None:
    c = shared.client
    brief = _share(shared, expires_in=1)
    time.sleep(1.2)
    expired = _redeem(shared, brief["token"])
    assert expired.status_code == 401 and "expired" in expired.json()["error"]
    made = _share(shared)
    viewer = _bearer(_redeem(shared, made["token"]).json()["access_token"])
    study = shared.studies[0]
    assert c.get(f"/studies/{study}/metadata", headers=viewer).status_code == 200
    # Revoked through the other server process: this one refuses the next request.
    revoked = httpx.delete(f"{shared.other}/shares/{made['id']}", headers=shared.admin)
    assert revoked.status_code == 204
    refused = c.get(f"/studies/{study}/metadata", headers=viewer)
    assert refused.status_code == 401 and "revoked" in refused.json()["error"]
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    again = _redeem(shared, made["token"])
    assert again.status_code == 401 and "revoked" in again.json()["error"]
    listed = {s["id"]: s for s in c.get("/shares", headers=shared.admin).json()}
    assert listed[made["id"]]["state"] == "revoked"
    assert listed[brief["id"]]["state"] == "expired"
    assert c.delete("/shares/0123456789abcdef", headers=shared.admin).status_code == 404


def test_one_time_codes_and_their_limits(shared: Shared) -> None:
    made = _share(shared, code=True)
    code = made["one_time_code"]
    assert len(code) == 6 and code.isdigit()
    needs = _redeem(shared, made["token"])
    assert needs.status_code == 401 and "one-time code" in needs.json()["error"]
    opened = shared.client.get("/shares/open", params={"token": made["token"]})
    assert opened.status_code == 401
    wrong = "000000" if code != "000000" else "111111"
    first = _redeem(shared, made["token"], wrong)
    assert first.status_code == 401 and "4 attempt(s) left" in first.json()["error"]
    good = _redeem(shared, made["token"], code)
    assert good.status_code == 200
    # Wrong codes lock the share for everyone, the right code included.
    locked = _share(shared, code=True)
    for _ in range(5):
        answer = _redeem(
            shared, locked["token"], wrong if locked["one_time_code"] != wrong else "222222"
        )
        assert answer.status_code == 401
    assert "locked" in answer.json()["error"]
    late = _redeem(shared, locked["token"], locked["one_time_code"])
    assert late.status_code == 401 and "locked" in late.json()["error"]
    # Every use, refused ones too, is recorded.
    detail = shared.client.get(f"/shares/{made['id']}", headers=shared.admin).json()
    outcomes = [u["outcome"] for u in detail["recent_uses"]]
    assert outcomes[0] == "redeemed"
    assert any("wrong code" in o for o in outcomes)
    assert detail["uses"] == 1


def test_a_one_time_code_redeems_once_and_its_creator_issues_another(shared: Shared) -> None:
    made = _share(shared, code=True, max_uses=10)
    assert _redeem(shared, made["token"], made["one_time_code"]).status_code == 200
    again = _redeem(shared, made["token"], made["one_time_code"])
    assert again.status_code == 401 and "one-time code has been used" in again.json()["error"]
    listed = shared.client.get(f"/shares/{made['id']}", headers=shared.admin).json()
    assert listed["code_used"] is True and listed["uses"] == 1
    # A new code from the creator (or an admin); the old one stays spent.
    fresh = shared.client.post(f"/shares/{made['id']}/code", headers=shared.admin)
    assert fresh.status_code == 200, fresh.text
    code = fresh.json()["one_time_code"]
    assert len(code) == 6 and code.isdigit()
    assert _redeem(shared, made["token"], code).status_code == 200
    assert _redeem(shared, made["token"], code).status_code == 401
    # Not someone else's share; not a share without a code.
    access = shared.container.access
    other = _bearer(access.create_key("another sharer", {"read", "share"}).secret)
    assert shared.client.post(f"/shares/{made['id']}/code", headers=other).status_code == 404
    plain = _share(shared)
    no_code = shared.client.post(f"/shares/{plain['id']}/code", headers=shared.admin)
    assert no_code.status_code == 400 and "no one-time code" in no_code.json()["error"]


def test_a_person_opening_a_link_with_a_code_gets_a_page_that_asks_for_it(
    shared: Shared,
) -> None:
    made = _share(shared, code=True)
    browser = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    opened = shared.client.get(made["url"], headers=browser)
    assert opened.status_code == 303
    assert opened.headers["location"] == f"/ui/#/shared/{made['token']}"
    base = shared.client.base_url
    page = httpx.get(f"{base.scheme}://{base.netloc.decode()}/ui/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    # The code is not spent by opening the page; a script still gets the reason as JSON.
    assert shared.client.get(made["url"]).status_code == 401
    assert _redeem(shared, made["token"], made["one_time_code"]).status_code == 200


def test_a_viewer_gets_a_session_of_its_own_limited_to_the_study(shared: Shared) -> None:
    """ "Open in OHIF": the viewer's `token` is a short-lived session limited to the study,
    never the caller's key; it is listed and revocable like a share."""
    access, c = shared.container.access, shared.client
    key = access.create_key("reader", {"read"}).secret
    study, other = shared.studies
    made = c.post(f"/studies/{study}/viewer-session", headers=_bearer(key))
    assert made.status_code == 201, made.text
    session = made.json()
    token = session["access_token"]
    assert token.startswith("dws_") and key not in token
    assert 0 < session["expires_in"] <= 3600 and session["study"] == study
    viewer = _bearer(token)
    assert c.get(f"/studies/{study}/metadata", headers=viewer).status_code == 200
    assert c.get(f"/studies/{other}/metadata", headers=viewer).status_code == 404
    assert [r["0020000D"]["Value"][0] for r in c.get("/studies", headers=viewer).json()] == [study]
    # Not for a study the caller cannot see, nor without read.
    ward = access.create_key("ward 2 only", {"read"}, None, {"Ward 2"}).secret
    assert c.post(f"/studies/{study}/viewer-session", headers=_bearer(ward)).status_code == 404
    writer = access.create_key("writer", {"write"}).secret
    assert c.post(f"/studies/{study}/viewer-session", headers=_bearer(writer)).status_code == 403
    # Listed among the shares, and revoked like one.
    [listed] = [
        s
        for s in c.get("/shares", headers=shared.admin).json()
        if s["created_by"].endswith(key.split("_")[1])
    ]
    assert c.delete(f"/shares/{listed['id']}", headers=shared.admin).status_code == 204
    assert c.get(f"/studies/{study}/metadata", headers=viewer).status_code == 401


def test_failed_redemptions_from_one_address_are_answered_429(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    settings = make_settings(
        tmp_path_factory.mktemp("share-limit"), auth="api-key", auth_failures_per_minute=3
    )
    with private_server(settings) as (client, _):
        for n in range(3):
            bad = client.post("/shares/redeem", json={"token": f"dwl_{n:016d}_{'x' * 43}"})
            assert bad.status_code == 401
        limited = client.post("/shares/redeem", json={"token": "dwl_x"})
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1


def test_who_may_share_what(shared: Shared) -> None:
    c, access = shared.client, shared.container.access
    reader = _bearer(access.create_key("reader", {"read"}).secret)
    refused = c.post("/shares", json={"study": shared.studies[0]}, headers=reader)
    assert refused.status_code == 403
    # Scope share: the studies its own scope lets it see, and no others.
    owner = _bearer(access.create_key("ward 1", {"read", "share"}, None, {"Ward 1"}).secret)
    assert c.post("/shares", json={"study": shared.studies[0]}, headers=owner).status_code == 201
    outside = c.post("/shares", json={"study": shared.studies[1]}, headers=owner)
    assert outside.status_code == 404
    assert c.get("/shares", headers=owner).status_code == 403
    for bad in (
        {"study": "not a uid"},
        {"study": shared.studies[0], "rights": "everything"},
        {"study": shared.studies[0], "expires_in": 0},
        {"study": shared.studies[0], "max_uses": "many"},
    ):
        assert c.post("/shares", json=bad, headers=shared.admin).status_code == 400, bad


def test_an_opened_link_redirects_to_the_viewer(tmp_path_factory: pytest.TempPathFactory) -> None:
    settings = make_settings(
        tmp_path_factory.mktemp("share-viewer"),
        auth="api-key",
        share_viewer_url="http://viewer.example/viewer?StudyInstanceUIDs={study}&token={token}",
    )
    with private_server(settings) as (client, container):
        admin = _bearer(container.access.create_key("admin", {"admin", "write"}).secret)
        study = generate_uid()
        body, content_type = multipart_body([to_bytes(make_instance(study_uid=study))])
        client.post("/studies", content=body, headers={"Content-Type": content_type, **admin})
        made = client.post("/shares", json={"study": study}, headers=admin).json()
        opened = client.get("/shares/open", params={"token": made["token"]})
        assert opened.status_code == 303
        target = opened.headers["location"]
        assert target.startswith(
            f"http://viewer.example/viewer?StudyInstanceUIDs={study}&token=dws_"
        )
        token = target.split("token=")[1]
        assert client.get(f"/studies/{study}/metadata", headers=_bearer(token)).status_code == 200
