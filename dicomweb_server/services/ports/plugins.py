"""What a separately installed package may add through entry points (docs/plugins.md): an
ingest step, an event consumer (a blob store is a `BlobStore`, services/ports/blobs.py).

Entry point groups, each name -> a factory called with the settings:
    dicomweb_server.blob_stores      -> BlobStore     (DICOMWEB_BLOB_STORE=<name>)
    dicomweb_server.ingest_steps     -> IngestStep    (DICOMWEB_INGEST_STEPS=<name>,...)
    dicomweb_server.event_consumers  -> EventConsumer (DICOMWEB_EVENT_CONSUMERS=<name>,...)
"""

from __future__ import annotations

from typing import Protocol

from pydicom.dataset import Dataset

from dicomweb_server.services.ports.changes import Change

BLOB_STORES = "dicomweb_server.blob_stores"
INGEST_STEPS = "dicomweb_server.ingest_steps"
EVENT_CONSUMERS = "dicomweb_server.event_consumers"


class IngestStep(Protocol):
    """A change every received object gets before it is stored (the de-identifier is one).
    `apply` changes the data set in place; raising `dicomweb_server.dicom.errors.
    ObjectRejected` refuses the object with that reason (any other error refuses it as a
    processing failure naming the step)."""

    name: str
    # The warning (B000, coercion of data elements) a stored object's outcome carries when
    # the step changed it; None: none.
    warning: str | None

    def apply(self, ds: Dataset) -> None: ...

    def study_uid(self, uid: str) -> str:
        """The Study Instance UID `uid` becomes (a step that replaces UIDs maps the study of
        a request URL with it); most steps return it unchanged."""
        ...


class EventConsumer(Protocol):
    """Told of the change log's entries in order, each batch once across every server
    process (at least once: a batch whose `consume` raised is given again)."""

    name: str

    def consume(self, changes: list[Change]) -> None: ...


class ConsumerCursors(Protocol):
    """How far each event consumer has been told, and which process tells it."""

    def claim(self, name: str, owner: str, now: float, lease_seconds: float) -> int | None:
        """The consumer's cursor when `owner` holds (or now takes) its lease until
        `now + lease_seconds`; None when another process holds it. A consumer seen for the
        first time starts at the newest entry of the change log."""

    def advance(self, name: str, owner: str, seq: int) -> bool:
        """Move the cursor to `seq`, if `owner` still holds the lease."""
