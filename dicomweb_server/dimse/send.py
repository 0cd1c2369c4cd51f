"""`dicomweb-server send`: studies to another archive by C-STORE (a Storage SCU), for
migrations. One association per run; the presentation contexts are the instances' SOP
classes with their stored syntaxes and Explicit VR Little Endian, which an object is
converted to when the peer took no syntax it is stored in."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field

from pydicom import dcmread
from pynetdicom import AE
from pynetdicom.presentation import build_context

from dicomweb_server.dicom import uids
from dicomweb_server.dimse.gateway import parse_address
from dicomweb_server.services.context import Caller
from dicomweb_server.services.ports.store import StoredInstance
from dicomweb_server.services.retrieve import RetrieveService

_PRESENTATION_CONTEXTS = 128  # PS3.8 9.3.2.2


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
    syntaxes: dict[str, set[str]] = {}
    for item in found:
        syntaxes.setdefault(item.sop_class_uid, set()).add(item.transfer_syntax_uid)
    contexts = [
        build_context(
            sop_class,
            [*sorted(stored - {uids.EXPLICIT_VR_LITTLE_ENDIAN}), uids.EXPLICIT_VR_LITTLE_ENDIAN],
        )
        for sop_class, stored in sorted(syntaxes.items())
    ][:_PRESENTATION_CONTEXTS]
    ae = AE(ae_title=calling_ae)
    association = ae.associate(host, port, contexts=contexts, ae_title=title)
    if not association.is_established:
        raise ConnectionError(f"{title} at {host}:{port} refused or could not be reached")
    result = Sent()
    try:
        accepted: dict[str, set[str]] = {}
        for context in association.accepted_contexts:
            accepted.setdefault(str(context.abstract_syntax), set()).update(
                str(t) for t in context.transfer_syntax
            )
        for n, item in enumerate(found):
            taken = accepted.get(item.sop_class_uid, set())
            if not taken:
                result.failed.append((item.sop_instance_uid, "the peer takes no such SOP class"))
                continue
            if item.transfer_syntax_uid in taken:
                data = b"".join(retrieve.stream(item))
            else:
                data = retrieve.transcoded(item, uids.EXPLICIT_VR_LITTLE_ENDIAN)
            status = association.send_c_store(dcmread(io.BytesIO(data)))
            code = int(getattr(status, "Status", 0xFFFF)) if status else 0xFFFF
            if code == 0 or code & 0xF000 == 0xB000:
                result.sent += 1
            else:
                result.failed.append((item.sop_instance_uid, f"status {code:04X}H"))
            progress(n + 1, len(found))
    finally:
        association.release()
    return result
