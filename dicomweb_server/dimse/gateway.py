"""The DIMSE face of the archive (pynetdicom), over the same services as the web: C-ECHO,
C-STORE into the ingest of STOW-RS (acknowledged once the object is durable and indexed),
and C-FIND through the QIDO-RS matching engine (a C-FIND identifier becomes the same query).
An entry point beside web/, never importing it."""

from __future__ import annotations

import io
import ipaddress
import logging
import shutil
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom import _config as pynetdicom_config
from pynetdicom.presentation import build_context, build_role
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StorageCommitmentPushModel,
    StorageCommitmentPushModelInstance,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from dicomweb_server.dicom import uids
from dicomweb_server.dicom.attributes import Level
from dicomweb_server.dicom.errors import DicomError
from dicomweb_server.dicom.matching import parse_search
from dicomweb_server.dicom.numbers import parse_integer
from dicomweb_server.services import audit
from dicomweb_server.services.audit import AuditTrail
from dicomweb_server.services.context import EVERY_SCOPE, Caller, StudyScope, granted
from dicomweb_server.services.errors import Forbidden, NotFound, ServiceError, Unauthenticated
from dicomweb_server.services.ports.store import StoredInstance
from dicomweb_server.services.retrieve import RetrieveService
from dicomweb_server.services.search import SearchService
from dicomweb_server.services.spool import RequestSpool
from dicomweb_server.services.store import StorePart

log = logging.getLogger("dicomweb_server.dimse")

# PS3.4 C.4.1.1.4: C-FIND statuses.
PENDING, SUCCESS = 0xFF00, 0x0000
UNABLE_TO_PROCESS = 0xC000  # identifier does not match SOP class, or cannot be processed
# PS3.7 C.5.21: Refused: Not Authorized (the calling AE title lacks the scope).
NOT_AUTHORIZED = 0x0124
# PS3.7 C.5: N-ACTION statuses, and the failure reasons of a commitment (PS3.4 J.3.3.1).
NO_SUCH_ACTION, INVALID_ARGUMENT = 0x0123, 0x0115
NO_SUCH_INSTANCE, CLASS_CONFLICT = 0x0112, 0x0119
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
# PS3.4 C.4.2.1.5 / C.4.3.1.4: retrieve statuses.
MOVE_DESTINATION_UNKNOWN = 0xA801
IDENTIFIER_DOES_NOT_MATCH = 0xA900
# Sub-operations one C-MOVE or C-GET may count (Number of ... Sub-operations is US).
MAX_SUBOPERATIONS = 65_535
_PRESENTATION_CONTEXTS = 128  # PS3.8 9.3.2.2: at most 128 in one association


class Ingest(Protocol):
    """The ingest of STOW-RS (StoreService)."""

    def request_spool(self) -> Any: ...

    def begin(self, caller: Caller) -> Any: ...


@dataclass(frozen=True)
class AeAccess:
    """What a calling AE title may do: scopes (read, write, download ...) and, when set, the
    access-control labels of the studies it may see and store into."""

    scopes: frozenset[str]
    labels: frozenset[str] | None = None
    # The addresses (networks) the AE title may call from: an AE title is no credential, so
    # its rights go with where it calls from. Without any: loopback only.
    addresses: tuple[IPNetwork, ...] = ()
    # With DICOM TLS: the name its certificate must carry (subject CN or a DNS name of its
    # subjectAltName); None: any (or none, over plain TCP).
    subject: str | None = None

    def allows_certificate(self, certificate: dict[str, Any] | None) -> bool:
        if self.subject is None:
            return True
        if not certificate:
            return False
        names = {
            value
            for rdn in certificate.get("subject", ())
            for key, value in rdn
            if key == "commonName"
        }
        names |= {value for kind, value in certificate.get("subjectAltName", ()) if kind == "DNS"}
        return self.subject in names

    def allows(self, address: str) -> bool:
        try:
            peer = ipaddress.ip_address(address.split("%")[0])
        except ValueError:
            return False
        if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped is not None:
            peer = peer.ipv4_mapped
        if not self.addresses:
            return peer.is_loopback
        return any(peer in network for network in self.addresses)


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(text: str, entry: str) -> tuple[IPNetwork, ...]:
    try:
        return tuple(ipaddress.ip_network(a.strip(), strict=False) for a in text.split("|"))
    except ValueError:
        raise ValueError(
            f"DICOMWEB_DIMSE_AE_ACCESS: {entry!r}: the addresses after @ are IP addresses or "
            "networks (10.0.0.5|10.1.0.0/24)"
        ) from None


