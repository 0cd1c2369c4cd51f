"""The SQL index on its own, one class per port, on SQLite and on PostgreSQL: a failure here
points at the SQL, not at a route."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine

from dicomweb_server.dicom.attributes import Level
from dicomweb_server.dicom.matching import parse_search
from dicomweb_server.index.sql.consistency import SqlConsistencyIndex
from dicomweb_server.index.sql.database import Database
from dicomweb_server.index.sql.engine import make_engine
from dicomweb_server.index.sql.migrate import upgrade
from dicomweb_server.index.sql.retrieve import SqlRetrieveIndex
from dicomweb_server.index.sql.search import SqlSearchIndex
from dicomweb_server.index.sql.store import SqlStoreIndex
from dicomweb_server.services.ports import (
    AddOutcome,
    AddResult,
    NewInstance,
    PixelLayout,
    SearchQuery,
    StoredInstance,
)
from tests.integration.test_migrations import pg_schema

CT, MR = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4"
EXPLICIT = "1.2.840.10008.1.2.1"


def _v(vr: str, *values: Any) -> dict[str, Any]:
    return {"vr": vr, "Value": list(values)}


def record(
    study: str,
    series: str,
    sop: str,
    *,
    modality: str = "CT",
    sop_class: str = CT,
    patient: str = "DOE^JOHN",
    institution: str = "GENERAL HOSPITAL",
    number: int = 1,
    key: str | None = None,
) -> NewInstance:
    st = {
        "0020000D": _v("UI", study),
        "00100010": _v("PN", {"Alphabetic": patient}),
        "00100020": _v("LO", "PID-1"),
        "00080020": _v("DA", "20240102"),
    }
    se = {
        "0020000E": _v("UI", series),
        "00080060": _v("CS", modality),
        "00200011": _v("IS", 1),
        "00080080": _v("LO", institution),
    }
    inst = {
        "00080018": _v("UI", sop),
        "00080016": _v("UI", sop_class),
        "00200013": _v("IS", number),
    }
    metadata = {**st, **se, **inst, "7FE00010": {"vr": "OW", "BulkDataURI": "/b"}}
    return NewInstance(
        StoredInstance(study, series, sop, sop_class, EXPLICIT, key or f"k/{sop}", 1000),
        st,
        se,
        inst,
        orjson.dumps(metadata).decode(),
        PixelLayout([[(200, 400)], [(600, 400)]], None, 2, {"7FE00010": (200, 800)}),
    )


class Index:
    def __init__(self, engine: Engine) -> None:
        db = Database(engine)
        self.store = SqlStoreIndex(db)
        self.search = SqlSearchIndex(db)
        self.retrieve = SqlRetrieveIndex(db)
        self.consistency = SqlConsistencyIndex(db)


@pytest.fixture(params=["sqlite", "postgresql"])
def index(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Index]:
    if request.param == "postgresql":
        url = pg_schema(request.getfixturevalue("pg_url"), "index_adapter")
    else:
        url = f"sqlite:///{tmp_path / 'index.sqlite3'}"
    upgrade(url)
    engine = make_engine(url, 4, 4, 10)
    try:
        yield Index(engine)
    finally:
        engine.dispose()


def one_by_one(index: Index) -> Callable[..., AddResult]:
    """Each instance indexed in a batch of its own."""

    def add(instance: NewInstance, replace: bool = False) -> AddResult:
        (result,) = index.store.add_instances([instance], replace=replace)
        return result

    return add


def _search(index: Index, level: Level, *params: tuple[str, str], **kw: Any) -> list[str]:
    matches = parse_search(params).matches
    found = index.search.search(SearchQuery(level, matches, **kw))
    return [r.sop_instance_uid or r.series_uid or r.study_uid for r in found]


def test_store_outcomes_and_aggregates(index: Index) -> None:
    add = one_by_one(index)
    assert add(record("1.1", "1.1.1", "1.1.1.1")).outcome is AddOutcome.STORED
    assert add(record("1.1", "1.1.1", "1.1.1.2", number=2)).outcome is AddOutcome.STORED
    assert add(record("1.1", "1.1.2", "1.1.2.1", modality="MR", sop_class=MR)).outcome is (
        AddOutcome.STORED
    )
    assert add(record("1.1", "1.1.1", "1.1.1.1")).outcome is AddOutcome.DUPLICATE
    replaced = add(record("1.1", "1.1.1", "1.1.1.1", key="k/new"), replace=True)
    assert replaced.outcome is AddOutcome.REPLACED and replaced.replaced_key == "k/1.1.1.1"
    # A series of another study, an instance of another series: conflicts, nothing changed.
    assert add(record("1.2", "1.1.1", "1.2.1.1")).outcome is AddOutcome.CONFLICT
    assert add(record("1.1", "1.1.2", "1.1.1.2")).outcome is AddOutcome.CONFLICT
    (study,) = index.search.search(SearchQuery(Level.STUDY, []))
    aggregates = study.aggregates
    assert aggregates.modalities_in_study == ["CT", "MR"]
    assert aggregates.sop_classes_in_study == sorted([CT, MR])
    assert (aggregates.study_related_series, aggregates.study_related_instances) == (2, 3)
    assert study.aggregates.to_json()["00080061"] == {"vr": "CS", "Value": ["CT", "MR"]}
    series = index.search.search(SearchQuery(Level.SERIES, [], study_uid="1.1"))
    assert [s.aggregates.series_related_instances for s in series] == [2, 1]
    # Retired copies are listed in the replacing transaction, and forgotten on request.
    assert set(index.consistency.retired()) == {"k/1.1.1.1"}
    assert index.consistency.blob_keys() == {"k/new", "k/1.1.1.2", "k/1.1.2.1"}
    index.consistency.forget_retired("k/1.1.1.1")
    assert index.consistency.retired() == {}


def test_a_batch_is_one_transaction_whose_failed_instances_change_nothing(index: Index) -> None:
    one_by_one(index)(record("5.1", "5.1.1", "5.1.1.1"))
    labelled = replace(record("5.3", "5.3.1", "5.3.1.1"), labels=frozenset({"north"}))
    one_by_one(index)(labelled)
    batch = [
        record("5.1", "5.1.1", "5.1.1.2", number=2),
        record("5.1", "5.1.1", "5.1.1.1"),  # a duplicate
        record("5.2", "5.1.1", "5.2.1.1"),  # its series is in study 5.1: a new study undone
        record("5.2", "5.2.1", "5.1.1.2"),  # its instance is in 5.1 (earlier in this batch)
        replace(record("5.3", "5.3.1", "5.3.1.2"), within=frozenset({"south"})),
        record("5.1", "5.1.2", "5.1.2.1", modality="MR", sop_class=MR),
        record("5.2", "5.2.2", "5.2.2.1"),
        record("5.1", "5.1.2", "5.1.2.2", modality="MR", sop_class=MR),
    ]
    outcomes = [r.outcome for r in index.store.add_instances(batch)]
    assert outcomes == [
        AddOutcome.STORED,
        AddOutcome.DUPLICATE,
        AddOutcome.CONFLICT,
        AddOutcome.CONFLICT,
        AddOutcome.REFUSED,
        AddOutcome.STORED,
        AddOutcome.STORED,
        AddOutcome.STORED,
    ]
    found = {s.study_uid: s.aggregates for s in index.search.search(SearchQuery(Level.STUDY, []))}
    assert set(found) == {"5.1", "5.2", "5.3"}
    assert (found["5.1"].study_related_series, found["5.1"].study_related_instances) == (2, 4)
    assert found["5.1"].modalities_in_study == ["CT", "MR"]
    assert found["5.1"].sop_classes_in_study == sorted([CT, MR])
    # Study 5.2 holds only the instance that was stored; the one undone left no series.
    assert (found["5.2"].study_related_series, found["5.2"].study_related_instances) == (1, 1)
    assert (found["5.3"].study_related_series, found["5.3"].study_related_instances) == (1, 1)
    series = index.search.search(SearchQuery(Level.SERIES, [], study_uid="5.1"))
    assert [s.aggregates.series_related_instances for s in series] == [2, 2]
    assert len(_search(index, Level.INSTANCE)) == 6


def test_matching_on_columns_json_and_children(index: Index) -> None:
    add = one_by_one(index)
    add(record("2.1", "2.1.1", "2.1.1.1", patient="DOE^JANE", institution="NORTH CLINIC"))
    add(record("2.2", "2.2.1", "2.2.1.1", patient="ROE^RICHARD", modality="MR"))
    add(record("2.2", "2.2.2", "2.2.2.1", patient="ROE^RICHARD", modality="SR"))
    assert _search(index, Level.STUDY, ("PatientName", "doe*")) == ["2.1"]
    assert _search(index, Level.STUDY, ("PatientName", "rich*"), fuzzy=True) == ["2.2"]
    assert _search(index, Level.STUDY, ("ModalitiesInStudy", "SR")) == ["2.2"]
    assert _search(index, Level.STUDY, ("ModalitiesInStudy", "CT,MR")) == ["2.1", "2.2"]
    # No column: the stored JSON of the entity holding the attribute (series here).
    assert _search(index, Level.SERIES, ("InstitutionName", "NORTH*")) == ["2.1.1"]
    assert _search(index, Level.SERIES, ("InstitutionName", "GENERAL HOSPITAL")) == [
        "2.2.1",
        "2.2.2",
    ]
    assert _search(index, Level.INSTANCE, ("Modality", "MR"), ("PatientID", "PID-1")) == ["2.2.1.1"]
    assert _search(index, Level.STUDY, ("StudyDate", "20240101-20240103")) == ["2.1", "2.2"]
    assert _search(index, Level.STUDY, limit=1, offset=1) == ["2.2"]
    assert index.search.exists("2.2", "2.2.2") and not index.search.exists("2.2", "2.1.1")


def test_retrieve_instances_metadata_and_layouts(index: Index) -> None:
    for n in (3, 1, 2):
        one_by_one(index)(record("3.1", "3.1.1", f"3.1.1.{n}", number=n))
    instances = index.retrieve.instances("3.1")
    assert [i.sop_instance_uid for i in instances] == ["3.1.1.1", "3.1.1.2", "3.1.1.3"]
    ((key, text),) = index.retrieve.metadata("3.1", "3.1.1", "3.1.1.2")
    meta = orjson.loads(text)
    assert key == "k/3.1.1.2"
    assert meta["00080018"]["Value"] == ["3.1.1.2"] and meta["7FE00010"]["BulkDataURI"] == "/b"
    pixels = index.retrieve.pixels("3.1", "3.1.1", "3.1.1.3")
    assert pixels is not None
    assert pixels.layout.frames == [[(200, 400)], [(600, 400)]]
    assert pixels.layout.bulk_data == {"7FE00010": (200, 800)}
    layouts = index.retrieve.layouts("3.1")
    assert [p.instance.sop_instance_uid for p in layouts] == [i.sop_instance_uid for i in instances]
    assert index.retrieve.pixels("3.1", "3.1.1", "9.9") is None
    assert index.retrieve.instances("9.9") == []


def test_the_compiler_serves_any_entity_that_keeps_dicom_json(tmp_path: Path) -> None:
    """A table outside the study/series/instance hierarchy (a workitem list, say) is one more
    Entity: the matching keys of dicom/matching.py compile against it unchanged."""
    from sqlalchemy import Column, Integer, MetaData, String, Table, Text, create_engine, select

    from dicomweb_server.dicom import attributes as a
    from dicomweb_server.index.sql import query
    from dicomweb_server.index.sql.entities import Entity, IndexedColumn

    meta = MetaData()
    items = Table(
        "workitems",
        meta,
        Column("pk", Integer, primary_key=True),
        Column("patient_id", String),
        Column("attributes", Text),
    )
    entity = Entity(
        "workitem",
        items,
        {a.PATIENT_ID: IndexedColumn(items.c.patient_id)},
        items.c.attributes,
        holds=lambda tag: True,
    )
    engine = create_engine(f"sqlite:///{tmp_path / 'workitems.sqlite3'}")
    meta.create_all(engine)
    rows = [
        ("P1", {"00404005": _v("DT", "20260101120000"), "00741000": _v("CS", "SCHEDULED")}),
        ("P2", {"00404005": _v("DT", "20260102120000"), "00741000": _v("CS", "COMPLETED")}),
    ]
    with engine.begin() as conn:
        for pid, attrs in rows:
            conn.execute(
                items.insert().values(patient_id=pid, attributes=orjson.dumps(attrs).decode())
            )

    def found(*params: tuple[str, str]) -> list[str]:
        keys = parse_search(params).matches
        stmt = select(items.c.patient_id).where(query.where(entity, list(keys), "sqlite"))
        with engine.connect() as conn:
            return [str(r) for r in conn.execute(stmt.order_by(items.c.pk)).scalars()]

    try:
        assert found(("ProcedureStepState", "SCHEDULED")) == ["P1"]
        assert found(("ScheduledProcedureStepStartDateTime", "20260102-")) == ["P2"]
        assert found(("PatientID", "P*"), ("ProcedureStepState", "COMPLETED")) == ["P2"]
        assert query.matchable(entity) == frozenset({a.PATIENT_ID})
    finally:
        engine.dispose()
