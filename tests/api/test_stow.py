"""STOW-RS (PS3.18 10.5) through the HTTP API, on every backend."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator

import httpx
import numpy as np
import pytest
from pydicom.uid import generate_uid

from dicomweb_server.dicom import uids
from dicomweb_server.services.store import DuplicatePolicy
from tests.conftest import RunningServer
from tests.factories import (
    AS_RECEIVED,
    BUNDLED,
    bare_bytes,
    bundled_bytes,
    make_instance,
    parse,
    to_bytes,
)
from tests.helpers import multipart_body, parts, sequence, stow, values

REFERENCED = "00081199"
FAILED = "00081198"
FAILURE_REASON = "00081197"
ERROR_COMMENT = "00000902"


def retrieve_one(client: httpx.Client, study: str, series: str, instance: str) -> bytes:
    """The instance as stored (transfer-syntax=*; without it compressed objects are decoded)."""
    r = client.get(
        f"/studies/{study}/series/{series}/instances/{instance}",
        headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
    )
    assert r.status_code == 200, r.text
    (only,) = parts(r)
    return only[1]


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_bundled_files_are_stored_and_come_back(client: httpx.Client, name: str) -> None:
    sent = bundled_bytes(name)
    r = stow(client, [sent])
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/dicom+json"
    (item,) = sequence(r, REFERENCED)
    ds = parse(sent)
    assert values(item, "00081155") == [ds.SOPInstanceUID]
    assert values(item, "00081150") == [ds.SOPClassUID]
    got = retrieve_one(client, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    if name in AS_RECEIVED:
        assert got == sent
    else:
        # PS3.18 8.7.3: converted at ingest to Explicit VR Little Endian, pixels unchanged.
        back = parse(got)
        assert back.file_meta.TransferSyntaxUID == uids.EXPLICIT_VR_LITTLE_ENDIAN
        assert np.array_equal(back.pixel_array, ds.pixel_array)


def test_retrieve_url_points_at_the_stored_study(client: httpx.Client) -> None:
    ds = make_instance()
    r = stow(client, [ds])
    assert r.status_code == 200
    study_url = values(r.json(), "00081190")[0]
    assert study_url == f"{str(client.base_url).rstrip('/')}/studies/{ds.StudyInstanceUID}"
    instance_url = values(sequence(r, REFERENCED)[0], "00081190")[0]
    assert client.get(instance_url + "/metadata").status_code == 200


def test_bare_data_set_is_completed_into_a_part10_file(client: httpx.Client) -> None:
    ds = make_instance()
    r = stow(client, [bare_bytes(ds)])
    assert r.status_code == 200, r.text
    got = retrieve_one(client, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    assert got[128:132] == b"DICM"
    back = parse(got)
    assert back.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert back.file_meta.TransferSyntaxUID == uids.EXPLICIT_VR_LITTLE_ENDIAN
    # The data set itself is kept byte for byte.
    assert got.endswith(bare_bytes(ds))


def test_many_instances_in_one_request_update_aggregates(client: httpx.Client) -> None:
    study = generate_uid()
    ct, mr = generate_uid(), generate_uid()
    items = [make_instance(study, ct, modality="CT") for _ in range(3)]
    items += [make_instance(study, mr, modality="MR", series_number=2) for _ in range(2)]
    r = stow(client, items, study=study)
    assert r.status_code == 200, r.text
    assert len(sequence(r, REFERENCED)) == 5
    (found,) = client.get("/studies", params={"StudyInstanceUID": study}).json()
    assert values(found, "00201206") == [2]
    assert values(found, "00201208") == [5]
    assert values(found, "00080061") == ["CT", "MR"]
    series = client.get(f"/studies/{study}/series").json()
    assert sorted(values(s, "00201209")[0] for s in series) == [2, 3]


@pytest.fixture
def duplicate_policy(archive: RunningServer) -> Iterator[Callable[[str], None]]:
    """Switch the running server's duplicate policy (DICOMWEB_DUPLICATE_POLICY) for a test."""
    store = archive.container.store
    before = store.duplicate_policy
    yield lambda policy: setattr(store, "duplicate_policy", DuplicatePolicy(policy))
    store.duplicate_policy = before