def parse_ae_access(text: str) -> dict[str, AeAccess]:
    """`AETITLE[@address|network...]=scope,scope[:label|label];...`
    (DICOMWEB_DIMSE_AE_ACCESS); ValueError naming a bad entry or scope. An entry without
    addresses is taken from loopback only."""
    found: dict[str, AeAccess] = {}
    for entry in (e.strip() for e in text.split(";")):
        if not entry:
            continue
        named, equals, rest = entry.partition("=")
        named, hash_sign, subject = named.partition("#")
        title, at, where = named.partition("@")
        addresses = _networks(where, entry) if at else ()
        if hash_sign and not subject.strip():
            raise ValueError(f"DICOMWEB_DIMSE_AE_ACCESS: {entry!r}: a certificate name after #")
        scopes_text, _, labels_text = rest.partition(":")
        scopes = frozenset(x.strip() for x in scopes_text.split(",") if x.strip())
        if not equals or not title.strip() or not scopes:
            raise ValueError(f"DICOMWEB_DIMSE_AE_ACCESS: {entry!r} is not AETITLE=scope,...")
        unknown = scopes - EVERY_SCOPE
        if unknown:
            raise ValueError(f"DICOMWEB_DIMSE_AE_ACCESS: unknown scope {sorted(unknown)[0]!r}")
        labels = frozenset(x.strip() for x in labels_text.split("|") if x.strip()) or None
        found[title.strip()] = AeAccess(
            granted(scopes), labels, addresses, subject.strip() if hash_sign else None
        )
    return found


@dataclass
class DimseSettings:
    ae_title: str = "DICOMWEB"
    host: str = "127.0.0.1"
    port: int = 11112
    # Calling AE titles accepted (empty: any).
    accepted: frozenset[str] = field(default_factory=frozenset)
    # C-MOVE destinations: AE title -> (host, port).
    peers: dict[str, tuple[str, int]] = field(default_factory=dict)
    # What each calling AE title may do; None: every AE title may do everything (the
    # server has no access control, DICOMWEB_AUTH=none).
    access: dict[str, AeAccess] | None = None
    # DICOM TLS (PS3.15 B.1): the server context; None: plain TCP.
    tls: ssl.SSLContext | None = None


