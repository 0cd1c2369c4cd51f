"""What every route needs from the request: the services, the base URL, validated UIDs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, Protocol, TypeVar

from starlette.requests import HTTPConnection, Request

from dicomweb_server.dicom import uids
from dicomweb_server.services.access import AccessService
from dicomweb_server.services.audit import AuditTrail
from dicomweb_server.services.changes import ChangeFeed, ChangeHub
from dicomweb_server.services.corrections import CorrectionService
from dicomweb_server.services.delete import DeleteService
from dicomweb_server.services.errors import PayloadTooLarge
from dicomweb_server.services.reject import RejectService
from dicomweb_server.services.render import RenderService
from dicomweb_server.services.retrieve import RetrieveService
from dicomweb_server.services.search import SearchService
from dicomweb_server.services.shares import ShareService
from dicomweb_server.services.stats import StatsService
from dicomweb_server.services.store import StoreService
from dicomweb_server.services.webhooks import Webhooks
from dicomweb_server.services.workitems import EventChannels, WorkitemService
from dicomweb_server.web.access import after_response
from dicomweb_server.web.threads import in_thread, read

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True)
class PublicRoot:
    """Where clients reach the DICOMweb root: DICOMWEB_PUBLIC_BASE_URL when set (behind a
    proxy), else the request's own scheme and host, and DICOMWEB_BASE_PATH."""

    public_base_url: str | None
    base_path: str
    # Host values URLs may be built from (empty: any); another Host gets the first.
    allowed_hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class WebApp:
    """What the web application (/ui) is told, and where the installed viewer lies."""

    # The provider the app signs in at (authorization code with PKCE), when it may.
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_scope: str = "openid"
    # The folder `viewer install` fills (served at /viewer when it holds an app), and the
    # external viewer used otherwise ({study} in it).
    viewer_dir: Path | None = None
    viewer_url: str | None = None


class Archive(Protocol):
    """What the web layer is handed: the services and where its root is, never an adapter
    or the settings."""

    root: PublicRoot
    webapp: WebApp
    store: StoreService
    delete: DeleteService
    reject: RejectService
    corrections: CorrectionService
    search: SearchService
    stats: StatsService
    retrieve: RetrieveService
    render: RenderService
    access: AccessService
    shares: ShareService
    audit: AuditTrail
    changes: ChangeFeed
    hub: ChangeHub
    webhooks: Webhooks
    workitems: WorkitemService
    channels: EventChannels
    # The organisation's root of the UIDs the server makes ("": 2.25.<UUID>).
    uid_root: str
    # Short reads may run on the event loop (web/threads.py `read`).
    reads_inline: bool

    def gauges(self) -> dict[str, tuple[str, float]]:
        """Values read at scrape time for `/metrics`: name -> (meaning, value)."""

    def problems(self) -> dict[str, str]:
        """Each backend that cannot be used now, with the reason (readiness)."""


def container(request: HTTPConnection) -> Archive:
    return request.app.state.container  # type: ignore[no-any-return]


async def index_read(
    request: HTTPConnection, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs
) -> T:
    """`fn(*args, **kwargs)`, a call that only reads the index: on the event loop when the
    archive's database allows it and the read is short, else in the thread pool
    (web/threads.py `read`)."""
    return await read(container(request).reads_inline, fn, *args, **kwargs)


async def hold_memory(request: Request, amount: int) -> None:
    """Hold `amount` bytes of the process's decode budget until the response has been sent
    (or the client has gone): a transcoded body stays in memory while it is sent. Waits for
    room; Busy (503) when none comes."""
    if amount <= 0:
        return
    budget = container(request).retrieve.pixels.budget
    reservation = await in_thread(budget.acquire, amount)
    after_response(request.scope, reservation.release)


def path_uid(request: Request, name: str) -> str:
    labels = {
        "study": "Study Instance UID",
        "series": "Series Instance UID",
        "instance": "SOP Instance UID",
        "workitem": "Workitem UID",
    }
    return uids.require_uid(request.path_params[name], labels[name])


def scope_uids(request: Request) -> tuple[str, str | None, str | None]:
    """The study, series and instance UIDs of the request path, validated (absent: None)."""
    params = request.path_params
    return (
        path_uid(request, "study"),
        path_uid(request, "series") if "series" in params else None,
        path_uid(request, "instance") if "instance" in params else None,
    )


async def read_body(request: Request, limit: int, what: str) -> bytes:
    """The whole body of a request that is small by nature (JSON, a workitem), at most
    `limit` bytes: PayloadTooLarge past it, without reading on."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"{what} is at most {limit} bytes")
    return bytes(body)