def test_duplicate_ignore_keeps_the_first_copy_with_a_warning(client: httpx.Client) -> None:
    ds = make_instance()
    first = to_bytes(ds)
    assert stow(client, [first]).status_code == 200
    ds.PatientID = "CHANGED"
    r = stow(client, [ds])
    assert r.status_code == 202
    (item,) = sequence(r, REFERENCED)
    assert values(item, "00081196") == [0xB00E]
    assert "first copy is kept" in values(item, ERROR_COMMENT)[0]
    assert len(client.get("/instances", params={"SOPInstanceUID": ds.SOPInstanceUID}).json()) == 1
    meta = client.get(f"/studies/{ds.StudyInstanceUID}/metadata").json()
    assert values(meta[0], "00100020") == ["PID-1"]
    assert (
        retrieve_one(client, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID) == first
    )


def test_duplicate_reject_fails_and_changes_nothing(
    client: httpx.Client, duplicate_policy: Callable[[str], None]
) -> None:
    duplicate_policy("reject")
    ds = make_instance()
    first = to_bytes(ds)
    assert stow(client, [first]).status_code == 200
    ds.PatientID = "CHANGED"
    r = stow(client, [ds])
    assert r.status_code == 409
    (item,) = failed_items(r)
    assert values(item, FAILURE_REASON) == [0x0111]
    assert (
        retrieve_one(client, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID) == first
    )


def test_duplicate_overwrite_replaces_object_and_metadata(
    client: httpx.Client, archive: RunningServer, duplicate_policy: Callable[[str], None]
) -> None:
    duplicate_policy("overwrite")
    ds = make_instance(frames=2)
    assert stow(client, [ds]).status_code == 200
    ds.PatientID = "CHANGED"
    ds.InstanceNumber = 99
    second = to_bytes(ds)
    r = stow(client, [second])
    assert r.status_code == 200, r.text
    assert (
        retrieve_one(client, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID) == second
    )
    (meta,) = client.get(f"/studies/{ds.StudyInstanceUID}/metadata").json()
    assert values(meta, "00200013") == [99]
    (found,) = client.get(f"/studies/{ds.StudyInstanceUID}/instances").json()
    assert values(found, "00200013") == [99]
    (study,) = client.get("/studies", params={"StudyInstanceUID": ds.StudyInstanceUID}).json()
    assert values(study, "00201208") == [1]
    # Exactly one object remains in storage: the old copy was removed after the switch.
    # The replaced copy is retired, not deleted at once: a reader that looked it up just
    # before the replacement may still be reading it (item 7 of the hardening issue).
    stored = [key for key, _ in archive.container.blobs.iter_keys()]
    assert len(stored) == 2
    report = archive.container.consistency.check()
    assert report.orphans == [] and report.missing == []
    # Past the grace period, the sweep removes it.
    archive.container.consistency.check(repair=True, grace_seconds=0)
    stored = [key for key, _ in archive.container.blobs.iter_keys()]
    assert len(stored) == 1


def test_same_instance_uid_under_another_series_is_always_a_failure(
    client: httpx.Client, duplicate_policy: Callable[[str], None]
) -> None:
    for policy in ("ignore", "overwrite"):
        duplicate_policy(policy)
        ds = make_instance()
        assert stow(client, [ds]).status_code == 200
        moved = make_instance(ds.StudyInstanceUID, sop_instance_uid=ds.SOPInstanceUID)
        r = stow(client, [moved])
        assert r.status_code == 409
        assert "another series" in values(failed_items(r)[0], ERROR_COMMENT)[0]


