"""Delete (issue 18; outside PS3.18, as Microsoft's DICOM service has it): a study, a
series or an instance, on every backend pair. QIDO and WADO answer 404 at once, the study's
aggregates stay exact, the objects go, the change feed gets a `delete` entry per instance,
and the audit trail a DICOM Study Deleted message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom.uid import generate_uid

from tests.api.test_audit import _event_id, _events, _studies
from tests.conftest import RunningServer, make_settings, private_server
from tests.factories import make_instance
from tests.helpers import stow


def _study(client: httpx.Client) -> tuple[str, list[Any]]:
    study = generate_uid()
    ct, mr = generate_uid(), generate_uid()
    items = [make_instance(study_uid=study, series_uid=ct, modality="CT") for _ in range(3)]
    items += [make_instance(study_uid=study, series_uid=mr, modality="MR") for _ in range(2)]
    answer = stow(client, items)
    assert answer.status_code == 200, answer.text
    return study, items


def _counts(client: httpx.Client, study: str) -> tuple[int, int, list[str]]:
    [found] = client.get("/studies", params={"StudyInstanceUID": study}).json()
    return (
        found["00201206"]["Value"][0],
        found["00201208"]["Value"][0],
        found["00080061"].get("Value", []),
    )


def _objects(archive: RunningServer) -> int:
    return sum(1 for _ in archive.container.blobs.iter_keys())


def test_delete_an_instance_a_series_then_the_study(
    client: httpx.Client, archive: RunningServer
) -> None:
    study, items = _study(client)
    assert _objects(archive) == 5
    ct, mr = str(items[0].SeriesInstanceUID), str(items[3].SeriesInstanceUID)
    first = f"/studies/{study}/series/{ct}/instances/{items[0].SOPInstanceUID}"
    assert client.delete(first).status_code == 204
    assert client.get(first).status_code == 404
    assert client.get(first + "/metadata").status_code == 404
    assert client.delete(first).status_code == 404
    assert _counts(client, study) == (2, 4, ["CT", "MR"])
    assert len(client.get(f"/studies/{study}/series/{ct}/instances").json()) == 2
    assert _objects(archive) == 4
    # The only MR series: ModalitiesInStudy loses MR.
    assert client.delete(f"/studies/{study}/series/{mr}").status_code == 204
    assert _counts(client, study) == (1, 2, ["CT"])
    assert client.get(f"/studies/{study}/series/{mr}/metadata").status_code == 404
    assert client.delete(f"/studies/{study}").status_code == 204
    assert client.get("/studies", params={"StudyInstanceUID": study}).json() == []
    assert client.get(f"/studies/{study}").status_code == 404
    assert client.delete(f"/studies/{study}").status_code == 404
    assert _objects(archive) == 0
    # The same UIDs may be stored again: the study is new.
    assert stow(client, items[:1]).status_code == 200
    assert _counts(client, study) == (1, 1, ["CT"])


def test_the_change_feed_gets_a_delete_entry_per_instance(client: httpx.Client) -> None:
    study, items = _study(client)
    assert client.delete(f"/studies/{study}").status_code == 204
    entries = client.get("/changefeed").json()
    deletes = [e for e in entries if e["Action"] == "delete"]
    assert sorted(e["SopInstanceUid"] for e in deletes) == sorted(
        str(ds.SOPInstanceUID) for ds in items
    )
    assert {e["State"] for e in entries} == {"deleted"}
    assert max(e["Sequence"] for e in entries if e["Action"] == "create") < min(
        e["Sequence"] for e in deletes
    )


def test_unknown_and_malformed_targets(client: httpx.Client) -> None:
    study, items = _study(client)
    assert client.delete(f"/studies/{generate_uid()}").status_code == 404
    assert client.delete(f"/studies/{study}/series/{generate_uid()}").status_code == 404
    other = f"/studies/{study}/series/{items[0].SeriesInstanceUID}/instances/{generate_uid()}"
    assert client.delete(other).status_code == 404
    assert client.delete("/studies/not-a-uid").status_code == 400
    assert _counts(client, study) == (2, 5, ["CT", "MR"])


def test_delete_needs_its_scope_and_is_audited(tmp_path: Path, archive: RunningServer) -> None:
    if archive.backend != "sqlite":
        pytest.skip("access control and the audit trail do not depend on the backends")
    settings = make_settings(tmp_path, auth="api-key", audit="table")
    with private_server(settings) as (client, container):
        writer = container.access.create_key("writer", {"read", "write"}).secret
        deleter = container.access.create_key("deleter", {"read", "delete"}).secret
        admin = {"X-API-Key": container.access.create_key("admin", {"admin"}).secret}
        client.headers["X-API-Key"] = writer
        study, _ = _study(client)
        assert client.delete(f"/studies/{study}").status_code == 403
        client.headers["X-API-Key"] = deleter
        assert client.delete(f"/studies/{study}").status_code == 204
        deleted = [m for m in _events(client, admin, container) if _event_id(m) == "110105"]
        assert len(deleted) == 1 and _studies(deleted[0]) == [study]
        assert deleted[0]["EventIdentification"]["EventActionCode"] == "D"
