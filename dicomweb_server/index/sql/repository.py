"""The SQL index: implements the store, search and retrieve ports."""

from __future__ import annotations

import time
from typing import Any

import orjson
from sqlalchemy import (
    Engine,
    Row,
    Select,
    Table,
    bindparam,
    delete,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.exc import TimeoutError as PoolTimeout

from dicomweb_server.dicom import attributes as a
from dicomweb_server.dicom.attributes import Level
from dicomweb_server.index.sql import query
from dicomweb_server.index.sql.engine import WRITE
from dicomweb_server.index.sql.models import instances, retired_objects, series, studies
from dicomweb_server.services.errors import Unavailable
from dicomweb_server.services.ports import (
    AddOutcome,
    AddResult,
    JsonDict,
    NewInstance,
    PixelLayout,
    SearchQuery,
    SearchResult,
    StoredInstance,
    StoredPixels,
)


class _Abort(Exception):
    def __init__(self, result: AddResult) -> None:
        self.result = result


def _first(attrs: JsonDict, tag: int) -> Any:
    element = attrs.get(f"{tag:08X}")
    values = element.get("Value") if element else None
    return values[0] if values else None


def _text(attrs: JsonDict, tag: int) -> str | None:
    value = _first(attrs, tag)
    return None if value is None else str(value)


_NAME_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")


def _name_groups(attrs: JsonDict, tag: int, column: str) -> dict[str, str | None]:
    """The index columns of a person name: each component group, upper-cased."""
    value = _first(attrs, tag)
    groups = value if isinstance(value, dict) else {}
    out: dict[str, str | None] = {}
    for group, suffix in zip(_NAME_GROUPS, ("", "_ideographic", "_phonetic"), strict=True):
        text = groups.get(group)
        out[column + suffix] = str(text).upper() if text else None
    return out


def _int(attrs: JsonDict, tag: int) -> int | None:
    value = _first(attrs, tag)
    try:
        return None if value is None else int(float(value))
    except (TypeError, ValueError, OverflowError):
        return None


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode("utf-8")


def _cs(values: list[str]) -> JsonDict:
    return {"vr": "CS", "Value": values} if values else {"vr": "CS"}


def _split(value: str) -> list[str]:
    return [v for v in value.split("\\") if v]


class SqlIndex:
    """One index over one engine; thread-safe (each call uses its own connection)."""

    def _connect(self) -> Connection:
        """A pooled connection; none free within the pool timeout is a 503, not a 500."""
        try:
            return self._engine.connect()
        except PoolTimeout as exc:
            raise Unavailable("every database connection is busy; try again shortly") from exc

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        # Statements built once: SQLAlchemy then reuses their compiled SQL for every call.
        insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
        self._insert = {
            table.name: insert(table)
            .on_conflict_do_nothing(index_elements=[unique])
            .returning(table.c.pk)
            for table, unique in (
                (studies, "study_instance_uid"),
                (series, "series_instance_uid"),
                (instances, "sop_instance_uid"),
            )
        }
        self._count_series_instance = (
            update(series)
            .where(series.c.pk == bindparam("series_pk"))
            .values(number_of_instances=series.c.number_of_instances + 1)
        )

    # -- store ------------------------------------------------------------------------------

    def add_instance(self, instance: NewInstance, replace: bool = False) -> AddResult:
        try:
            with self._connect() as conn:
                conn.execution_options(**{WRITE: True})
                with conn.begin():
                    return self._add(conn, instance, replace)
        except _Abort as abort:
            return abort.result

    def _insert_ignore(self, conn: Connection, table: Table, values: dict[str, Any]) -> int | None:
        """Insert a row unless its UID is there already; the new primary key, or None."""
        pk = conn.execute(self._insert[table.name], values).scalar_one_or_none()
        return None if pk is None else int(pk)

    @staticmethod
    def _instance_row(inst: NewInstance) -> dict[str, Any]:
        """The columns an instance's object determines (all but its place in the hierarchy)."""
        pixels, stored = inst.pixels, inst.instance
        frames = None
        if pixels.frames is not None:
            frames = _dumps([[n for r in frame for n in r] for frame in pixels.frames])
        return {
            "sop_class_uid": stored.sop_class_uid,
            "instance_number": _int(inst.instance_attributes, a.INSTANCE_NUMBER),
            "transfer_syntax_uid": stored.transfer_syntax_uid,
            "blob_key": stored.blob_key,
            "size": stored.size,
            "number_of_frames": pixels.number_of_frames,
            "attributes": _dumps(inst.instance_attributes),
            "metadata": inst.metadata,
            "frames": frames,
            "frames_error": pixels.frames_error,
            "bulk_data": _dumps({k: list(v) for k, v in pixels.bulk_data.items()}),
        }

    def _add(self, conn: Connection, inst: NewInstance, replace: bool) -> AddResult:
        st, se, stored = inst.study_attributes, inst.series_attributes, inst.instance
        self._insert_ignore(
            conn,
            studies,
            {
                "study_instance_uid": stored.study_uid,
                "patient_id": _text(st, a.PATIENT_ID),
                **_name_groups(st, a.PATIENT_NAME, "patient_name"),
                "patient_birth_date": _text(st, a.PATIENT_BIRTH_DATE),
                "patient_sex": _text(st, a.PATIENT_SEX),
                "study_date": _text(st, a.STUDY_DATE),
                "study_time": _text(st, a.STUDY_TIME),
                "accession_number": _text(st, a.ACCESSION_NUMBER),
                "study_id": _text(st, a.STUDY_ID),
                "study_description": _text(st, a.STUDY_DESCRIPTION),
                **_name_groups(st, a.REFERRING_PHYSICIAN_NAME, "referring_physician_name"),
                "attributes": _dumps(st),
            },
        )
        # The study row lock serialises every store into this study, so the aggregates
        # below are read and written by one transaction at a time (PostgreSQL; SQLite
        # serialises all writers with BEGIN IMMEDIATE).
        study = conn.execute(
            select(studies.c.pk, studies.c.sop_classes_in_study)
            .where(studies.c.study_instance_uid == stored.study_uid)
            .with_for_update()
        ).one()
        series_pk = self._insert_ignore(
            conn,
            series,
            {
                "study_pk": study.pk,
                "series_instance_uid": stored.series_uid,
                "modality": _text(se, a.MODALITY),
                "series_number": _int(se, a.SERIES_NUMBER),
                "series_description": _text(se, a.SERIES_DESCRIPTION),
                "performed_procedure_step_start_date": _text(se, a.PPS_START_DATE),
                "performed_procedure_step_start_time": _text(se, a.PPS_START_TIME),
                "attributes": _dumps(se),
            },
        )
        new_series = series_pk is not None
        if series_pk is None:
            row = conn.execute(
                select(series.c.pk, series.c.study_pk).where(
                    series.c.series_instance_uid == stored.series_uid
                )
            ).one()
            if row.study_pk != study.pk:
                raise _Abort(
                    AddResult(
                        AddOutcome.CONFLICT,
                        f"Series Instance UID {stored.series_uid} already belongs to another study",
                    )
                )
            series_pk = int(row.pk)
        # A UID another transaction committed between our look and our insert makes the
        # insert do nothing (it waits for that transaction on the unique index): look again,
        # so the outcome is the one the serial order would give (a conflict when the UID is
        # in another series), never a duplicate of an instance the request cannot retrieve.
        for _attempt in range(3):
            existing = conn.execute(
                select(instances.c.pk, instances.c.series_pk, instances.c.blob_key).where(
                    instances.c.sop_instance_uid == stored.sop_instance_uid
                )
            ).first()
            if existing is not None:
                return self._add_existing(conn, inst, replace, study, series_pk, existing)
            new_row = {
                "series_pk": series_pk,
                "study_pk": study.pk,
                "sop_instance_uid": stored.sop_instance_uid,
                **self._instance_row(inst),
            }
            if self._insert_ignore(conn, instances, new_row) is not None:
                break
        else:
            raise Unavailable("the instance is being stored concurrently; try again shortly")
        conn.execute(self._count_series_instance, {"series_pk": series_pk})
        values: dict[str, Any] = {
            "number_of_instances": studies.c.number_of_instances + 1,
        }
        if new_series:
            values["number_of_series"] = studies.c.number_of_series + 1
            modalities = (
                conn.execute(
                    select(series.c.modality)
                    .distinct()
                    .where(series.c.study_pk == study.pk, series.c.modality.is_not(None))
                )
                .scalars()
                .all()
            )
            values["modalities_in_study"] = "\\".join(sorted(str(m) for m in modalities))
        conn.execute(update(studies).where(studies.c.pk == study.pk).values(**values))
        self._add_sop_class(conn, study.pk, study.sop_classes_in_study, stored.sop_class_uid)
        return AddResult(AddOutcome.STORED)

    def _add_existing(
        self,
        conn: Connection,
        inst: NewInstance,
        replace: bool,
        study: Row[Any, Any],
        series_pk: int,
        existing: Row[Any, Any, Any],
    ) -> AddResult:
        """The outcome of storing a SOP Instance UID the index already holds."""
        stored = inst.instance
        if existing.series_pk != series_pk:
            raise _Abort(
                AddResult(
                    AddOutcome.CONFLICT,
                    f"SOP Instance UID {stored.sop_instance_uid} is already stored in another "
                    "series",
                )
            )
        if not replace:
            raise _Abort(AddResult(AddOutcome.DUPLICATE))
        conn.execute(
            update(instances)
            .where(instances.c.pk == existing.pk)
            .values(**self._instance_row(inst))
        )
        # The old copy is retired in the same transaction: kept for readers that looked it
        # up before this commit, removed by the sweep after the grace period.
        conn.execute(
            insert(retired_objects).values(blob_key=existing.blob_key, retired_at=time.time())
        )
        self._add_sop_class(conn, study.pk, study.sop_classes_in_study, stored.sop_class_uid)
        return AddResult(AddOutcome.REPLACED, replaced_key=existing.blob_key)

    @staticmethod
    def _add_sop_class(conn: Connection, study_pk: int, listed: str, sop_class: str) -> None:
        """Keep SOPClassesInStudy (0008,0062) complete; called under the study's row lock."""
        classes = _split(listed)
        if sop_class not in classes:
            conn.execute(
                update(studies)
                .where(studies.c.pk == study_pk)
                .values(sop_classes_in_study="\\".join(sorted([*classes, sop_class])))
            )

    # -- search -----------------------------------------------------------------------------

    def matchable(self, level: Level) -> frozenset[int]:
        return query.matchable(level)

    def json_matchable(self, level: Level, tag: int) -> bool:
        return query.json_matchable(level, tag)

    def exists(self, study_uid: str, series_uid: str | None = None) -> bool:
        stmt: Select[Any] = select(studies.c.pk).where(studies.c.study_instance_uid == study_uid)
        if series_uid is not None:
            stmt = (
                select(series.c.pk)
                .join(studies, series.c.study_pk == studies.c.pk)
                .where(
                    studies.c.study_instance_uid == study_uid,
                    series.c.series_instance_uid == series_uid,
                )
            )
        with self._connect() as conn:
            return conn.execute(stmt.limit(1)).first() is not None

    def search(self, q: SearchQuery) -> list[SearchResult]:
        columns: list[Any] = [
            studies.c.study_instance_uid,
            studies.c.attributes.label("study_attributes"),
            studies.c.modalities_in_study,
            studies.c.sop_classes_in_study,
            studies.c.number_of_series,
            studies.c.number_of_instances.label("study_instances"),
        ]
        stmt: Select[Any]
        if q.level is Level.STUDY:
            stmt = select(*columns)
        else:
            columns += [
                series.c.series_instance_uid,
                series.c.attributes.label("series_attributes"),
                series.c.number_of_instances.label("series_instances"),
            ]
            if q.level is Level.SERIES:
                stmt = select(*columns).select_from(
                    series.join(studies, series.c.study_pk == studies.c.pk)
                )
            else:
                columns += [
                    instances.c.sop_instance_uid,
                    instances.c.attributes.label("instance_attributes"),
                ]
                if q.with_metadata:
                    columns.append(instances.c.metadata)
                stmt = select(*columns).select_from(
                    instances.join(series, instances.c.series_pk == series.c.pk).join(
                        studies, instances.c.study_pk == studies.c.pk
                    )
                )
        stmt = stmt.where(
            query.where(
                q.level,
                list(q.matches),
                self._engine.dialect.name,
                fuzzy=q.fuzzy,
                timezone_offset=q.timezone_offset,
            )
        )
        if q.study_uid is not None:
            stmt = stmt.where(studies.c.study_instance_uid == q.study_uid)
        if q.series_uid is not None:
            stmt = stmt.where(series.c.series_instance_uid == q.series_uid)
        stmt = stmt.order_by(*query.ORDER[q.level]).limit(q.limit).offset(q.offset)
        with self._connect() as conn:
            rows = conn.execute(stmt).all()
        return [self._result(q.level, row) for row in rows]

    def _result(self, level: Level, row: Row[Any]) -> SearchResult:
        attributes = {Level.STUDY: orjson.loads(row.study_attributes)}
        computed: JsonDict = {
            f"{a.MODALITIES_IN_STUDY:08X}": _cs(_split(row.modalities_in_study)),
            f"{a.SOP_CLASSES_IN_STUDY:08X}": {
                "vr": "UI",
                "Value": _split(row.sop_classes_in_study),
            },
            f"{a.NUMBER_OF_STUDY_RELATED_SERIES:08X}": {
                "vr": "IS",
                "Value": [row.number_of_series],
            },
            f"{a.NUMBER_OF_STUDY_RELATED_INSTANCES:08X}": {
                "vr": "IS",
                "Value": [row.study_instances],
            },
        }
        series_uid = instance_uid = metadata = None
        if level is not Level.STUDY:
            series_uid = row.series_instance_uid
            attributes[Level.SERIES] = orjson.loads(row.series_attributes)
            computed[f"{a.NUMBER_OF_SERIES_RELATED_INSTANCES:08X}"] = {
                "vr": "IS",
                "Value": [row.series_instances],
            }
        if level is Level.INSTANCE:
            instance_uid = row.sop_instance_uid
            attributes[Level.INSTANCE] = orjson.loads(row.instance_attributes)
            metadata = getattr(row, "metadata", None)
        return SearchResult(
            row.study_instance_uid, series_uid, instance_uid, attributes, computed, metadata
        )

    # -- retrieve ---------------------------------------------------------------------------

    def _scoped(
        self,
        stmt: Select[Any],
        study_uid: str,
        series_uid: str | None,
        sop_instance_uid: str | None,
    ) -> Select[Any]:
        stmt = stmt.select_from(
            instances.join(series, instances.c.series_pk == series.c.pk).join(
                studies, instances.c.study_pk == studies.c.pk
            )
        ).where(studies.c.study_instance_uid == study_uid)
        if series_uid is not None:
            stmt = stmt.where(series.c.series_instance_uid == series_uid)
        if sop_instance_uid is not None:
            stmt = stmt.where(instances.c.sop_instance_uid == sop_instance_uid)
        return stmt.order_by(
            series.c.series_number, series.c.pk, instances.c.instance_number, instances.c.pk
        )

    _INSTANCE_COLUMNS = (
        studies.c.study_instance_uid,
        series.c.series_instance_uid,
        instances.c.sop_instance_uid,
        instances.c.sop_class_uid,
        instances.c.transfer_syntax_uid,
        instances.c.blob_key,
        instances.c.size,
    )

    @staticmethod
    def _stored(row: Row[Any]) -> StoredInstance:
        return StoredInstance(
            row.study_instance_uid,
            row.series_instance_uid,
            row.sop_instance_uid,
            row.sop_class_uid,
            row.transfer_syntax_uid,
            row.blob_key,
            int(row.size),
        )

    def instances(
        self, study_uid: str, series_uid: str | None = None, sop_instance_uid: str | None = None
    ) -> list[StoredInstance]:
        stmt = self._scoped(
            select(*self._INSTANCE_COLUMNS), study_uid, series_uid, sop_instance_uid
        )
        with self._connect() as conn:
            return [self._stored(row) for row in conn.execute(stmt)]

    def metadata(
        self, study_uid: str, series_uid: str | None = None, sop_instance_uid: str | None = None
    ) -> list[str]:
        stmt = self._scoped(select(instances.c.metadata), study_uid, series_uid, sop_instance_uid)
        with self._connect() as conn:
            return [str(m) for m in conn.execute(stmt).scalars()]

    def pixels(self, study_uid: str, series_uid: str, sop_instance_uid: str) -> StoredPixels | None:
        stmt = self._scoped(
            select(
                *self._INSTANCE_COLUMNS,
                instances.c.frames,
                instances.c.frames_error,
                instances.c.number_of_frames,
                instances.c.bulk_data,
            ),
            study_uid,
            series_uid,
            sop_instance_uid,
        )
        with self._connect() as conn:
            row = conn.execute(stmt).first()
        if row is None:
            return None
        frames = None
        if row.frames is not None:
            frames = [list(zip(f[0::2], f[1::2], strict=True)) for f in orjson.loads(row.frames)]
        bulk = {k: (int(v[0]), int(v[1])) for k, v in orjson.loads(row.bulk_data).items()}
        layout = PixelLayout(frames, row.frames_error, int(row.number_of_frames), bulk)
        return StoredPixels(self._stored(row), layout)

    # -- operations -------------------------------------------------------------------------

    def blob_keys(self) -> set[str]:
        with self._connect() as conn:
            return {str(k) for k in conn.execute(select(instances.c.blob_key)).scalars()}

    def retired(self) -> dict[str, float]:
        stmt = select(retired_objects.c.blob_key, retired_objects.c.retired_at)
        with self._connect() as conn:
            return {str(key): float(at) for key, at in conn.execute(stmt)}

    def forget_retired(self, key: str) -> None:
        with self._connect() as conn, conn.begin():
            conn.execute(delete(retired_objects).where(retired_objects.c.blob_key == key))

    def check(self) -> None:
        with self._connect() as conn:
            conn.execute(text("SELECT 1"))
