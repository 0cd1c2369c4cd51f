"""Reject and restore (issue 18; IOCM as dcm4chee has it, the route OHIF's supportsReject
calls), on every backend pair: rejected data is gone from QIDO and WADO at once, its objects
are kept until the purge, and a restore brings it back byte-identical."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom.uid import generate_uid

from tests.api.test_audit import _event_id, _events, _studies
from tests.api.test_delete import _counts, _objects, _study
from tests.conftest import RunningServer, make_settings, private_server
from tests.helpers import stow

QUALITY = "113001%5EDCM"  # as OHIF sends it


def _instance_url(study: str, ds: Any) -> str:
    return f"/studies/{study}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"


def _retrieved(client: httpx.Client, url: str) -> tuple[bytes, Any]:
    whole = client.get(
        url, headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}
    )
    assert whole.status_code == 200, whole.text
    part = whole.content.split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n--", 1)[0]
    return part, client.get(url + "/metadata").json()


def test_reject_a_series_then_restore_it_byte_identical(
    client: httpx.Client, archive: RunningServer
) -> None:
    study, items = _study(client)
    ct = str(items[0].SeriesInstanceUID)
    first = _instance_url(study, items[0])
    before = _retrieved(client, first)
    answer = client.post(f"/studies/{study}/series/{ct}/reject/{QUALITY}")
    assert answer.status_code == 204, answer.text
    # Gone from every search and retrieval at once, as for a delete; the objects are kept.
    assert client.get(first).status_code == 404
    assert client.get(f"/studies/{study}/series/{ct}/metadata").status_code == 404
    assert client.get(f"/studies/{study}/series", params={"Modality": "CT"}).json() == []
    assert _counts(client, study) == (1, 2, ["MR"])
    assert _objects(archive) == 5
    assert archive.container.consistency.check().clean
    # Rejecting again: nothing such is stored.
    assert client.post(f"/studies/{study}/series/{ct}/reject/{QUALITY}").status_code == 404

    answer = client.post(f"/studies/{study}/series/{ct}/restore")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"restored": 3, "superseded": 0}
    assert _counts(client, study) == (2, 5, ["CT", "MR"])
    after = _retrieved(client, first)
    assert after[0] == before[0]
    assert after[1] == before[1]
    assert client.post(f"/studies/{study}/series/{ct}/restore").status_code == 404
    assert _objects(archive) == 5
    assert archive.container.consistency.check().clean

    # The change feed: a delete entry per rejected instance, then a create per restored one.
    entries = client.get("/changefeed", params={"limit": 100}).json()
    actions = [e["Action"] for e in entries if e["SeriesInstanceUid"] == ct]
    assert actions == ["create"] * 3 + ["delete"] * 3 + ["create"] * 3


def test_reject_the_study_and_revoke_with_dcm4chees_code(client: httpx.Client) -> None:
    study, _ = _study(client)
    assert client.post(f"/studies/{study}/reject/113039%5EDCM").status_code == 204
    assert client.get("/studies", params={"StudyInstanceUID": study}).json() == []
    assert client.get(f"/studies/{study}").status_code == 404
    answer = client.post(f"/studies/{study}/reject/REVOKE_REJECTION%5E99DCM4CHEE")
    assert answer.status_code == 200, answer.text
    assert answer.json()["restored"] == 5
    assert _counts(client, study) == (2, 5, ["CT", "MR"])


def test_one_instance_and_the_codes(client: httpx.Client) -> None:
    study, items = _study(client)
    one = _instance_url(study, items[3])
    for code in ("113037^DCM", "113038%5EDCM"):
        assert client.post(f"{one}/reject/{code}").status_code in (204, 404)
    assert client.get(one).status_code == 404
    assert _counts(client, study) == (2, 4, ["CT", "MR"])
    for bad in ("113001", "113001^SRT", "999999^DCM", "REVOKE"):
        answer = client.post(f"/studies/{study}/reject/{bad}")
        assert answer.status_code == 400, (bad, answer.text)
        assert "CID 7011" in answer.text
    assert client.post(f"/studies/{generate_uid()}/reject/{QUALITY}").status_code == 404
    assert client.post(f"/studies/{generate_uid()}/restore").status_code == 404
    assert client.post("/studies/not-a-uid/reject/113001^DCM").status_code == 400
    assert client.post(f"{one}/restore").json() == {"restored": 1, "superseded": 0}


def test_an_instance_stored_again_while_rejected_keeps_its_new_copy(
    client: httpx.Client, archive: RunningServer
) -> None:
    study, items = _study(client)
    assert client.post(f"/studies/{study}/reject/{QUALITY}").status_code == 204
    items[0].StudyDescription = "sent again"
    assert stow(client, items[:1]).status_code == 200
    answer = client.post(f"/studies/{study}/restore")
    assert answer.json() == {"restored": 4, "superseded": 1}
    [found] = client.get("/studies", params={"StudyInstanceUID": study}).json()
    assert found["00201208"]["Value"] == [5]
    # The superseded rejected copy is retired (the sweep removes it), not an orphan.
    report = archive.container.consistency.check(repair=True, grace_seconds=0)
    assert report.orphans == [] and report.missing == []
    assert _objects(archive) == 5


def test_rejected_data_is_purged_after_the_delay(tmp_path: Path, archive: RunningServer) -> None:
    if archive.backend != "sqlite":
        pytest.skip("the purge uses the same statements on both databases; run once")
    settings = make_settings(tmp_path, rejected_retention_seconds=3600)
    with private_server(settings) as (client, container):
        study, _ = _study(client)
        assert client.post(f"/studies/{study}/reject/{QUALITY}").status_code == 204
        assert container.reject.purge() == 0
        assert sum(1 for _ in container.blobs.iter_keys()) == 5
        assert container.reject.purge(now=time.time() + 3601) == 5
        assert sum(1 for _ in container.blobs.iter_keys()) == 0
        assert client.post(f"/studies/{study}/restore").status_code == 404
        assert container.consistency.check().clean


def test_reject_needs_the_delete_scope_and_is_audited(
    tmp_path: Path, archive: RunningServer
) -> None:
    if archive.backend != "sqlite":
        pytest.skip("access control and the audit trail do not depend on the backends")
    settings = make_settings(tmp_path, auth="api-key", audit="table")
    with private_server(settings) as (client, container):
        writer = container.access.create_key("writer", {"read", "write"}).secret
        deleter = container.access.create_key("deleter", {"read", "delete"}).secret
        admin = {"X-API-Key": container.access.create_key("admin", {"admin"}).secret}
        client.headers["X-API-Key"] = writer
        study, _ = _study(client)
        assert client.post(f"/studies/{study}/reject/{QUALITY}").status_code == 403
        client.headers["X-API-Key"] = deleter
        assert client.post(f"/studies/{study}/reject/{QUALITY}").status_code == 204
        client.headers["X-API-Key"] = writer
        assert client.post(f"/studies/{study}/restore").status_code == 403
        client.headers["X-API-Key"] = deleter
        assert client.post(f"/studies/{study}/restore").status_code == 200
        accessed = [m for m in _events(client, admin, container) if _event_id(m) == "110103"]
        assert [m["EventIdentification"]["EventActionCode"] for m in accessed] == ["D", "U"]
        assert all(_studies(m) == [study] for m in accessed)
