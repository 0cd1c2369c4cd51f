"""The retrieve port on SQL: the instances of a scope, their metadata and value offsets."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Select, String, bindparam, select

from dicomweb_server.dicom.frames import FrameTable
from dicomweb_server.index.sql.database import Database
from dicomweb_server.index.sql.models import instances, series, studies
from dicomweb_server.index.sql.scope import limited
from dicomweb_server.services.context import StudyScope
from dicomweb_server.services.ports import PixelLayout, StoredInstance, StoredPixels

_INSTANCE_COLUMNS = (
    studies.c.study_instance_uid,
    series.c.series_instance_uid,
    instances.c.sop_instance_uid,
    instances.c.sop_class_uid,
    instances.c.transfer_syntax_uid,
    instances.c.blob_key,
    instances.c.size,
)


def _plan(columns: str, with_series: bool, with_instance: bool) -> Select[Any]:
    """The instances of a study, series (`with_series`) or one instance, in series and
    instance order, the UIDs as the parameters `study`, `series` and `instance`; built once
    per shape (SQLAlchemy then skips building and compiling it again)."""
    shape = (columns, with_series, with_instance)
    stmt = _PLANS.get(shape)
    if stmt is not None:
        return stmt
    stmt = (
        select(*_COLUMNS[columns])
        .select_from(
            instances.join(series, instances.c.series_pk == series.c.pk).join(
                studies, instances.c.study_pk == studies.c.pk
            )
        )
        .where(studies.c.study_instance_uid == bindparam("study", type_=String))
    )
    if with_series:
        stmt = stmt.where(series.c.series_instance_uid == bindparam("series", type_=String))
    if with_instance:
        stmt = stmt.where(instances.c.sop_instance_uid == bindparam("instance", type_=String))
    _PLANS[shape] = stmt = stmt.order_by(
        series.c.series_number, series.c.pk, instances.c.instance_number, instances.c.pk
    )
    return stmt


_PLANS: dict[tuple[str, bool, bool], Select[Any]] = {}


def _statement(
    columns: str, with_series: bool, with_instance: bool, scope: StudyScope | None
) -> Select[Any]:
    """The statement over one of the column sets, limited to what the caller's scope lets
    it see."""
    stmt = _plan(columns, with_series, with_instance)
    if scope is not None:
        # A limited caller's clause is added to the shared plan (Database.rows keeps the
        # result per scope).
        stmt = limited(stmt, scope, with_series=True)
    return stmt


def _stored(row: Any) -> StoredInstance:
    return StoredInstance(
        row.study_instance_uid,
        row.series_instance_uid,
        row.sop_instance_uid,
        row.sop_class_uid,
        row.transfer_syntax_uid,
        row.blob_key,
        int(row.size),
    )


class SqlRetrieveIndex:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._layouts: dict[str, PixelLayout] = {}

    def instances(
        self,
        study_uid: str,
        series_uid: str | None = None,
        sop_instance_uid: str | None = None,
        *,
        scope: StudyScope | None = None,
    ) -> list[StoredInstance]:
        return [
            _stored(row)
            for row in self._rows("instance", study_uid, series_uid, sop_instance_uid, scope)
        ]

    def metadata(
        self,
        study_uid: str,
        series_uid: str | None = None,
        sop_instance_uid: str | None = None,
        *,
        scope: StudyScope | None = None,
    ) -> list[tuple[str, str]]:
        found = self._rows("metadata", study_uid, series_uid, sop_instance_uid, scope)
        return [(str(key), str(text)) for key, text in found]

    def metadata_of(self, blob_keys: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        with self._db.connect() as conn:
            # In slices: a series of thousands of instances stays under the bind limits.
            for start in range(0, len(blob_keys), 500):
                stmt = select(instances.c.blob_key, instances.c.metadata).where(
                    instances.c.blob_key.in_(blob_keys[start : start + 500])
                )
                found.update((str(k), str(t)) for k, t in conn.execute(stmt))
        return found

    def pixels(
        self,
        study_uid: str,
        series_uid: str,
        sop_instance_uid: str,
        *,
        scope: StudyScope | None = None,
    ) -> StoredPixels | None:
        found = self._rows("layout", study_uid, series_uid, sop_instance_uid, scope)
        return _stored_pixels(found[0], self._layouts) if found else None

    def layouts(
        self, study_uid: str, series_uid: str | None = None, *, scope: StudyScope | None = None
    ) -> list[StoredPixels]:
        return [
            _stored_pixels(row, self._layouts)
            for row in self._rows("layout", study_uid, series_uid, None, scope)
        ]

    def _rows(
        self,
        columns: str,
        study_uid: str,
        series_uid: str | None,
        sop_instance_uid: str | None,
        scope: StudyScope | None,
    ) -> list[Any]:
        """The rows of one of the column sets in the scope (a statement per shape and study
        scope, the UIDs its parameters: Database.rows)."""
        params = {"study": study_uid}
        if series_uid is not None:
            params["series"] = series_uid
        if sop_instance_uid is not None:
            params["instance"] = sop_instance_uid
        shape = (columns, series_uid is not None, sop_instance_uid is not None, scope)
        # Built only when Database.rows has not run this shape before.
        return self._db.rows(("retrieve", *shape), lambda: _statement(*shape), params)


_LAYOUT_COLUMNS = (
    *_INSTANCE_COLUMNS,
    instances.c.frames,
    instances.c.frames_error,
    instances.c.number_of_frames,
    instances.c.bulk_data,
)


_COLUMNS = {
    "instance": _INSTANCE_COLUMNS,
    "metadata": (instances.c.blob_key, instances.c.metadata),
    "layout": _LAYOUT_COLUMNS,
}


# Layouts kept per archive at most (then forgotten and kept again).
_LAYOUTS_KEPT = 1024


def _stored_pixels(row: Any, kept: dict[str, PixelLayout]) -> StoredPixels:
    """The row's instance and layout; layouts are kept in `kept` by the blob key of the
    stored copy they describe (a copy never changes, so neither does its layout): a frame
    request does not parse a 500-frame table again."""
    layout = kept.get(row.blob_key)
    if layout is None:
        # Ranges made for the frames a request asks for only (FrameTable), not every frame.
        frames = None if row.frames is None else FrameTable(orjson.loads(row.frames))
        bulk = {k: (int(v[0]), int(v[1])) for k, v in orjson.loads(row.bulk_data).items()}
        layout = PixelLayout(frames, row.frames_error, int(row.number_of_frames), bulk)
        if len(kept) >= _LAYOUTS_KEPT:
            kept.clear()
        kept[row.blob_key] = layout
    return StoredPixels(_stored(row), layout)