def tls_context(cert: str, key: str, ca: str | None = None) -> ssl.SSLContext:
    """The DIMSE service's TLS context: TLS 1.2 or newer (PS3.15 B.9, BCP 195), the peer's
    certificate required when a CA is given."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    if ca:
        context.load_verify_locations(ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def parse_address(text: str, what: str) -> tuple[str, str, int]:
    """`AETITLE@host:port` as (AE title, host, port); ValueError naming `what` otherwise."""
    title, at, address = text.strip().partition("@")
    host, colon, port_text = address.rpartition(":")
    if not (at and colon and title.strip() and host):
        raise ValueError(f"{what}: {text!r} is not AETITLE@host:port")
    try:
        port = parse_integer(port_text, f"{what}: the port", 1, 65535)
    except DicomError as exc:
        raise ValueError(str(exc)) from None
    return title.strip(), host.strip("[]"), port


def parse_peers(text: str) -> dict[str, tuple[str, int]]:
    """`AETITLE@host:port,...` (DICOMWEB_DIMSE_PEERS); ValueError naming a bad entry."""
    found: dict[str, tuple[str, int]] = {}
    for entry in (e.strip() for e in text.split(",")):
        if entry:
            title, host, port = parse_address(entry, "DICOMWEB_DIMSE_PEERS")
            found[title] = (host, port)
    return found


class DimseGateway:
    def __init__(
        self,
        store: Ingest,
        search: SearchService,
        retrieve: RetrieveService,
        config: DimseSettings,
        trail: AuditTrail | None = None,
    ) -> None:
        self._store = store
        self._search = search
        self._retrieve = retrieve
        self.config = config
        # DICOM audit messages (PS3.15 A.5) of what peers do, as for the web.
        self._trail = trail
        self._server: Any = None

    def application_entity(self) -> AE:
        ae = AE(ae_title=self.config.ae_title)
        ae.maximum_pdu_size = 0  # no limit on what peers send
        for context in AllStoragePresentationContexts:
            assert context.abstract_syntax is not None
            # SCP for C-STORE; the peer may take the SCP role too (C-GET, PS3.4 C.4.3).
            ae.add_supported_context(
                context.abstract_syntax, STORAGE_SYNTAXES, scu_role=True, scp_role=True
            )
        ae.add_supported_context(Verification)
        for model in (
            StudyRootQueryRetrieveInformationModelFind,
            PatientRootQueryRetrieveInformationModelFind,
            StudyRootQueryRetrieveInformationModelGet,
            PatientRootQueryRetrieveInformationModelGet,
            StudyRootQueryRetrieveInformationModelMove,
            PatientRootQueryRetrieveInformationModelMove,
        ):
            ae.add_supported_context(model)
        ae.add_supported_context(StorageCommitmentPushModel)
        accepted = set(self.config.accepted)
        if self.config.access is not None:
            # Only the AE titles given rights may associate (others are rejected).
            given = set(self.config.access)
            accepted = (accepted & given) if accepted else given
        if accepted or self.config.access is not None:
            # No AE title at all: one no peer can have (a backslash is never in one).
            ae.require_calling_aet = sorted(accepted) or ["\\"]
        return ae

    def start(self) -> None:
        """Serve in background threads until `stop`."""
        # Received objects are written to a file in chunks, not decoded (for this process).
        pynetdicom_config.STORE_RECV_CHUNKED_DATASET = True
        handlers: list[Any] = [
            (evt.EVT_C_ECHO, self._echo),
            (evt.EVT_C_STORE, self._store_instance),
            (evt.EVT_C_FIND, self._find),
            (evt.EVT_C_GET, self._get),
            (evt.EVT_C_MOVE, self._move),
            (evt.EVT_N_ACTION, self._commitment_request),
        ]
        self._server = self.application_entity().start_server(
            (self.config.host, self.config.port),
            block=False,
            evt_handlers=handlers,
            ssl_context=self.config.tls,
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

    def _caller(self, event: Any) -> Caller:
        """The calling AE title as a Caller: its rights from DICOMWEB_DIMSE_AE_ACCESS (every
        scope when the server has no access control)."""
        requestor = event.assoc.requestor
        calling = str(requestor.ae_title).strip()
        client = str(requestor.address)
        if self.config.access is None:
            return Caller(f"ae:{calling}", EVERY_SCOPE, None, client=client)
        rights = self.config.access.get(calling)
        if rights is not None and not (
            rights.allows(client) and rights.allows_certificate(_peer_certificate(event))
        ):
            # An allowed AE title from somewhere else: someone else naming it. Refused (no
            # rights: 0124 to every operation) and audited, once per association.
            if self._trail is not None and not getattr(
                event.assoc, "_dicomweb_refusal_audited", False
            ):
                event.assoc._dicomweb_refusal_audited = True
                self._trail.record(
                    audit.authentication(
                        f"ae:{calling}",
                        client,
                        "the AE title called from an address (or with a certificate) it may not",
                    )
                )
            rights = None
        if rights is None:
            return Caller(f"ae:{calling}", frozenset(), StudyScope(), client=client)
        scope = None if rights.labels is None else StudyScope(labels=rights.labels)
        return Caller(f"ae:{calling}", rights.scopes, scope, client=client)

    def _echo(self, event: Any) -> int:
        return SUCCESS

    def _store_instance(self, event: Any) -> int:
        """PS3.4 B.2.3: the status of the STOW-RS outcome of the same object, stored as the
        calling AE title (its scopes, and labels when it is limited to some)."""
        try:
            with self._store.request_spool() as spool:
                request = self._store.begin(self._caller(event))
                folder: RequestSpool = spool
                path = folder.new_path(".dcm")
                # pynetdicom wrote what it received to a file of its own as it came
                # (STORE_RECV_CHUNKED_DATASET): the object never sits whole in memory.
                shutil.move(event.dataset_path, path)
                try:
                    outcomes = request.add([StorePart(path, None)]) + request.finish()
                except BaseException:
                    request.discard()
                    raise
        except (Unauthenticated, Forbidden):
            self._audit_transfer(event, [], audit.MINOR_FAILURE, stored=True)
            return NOT_AUTHORIZED
        except ServiceError as exc:
            log.warning("a C-STORE could not be stored: %s", type(exc).__name__)
            self._audit_transfer(event, [], audit.SERIOUS_FAILURE, stored=True)
            return OUT_OF_RESOURCES
        if not outcomes:
            return OUT_OF_RESOURCES
        outcome = outcomes[0]
        studies = [outcome.study_uid] if outcome.study_uid else []
        self._audit_transfer(
            event, studies, audit.SUCCESS if outcome.stored else audit.MINOR_FAILURE, stored=True
        )
        return int(outcome.status)

    def _audit_transfer(self, event: Any, studies: list[str], outcome: str, stored: bool) -> None:
        if self._trail is not None:
            message = audit.transfer(self._caller(event), studies, outcome, stored)
            self._trail.record(message)

    def _find(self, event: Any) -> Iterator[tuple[int, Dataset | None]]:
        identifier: Dataset = event.identifier
        if self._trail is not None:
            keys = ", ".join(e.keyword or str(e.tag) for e in identifier)
            self._trail.record(audit.query(self._caller(event), f"C-FIND {keys}", audit.SUCCESS))
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
        except (Unauthenticated, Forbidden):
            yield NOT_AUTHORIZED, None
            return
        except (DicomError, ServiceError, ValueError) as exc:
            log.info("a C-FIND was refused: %s", exc)
            yield UNABLE_TO_PROCESS, None
            return
        yield SUCCESS, None

    def _get(self, event: Any) -> Iterator[Any]:
        """C-GET (PS3.4 C.4.3): the instances on the same association, each in a syntax
        the peer accepted for its SOP class (converted when it took only others)."""
        try:
            found = self._instances(event)
        except (Unauthenticated, Forbidden):
            yield 0
            yield NOT_AUTHORIZED, None
            return
        except (DicomError, ServiceError, ValueError) as exc:
            log.info("a C-GET was refused: %s", exc)
            yield 0
            yield IDENTIFIER_DOES_NOT_MATCH, None
            return
        yield len(found)
        accepted = accepted_syntaxes(event.assoc.accepted_contexts)
        self._audit_transfer(event, sorted({i.study_uid for i in found}), audit.SUCCESS, False)
        yield from self._send(event, found, accepted)

    def _move(self, event: Any) -> Iterator[Any]:
        """C-MOVE (PS3.4 C.4.2) to a configured destination, over a new association whose
        presentation contexts are those of the instances."""
        destination = self.config.peers.get(str(event.move_destination).strip())
        if destination is None:
            yield None, None  # pynetdicom answers A801, Move Destination Unknown
            return
        try:
            found = self._instances(event)
        except (DicomError, ServiceError, ValueError) as exc:
            # Not authorized or not matching: no sub-operation (the peer sees none moved).
            log.info("a C-MOVE was refused: %s", type(exc).__name__)
            yield (*destination, {})
            yield 0
            return
        # The sub-association is opened by pynetdicom between the yields below; its accepted
        # contexts say which stored syntaxes the destination takes, and the others are
        # converted (PS3.4 C.4.2.3.1: the SCP may convert to a syntax the destination took).
        accepted: dict[str, set[str]] = {}

        def established(sub: Any) -> None:
            accepted.update(accepted_syntaxes(sub.assoc.accepted_contexts))

        options = {
            "contexts": storage_contexts(found),
            "evt_handlers": [(evt.EVT_ESTABLISHED, established)],
        }
        yield (*destination, options)
        yield len(found)
        self._audit_transfer(event, sorted({i.study_uid for i in found}), audit.SUCCESS, False)
        yield from self._send(event, found, accepted)

    def _send(
        self, event: Any, found: list[StoredInstance], accepted: dict[str, set[str]] | None
    ) -> Iterator[tuple[int, Dataset | None]]:
        for item in found:
            if event.is_cancelled:
                yield CANCELLED, None
                return
            wanted = None if accepted is None else accepted.get(item.sop_class_uid, set())
            yield PENDING, self._dataset(item, wanted)

    def _dataset(self, item: StoredInstance, accepted: set[str] | None) -> Dataset:
        return outgoing_dataset(self._retrieve, item, accepted)

    def _instances(self, event: Any) -> list[StoredInstance]:
        """The instances a C-GET or C-MOVE identifier names (PS3.4 C.4.2.2.1: unique keys
        down to the level, lists allowed)."""
        identifier: Dataset = event.identifier
        caller = self._caller(event)
        level = str(identifier.get("QueryRetrieveLevel", "")).strip().upper()
        studies = _uid_list(identifier, "StudyInstanceUID")
        if level == "PATIENT":
            patient = str(identifier.get("PatientID", "")).strip()
            if not patient:
                raise ValueError("a PATIENT level retrieve names the PatientID")
            request = parse_search([("PatientID", patient)])
            page = self._search.search(caller, Level.STUDY, request, lambda *_: "")
            studies = [str(r["0020000D"]["Value"][0]) for r in page.results]
        elif level not in ("STUDY", "SERIES", "IMAGE") or not studies:
            raise ValueError(f"a {level or 'missing'} level retrieve names no study")
        series = _uid_list(identifier, "SeriesInstanceUID") if level in ("SERIES", "IMAGE") else []
        sops = _uid_list(identifier, "SOPInstanceUID") if level == "IMAGE" else []
        if level in ("SERIES", "IMAGE") and not series:
            raise ValueError("a SERIES or IMAGE level retrieve names the series")
        if level == "IMAGE" and not sops:
            raise ValueError("an IMAGE level retrieve names the instances")
        found: list[StoredInstance] = []
        every: list[str | None] = [None]
        for study in studies:
            for one_series in series or every:
                for sop in sops or every:
                    try:
                        found += self._retrieve.objects(caller, study, one_series, sop)
                    except NotFound:
                        continue
                    if len(found) > MAX_SUBOPERATIONS:
                        raise ValueError(f"at most {MAX_SUBOPERATIONS} instances per retrieve")
        return found

    def _commitment_request(self, event: Any) -> tuple[int, Dataset | None]:
        """Storage Commitment Push Model, N-ACTION (PS3.4 J.3.2): accepted at once; the
        result follows as an N-EVENT-REPORT (J.3.3) on the same association, or on a new one
        to the requestor's entry in DICOMWEB_DIMSE_PEERS when it has been released."""
        if int(event.request.ActionTypeID) != 1:
            return NO_SUCH_ACTION, None
        request: Dataset = event.action_information
        transaction = str(request.get("TransactionUID", ""))
        references = [
            (
                str(item.get("ReferencedSOPClassUID", "")),
                str(item.get("ReferencedSOPInstanceUID", "")),
            )
            for item in request.get("ReferencedSOPSequence", [])
        ]
        if not transaction or not references:
            return INVALID_ARGUMENT, None
        caller = self._caller(event)
        calling = str(event.assoc.requestor.ae_title).strip()
        threading.Thread(
            target=self._commitment_result,
            args=(event.assoc, calling, caller, transaction, references),
            daemon=True,
        ).start()
        return SUCCESS, None

    def _commitment_result(
        self,
        assoc: Any,
        calling: str,
        caller: Caller,
        transaction: str,
        references: list[tuple[str, str]],
    ) -> None:
        try:
            held = self._held(caller, [uid for _, uid in references])
        except ServiceError:
            held = {}
        report = Dataset()
        report.TransactionUID = transaction
        committed, failed = [], []
        for sop_class, sop_uid in references:
            item = Dataset()
            item.ReferencedSOPClassUID = sop_class
            item.ReferencedSOPInstanceUID = sop_uid
            if held.get(sop_uid) == sop_class:
                committed.append(item)
            else:
                # PS3.4 J.3.3.1: 0112 no such object instance, 0119 class-instance conflict.
                item.FailureReason = NO_SUCH_INSTANCE if sop_uid not in held else CLASS_CONFLICT
                failed.append(item)
        if committed:
            report.ReferencedSOPSequence = committed
        if failed:
            report.FailedSOPSequence = failed
        event_type = 2 if failed else 1
        # The N-ACTION response goes out when the handler returns; the report after it.
        time.sleep(0.05)
        try:
            if assoc.is_established:
                assoc.send_n_event_report(
                    report,
                    event_type,
                    StorageCommitmentPushModel,
                    StorageCommitmentPushModelInstance,
                )
                return
            self._report_on_new_association(calling, report, event_type)
        except Exception as exc:  # noqa: BLE001 - the peer asks again (J.3.3)
            log.warning("a storage commitment result could not be sent: %s", type(exc).__name__)

    def _report_on_new_association(self, calling: str, report: Dataset, event_type: int) -> None:
        destination = self.config.peers.get(calling)
        if destination is None:
            log.warning(
                "no DICOMWEB_DIMSE_PEERS entry for %s: its commitment result is kept", calling
            )
            return
        ae = AE(ae_title=self.config.ae_title)
        # We play the Storage Commitment SCP on an association we request (PS3.4 J.3.3).
        ae.add_requested_context(StorageCommitmentPushModel)
        role = build_role(StorageCommitmentPushModel, scp_role=True)
        assoc = ae.associate(*destination, ae_title=calling, ext_neg=[role])
        if assoc.is_established:
            try:
                assoc.send_n_event_report(
                    report,
                    event_type,
                    StorageCommitmentPushModel,
                    StorageCommitmentPushModelInstance,
                )
            finally:
                assoc.release()

    def _held(self, caller: Caller, sop_uids: list[str]) -> dict[str, str]:
        """SOP Instance UID -> SOP Class UID of those the archive holds (the caller's)."""
        held: dict[str, str] = {}
        for start in range(0, len(sop_uids), 100):
            chunk = [u for u in sop_uids[start : start + 100] if uids.is_valid_uid(u)]
            if not chunk:
                continue
            request = parse_search(
                [
                    ("SOPInstanceUID", "\\".join(chunk)),
                    ("includefield", "00080016"),
                    ("limit", "100"),
                ]
            )
            page = self._search.search(caller, Level.INSTANCE, request, lambda *_: "")
            for result in page.results:
                sop = result.get("00080018", {}).get("Value", [None])[0]
                sop_class = result.get("00080016", {}).get("Value", [None])[0]
                if sop and sop_class:
                    held[str(sop)] = str(sop_class)
        return held

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


