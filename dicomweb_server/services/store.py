"""Store Instances (PS3.18 10.5): check, keep and index each received object.

Each instance is stored whole or not at all: the object is written to the blob store under a
fresh key first, then indexed in one transaction; if indexing does not happen the object is
removed again. A failure of one instance is an outcome, not an exception (PS3.18 I.2).
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from dataclasses import replace as replace_fields
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

import orjson
from pydicom.dataset import Dataset

from dicomweb_server.dicom import media_types, uids
from dicomweb_server.dicom.assemble import BulkPart, assemble
from dicomweb_server.dicom.attributes import RETURN_KEYS, Level, keeps_at
from dicomweb_server.dicom.deidentify import Deidentifier
from dicomweb_server.dicom.errors import ObjectRejected
from dicomweb_server.dicom.json_model import dataset_to_json
from dicomweb_server.dicom.scan import PIXEL_DATA_TAGS
from dicomweb_server.dicom.store_status import (
    ALREADY_STORED,
    CANNOT_UNDERSTAND,
    COERCION_OF_DATA_ELEMENTS,
    DATASET_DOES_NOT_MATCH_SOP_CLASS,
    DUPLICATE_SOP_INSTANCE,
    NOT_AUTHORIZED,
    InstanceOutcome,
    failure,
)
from dicomweb_server.dicom.xml_model import native_to_json
from dicomweb_server.services.budget import MemoryBudget
from dicomweb_server.services.context import WRITE, Caller
from dicomweb_server.services.errors import Busy, Forbidden
from dicomweb_server.services.ingest import (
    PreparedInstance,
    peek_uids,
    prepare,
    rewritten,
)
from dicomweb_server.services.ports import (
    AddOutcome,
    AddResult,
    BlobStore,
    NewInstance,
    PixelLayout,
    StoredInstance,
    StoreIndex,
)
from dicomweb_server.services.ports.plugins import IngestStep
from dicomweb_server.services.spool import RequestSpool, Spool
from dicomweb_server.services.steps import DeidentifyStep, applied, failure_text


class DuplicatePolicy(StrEnum):
    """What storing a SOP Instance UID that is already stored in the same series does."""

    REJECT = "reject"  # failure 0111, nothing changed
    IGNORE = "ignore"  # warning B00E, the first copy kept
    OVERWRITE = "overwrite"  # object and metadata replaced in one transaction


@dataclass
class StoreLimits:
    """Per-request limits; exceeding one answers 413 (settings DICOMWEB_MAX_*)."""

    request_bytes: int = 64 * 2**30
    instance_bytes: int = 8 * 2**30
    parts: int = 10_000
    # A body that sends nothing this long is answered 408 (DICOMWEB_BODY_TIMEOUT_SECONDS).
    idle_seconds: float = 60.0


@dataclass(frozen=True)
class BulkFile:
    """A spooled bulk data part of the metadata form, until its instance is assembled."""

    path: Path
    media_type: str
    transfer_syntax: str | None = None

    def part(self) -> BulkPart:
        return BulkPart(self._open, self.media_type, self.transfer_syntax)

    def _open(self) -> BinaryIO:
        return self.path.open("rb")


@dataclass(frozen=True)
class Staged:
    """An object in the blob store waiting for its batch to be indexed (StoreService.stage).
    `size` is what its record holds in memory meanwhile (its metadata)."""

    record: NewInstance
    outcome: InstanceOutcome  # its outcome when stored
    size: int


@dataclass(frozen=True)
class StorePart:
    """One received part of a Store Instances request, spooled to `path`.

    `media_type` is its parsed Content-Type (None when the part has none; "" when it cannot
    be parsed), `declared` the header as sent, for the reason of a failure."""

    path: Path
    media_type: str | None
    declared: str | None = None
    transfer_syntax: str | None = None
    content_location: str | None = None


@dataclass(frozen=True)
class Labelling:
    """The access-control labels of one request's stores: `added` go to every study it
    stores into; with `within` (a caller limited to those labels) a study that exists must
    already carry one of them."""

    added: frozenset[str] = frozenset()
    within: frozenset[str] | None = None


class StoreRequest:
    """The parts of one Store Instances request (PS3.18 10.5.1.2): a PS3.10 object is
    checked and put in the blob store as soon as its part is complete, and indexed with the
    others of its batch (one flush of the disk, one transaction) when the batch is full or
    the request ends; the metadata form's parts (PS3.18 10.5.1.2.2) wait for `finish`, since
    bulk data may precede its metadata."""

    def __init__(
        self, service: StoreService, study_uid: str | None, labels: Labelling | None = None
    ) -> None:
        self._service = service
        self._study_uid = study_uid
        self._labels = labels or Labelling()
        self._metadata: list[Path] = []
        self._bulk: dict[str, BulkFile] = {}
        self._staged: list[Staged] = []
        self._staged_bytes = 0
        self._staged_at = 0.0

    def add(self, parts: list[StorePart]) -> list[InstanceOutcome]:
        """Take completed parts; the outcomes of those whose batch was indexed."""
        outcomes = []
        for part in parts:
            media_type = media_types.DICOM if part.media_type is None else part.media_type
            if media_type == media_types.DICOM:
                staged = self._service.stage(part.path, self._study_uid, self._labels)
                if isinstance(staged, InstanceOutcome):
                    outcomes.append(staged)
                    continue
                if not self._staged:
                    self._staged_at = time.monotonic()
                self._staged.append(staged)
                self._staged_bytes += staged.size
                if (
                    len(self._staged) >= BATCH_INSTANCES
                    or self._staged_bytes >= BATCH_BYTES
                    or time.monotonic() - self._staged_at >= BATCH_SECONDS
                ):
                    outcomes += self._commit()
            elif media_type in (media_types.DICOM_JSON, media_types.DICOM_XML):
                # The file's suffix says how to read it.
                suffix = ".json" if media_type == media_types.DICOM_JSON else ".xml"
                self._metadata.append(part.path.rename(part.path.with_suffix(suffix)))
            elif media_type and part.content_location is not None:
                # A bulk data part of the metadata form, found later by its Content-Location.
                self._bulk[part.content_location] = BulkFile(
                    part.path, media_type, part.transfer_syntax
                )
            else:
                part.path.unlink(missing_ok=True)
                outcomes.append(
                    failure(
                        CANNOT_UNDERSTAND,
                        f"part of type {part.declared!r} is neither {media_types.DICOM}, nor "
                        f"metadata ({media_types.DICOM_JSON}, {media_types.DICOM_XML}), nor "
                        "bulk data with a Content-Location",
                    )
                )
        return outcomes

    def _commit(self) -> list[InstanceOutcome]:
        staged, self._staged, self._staged_bytes = self._staged, [], 0
        return self._service.commit(staged) if staged else []

    def finish(self, complete: bool = True) -> list[InstanceOutcome]:
        """Index what is staged (the objects of completed parts are kept however the body
        ended) and, when the body was `complete`, store the instances of the metadata form;
        its part files are consumed."""
        outcomes = self._commit()
        if complete and self._metadata:
            metadata, bulk = self._metadata, self._bulk
            self._metadata, self._bulk = [], {}
            outcomes += self._service.store_from_metadata(
                metadata, bulk, self._study_uid, self._labels
            )
        return outcomes

    def discard(self) -> None:
        """Drop what is still waiting: staged objects (a request that ends in an error keeps
        none it did not index), the parts of an unfinished metadata form."""
        staged, self._staged, self._staged_bytes = self._staged, [], 0
        self._service.drop(staged)
        _remove(self._metadata, self._bulk)
        self._metadata, self._bulk = [], {}


# A request's objects are indexed in batches of at most this many, holding at most about
# this much of their metadata in memory meanwhile; a slow request's batch is indexed once
# its first object has waited this long (what a long upload sent is visible as it goes).
BATCH_INSTANCES = 50
BATCH_BYTES = 16 * 2**20
BATCH_SECONDS = 1.0


def _remove(metadata: list[Path], bulk: dict[str, BulkFile]) -> None:
    for path in [*metadata, *(p.path for p in bulk.values())]:
        path.unlink(missing_ok=True)


# (study, series, instance, tag path) -> the BulkDataURI kept in the stored metadata.
BulkDataUri = Callable[[str, str, str, str], str]


class StoreService:
    def __init__(
        self,
        index: StoreIndex,
        blobs: BlobStore,
        spool_dir: Path,
        bulk_data_threshold: int,
        bulk_data_uri: BulkDataUri,
        duplicate_policy: DuplicatePolicy = DuplicatePolicy.IGNORE,
        limits: StoreLimits | None = None,
        deidentifier: Deidentifier | None = None,
        steps: Sequence[IngestStep] = (),
        max_uploads: int = 64,
        budget: MemoryBudget | None = None,
        label_tags: tuple[int, ...] = (),
        changed: Callable[[], None] | None = None,
    ) -> None:
        # Told after each commit that stored something: the change log has new entries (the
        # live streams of this process wake at once instead of at their next poll).
        self._changed = changed
        # The attributes whose values become the study's access-control labels.
        self.label_tags = label_tags
        # Objects read whole at ingest (de-identified, or converted from an encoding the web
        # may not use) hold their memory in the decode budget shared with retrieval.
        self.budget = budget or MemoryBudget()
        self.duplicate_policy = duplicate_policy
        self.max_uploads = max_uploads
        self._uploads = 0
        self._uploads_lock = threading.Lock()
        self.limits = limits or StoreLimits()
        # The changes every received object gets, in order: the de-identifier first (when
        # on), then the ingest steps of plugins.
        self.steps: list[IngestStep] = list(steps)
        self.deidentifier = deidentifier
        self._index = index
        self._blobs = blobs
        self.spool = Spool(spool_dir)
        self._threshold = bulk_data_threshold
        self._bulk_data_uri = bulk_data_uri

    @property
    def deidentifier(self) -> Deidentifier | None:
        """The built-in de-identification step's, when it is on."""
        for step in self.steps:
            if isinstance(step, DeidentifyStep):
                return step.deidentifier
        return None

    @deidentifier.setter
    def deidentifier(self, value: Deidentifier | None) -> None:
        others = [s for s in self.steps if not isinstance(s, DeidentifyStep)]
        self.steps = ([DeidentifyStep(value)] if value is not None else []) + others

    @contextlib.contextmanager
    def admission(self) -> Iterator[None]:
        """One upload received by this process; past `max_uploads` at once, Busy (503):
        each upload holds a connection, a spool file and a worker thread at times."""
        with self._uploads_lock:
            if self._uploads >= self.max_uploads:
                raise Busy(
                    f"this server receives at most {self.max_uploads} uploads at once; "
                    "try again shortly"
                )
            self._uploads += 1
        try:
            yield
        finally:
            with self._uploads_lock:
                self._uploads -= 1

    def begin(
        self, caller: Caller, study_uid: str | None = None, labels: frozenset[str] = frozenset()
    ) -> StoreRequest:
        """The parts of one request, stored as they arrive (see StoreRequest). `labels` (the
        request's own, e.g. from a gateway) go to every study it stores into; a caller
        limited to labels may only say its own, gives them to what it stores, and may not
        store into a study it cannot see."""
        caller.require(WRITE)
        scope = caller.studies
        if scope is None:
            return StoreRequest(self, study_uid, Labelling(labels))
        if not labels <= scope.labels:
            raise Forbidden("a caller limited to labels may only give its own to what it stores")
        return StoreRequest(self, study_uid, Labelling(labels | scope.labels, scope.labels))

    def request_spool(self) -> contextlib.AbstractContextManager[RequestSpool]:
        """The spool folder of one request, on the objects' file system; everything in it is
        removed when the request ends, however it ends."""
        return self.spool.request()

    def store_from_metadata(
        self,
        metadata_parts: list[Path],
        bulk_parts: dict[str, BulkFile],
        study_uid: str | None = None,
        labels: Labelling | None = None,
    ) -> list[InstanceOutcome]:
        """Store instances sent as metadata plus bulk data parts (PS3.18 10.5.1.2.2).

        Metadata parts are DICOM JSON, or Native DICOM Model XML when their file name ends in
        `.xml`. Every part file is consumed."""

        parts = {location: bulk.part() for location, bulk in bulk_parts.items()}
        by_path = {_uri_path(location): part for location, part in parts.items()}

        def lookup(uri: str) -> BulkPart | None:
            return parts.get(uri) or by_path.get(_uri_path(uri))

        outcomes: list[InstanceOutcome] = []
        try:
            for path in metadata_parts:
                try:
                    items = _read_metadata(path)
                except ObjectRejected as exc:
                    outcomes.append(
                        InstanceOutcome(
                            None, None, failure_reason=exc.failure_reason, message=exc.message
                        )
                    )
                    continue
                for item in items:
                    outcomes.append(self._store_item(item, lookup, study_uid, path.parent, labels))
        finally:
            _remove(metadata_parts, bulk_parts)
        return outcomes

    def _store_item(
        self,
        item: object,
        lookup: Callable[[str], BulkPart | None],
        study_uid: str | None,
        workdir: Path,
        labels: Labelling | None = None,
    ) -> InstanceOutcome:
        path = RequestSpool(workdir).new_path(".dcm")
        try:
            with path.open("wb") as out:
                assemble(item, lookup, out)
        except ObjectRejected as exc:
            path.unlink(missing_ok=True)
            sop_class, sop_instance = (_json_uid(item, "00080016"), _json_uid(item, "00080018"))
            return InstanceOutcome(
                sop_class, sop_instance, failure_reason=exc.failure_reason, message=exc.message
            )
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return self.store(path, study_uid, labels)

    def store(
        self, part: Path, study_uid: str | None = None, labels: Labelling | None = None
    ) -> InstanceOutcome:
        """Store the object in the spooled file `part` on its own (a batch of one)."""
        staged = self.stage(part, study_uid, labels)
        if isinstance(staged, InstanceOutcome):
            return staged
        (outcome,) = self.commit([staged])
        return outcome

    def stage(
        self, part: Path, study_uid: str | None = None, labels: Labelling | None = None
    ) -> InstanceOutcome | Staged:
        """Check the object in the spooled file `part` and put it in the blob store, not yet
        indexed (`commit` does that for a batch); or the outcome of its failure. The file is
        consumed; files made on the way go into the same (request's) folder."""
        prepared_path: Path | None = None
        workdir = part.parent
        try:
            steps = self.steps
            if steps:
                try:
                    original = part
                    part = rewritten(
                        part,
                        workdir,
                        applied(steps),
                        failure_text(steps),
                        ".changed",
                        self.budget.reserve,
                    )
                    original.unlink(missing_ok=True)
                except ObjectRejected as exc:
                    sop_class, _ = peek_uids(part)
                    return InstanceOutcome(
                        sop_class, None, failure_reason=exc.failure_reason, message=exc.message
                    )
                for step in steps:
                    if study_uid is not None:
                        # The URL names the study as the client knows it.
                        study_uid = step.study_uid(study_uid)
            try:
                prepared = prepare(part, workdir, self._threshold, hold=self.budget.reserve)
            except ObjectRejected as exc:
                sop_class, sop_instance = peek_uids(part)
                return InstanceOutcome(
                    sop_class, sop_instance, failure_reason=exc.failure_reason, message=exc.message
                )
            prepared_path = prepared.path
            outcome = InstanceOutcome(
                prepared.sop_class_uid,
                prepared.sop_instance_uid,
                prepared.study_uid,
                prepared.series_uid,
            )
            if study_uid is not None and prepared.study_uid != study_uid:
                # PS3.18 10.5.1: instances posted to a study must belong to it.
                return outcome.failed(
                    DATASET_DOES_NOT_MATCH_SOP_CLASS,
                    f"Study Instance UID {prepared.study_uid} does not match the study "
                    f"{study_uid} of the request URL",
                )
            record = self._record(prepared, labels or Labelling())
            self._blobs.put_file(record.instance.blob_key, prepared.path)
            return Staged(record, outcome, size=len(record.metadata))
        finally:
            for path in {part, prepared_path}:
                if path is not None:
                    path.unlink(missing_ok=True)

    def commit(self, batch: list[Staged]) -> list[InstanceOutcome]:
        """Index staged objects in one transaction once they are durable; what is not stored
        leaves the blob store again. The outcomes, in the batch's order."""
        keys = [staged.record.instance.blob_key for staged in batch]
        try:
            self._blobs.sync(keys)
            replace = self.duplicate_policy is DuplicatePolicy.OVERWRITE
            added = self._index.add_instances([staged.record for staged in batch], replace)
        except BaseException:
            self.drop(batch)
            raise
        if self._changed is not None:
            self._changed()
        return [self._outcome(s, a) for s, a in zip(batch, added, strict=True)]

    def drop(self, batch: list[Staged]) -> None:
        """Remove staged objects that will not be indexed."""
        for staged in batch:
            self._blobs.delete(staged.record.instance.blob_key)

    def reindex(self, key: str, labels: frozenset[str]) -> AddResult:
        """Index the object stored under `key` again as it is (a restore after a rejection):
        read from the blob store, what the index keeps of it computed as at ingest, the
        study given `labels` (and those of the label rule). The object is not changed."""
        with self.spool.request() as spool:
            path = self._fetched(key, spool)
            prepared = prepare(path, spool.path, self._threshold, hold=self.budget.reserve)
            record = self._record(prepared, Labelling(labels), key)
        (added,) = self._index.add_instances([record])
        if self._changed is not None:
            self._changed()
        return added

    def rewritten(self, key: str, change: Callable[[Dataset], None]) -> NewInstance:
        """A new copy of the object stored under `key` with `change` applied to its data set
        (a correction), put in the blob store under a fresh key, not yet durable nor
        indexed; what the index keeps of it. The object's own is not changed. Raises
        ObjectRejected."""
        with self.spool.request() as spool:
            path = self._fetched(key, spool)
            changed = rewritten(
                path,
                spool.path,
                change,
                "the object cannot be corrected",
                ".corrected",
                self.budget.reserve,
            )
            prepared = prepare(changed, spool.path, self._threshold, hold=self.budget.reserve)
            record = self._record(prepared, Labelling())
            self._blobs.put_file(record.instance.blob_key, prepared.path)
        return record

    def sync(self, keys: list[str]) -> None:
        """Make the objects put under `keys` durable (one flush)."""
        self._blobs.sync(keys)

    def _fetched(self, key: str, spool: RequestSpool) -> Path:
        """The stored object `key`, copied into the request's spool folder."""
        path = spool.new_path(".dcm")
        with path.open("wb") as out:
            for chunk in self._blobs.iter_range(key):
                out.write(chunk)
        return path

    def _record(
        self, prepared: PreparedInstance, labels: Labelling, key: str | None = None
    ) -> NewInstance:
        """What the index keeps of a prepared object, under a fresh blob key (or `key`, the
        object's own when it is indexed again)."""
        study, series, instance = (
            prepared.study_uid,
            prepared.series_uid,
            prepared.sop_instance_uid,
        )
        header_bulk = {p for p in prepared.scan.bulk if int(p[:8], 16) not in PIXEL_DATA_TAGS}
        pixel_bulk = {
            p: v.vr for p, v in prepared.scan.bulk.items() if int(p[:8], 16) in PIXEL_DATA_TAGS
        }
        metadata = dataset_to_json(
            prepared.header,
            header_bulk,
            lambda path: self._bulk_data_uri(study, series, instance, path),
            extra_bulk=pixel_bulk,
        )
        levels = _split_levels(metadata)
        # A fresh version per copy: a new copy never overwrites the one the index points to.
        if key is None:
            key = uids.blob_key(study, series, instance, secrets.token_hex(8))
        return NewInstance(
            instance=StoredInstance(
                study,
                series,
                instance,
                prepared.sop_class_uid,
                prepared.transfer_syntax_uid,
                key,
                prepared.size,
            ),
            study_attributes=levels[Level.STUDY],
            series_attributes=levels[Level.SERIES],
            instance_attributes=levels[Level.INSTANCE],
            metadata=orjson.dumps(metadata).decode("utf-8"),
            pixels=PixelLayout(
                frames=prepared.frames,
                frames_error=prepared.frames_error,
                number_of_frames=prepared.number_of_frames,
                bulk_data={p: (v.offset, v.length) for p, v in prepared.scan.bulk.items()},
            ),
            labels=labels_of(metadata, self.label_tags) | labels.added,
            within=labels.within,
        )

    def _outcome(self, staged: Staged, added: AddResult) -> InstanceOutcome:
        """The outcome of one indexed object; its blob is removed unless the index kept it."""
        outcome = staged.outcome
        sop_instance = outcome.sop_instance_uid
        if added.outcome in (AddOutcome.STORED, AddOutcome.REPLACED):
            # A replaced copy: the index points at the new one since its commit; the old one
            # was retired in that commit and stays readable until the sweep removes it.
            warnings = [s.warning for s in self.steps if s.warning]
            if warnings:
                return replace_fields(
                    outcome, warning_reason=COERCION_OF_DATA_ELEMENTS, message="; ".join(warnings)
                )
            return outcome
        self._blobs.delete(staged.record.instance.blob_key)
        if added.outcome is AddOutcome.REFUSED:
            return outcome.failed(NOT_AUTHORIZED, added.message)
        if added.outcome is AddOutcome.DUPLICATE:
            if self.duplicate_policy is DuplicatePolicy.REJECT:
                return outcome.failed(
                    DUPLICATE_SOP_INSTANCE,
                    f"SOP Instance {sop_instance} is already stored (duplicate policy: reject)",
                )
            return replace_fields(
                outcome,
                warning_reason=ALREADY_STORED,
                message=f"SOP Instance {sop_instance} was already stored; the first copy is "
                "kept (duplicate policy: ignore)",
            )
        return outcome.failed(DATASET_DOES_NOT_MATCH_SOP_CLASS, added.message)


