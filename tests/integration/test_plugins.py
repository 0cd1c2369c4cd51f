"""Extension points (issue 18): a separately installed package (tests/plugins: the package and
its dist-info, found through importlib.metadata as an installed one would be) adds a blob
store, an ingest step and an event consumer by entry points, each chosen by a setting."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom.uid import generate_uid

from dicomweb_server.container import BackendUnusable, build_container
from tests.conftest import make_settings, private_server
from tests.factories import make_instance, parse
from tests.helpers import stow

PLUGINS = Path(__file__).parents[1] / "plugins"


@pytest.fixture
def example() -> Iterator[Any]:
    """The example plugin installed (its folder on sys.path), with clean records."""
    sys.path.insert(0, str(PLUGINS))
    import example_plugin

    example_plugin.STORES.clear()
    example_plugin.RECORDED.clear()
    try:
        yield example_plugin
    finally:
        sys.path.remove(str(PLUGINS))


def _whole(client: httpx.Client, ds: Any) -> bytes:
    url = f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/"
    answer = client.get(
        url + str(ds.SOPInstanceUID), headers={"Accept": "application/dicom; transfer-syntax=*"}
    )
    assert answer.status_code == 200, answer.text
    return answer.content


def test_a_blob_store_plugin_holds_the_objects(example: Any, tmp_path: Path) -> None:
    with private_server(make_settings(tmp_path, blob_store="example-memory")) as (client, _):
        ds = make_instance()
        assert stow(client, [ds]).status_code == 200
        (store,) = example.STORES
        (key,) = store.objects
        assert str(ds.SOPInstanceUID) in key
        assert _whole(client, ds) == store.objects[key]
        assert not (tmp_path / "objects").exists() or not any((tmp_path / "objects").iterdir())
        assert client.delete(f"/studies/{ds.StudyInstanceUID}").status_code == 204
        assert store.objects == {}


def test_an_ingest_step_plugin_changes_and_refuses_objects(example: Any, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, ingest_steps="example-stamp")
    with private_server(settings) as (client, _):
        ds = make_instance()
        answer = stow(client, [ds])
        assert answer.status_code == 202, answer.text  # a warning: elements were changed
        assert "stamped by the example plugin's ingest step" in answer.text
        assert parse(_whole(client, ds)).InstitutionalDepartmentName == example.STAMP
        refused = make_instance()
        refused.PatientID = example.REFUSED_PATIENT
        answer = stow(client, [refused])
        assert answer.status_code == 409, answer.text
        assert "refuses this patient's objects" in answer.text
        assert client.get("/studies", params={"PatientID": example.REFUSED_PATIENT}).json() == []


def test_a_failing_step_refuses_the_object_naming_it(example: Any, tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        ingest_steps="example-stamp,example-broken",
        deidentify=True,
        deidentify_key="k",
    )
    with private_server(settings) as (client, container):
        assert [s.name for s in container.store.steps] == [
            "deidentify",
            "example-stamp",
            "example-broken",
        ]
        answer = stow(client, [make_instance()])
        assert answer.status_code == 409
        assert "the ingest step example-broken failed: RuntimeError" in answer.text
        assert "a bug in the plugin" not in answer.text


def test_an_event_consumer_plugin_gets_each_entry_once_across_processes(
    example: Any, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, event_consumers="example-recorder", changes_poll_seconds=0.1)
    # Two server processes on one database (two containers here, as two processes would be).
    with private_server(settings) as (one, _), private_server(settings) as (two, _):
        study = generate_uid()
        items = [make_instance(study_uid=study) for _ in range(6)]
        assert stow(one, items[:3]).status_code == 200
        assert stow(two, items[3:]).status_code == 200
        deadline = time.monotonic() + 20
        while len(example.RECORDED) < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # a few more polls: nothing is handed over twice
        told = [c for c in example.RECORDED if c.action == "create"]
        assert sorted(c.sop_uid for c in told) == sorted(str(i.SOPInstanceUID) for i in items)
        sequences = [c.sequence for c in example.RECORDED]
        assert sequences == sorted(set(sequences))


def test_an_unknown_plugin_is_refused_at_start_naming_those_installed(
    example: Any, tmp_path: Path
) -> None:
    with pytest.raises(BackendUnusable, match="example-memory"):
        build_container(make_settings(tmp_path, blob_store="nowhere"))
    with pytest.raises(BackendUnusable, match="DICOMWEB_INGEST_STEPS=nothing"):
        build_container(make_settings(tmp_path, ingest_steps="nothing"))