def run_clients(count: int, client_work: Callable[[int], None]) -> None:
    """Run `count` clients at once, each in its own thread, and wait for all."""
    threads = [threading.Thread(target=client_work, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def assert_study_counts(client: httpx.Client, study: str, per_series: list[int]) -> None:
    """The study's aggregates and listings agree with the instances per series expected."""
    total = sum(per_series)
    (found,) = client.get("/studies", params={"StudyInstanceUID": study}).json()
    assert values(found, "00201208") == [total]
    assert values(found, "00201206") == [len(per_series)]
    listed = client.get(f"/studies/{study}/series").json()
    assert sorted(values(s, "00201209")[0] for s in listed) == sorted(per_series)
    assert len(client.get(f"/studies/{study}/instances").json()) == total


def test_concurrent_stores_into_one_study_keep_aggregates_right(client: httpx.Client) -> None:
    study = generate_uid()
    series = [generate_uid() for _ in range(4)]
    errors: list[str] = []

    def upload(worker: int) -> None:
        with httpx.Client(base_url=str(client.base_url), timeout=60) as c:
            for _ in range(3):
                items = [
                    make_instance(study, series[worker % 4], modality="CT"),
                    make_instance(study, series[(worker + 1) % 4], modality="MR"),
                ]
                r = stow(c, items, study=study)
                if r.status_code != 200:
                    errors.append(r.text)

    run_clients(8, upload)
    assert errors == []
    assert_study_counts(client, study, [12, 12, 12, 12])


# -- bad input: a clear 4xx, the reason in the body, nothing half-stored ------------------------


def failed_items(r: httpx.Response) -> list[dict]:
    return sequence(r, FAILED)


def test_non_dicom_part_is_refused_with_reason(client: httpx.Client) -> None:
    r = stow(client, [b"this is not a DICOM object at all, just text" * 10])
    assert r.status_code == 409
    (item,) = failed_items(r)
    assert values(item, FAILURE_REASON) == [0xC000]
    assert "not a DICOM object" in values(item, ERROR_COMMENT)[0]
    assert client.get("/studies").json() == []


def test_truncated_object_is_refused(client: httpx.Client) -> None:
    data = to_bytes(make_instance(rows=64, columns=64))
    r = stow(client, [data[: len(data) - 100]])
    assert r.status_code == 409
    (item,) = failed_items(r)
    assert values(item, FAILURE_REASON) == [0xC000]
    assert "truncated" in values(item, ERROR_COMMENT)[0]
    assert client.get("/studies").json() == []


def test_part_missing_sop_instance_uid_is_refused(client: httpx.Client) -> None:
    ds = make_instance()
    del ds.SOPInstanceUID
    r = stow(client, [to_bytes(ds)])
    assert r.status_code == 409
    (item,) = failed_items(r)
    assert values(item, FAILURE_REASON) == [0xA900]
    assert "SOP Instance UID" in values(item, ERROR_COMMENT)[0]


def test_study_uid_mismatch_on_study_url(client: httpx.Client) -> None:
    ds = make_instance()
    other = generate_uid()
    r = stow(client, [ds], study=other)
    assert r.status_code == 409
    (item,) = failed_items(r)
    assert values(item, "00081155") == [ds.SOPInstanceUID]
    assert "does not match" in values(item, ERROR_COMMENT)[0]
    assert client.get("/studies").json() == []


def test_some_stored_some_failed_is_202(client: httpx.Client) -> None:
    good = make_instance()
    r = stow(client, [good, b"garbage" * 50])
    assert r.status_code == 202
    assert len(sequence(r, REFERENCED)) == 1
    assert len(failed_items(r)) == 1


def test_wrong_media_type_is_415(client: httpx.Client) -> None:
    body, _ = multipart_body([to_bytes(make_instance())])
    for content_type in (
        "application/json",
        'multipart/related; type="application/pdf"; boundary=x',
        "text/plain",
    ):
        r = client.post("/studies", content=body, headers={"Content-Type": content_type})
        assert r.status_code == 415, content_type
        assert r.json()["error"]
    r = client.post("/studies", content=body)
    assert r.status_code == 415


def test_missing_boundary_is_400(client: httpx.Client) -> None:
    r = client.post(
        "/studies",
        content=b"x",
        headers={"Content-Type": 'multipart/related; type="application/dicom"'},
    )
    assert r.status_code == 400
    assert "boundary" in r.json()["error"]


def test_body_without_closing_boundary_stores_nothing_half(client: httpx.Client) -> None:
    first, second = make_instance(), make_instance()
    body, content_type = multipart_body([to_bytes(first), to_bytes(second)])
    cut = body[: len(body) - 500]
    r = client.post("/studies", content=cut, headers={"Content-Type": content_type})
    # The first part arrived whole and is stored; the cut one is not.
    assert r.status_code == 202
    assert [values(i, "00081155") for i in sequence(r, REFERENCED)] == [[first.SOPInstanceUID]]
    assert len(client.get("/instances").json()) == 1


def test_empty_or_garbled_body_is_400(client: httpx.Client) -> None:
    for body in (b"", b"no boundary anywhere in this body"):
        r = client.post(
            "/studies",
            content=body,
            headers={"Content-Type": 'multipart/related; type="application/dicom"; boundary=abc'},
        )
        assert r.status_code == 400, body
    assert client.get("/studies").json() == []


@pytest.mark.parametrize("bad", ["..%2F..%2Fetc", "1.2.3'%20OR%20'1'='1", "1.2.abc", "1..2"])
def test_bad_study_uid_in_url_is_400(client: httpx.Client, bad: str) -> None:
    body, content_type = multipart_body([to_bytes(make_instance())])
    r = client.post(f"/studies/{bad}", content=body, headers={"Content-Type": content_type})
    assert r.status_code in (400, 404)
    assert r.json()["error"]


@pytest.mark.parametrize(
    ("content_type", "preamble", "epilogue"),
    [
        ('multipart/related; type="application/dicom"; boundary=XyZ', b"", b""),
        ('multipart/related; type=application/dicom; boundary="XyZ"', b"", b""),
        ("multipart/related; boundary=XyZ", b"", b""),  # no type: the parts are typed
        (
            'multipart/related; type="application/dicom"; boundary=XyZ',
            b"This preamble is to be ignored (RFC 2046 5.1.1).\r\n",
            b"and an epilogue\r\n",
        ),
    ],
)
def test_request_forms(
    client: httpx.Client, content_type: str, preamble: bytes, epilogue: bytes
) -> None:
    items = [make_instance(), make_instance()]
    body = preamble
    for ds in items:
        body += b"--XyZ\r\nContent-Type: application/dicom\r\n\r\n" + to_bytes(ds) + b"\r\n"
    body += b"--XyZ--\r\n" + epilogue

    def chunks() -> Iterator[bytes]:  # chunked, no Content-Length
        for i in range(0, len(body), 1000):
            yield body[i : i + 1000]

    r = client.post("/studies", content=chunks(), headers={"Content-Type": content_type})
    assert r.status_code == 200, r.text
    assert len(sequence(r, REFERENCED)) == 2


def test_part_of_another_type_fails_alone(client: httpx.Client) -> None:
    good = to_bytes(make_instance())
    body = (
        b"--b\r\nContent-Type: application/dicom\r\n\r\n" + good + b"\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b--\r\n"
    )
    r = client.post(
        "/studies", content=body, headers={"Content-Type": "multipart/related; boundary=b"}
    )
    assert r.status_code == 202
    (item,) = failed_items(r)
    assert "text/plain" in values(item, ERROR_COMMENT)[0]


def test_unknown_transfer_syntax_is_refused(client: httpx.Client) -> None:
    ds = make_instance()
    ds.file_meta.TransferSyntaxUID = "1.2.3.4.5.6"
    buf = io.BytesIO()
    ds.save_as(buf, implicit_vr=False, little_endian=True, enforce_file_format=True)
    data = buf.getvalue()
    r = stow(client, [data])
    assert r.status_code == 409
    (item,) = failed_items(r)
    assert values(item, FAILURE_REASON) == [0xC122]
    assert "1.2.3.4.5.6 is not supported" in values(item, ERROR_COMMENT)[0]


def test_eight_clients_storing_overlapping_instances(client: httpx.Client) -> None:
    """Every client sends the same instances (retries, several gateways): each is kept once."""
    study = generate_uid()
    series = [generate_uid(), generate_uid()]
    shared = [to_bytes(make_instance(study, series[i % 2], modality="CT")) for i in range(12)]
    errors: list[str] = []

    def upload(worker: int) -> None:
        with httpx.Client(base_url=str(client.base_url), timeout=60) as c:
            order = shared[worker % 3 :] + shared[: worker % 3]
            for i in range(0, len(order), 4):
                r = stow(c, order[i : i + 4], study=study)
                if r.status_code not in (200, 202) or "00081198" in r.json():
                    errors.append(r.text)

    run_clients(8, upload)
    assert errors == []
    assert_study_counts(client, study, [6, 6])
