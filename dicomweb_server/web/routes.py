"""The whole URL surface: the DICOMweb resources under their root (`DICOMWEB_BASE_PATH`),
the contract and the health probes beside it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import quote

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Match, Mount, Route, Router, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from dicomweb_server.services.context import (
    ADMIN,
    DELETE,
    METRICS,
    READ,
    SHARE,
    UPDATE,
    WORKITEMS,
    WRITE,
)
from dicomweb_server.web import (
    admin,
    changefeed,
    corrections,
    delete,
    docs,
    health,
    metrics,
    qido,
    rendered,
    shares,
    sockets,
    stats,
    stow,
    subscriptions,
    ui,
    uids,
    ups,
    wado,
    wado_uri,
)
from dicomweb_server.web import audit as auditing
from dicomweb_server.web.auth import caller
from dicomweb_server.web.capabilities import capabilities_response, media_types_of
from dicomweb_server.web.errors import status_of
from dicomweb_server.web.paths import FILTERED_WORKLIST, FRAMES, INSTANCE, SERIES, STUDY, WORKITEM

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
        audited: str | None = None,
        **handlers: Handler,
    ) -> None:
        self.handlers = handlers
        # The audit message each method makes (web/audit.py): GET the kind `audited` names,
        # POST always a store; none for a resource not audited here, nor for DELETE (the
        # delete service records Study Deleted itself).
        self.audits = (
            {m: auditing.STORE if m == "POST" else audited for m in handlers if m != "DELETE"}
            if audited
            else {}
        )
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
            kind = self.audits.get(method)
            try:
                if method in self.scopes:
                    caller(request).require(self.scopes[method])
                response = await self.handlers[method](request)
            except Exception as exc:
                if kind is not None:
                    status = getattr(exc, "status_code", None) or status_of(type(exc)) or 500
                    auditing.record(request, kind, status)
                raise
            if kind is not None:
                auditing.record(request, kind, response.status_code)
            return response

        super().__init__(path, dispatch, methods=list(handlers))
        self._dispatch = dispatch
        self.allow = ", ".join(sorted({*(self.methods or ()), "OPTIONS"}))
        self.representations = {m: media_types_of(h) for m, h in handlers.items()}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] == "OPTIONS":
            request = Request(scope, receive)
            response = capabilities_response(
                request, [(self.path, self.representations)], self.allow
            )
            await response(scope, receive, send)
            return
        if self.methods and scope["method"] not in self.methods:
            raise HTTPException(status_code=405, headers={"Allow": self.allow})
        # The handler called directly, not through Starlette's request_response: an
        # exception goes up to the edge layer (web/access.py RequestLog), which answers it
        # with the same handlers, so the wrapper Starlette puts around every send of every
        # response was work done twice.
        response = await self._dispatch(Request(scope, receive, send))
        await response(scope, receive, send)


DICOMWEB_ROUTES: list[BaseRoute] = [
    # STOW-RS (POST), PS3.18 10.5; QIDO-RS (GET /studies), 10.6; WADO-RS (GET a study), 10.4
    Resource(
        "/studies", GET=qido.search_studies, POST=stow.store_instances, audited=auditing.QUERY
    ),
    # Outside PS3.18: corrections (Microsoft's bulk update) and patient merge (scope update)
    Resource("/studies/$bulkUpdate", scope=UPDATE, POST=corrections.bulk_update),
    Resource("/patients/{patient}/merge", scope=UPDATE, POST=corrections.merge_patient),
    # ... and DELETE (outside PS3.18, Microsoft's; scope delete) here and on a series or an
    # instance
    Resource(
        STUDY,
        scope={"DELETE": DELETE},
        GET=wado.retrieve_instances,
        POST=stow.store_instances,
        DELETE=delete.delete_resource,
        audited=auditing.RETRIEVE,
    ),
    # QIDO-RS, PS3.18 10.6
    Resource("/series", GET=qido.search_series, audited=auditing.QUERY),
    Resource("/instances", GET=qido.search_instances, audited=auditing.QUERY),
    Resource(STUDY + "/series", GET=qido.search_series, audited=auditing.QUERY),
    Resource(STUDY + "/instances", GET=qido.search_instances, audited=auditing.QUERY),
    Resource(SERIES + "/instances", GET=qido.search_instances, audited=auditing.QUERY),
    # WADO-RS, PS3.18 10.4
    Resource(
        SERIES,
        scope={"DELETE": DELETE},
        GET=wado.retrieve_instances,
        DELETE=delete.delete_resource,
        audited=auditing.RETRIEVE,
    ),
    Resource(
        INSTANCE,
        scope={"DELETE": DELETE},
        GET=wado.retrieve_instances,
        DELETE=delete.delete_resource,
        audited=auditing.RETRIEVE,
    ),
    # Outside PS3.18: reject (IOCM, dcm4chee's route that OHIF's supportsReject calls) and
    # restore (scope delete)
    *(
        Resource(level + "/reject/{code}", scope=DELETE, POST=delete.reject_resource)
        for level in (STUDY, SERIES, INSTANCE)
    ),
    *(
        Resource(level + "/restore", scope=DELETE, POST=delete.restore_resource)
        for level in (STUDY, SERIES, INSTANCE)
    ),
    Resource(STUDY + "/metadata", GET=wado.retrieve_metadata, audited=auditing.RETRIEVE),
    Resource(SERIES + "/metadata", GET=wado.retrieve_metadata, audited=auditing.RETRIEVE),
    Resource(INSTANCE + "/metadata", GET=wado.retrieve_metadata, audited=auditing.RETRIEVE),
    Resource(FRAMES, GET=wado.retrieve_frames, audited=auditing.RETRIEVE),
    Resource(
        INSTANCE + "/bulkdata/{path:path}", GET=wado.retrieve_bulk_data, audited=auditing.RETRIEVE
    ),
    # WADO-URI, PS3.18 9
    Resource("/wado", GET=wado_uri.retrieve_wado_uri, audited=auditing.RETRIEVE),
    # Rendered resources and thumbnails, PS3.18 10.4.1.1.3-4
    Resource(STUDY + "/rendered", GET=rendered.retrieve_rendered, audited=auditing.RETRIEVE),
    Resource(SERIES + "/rendered", GET=rendered.retrieve_rendered, audited=auditing.RETRIEVE),
    Resource(INSTANCE + "/rendered", GET=rendered.retrieve_rendered, audited=auditing.RETRIEVE),
    Resource(
        FRAMES + "/rendered", GET=rendered.retrieve_rendered_frames, audited=auditing.RETRIEVE
    ),
    Resource(STUDY + "/thumbnail", GET=rendered.retrieve_thumbnail, audited=auditing.RETRIEVE),
    Resource(SERIES + "/thumbnail", GET=rendered.retrieve_thumbnail, audited=auditing.RETRIEVE),
    Resource(INSTANCE + "/thumbnail", GET=rendered.retrieve_thumbnail, audited=auditing.RETRIEVE),
    Resource(FRAMES + "/thumbnail", GET=rendered.retrieve_thumbnail, audited=auditing.RETRIEVE),
    # Outside PS3.18: the change feed (Microsoft's model) and its live streams (scope read)
    Resource("/changefeed", GET=changefeed.read_change_feed),
    Resource("/changefeed/latest", GET=changefeed.read_latest_change),
    Resource("/changefeed/stream", GET=changefeed.stream_changes),
    WebSocketRoute("/changefeed/ws", changefeed.stream_changes_ws),
    Resource("/changefeed/ws", public=True, GET=sockets.upgrade_required),
    # Webhooks (scope admin)
    Resource(
        "/subscriptions",
        scope=ADMIN,
        GET=subscriptions.list_subscriptions,
        POST=subscriptions.create_subscription,
    ),
    Resource(
        "/subscriptions/{subscription}",
        scope=ADMIN,
        GET=subscriptions.get_subscription,
        DELETE=subscriptions.delete_subscription,
    ),
    Resource(
        "/subscriptions/{subscription}/enable",
        scope=ADMIN,
        POST=subscriptions.enable_subscription,
    ),
    Resource(
        "/subscriptions/{subscription}/dead-letters",
        scope=ADMIN,
        GET=subscriptions.read_dead_letters,
    ),
    Resource(
        "/subscriptions/{subscription}/dead-letters/redrive",
        scope=ADMIN,
        POST=subscriptions.redrive_dead_letters,
    ),
    # UPS-RS, PS3.18 chapter 11 (create and change: scope workitems; search, subscribe: read)
    Resource(
        "/workitems",
        scope={"POST": WORKITEMS},
        GET=ups.search_workitems,
        POST=ups.create_workitem,
    ),
    # Outside PS3.18: the worklist's changes for the web app's live view (scope read)
    Resource("/workitems/stream", GET=ups.stream_worklist),
    Resource(
        WORKITEM,
        scope={"POST": WORKITEMS, "DELETE": ADMIN},
        GET=ups.retrieve_workitem,
        POST=ups.update_workitem,
        DELETE=ups.delete_workitem,  # an extension: UPS-RS has no delete
    ),
    Resource(WORKITEM + "/state", scope=WORKITEMS, PUT=ups.change_workitem_state),
    Resource(WORKITEM + "/cancelrequest", scope=WORKITEMS, POST=ups.request_cancellation),
    # The Filtered Worklist first: only it takes a filter (PS3.18 11.10).
    Resource(
        FILTERED_WORKLIST + "/subscribers/{aetitle}",
        scope=WORKITEMS,
        POST=ups.subscribe_filtered,
        DELETE=ups.unsubscribe_filtered,
    ),
    Resource(
        WORKITEM + "/subscribers/{aetitle}",
        scope=WORKITEMS,
        POST=ups.subscribe,
        DELETE=ups.unsubscribe,
    ),
    Resource(
        WORKITEM + "/subscribers/{aetitle}/suspend",
        scope=WORKITEMS,
        POST=ups.suspend_subscription,
    ),
    # Outside PS3.18: whose an AE title is (an admin says; scope admin)
    Resource("/subscribers/{aetitle}/owner", scope=ADMIN, PUT=ups.assign_receiver),
    WebSocketRoute("/subscribers/{aetitle}", ups.event_channel),
    Resource("/subscribers/{aetitle}", public=True, GET=sockets.upgrade_required),
    # Fresh UIDs for uploaders (scope write)
    Resource("/uids", POST=uids.create_uids),
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
    Resource("/shares/{share}/code", scope=SHARE, POST=shares.new_share_code),
    # A viewer opened on a study gets a session of its own, limited to it (scope read).
    Resource(STUDY + "/viewer-session", scope=READ, POST=shares.create_viewer_session),
    Resource("/keys", scope=ADMIN, GET=admin.list_keys, POST=admin.create_key),
    Resource("/keys/{key}", scope=ADMIN, DELETE=admin.revoke_key),
    # Data-mining views (outside PS3.18): totals and aggregates (scope read), the
    # consistency report of the patient model (scope admin)
    Resource("/stats", GET=stats.read_stats),
    Resource("/aggregate/{level}", GET=stats.read_aggregate),
    Resource("/reports/consistency", scope=ADMIN, GET=stats.read_consistency_report),
    # Who the caller is: its scopes (the web application shows what they allow).
    Resource("/whoami", public=True, GET=ui.who_am_i),
    # The audit table (PS3.15 A.5 messages), scope admin.
    Resource("/audit", scope=ADMIN, GET=auditing.read_audit),
]

# Outside the DICOMweb root: the HTTP contract and the probes of load balancers and Kubernetes.
ROOT_ROUTES: list[BaseRoute] = [
    Resource("/openapi.yaml", public=True, GET=health.openapi),
    Resource("/health", public=True, GET=health.health),
    Resource("/ready", public=True, GET=health.ready),
    # Prometheus metrics: route templates and counts, no patient data; with access control
    # on, a credential with scope metrics (or admin): the counts describe the archive's use.
    Resource("/metrics", scope=METRICS, GET=metrics.metrics),
    # The API explorer (Swagger UI from a packaged asset, on /openapi.yaml).
    Resource("/docs", public=True, GET=docs.api_explorer),
    Resource("/docs/{name}", public=True, GET=docs.asset),
    # The web application (issue 20): static files on the public API; the root leads there.
    Resource("/", public=True, GET=ui.to_app),
    Resource("/ui", public=True, GET=ui.to_app),
    Resource("/ui/", public=True, GET=ui.page),
    Resource("/ui/config.json", public=True, GET=ui.app_config),
    Resource("/ui/{name}", public=True, GET=ui.asset),
    # The viewer `dicomweb-server viewer install` put here (OHIF; 404 when there is none).
    Resource("/viewer", public=True, GET=ui.to_viewer),
    Resource("/viewer/", public=True, GET=ui.viewer),
    Resource("/viewer/{path:path}", public=True, GET=ui.viewer),
]


class ServiceCapabilities(BaseRoute):
    """`OPTIONS {root}` and `OPTIONS {root}/`: the Retrieve Capabilities of the whole service
    (PS3.18 8.9.1: the target may be the service), every resource of the DICOMweb route
    table in one WADL document. Other methods on the root fall through to later routes."""

    def __init__(self, paths: tuple[str, ...]) -> None:
        self.paths = paths
        self.resources = [
            (r.path, r.representations) for r in DICOMWEB_ROUTES if isinstance(r, Resource)
        ]

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or scope["method"] != "OPTIONS":
            return Match.NONE, {}
        path, root = scope["path"], scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        return (Match.FULL, {}) if path in self.paths else (Match.NONE, {})

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = capabilities_response(Request(scope, receive), self.resources, "OPTIONS")
        await response(scope, receive, send)


def slash_redirect(router: Router) -> ASGIApp:
    """What a path no route takes gets: when the same path with (or without) its trailing
    slash is a route, a redirect there, its Location relative (the path and query alone:
    never a URL built from the request's Host and scheme, RFC 9110 10.2.2); else the
    router's own answer (404)."""
    fallback = router.default

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path not in ("", "/"):
            other = path.rstrip("/") if path.endswith("/") else path + "/"
            moved = {**scope, "path": other}
            if any(route.matches(moved)[0] is not Match.NONE for route in router.routes):
                query = scope.get("query_string", b"").decode("latin-1")
                location = quote(other) + (f"?{query}" if query else "")
                await RedirectResponse(location, 307)(scope, receive, send)
                return
        await fallback(scope, receive, send)

    return app


class IndexedRouter(Router):
    """Starlette's router, trying only the routes whose template can take the path: its
    first segment (a literal equal to the path's, or a parameter) and its number of segments
    (equal, or at most the path's where a `:path` parameter or a mount takes the rest), in
    their order in the table. Any other route cannot match, so the outcome is Starlette's
    with less matching: a frame's path tried 18 routes of the DICOMweb root before, now 2;
    the root's table its 20 routes before the DICOMweb mount. A path no route takes goes
    Starlette's whole way (redirect, default)."""

    _shapes: list[tuple[str | None, int, bool] | None]
    _tried: dict[tuple[str, int], tuple[BaseRoute, ...]]
    _indexed = -1

    def _candidates(self, path: str) -> tuple[BaseRoute, ...]:
        if self._indexed != len(self.routes):
            self._shapes = [_shape(route) for route in self.routes]
            self._tried = {}
            self._indexed = len(self.routes)
        segments = path[1:].split("/")
        key = (segments[0], len(segments))
        found = self._tried.get(key)
        if found is None:
            found = tuple(
                route
                for route, shape in zip(self.routes, self._shapes, strict=True)
                if shape is None
                or (
                    shape[0] in (None, key[0])
                    and (shape[1] == key[1] or (shape[2] and key[1] >= shape[1]))
                )
            )
            if len(self._tried) >= 4096:  # paths of many shapes: keep the table bounded
                self._tried.clear()
            self._tried[key] = found
        return found

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await super().app(scope, receive, send)
            return
        if "router" not in scope:
            scope["router"] = self
        partial: tuple[BaseRoute, Scope] | None = None
        for route in self._candidates(_route_path(scope)):
            match, child = route.matches(scope)
            if match is Match.FULL:
                scope["route"] = route
                scope.update(child)
                await route.handle(scope, receive, send)
                return
            if match is Match.PARTIAL and partial is None:
                partial = (route, child)
        if partial is not None:
            # A route of the path but not of the method: its 405 (Starlette's order).
            scope["route"] = partial[0]
            scope.update(partial[1])
            await partial[0].handle(scope, receive, send)
            return
        await super().app(scope, receive, send)


def _route_path(scope: Scope) -> str:
    """The path below the router's mount (as Starlette's routes match it)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _shape(route: BaseRoute) -> tuple[str | None, int, bool] | None:
    """What paths a route's template can take: its literal first segment (None for a
    parameter), its number of segments, and whether it takes more (a `:path` parameter, or
    a mount's routes below it). None where any path might match it (no template)."""
    path = getattr(route, "path", None)
    if not isinstance(path, str) or not path.startswith("/"):
        return None
    segments = path[1:].split("/")
    lead = None if "{" in segments[0] else segments[0]
    more = isinstance(route, Mount) or any(":path}" in segment for segment in segments)
    return lead, len(segments), more


def url_surface(base_path: str) -> list[BaseRoute]:
    """Every route of the server, the DICOMweb ones under `base_path`."""
    if base_path:
        root = ServiceCapabilities((base_path, base_path + "/"))
        return [root, *ROOT_ROUTES, Mount(base_path, app=IndexedRouter(DICOMWEB_ROUTES))]
    return [ServiceCapabilities(("", "/")), *ROOT_ROUTES, *DICOMWEB_ROUTES]