def labels_of(metadata: dict[str, object], tags: tuple[int, ...]) -> frozenset[str]:
    """The text values of `tags` in the instance's DICOM JSON (person names by their
    alphabetic group), each a label."""
    found: set[str] = set()
    for tag in tags:
        element = metadata.get(f"{tag:08X}")
        values = element.get("Value", []) if isinstance(element, dict) else []
        for value in values:
            if isinstance(value, dict):
                value = value.get("Alphabetic")
            if isinstance(value, str | int | float) and str(value).strip():
                found.add(str(value).strip())
    return frozenset(found)


def _split_levels(metadata: dict[str, object]) -> dict[Level, dict[str, object]]:
    """The study and series rows keep their level's attributes; instances their return keys."""
    instance_keys = {f"{t:08X}" for t in RETURN_KEYS[Level.INSTANCE]}
    out: dict[Level, dict[str, object]] = {level: {} for level in Level}
    for key, value in metadata.items():
        tag = int(key, 16)
        for level in (Level.STUDY, Level.SERIES):
            if keeps_at(tag, level):
                out[level][key] = value
        if key in instance_keys:
            out[Level.INSTANCE][key] = value
    return out


def _read_metadata(path: Path) -> list[object]:
    """The instances described by one metadata part: DICOM JSON (`.json`, an object or an
    array) or the Native DICOM Model (`.xml`, one document per part, PS3.19 A.1)."""
    data = path.read_bytes()
    if path.suffix == ".xml":
        return [native_to_json(data)]
    try:
        items = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ObjectRejected(
            CANNOT_UNDERSTAND, f"a metadata part is not valid JSON: {exc}"
        ) from exc
    return items if isinstance(items, list) else [items]


def _uri_path(uri: str) -> str:
    """The path of a URI, so that absolute and relative references to one part meet."""
    return urlsplit(uri).path or uri


def _json_uid(item: object, key: str) -> str | None:
    if isinstance(item, dict):
        values = (item.get(key) or {}).get("Value") or []
        if values and isinstance(values[0], str):
            return values[0]
    return None