def _peer_certificate(event: Any) -> dict[str, Any] | None:
    """The certificate the peer showed over DICOM TLS (verified against the CA), or None."""
    sock = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
    if isinstance(sock, ssl.SSLSocket):
        found = sock.getpeercert()
        return dict(found) if found else None
    return None


def _uid_list(identifier: Dataset, keyword: str) -> list[str]:
    value = identifier.get(keyword)
    if value is None or value == "":
        return []
    values = list(value) if type(value).__name__ == "MultiValue" else [value]
    return [uids.require_uid(str(v).strip(), keyword) for v in values if str(v).strip()]


def storage_contexts(found: list[StoredInstance]) -> list[Any]:
    """The presentation contexts an association that sends `found` requests (C-MOVE,
    `send`): per SOP class one context for each stored syntax and one for the native syntaxes
    (Explicit VR Little Endian, else Implicit) to convert to, each apart so that the peer can
    take several (a context carries one accepted syntax, PS3.8 9.3.2.2). The native ones come
    first, since any object can be sent in them; at most 128 in all."""
    syntaxes: dict[str, set[str]] = {}
    for item in found:
        syntaxes.setdefault(item.sop_class_uid, set()).add(item.transfer_syntax_uid)
    both = [uids.EXPLICIT_VR_LITTLE_ENDIAN, uids.IMPLICIT_VR_LITTLE_ENDIAN]
    native = [build_context(c, both) for c in sorted(syntaxes)]
    own = [
        build_context(sop_class, syntax)
        for sop_class, stored in sorted(syntaxes.items())
        for syntax in sorted(stored - {uids.EXPLICIT_VR_LITTLE_ENDIAN})
    ]
    return [*native, *own][:_PRESENTATION_CONTEXTS]


def outgoing_dataset(
    retrieve: RetrieveService, item: StoredInstance, accepted: set[str] | None
) -> Dataset:
    """The stored object to send, in its own syntax when the peer takes it (or when what it
    takes is not known), else converted to Explicit VR Little Endian (PS3.5 A.2), which
    pynetdicom re-encodes for a peer that took only Implicit VR Little Endian."""
    if not accepted or item.transfer_syntax_uid in accepted:
        data = b"".join(retrieve.stream(item))
    else:
        data = retrieve.transcoded(item, uids.EXPLICIT_VR_LITTLE_ENDIAN)
    return dcmread(io.BytesIO(data))


def accepted_syntaxes(contexts: list[Any]) -> dict[str, set[str]]:
    """The transfer syntaxes the peer took per SOP class, where it plays Storage SCP."""
    found: dict[str, set[str]] = {}
    for context in contexts:
        found.setdefault(str(context.abstract_syntax), set()).update(
            str(t) for t in context.transfer_syntax
        )
    return found


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
