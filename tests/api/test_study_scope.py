"""Per-study access (issue 14): a key limited to an access-control label sees only the studies
carrying it, inside every query. 30 studies, a label covering 10: QIDO at all three levels
answers exactly those and its pages agree; WADO, metadata, frames, rendered and thumbnails
of the other 20 answer 404 (never 403: a study outside the scope cannot be told from one
never stored). On SQLite and PostgreSQL, with labels set at ingest by the label rule and
changed later by an admin call."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydicom.uid import generate_uid

from dicomweb_server.container import Container
from tests.conftest import make_settings, private_server
from tests.factories import make_instance, to_bytes
from tests.helpers import multipart_body
from tests.integration.test_migrations import pg_schema

STUDIES = 30
NORTH = 10  # studies from "North Hospital"; the other 20 are from "South Clinic"


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def scoped(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[httpx.Client, Container, list[str], list[str]]]:
    url = None
    if request.param == "postgresql":
        url = pg_schema(request.getfixturevalue("pg_url"), "study_scope")
    settings = make_settings(
        tmp_path_factory.mktemp(f"scope-{request.param}"),
        url,
        auth="api-key",
        label_attributes="InstitutionName",
        webhook_allow_private=True,
    )
    with private_server(settings) as (client, container):
        writer = container.access.create_key("loader", {"read", "write"}).secret
        north: list[str] = []
        south: list[str] = []
        for n in range(STUDIES):
            study = generate_uid()
            place = "North Hospital" if n % 3 == 0 else "South Clinic"
            (north if place == "North Hospital" else south).append(study)
            # Two series of one instance each: series and instance queries have more rows.
            parts = []
            for series_number in (1, 2):
                ds = make_instance(study_uid=study, series_number=series_number)
                ds.InstitutionName = place
                parts.append(to_bytes(ds))
            body, content_type = multipart_body(parts)
            stored = client.post(
                "/studies",
                content=body,
                headers={"Content-Type": content_type, **_bearer(writer)},
            )
            assert stored.status_code == 200, stored.text
        assert len(north) == NORTH
        yield client, container, north, south


def _uids(answer: httpx.Response, tag: str) -> list[str]:
    assert answer.status_code == 200, answer.text
    return [item[tag]["Value"][0] for item in answer.json()]


STUDY_UID, SERIES_UID = "0020000D", "0020000E"


def test_qido_at_every_level_answers_only_the_labelled_studies(scoped: Any) -> None:
    client, container, north, _ = scoped
    reader = _bearer(
        container.access.create_key("north", {"read"}, None, {"North Hospital"}).secret
    )
    assert sorted(_uids(client.get("/studies", headers=reader), STUDY_UID)) == sorted(north)
    series = client.get("/series", headers=reader)
    assert sorted(set(_uids(series, STUDY_UID))) == sorted(north)
    assert len(series.json()) == 2 * NORTH
    instances = client.get("/instances", headers=reader)
    assert len(instances.json()) == 2 * NORTH
    assert set(_uids(instances, STUDY_UID)) == set(north)
    # Pages of 4 walk exactly the permitted studies, no more, none twice.
    paged: list[str] = []
    for offset in range(0, 16, 4):
        page = client.get("/studies", params={"limit": 4, "offset": offset}, headers=reader)
        paged += _uids(page, STUDY_UID)
    assert sorted(paged) == sorted(north)
    assert len(paged) == NORTH
    # Matching narrows within the scope, never beyond it.
    everyone = client.get("/studies", params={"PatientID": "PID-1"}, headers=reader)
    assert len(everyone.json()) == NORTH


def test_studies_outside_the_scope_answer_404(scoped: Any) -> None:
    client, container, north, south = scoped
    reader = _bearer(
        container.access.create_key("north", {"read"}, None, {"North Hospital"}).secret
    )
    inside, outside = north[0], south[0]
    assert client.get(f"/studies/{inside}/series", headers=reader).status_code == 200
    assert client.get(f"/studies/{outside}/series", headers=reader).status_code == 404
    # The UIDs of an outside study, learnt with an unlimited key.
    admin = _bearer(container.access.create_key("all", {"read"}).secret)
    found = client.get(f"/studies/{outside}/instances", headers=admin).json()[0]
    series_uid, instance_uid = found[SERIES_UID]["Value"][0], found["00080018"]["Value"][0]
    paths = [
        f"/studies/{outside}",
        f"/studies/{outside}/metadata",
        f"/studies/{outside}/series/{series_uid}",
        f"/studies/{outside}/series/{series_uid}/metadata",
        f"/studies/{outside}/series/{series_uid}/instances",
        f"/studies/{outside}/series/{series_uid}/instances/{instance_uid}",
        f"/studies/{outside}/series/{series_uid}/instances/{instance_uid}/metadata",
        f"/studies/{outside}/series/{series_uid}/instances/{instance_uid}/frames/1",
        f"/studies/{outside}/series/{series_uid}/instances/{instance_uid}/rendered",
        f"/studies/{outside}/series/{series_uid}/instances/{instance_uid}/frames/1/rendered",
        f"/studies/{outside}/rendered",
        f"/studies/{outside}/thumbnail",
        f"/studies/{outside}/series/{series_uid}/thumbnail",
        f"/studies/{outside}/series/{series_uid}/instances/{instance_uid}/bulkdata/7FE00010",
    ]
    for path in paths:
        assert client.get(path, headers=admin).status_code == 200, path
        refused = client.get(path, headers=reader)
        assert refused.status_code == 404, (path, refused.status_code)
        assert "North" not in refused.text
    wado_uri = client.get(
        "/wado",
        params={
            "requestType": "WADO",
            "studyUID": outside,
            "seriesUID": series_uid,
            "objectUID": instance_uid,
            "contentType": "application/dicom",
        },
        headers=reader,
    )
    assert wado_uri.status_code == 404
    # The same paths of a study inside the scope answer.
    inside_found = client.get(f"/studies/{inside}/instances", headers=reader).json()[0]
    inside_series = inside_found[SERIES_UID]["Value"][0]
    assert (
        client.get(f"/studies/{inside}/series/{inside_series}/metadata", headers=reader).status_code
        == 200
    )


def test_labels_changed_by_an_admin_take_effect_at_once(scoped: Any) -> None:
    client, container, _, south = scoped
    admin = _bearer(container.access.create_key("admin", {"admin"}).secret)
    reader = _bearer(
        container.access.create_key("north", {"read"}, None, {"North Hospital"}).secret
    )
    moved = south[0]
    assert client.get(f"/studies/{moved}/labels", headers=admin).json() == {
        "labels": ["South Clinic"]
    }
    # A reader may not change labels; an admin may.
    body = {"labels": ["South Clinic", "North Hospital"]}
    assert client.put(f"/studies/{moved}/labels", json=body, headers=reader).status_code == 403
    changed = client.put(f"/studies/{moved}/labels", json=body, headers=admin)
    assert changed.status_code == 200
    assert changed.json() == {"labels": ["North Hospital", "South Clinic"]}
    try:
        seen = _uids(client.get("/studies", headers=reader), STUDY_UID)
        assert moved in seen and len(seen) == NORTH + 1
        assert client.get(f"/studies/{moved}/metadata", headers=reader).status_code == 200
    finally:
        restored = client.put(
            f"/studies/{moved}/labels", json={"labels": ["South Clinic"]}, headers=admin
        )
        assert restored.status_code == 200
    assert client.get(f"/studies/{moved}/metadata", headers=reader).status_code == 404
    # Bad bodies and unknown studies are refused with the reason.
    assert client.put(f"/studies/{moved}/labels", json=["x"], headers=admin).status_code == 400
    assert client.put(f"/studies/{moved}/labels", content=b"x", headers=admin).status_code == 415
    unknown = client.get(f"/studies/{generate_uid()}/labels", headers=admin)
    assert unknown.status_code == 404


def test_a_key_without_labels_and_a_key_with_an_unknown_label(scoped: Any) -> None:
    client, container, _, _ = scoped
    everything = _bearer(container.access.create_key("all", {"read"}).secret)
    assert len(client.get("/studies", headers=everything).json()) == STUDIES
    nobody = _bearer(container.access.create_key("none", {"read"}, None, {"Elsewhere"}).secret)
    assert client.get("/studies", headers=nobody).json() == []


def test_stores_get_labels_and_stay_within_them(scoped: Any) -> None:
    """(Last in this module: it adds studies.) A writer limited to a label gives it to what
    it stores and may not store into a study outside it; an unlimited gateway labels its
    stores with X-Access-Labels."""
    client, container, north, south = scoped
    access = container.access
    ward = _bearer(
        access.create_key("north gw", {"read", "write"}, None, {"North Hospital"}).secret
    )
    gateway = _bearer(access.create_key("gateway", {"read", "write"}).secret)
    admin = _bearer(access.create_key("admin", {"admin"}).secret)

    def store(study: str, headers: dict[str, str]) -> httpx.Response:
        ds = make_instance(study_uid=study)
        ds.InstitutionName = "Mobile Unit"
        body, content_type = multipart_body([to_bytes(ds)])
        return client.post(
            "/studies", content=body, headers={"Content-Type": content_type, **headers}
        )

    mine = generate_uid()
    assert store(mine, ward).status_code == 200
    labels = client.get(f"/studies/{mine}/labels", headers=admin).json()["labels"]
    assert labels == ["Mobile Unit", "North Hospital"]
    assert client.get(f"/studies/{mine}/metadata", headers=ward).status_code == 200
    # Into a study it cannot see: refused (0x0124), nothing stored, no label given.
    before = len(client.get(f"/studies/{south[0]}/instances", headers=gateway).json())
    refused = store(south[0], ward)
    assert refused.status_code == 409, refused.text
    failed = refused.json()["00081198"]["Value"][0]
    assert failed["00081197"]["Value"] == [0x0124]
    assert len(client.get(f"/studies/{south[0]}/instances", headers=gateway).json()) == before
    assert client.get(f"/studies/{south[0]}/labels", headers=admin).json() == {
        "labels": ["South Clinic"]
    }
    # Into one it can see: stored.
    assert store(north[0], ward).status_code == 200
    # A limited writer may not give other labels; an unlimited gateway may.
    assert store(generate_uid(), {**ward, "X-Access-Labels": "ICU"}).status_code == 403
    labelled = generate_uid()
    assert store(labelled, {**gateway, "X-Access-Labels": "ICU, Ward 7"}).status_code == 200
    assert client.get(f"/studies/{labelled}/labels", headers=admin).json()["labels"] == [
        "ICU",
        "Mobile Unit",
        "Ward 7",
    ]


def test_the_change_feed_and_its_streams_show_only_the_scope(scoped: Any) -> None:
    """Issue 16: a label-limited key reads only its studies' entries, in the feed, its latest
    entry and the live stream; the feed needs read."""
    client, container, north, _ = scoped
    reader = _bearer(
        container.access.create_key("north", {"read"}, None, {"North Hospital"}).secret
    )
    everyone = _bearer(container.access.create_key("all", {"read"}).secret)
    every_entry = client.get("/changefeed", params={"limit": 1000}, headers=everyone).json()
    assert len(every_entry) >= 2 * STUDIES  # the module's other tests may store more
    mine = client.get("/changefeed", params={"limit": 1000}, headers=reader).json()
    # The studies QIDO shows this key (the module's other tests may label more of them).
    visible = set(_uids(client.get("/studies", params={"limit": 1000}, headers=reader), STUDY_UID))
    assert set(north) <= visible
    assert {e["StudyInstanceUid"] for e in mine} == visible
    assert mine == [e for e in every_entry if e["StudyInstanceUid"] in visible]
    assert [e["Sequence"] for e in mine] == sorted(e["Sequence"] for e in mine)
    latest = client.get("/changefeed/latest", headers=reader).json()
    assert latest == mine[-1]
    # The stream, resumed from the start: the same entries, no others.
    with client.stream("GET", "/changefeed/stream?after=0", headers=reader) as stream:
        assert stream.status_code == 200
        seen: list[int] = []
        for line in stream.iter_lines():
            if line.startswith("id: "):
                seen.append(int(line[4:]))
                if len(seen) == len(mine):
                    break
    assert seen == [e["Sequence"] for e in mine]
    assert client.get("/changefeed").status_code == 401
    writer_only = _bearer(container.access.create_key("w", {"write"}).secret)
    assert client.get("/changefeed", headers=writer_only).status_code == 403
    assert client.get("/changefeed/stream", headers=writer_only).status_code == 403


def test_the_websocket_stream_needs_a_credential_that_gives_read(scoped: Any) -> None:
    import asyncio

    import websockets

    client, container, north, _ = scoped
    url = str(client.base_url).replace("http://", "ws://").rstrip("/") + "/changefeed/ws"
    reader = _bearer(
        container.access.create_key("north", {"read"}, None, {"North Hospital"}).secret
    )

    async def closed_with(headers: dict[str, str], first: str | None = None) -> tuple[int, str]:
        async with websockets.connect(url, additional_headers=headers) as socket:
            if first is not None:
                await socket.send(first)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(socket.recv(), 30)
        assert closed.value.rcvd is not None
        return closed.value.rcvd.code, closed.value.rcvd.reason

    # Without a header, the credential is the first message (a browser's way); else 1008.
    code, reason = asyncio.run(closed_with({}, "hello"))
    assert code == 1008 and "authorization" in reason

    mine = client.get("/changefeed", params={"limit": 1000}, headers=reader).json()

    async def first_entries() -> list[int]:
        async with websockets.connect(url + "?after=0", additional_headers=reader) as socket:
            return [
                json.loads(await asyncio.wait_for(socket.recv(), 30))["Sequence"]
                for _ in range(len(mine))
            ]

    assert asyncio.run(first_entries()) == [e["Sequence"] for e in mine]
    assert set(north) <= {e["StudyInstanceUid"] for e in mine}

    async def first_entries_told_in_the_first_message() -> list[int]:
        async with websockets.connect(url + "?after=0") as socket:
            await socket.send(json.dumps({"authorization": reader["Authorization"]}))
            return [
                json.loads(await asyncio.wait_for(socket.recv(), 30))["Sequence"]
                for _ in range(len(mine))
            ]

    assert asyncio.run(first_entries_told_in_the_first_message()) == [e["Sequence"] for e in mine]


def test_subscriptions_need_admin(scoped: Any) -> None:
    client, container, _, _ = scoped
    reader = _bearer(container.access.create_key("r", {"read", "write"}).secret)
    admin = _bearer(container.access.create_key("a", {"admin"}).secret)
    body = {"url": "http://127.0.0.1:9/hook"}
    assert client.post("/subscriptions", json=body).status_code == 401
    assert client.post("/subscriptions", json=body, headers=reader).status_code == 403
    assert client.get("/subscriptions", headers=reader).status_code == 403
    made = client.post("/subscriptions", json=body, headers=admin)
    assert made.status_code == 201, made.text
    listed = client.get("/subscriptions", headers=admin).json()
    assert [s["id"] for s in listed] == [made.json()["id"]]
    assert "secret" not in listed[0]
    path = f"/subscriptions/{made.json()['id']}"
    assert client.delete(path, headers=reader).status_code == 403
    assert client.delete(path, headers=admin).status_code == 204
