"""The whole URL surface: the DICOMweb resources under their root (`DICOMWEB_BASE_PATH`),
the contract and the health probes beside it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import Receive, Scope, Send

from dicomweb_server.services.context import ADMIN, READ, SHARE, WRITE
from dicomweb_server.web import admin, health, qido, rendered, shares, stow, wado, wado_uri
from dicomweb_server.web.auth import caller
from dicomweb_server.web.capabilities import capabilities_response, media_types_of
from dicomweb_server.web.paths import FRAMES, INSTANCE, SERIES, STUDY

Handler = Callable[[Request], Awaitable[Response]]


class Resource(Route):
    """One path and every method it has. OPTIONS answers the Retrieve Capabilities
    transaction (PS3.18 8.9) from the handlers' media types; a method it lacks answers 405
    with an Allow header naming them all (RFC 9110 15.5.6), whichever method was asked."""

    def __init__(
        self,
        path: str,
        public: bool = False,
        scope: str | dict[str, str] | None = None,
        **handlers: Handler,
    ) -> None:
        self.handlers = handlers
        # The scope a caller needs per method (reads: read, stores: write, unless `scope`
        # names one for every method or one per method); none for a public resource.
        default = {m: WRITE if m == "POST" else READ for m in handlers}
        if isinstance(scope, str):
            default = dict.fromkeys(handlers, scope)
        elif scope is not None:
            default.update(scope)
        self.scopes = {} if public else default

        async def dispatch(request: Request) -> Response:
            method = "GET" if request.method == "HEAD" else request.method
            if method in self.scopes:
                caller(request).require(self.scopes[method])
            return await self.handlers[method](request)

        super().__init__(path, dispatch, methods=list(handlers))
        self.allow = ", ".join(sorted({*(self.methods or ()), "OPTIONS"}))
        self.representations = {m: media_types_of(h) for m, h in handlers.items()}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] == "OPTIONS":
            request = Request(scope, receive)
            response = capabilities_response(request, self.path, self.representations, self.allow)
            await response(scope, receive, send)
            return
        if self.methods and scope["method"] not in self.methods:
            raise HTTPException(status_code=405, headers={"Allow": self.allow})
        await super().handle(scope, receive, send)


DICOMWEB_ROUTES: list[BaseRoute] = [
    # STOW-RS (POST), PS3.18 10.5; QIDO-RS (GET /studies), 10.6; WADO-RS (GET a study), 10.4
    Resource("/studies", GET=qido.search_studies, POST=stow.store_instances),
    Resource(STUDY, GET=wado.retrieve_instances, POST=stow.store_instances),
    # QIDO-RS, PS3.18 10.6
    Resource("/series", GET=qido.search_series),
    Resource("/instances", GET=qido.search_instances),
    Resource(STUDY + "/series", GET=qido.search_series),
    Resource(STUDY + "/instances", GET=qido.search_instances),
    Resource(SERIES + "/instances", GET=qido.search_instances),
    # WADO-RS, PS3.18 10.4
    Resource(SERIES, GET=wado.retrieve_instances),
    Resource(INSTANCE, GET=wado.retrieve_instances),
    Resource(STUDY + "/metadata", GET=wado.retrieve_metadata),
    Resource(SERIES + "/metadata", GET=wado.retrieve_metadata),
    Resource(INSTANCE + "/metadata", GET=wado.retrieve_metadata),
    Resource(FRAMES, GET=wado.retrieve_frames),
    Resource(INSTANCE + "/bulkdata/{path:path}", GET=wado.retrieve_bulk_data),
    # WADO-URI, PS3.18 9
    Resource("/wado", GET=wado_uri.retrieve_wado_uri),
    # Rendered resources and thumbnails, PS3.18 10.4.1.1.3-4
    Resource(STUDY + "/rendered", GET=rendered.retrieve_rendered),
    Resource(SERIES + "/rendered", GET=rendered.retrieve_rendered),
    Resource(INSTANCE + "/rendered", GET=rendered.retrieve_rendered),
    Resource(FRAMES + "/rendered", GET=rendered.retrieve_rendered_frames),
    Resource(STUDY + "/thumbnail", GET=rendered.retrieve_thumbnail),
    Resource(SERIES + "/thumbnail", GET=rendered.retrieve_thumbnail),
    Resource(INSTANCE + "/thumbnail", GET=rendered.retrieve_thumbnail),
    Resource(FRAMES + "/thumbnail", GET=rendered.retrieve_thumbnail),
    # Outside PS3.18: administration (scope admin)
    Resource(STUDY + "/labels", scope=ADMIN, GET=admin.study_labels, PUT=admin.set_study_labels),
    # Share links: made by an admin or a caller with scope share, redeemed by their holder.
    Resource(
        "/shares",
        scope={"POST": SHARE, "GET": ADMIN},
        POST=shares.create_share,
        GET=shares.list_shares,
    ),
    Resource("/shares/redeem", public=True, POST=shares.redeem_share),
    Resource("/shares/open", public=True, GET=shares.open_share),
    Resource("/shares/{share}", scope=ADMIN, GET=shares.get_share, DELETE=shares.revoke_share),
]

# Outside the DICOMweb root: the HTTP contract and the probes of load balancers and Kubernetes.
ROOT_ROUTES: list[BaseRoute] = [
    Resource("/openapi.yaml", public=True, GET=health.openapi),
    Resource("/health", public=True, GET=health.health),
    Resource("/ready", public=True, GET=health.ready),
]


def url_surface(base_path: str) -> list[BaseRoute]:
    """Every route of the server, the DICOMweb ones under `base_path`."""
    if base_path:
        return [*ROOT_ROUTES, Mount(base_path, routes=DICOMWEB_ROUTES)]
    return [*ROOT_ROUTES, *DICOMWEB_ROUTES]
