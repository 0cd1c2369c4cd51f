"""`dicomweb-server send`: studies to another archive by C-STORE (a Storage SCU), for
migrations. One association per run; the presentation contexts are the instances' SOP
classes with their stored syntaxes and Explicit VR Little Endian, which an object is
converted to when the peer took no syntax it is stored in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pynetdicom import AE

from dicomweb_server.dimse.gateway import (
    accepted_syntaxes,
    outgoing_dataset,
    parse_address,
    storage_contexts,
)
from dicomweb_server.services.context import Caller
from dicomweb_server.services.ports.store import StoredInstance
from dicomweb_server.services.retrieve import RetrieveService


@dataclass
class Sent:
    sent: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # SOP Instance UID, why


def send_studies(
    retrieve: RetrieveService,
    caller: Caller,
    studies: list[str],
    destination: str,
    calling_ae: str = "DICOMWEB",
    progress: Callable[[int, int], None] = lambda _done, _total: None,
) -> Sent:
    """C-STORE every instance of `studies` to `destination`; NotFound for a study that is
    not stored, ConnectionError when the peer cannot be reached or refuses."""
    title, host, port = parse_address(destination, "--to")
    found: list[StoredInstance] = [i for s in studies for i in retrieve.objects(caller, s)]
    ae = AE(ae_title=calling_ae)
    association = ae.associate(host, port, contexts=storage_contexts(found), ae_title=title)
    if not association.is_established:
        raise ConnectionError(f"{title} at {host}:{port} refused or could not be reached")
    result = Sent()
    try:
        accepted = accepted_syntaxes(association.accepted_contexts)
        for n, item in enumerate(found):
            taken = accepted.get(item.sop_class_uid, set())
            if not taken:
                result.failed.append((item.sop_instance_uid, "the peer takes no such SOP class"))
                continue
            status = association.send_c_store(outgoing_dataset(retrieve, item, taken))
            code = int(getattr(status, "Status", 0xFFFF)) if status else 0xFFFF
            if code == 0 or code & 0xF000 == 0xB000:
                result.sent += 1
            else:
                result.failed.append((item.sop_instance_uid, f"status {code:04X}H"))
            progress(n + 1, len(found))
    finally:
        association.release()
    return result
