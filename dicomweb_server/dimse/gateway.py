"""The DIMSE face of the archive (pynetdicom), over the same services as the web: C-ECHO,
C-STORE into the ingest of STOW-RS (acknowledged once the object is durable and indexed),
and C-FIND through the QIDO-RS matching engine (a C-FIND identifier becomes the same query).
An entry point beside web/, never importing it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydicom.dataset import Dataset
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    Verification,
)

from dicomweb_server.dicom import uids
from dicomweb_server.dicom.attributes import Level
from dicomweb_server.dicom.errors import DicomError
from dicomweb_server.dicom.matching import parse_search
from dicomweb_server.dicom.store_status import InstanceOutcome
from dicomweb_server.services.context import EVERY_SCOPE, Caller
from dicomweb_server.services.errors import ServiceError
from dicomweb_server.services.search import SearchService
from dicomweb_server.services.spool import RequestSpool

log = logging.getLogger("dicomweb_server.dimse")

# PS3.4 C.4.1.1.4: C-FIND statuses.
PENDING, SUCCESS = 0xFF00, 0x0000
UNABLE_TO_PROCESS = 0xC000  # identifier does not match SOP class, or cannot be processed
CANCELLED = 0xFE00
# PS3.4 B.2.3: out of resources (the store could not be done now).
OUT_OF_RESOURCES = 0xA700
# The transfer syntaxes accepted for storage: every one pydicom knows (ingest converts the
# two the web may not use, PS3.18 8.7.3). Compressed ones first: an object proposed in its
# own compressed syntax and a native one is received, and stored, as it is.
STORAGE_SYNTAXES = [
    *sorted(uids.KNOWN_TRANSFER_SYNTAXES - uids.NATIVE_TRANSFER_SYNTAXES),
    uids.EXPLICIT_VR_LITTLE_ENDIAN,
    uids.IMPLICIT_VR_LITTLE_ENDIAN,
    uids.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    uids.EXPLICIT_VR_BIG_ENDIAN,
]
_LEVELS = {"STUDY": Level.STUDY, "SERIES": Level.SERIES, "IMAGE": Level.INSTANCE}
_QUERY_LEVEL, _CHARSET = 0x00080052, 0x00080005
# The most matches one C-FIND answers (each a pending response).
MAX_MATCHES = 10_000


class Ingest(Protocol):
    """The ingest of STOW-RS (StoreService)."""

    def request_spool(self) -> Any: ...

    def store(self, part: Any) -> InstanceOutcome: ...


@dataclass
class DimseSettings:
    ae_title: str = "DICOMWEB"
    host: str = "127.0.0.1"
    port: int = 11112
    # Calling AE titles accepted (empty: any).
    accepted: frozenset[str] = field(default_factory=frozenset)


class DimseGateway:
    def __init__(self, store: Ingest, search: SearchService, config: DimseSettings) -> None:
        self._store = store
        self._search = search
        self.config = config
        self._server: Any = None

    def application_entity(self) -> AE:
        ae = AE(ae_title=self.config.ae_title)
        ae.maximum_pdu_size = 0  # no limit on what peers send
        for context in AllStoragePresentationContexts:
            assert context.abstract_syntax is not None
            ae.add_supported_context(context.abstract_syntax, STORAGE_SYNTAXES)
        ae.add_supported_context(Verification)
        ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
        ae.add_supported_context(PatientRootQueryRetrieveInformationModelFind)
        if self.config.accepted:
            ae.require_calling_aet = sorted(self.config.accepted)
        return ae

    def start(self) -> None:
        """Serve in background threads until `stop`."""
        handlers: list[Any] = [
            (evt.EVT_C_ECHO, self._echo),
            (evt.EVT_C_STORE, self._store_instance),
            (evt.EVT_C_FIND, self._find),
        ]
        self._server = self.application_entity().start_server(
            (self.config.host, self.config.port), block=False, evt_handlers=handlers
        )

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    # -- handlers ---------------------------------------------------------------------------

    @staticmethod
    def _caller(event: Any) -> Caller:
        requestor = event.assoc.requestor
        calling = str(requestor.ae_title).strip()
        return Caller(f"ae:{calling}", EVERY_SCOPE, None, client=str(requestor.address))

    def _echo(self, event: Any) -> int:
        return SUCCESS

    def _store_instance(self, event: Any) -> int:
        """PS3.4 B.2.3: the status of the STOW-RS outcome of the same object."""
        try:
            with self._store.request_spool() as spool:
                folder: RequestSpool = spool
                path = folder.new_path(".dcm")
                with path.open("wb") as out:
                    out.write(event.encoded_dataset(include_meta=True))
                outcome = self._store.store(path)
        except ServiceError as exc:
            log.warning("a C-STORE could not be stored: %s", type(exc).__name__)
            return OUT_OF_RESOURCES
        return outcome.status

    def _find(self, event: Any) -> Iterator[tuple[int, Dataset | None]]:
        identifier: Dataset = event.identifier
        level_text = str(identifier.get("QueryRetrieveLevel", "")).strip().upper()
        patient_root = (
            event.request.AffectedSOPClassUID == PatientRootQueryRetrieveInformationModelFind
        )
        try:
            if level_text == "PATIENT":
                if not patient_root:
                    yield UNABLE_TO_PROCESS, None
                    return
                found = self._patients(event, identifier)
            else:
                level = _LEVELS.get(level_text)
                if level is None:
                    yield UNABLE_TO_PROCESS, None
                    return
                found = self._matches(event, identifier, level)
            for ds in found:
                if event.is_cancelled:
                    yield CANCELLED, None
                    return
                yield PENDING, ds
        except (DicomError, ServiceError, ValueError) as exc:
            log.info("a C-FIND was refused: %s", exc)
            yield UNABLE_TO_PROCESS, None
            return
        yield SUCCESS, None

    def _matches(self, event: Any, identifier: Dataset, level: Level) -> list[Dataset]:
        """The identifier as a QIDO-RS query at `level`: keys with a value match, keys
        without one are returned (PS3.4 C.4.1.2.1)."""
        params: list[tuple[str, str]] = []
        wanted: list[int] = []
        for element in identifier:
            tag = int(element.tag)
            if tag in (_QUERY_LEVEL, _CHARSET) or element.tag.group == 0x0000:
                continue
            wanted.append(tag)
            text = _text(element)
            if text:
                params.append((f"{tag:08X}", text))
            else:
                params.append(("includefield", f"{tag:08X}"))
        return [
            _answer(result, wanted, identifier)
            for result in self._all(self._caller(event), level, params)
        ]

    def _patients(self, event: Any, identifier: Dataset) -> list[Dataset]:
        """Patient Root, PATIENT level: the distinct patients of the matching studies."""
        studies = self._matches(event, identifier, Level.STUDY)
        seen: dict[str, Dataset] = {}
        for ds in studies:
            key = str(ds.get("PatientID", ""))
            if key not in seen:
                seen[key] = ds
        return list(seen.values())

    def _all(self, caller: Caller, level: Level, params: list[tuple[str, str]]) -> list[Any]:
        results: list[Any] = []
        offset = 0
        while len(results) < MAX_MATCHES:
            request = parse_search([*params, ("offset", str(offset))])
            page = self._search.search(caller, level, request, lambda *_: "")
            results += page.results
            if page.next_offset is None:
                break
            offset = page.next_offset
        return results[:MAX_MATCHES]


def _text(element: Any) -> str:
    """An identifier's value as a QIDO-RS query value (multiple values joined by `\\`)."""
    value = element.value
    if value is None or value == "":
        return ""
    if element.VR == "SQ":
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)


def _answer(result: dict[str, Any], wanted: list[int], identifier: Dataset) -> Dataset:
    """A C-FIND response identifier: the keys asked for, from a QIDO-RS result."""
    kept = {k: v for k, v in result.items() if int(k, 16) in wanted}
    ds = Dataset.from_json(kept)
    for tag in wanted:
        if tag not in ds:
            ds.add_new(tag, identifier[tag].VR, None)
    ds.QueryRetrieveLevel = identifier.QueryRetrieveLevel
    # The index keeps text as Unicode (PS3.18 F.2: DICOM JSON is UTF-8).
    ds.SpecificCharacterSet = "ISO_IR 192"
    return ds
