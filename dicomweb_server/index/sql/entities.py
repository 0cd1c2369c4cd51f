"""What the index keeps of each entity: its table, the attributes it has columns for, where
the rest of its DICOM JSON is, and the entity above it.

One tag-to-column table serves both writing a row (`column_values`) and matching on it
(`query.where`), so a new indexed key is one line here. The matching compiler is keyed on an
`Entity`, not on the study/series/instance levels, so any table that keeps DICOM JSON
(workitems) can be searched with the same `dicom/matching.py` keys.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import Table
from sqlalchemy.sql.elements import ColumnElement

from dicomweb_server.dicom import attributes as a
from dicomweb_server.dicom.attributes import Level
from dicomweb_server.index.sql.models import instances, series, studies, workitems

JsonDict = dict[str, Any]
Col = ColumnElement[Any]


class Kind(StrEnum):
    TEXT = "text"
    NAME = "name"  # PN: case-insensitive, on each upper-cased component group
    INT = "int"


@dataclass(frozen=True)
class IndexedColumn:
    column: Col
    kind: Kind = Kind.TEXT
    # For names: the Ideographic and Phonetic group columns beside the Alphabetic one.
    groups: tuple[Col, ...] = ()


@dataclass(frozen=True)
class ChildColumn:
    """An attribute that lists a column of the entity's children (ModalitiesInStudy: the
    Modality of every series): a value matches when some child row has it."""

    table: Table
    parent_key: Col  # the child's column holding its parent's pk
    parent_pk: Col
    column: Col


@dataclass(frozen=True)
class Entity:
    name: str
    table: Table
    # Tag -> the column that holds its first value (indexed keys).
    columns: dict[int, IndexedColumn]
    # The stored DICOM JSON of the attributes this entity holds.
    json: Col
    # Whether an attribute is this entity's (else one above it holds it).
    holds: Callable[[int], bool]
    parent: Entity | None = None
    children: dict[int, ChildColumn] = field(default_factory=dict)

    def chain(self) -> tuple[Entity, ...]:
        """This entity and the ones above it, top first."""
        above = self.parent.chain() if self.parent is not None else ()
        return (*above, self)

    def owner(self, tag: int) -> Entity | None:
        """The entity of this chain that holds `tag`."""
        for entity in reversed(self.chain()):
            if entity.holds(tag):
                return entity
        return None


def _name(column: Col, ideographic: Col, phonetic: Col) -> IndexedColumn:
    return IndexedColumn(column, Kind.NAME, (ideographic, phonetic))


def _at(level: Level) -> Callable[[int], bool]:
    return lambda tag: a.level_of(tag) is level


STUDY = Entity(
    "study",
    studies,
    {
        a.STUDY_INSTANCE_UID: IndexedColumn(studies.c.study_instance_uid),
        a.PATIENT_ID: IndexedColumn(studies.c.patient_id),
        a.PATIENT_NAME: _name(
            studies.c.patient_name,
            studies.c.patient_name_ideographic,
            studies.c.patient_name_phonetic,
        ),
        a.PATIENT_BIRTH_DATE: IndexedColumn(studies.c.patient_birth_date),
        a.PATIENT_SEX: IndexedColumn(studies.c.patient_sex),
        a.STUDY_DATE: IndexedColumn(studies.c.study_date),
        a.STUDY_TIME: IndexedColumn(studies.c.study_time),
        a.ACCESSION_NUMBER: IndexedColumn(studies.c.accession_number),
        a.STUDY_ID: IndexedColumn(studies.c.study_id),
        a.STUDY_DESCRIPTION: IndexedColumn(studies.c.study_description),
        a.REFERRING_PHYSICIAN_NAME: _name(
            studies.c.referring_physician_name,
            studies.c.referring_physician_name_ideographic,
            studies.c.referring_physician_name_phonetic,
        ),
    },
    studies.c.attributes,
    _at(Level.STUDY),
    children={
        a.MODALITIES_IN_STUDY: ChildColumn(
            series, series.c.study_pk, studies.c.pk, series.c.modality
        ),
    },
)
SERIES = Entity(
    "series",
    series,
    {
        a.SERIES_INSTANCE_UID: IndexedColumn(series.c.series_instance_uid),
        a.MODALITY: IndexedColumn(series.c.modality),
        a.SERIES_NUMBER: IndexedColumn(series.c.series_number, Kind.INT),
        a.SERIES_DESCRIPTION: IndexedColumn(series.c.series_description),
        a.PPS_START_DATE: IndexedColumn(series.c.performed_procedure_step_start_date),
        a.PPS_START_TIME: IndexedColumn(series.c.performed_procedure_step_start_time),
    },
    series.c.attributes,
    _at(Level.SERIES),
    parent=STUDY,
)
INSTANCE = Entity(
    "instance",
    instances,
    {
        a.SOP_INSTANCE_UID: IndexedColumn(instances.c.sop_instance_uid),
        a.SOP_CLASS_UID: IndexedColumn(instances.c.sop_class_uid),
        a.INSTANCE_NUMBER: IndexedColumn(instances.c.instance_number, Kind.INT),
    },
    instances.c.metadata,
    _at(Level.INSTANCE),
    parent=SERIES,
)
ENTITIES = {Level.STUDY: STUDY, Level.SERIES: SERIES, Level.INSTANCE: INSTANCE}


def _tag(keyword: str) -> int:
    tag = a.tag_of_keyword(keyword)
    assert tag is not None, keyword
    return tag


# UPS-RS workitems (PS3.18 11.9): every attribute is the workitem's own.
WORKITEM = Entity(
    "workitem",
    workitems,
    {
        a.SOP_INSTANCE_UID: IndexedColumn(workitems.c.uid),
        _tag("ProcedureStepState"): IndexedColumn(workitems.c.state),
        _tag("ScheduledProcedureStepPriority"): IndexedColumn(workitems.c.priority),
        _tag("ProcedureStepLabel"): IndexedColumn(workitems.c.procedure_step_label),
        _tag("WorklistLabel"): IndexedColumn(workitems.c.worklist_label),
        _tag("InputReadinessState"): IndexedColumn(workitems.c.input_readiness_state),
        a.PATIENT_ID: IndexedColumn(workitems.c.patient_id),
        a.PATIENT_NAME: _name(
            workitems.c.patient_name,
            workitems.c.patient_name_ideographic,
            workitems.c.patient_name_phonetic,
        ),
    },
    workitems.c.attributes,
    lambda tag: True,
)


def column_values(entity: Entity, attrs: JsonDict) -> dict[str, Any]:
    """The entity's indexed columns for a row, from the DICOM JSON of its attributes."""
    out: dict[str, Any] = {}
    for tag, indexed in entity.columns.items():
        name = str(indexed.column.key)
        value = _first(attrs, tag)
        if indexed.kind is Kind.NAME:
            # Each component group upper-cased (the match folds the same way).
            groups = value if isinstance(value, dict) else {}
            for column, group in zip((indexed.column, *indexed.groups), _NAME_GROUPS, strict=True):
                text = groups.get(group)
                out[str(column.key)] = str(text).upper() if text else None
        elif indexed.kind is Kind.INT:
            out[name] = _integer(value)
        else:
            out[name] = None if value is None else str(value)
    return out


_NAME_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")


def _first(attrs: JsonDict, tag: int) -> Any:
    element = attrs.get(f"{tag:08X}")
    values = element.get("Value") if element else None
    return values[0] if values else None


def _integer(value: Any) -> int | None:
    try:
        return None if value is None else int(float(value))
    except (TypeError, ValueError, OverflowError):
        return None
