"""The retrieve port: the instances of a scope, their metadata and value offsets.

Every lookup takes the caller's study scope (None: every study) and applies it in the query
itself: outside it nothing is found, exactly as for what was never stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from dicomweb_server.services.context import StudyScope
from dicomweb_server.services.ports.store import PixelLayout, StoredInstance


@dataclass(frozen=True)
class StoredPixels:
    instance: StoredInstance
    layout: PixelLayout


class RetrieveIndex(Protocol):
    def instances(
        self,
        study_uid: str,
        series_uid: str | None = None,
        sop_instance_uid: str | None = None,
        *,
        scope: StudyScope | None = None,
    ) -> list[StoredInstance]:
        """Stored instances in the scope, ordered by series then instance number."""

    def metadata(
        self,
        study_uid: str,
        series_uid: str | None = None,
        sop_instance_uid: str | None = None,
        *,
        scope: StudyScope | None = None,
    ) -> list[tuple[str, str]]:
        """(blob key, stored DICOM JSON text) of each instance in the scope."""

    def metadata_of(self, blob_keys: list[str]) -> dict[str, str]:
        """The stored DICOM JSON text of the copies with these keys (keys a scoped lookup
        returned; a copy replaced since is missing from the answer)."""

    def pixels(
        self,
        study_uid: str,
        series_uid: str,
        sop_instance_uid: str,
        *,
        scope: StudyScope | None = None,
    ) -> StoredPixels | None: ...

    def layouts(
        self, study_uid: str, series_uid: str | None = None, *, scope: StudyScope | None = None
    ) -> list[StoredPixels]:
        """Every instance of a study or series with its value offsets, in one query, ordered
        as `instances`."""
