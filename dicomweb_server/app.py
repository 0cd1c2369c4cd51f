"""create_app(container) -> the ASGI application."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import BaseRoute, Mount, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from dicomweb_server.container import Container, build_container, upgrade_database
from dicomweb_server.dicom.errors import backend_text
from dicomweb_server.services.changes import announce_stable_periodically
from dicomweb_server.services.periodic import periodically, purge_interval
from dicomweb_server.serving import configure_logging
from dicomweb_server.settings import Settings
from dicomweb_server.web import metrics
from dicomweb_server.web.access import RequestLog, name_requests_in_logs
from dicomweb_server.web.auth import make_caller
from dicomweb_server.web.errors import HANDLERS
from dicomweb_server.web.routes import IndexedRouter, slash_redirect, url_surface
from dicomweb_server.web.threads import in_thread

log = logging.getLogger("dicomweb_server")

EXPOSED_HEADERS = [
    "Content-Type",
    "Content-Length",
    "Content-Location",
    "Warning",
    "Link",
    "ETag",
    "Content-Range",
    "Accept-Ranges",
]


class _App(Starlette):
    """Starlette whose whole middleware stack is one layer (web/access.py RequestLog): the
    request id and log line, the caller, CORS and the answer to an exception no route
    handled, instead of Starlette's error and exception middlewares around three of ours."""

    def __init__(
        self, edge: Callable[[ASGIApp], ASGIApp], routes: list[BaseRoute], **kwargs: Any
    ) -> None:
        super().__init__(routes=routes, **kwargs)
        self.router = IndexedRouter(routes, lifespan=kwargs.get("lifespan"))
        self._edge = edge

    def build_middleware_stack(self) -> ASGIApp:
        return self._edge(self.router)


def create_app(container: Container) -> Starlette:
    settings = container.settings
    cors = None
    if settings.cors_origins:
        cors = CORSMiddleware(
            app=_nothing,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
            allow_headers=["*"],
            expose_headers=EXPOSED_HEADERS,
        )
    edge = functools.partial(
        RequestLog,
        log_query_values=settings.log_query_values,
        observe=metrics.observe,
        callers=make_caller,
        cors=cors,
        handlers=HANDLERS,
    )

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        async with background(container):
            yield

    app = _App(
        edge, routes=url_surface(settings.base_path), exception_handlers=HANDLERS, lifespan=lifespan
    )
    app.state.container = container
    # Starlette's own slash redirect names the request's Host; ours is relative.
    routers = [app.router] + [
        r.app for r in app.router.routes if isinstance(r, Mount) and isinstance(r.app, Router)
    ]
    for router in routers:
        router.redirect_slashes = False
        router.default = slash_redirect(router)
    return app


async def _nothing(_scope: Scope, _receive: Receive, _send: Send) -> None:
    """CORS's own inner app, never called: RequestLog uses its preflight and headers."""


@asynccontextmanager
async def background(container: Container, sweep: bool = False) -> AsyncIterator[None]:
    """The process's background work while it serves: webhook deliveries, stable-study
    events and, for `serve`, the sweep."""
    tasks = [
        asyncio.create_task(container.webhooks.run()),
        asyncio.create_task(container.consumers.run()),
    ]
    quiet = container.settings.stable_seconds
    if quiet > 0:
        tasks.append(
            asyncio.create_task(
                announce_stable_periodically(container.changes.log, quiet, container.wake)
            )
        )
    retention = container.settings.workitem_retention_seconds
    if retention > 0:
        purge = functools.partial(container.workitems.purge, retention)
        tasks.append(
            asyncio.create_task(
                periodically(purge, purge_interval(retention), "purging finished workitems")
            )
        )
    kept = container.reject.retention_seconds
    tasks.append(
        asyncio.create_task(
            periodically(container.reject.purge, purge_interval(kept), "purging rejected instances")
        )
    )
    tasks.append(
        asyncio.create_task(
            periodically(
                container.retention.prune,
                container.settings.retention_interval_seconds,
                "pruning what is past its retention",
            )
        )
    )
    if container.rules is not None:
        tasks.append(asyncio.create_task(container.rules.run()))
    if sweep:
        tasks.append(asyncio.create_task(sweep_periodically(container)))
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def sweep_periodically(container: Container) -> None:
    """Remove what ended requests left (spool folders of dead processes, orphan objects past
    the grace period): once at start, then every DICOMWEB_SWEEP_INTERVAL_SECONDS. Orphans
    still within their grace period (a process killed just before this one started) are
    looked at again once it has passed, if that comes before the next sweep."""
    interval = container.settings.sweep_interval_seconds
    grace = container.settings.orphan_grace_seconds
    retried_young = False
    while True:
        young = False
        try:
            report = await in_thread(container.consistency.sweep)
        except Exception as exc:  # noqa: BLE001 - the next sweep tries again
            log.warning("sweep failed: %s", backend_text(f"{type(exc).__name__}: {exc}"))
        else:
            young = bool(report.young)
            removed = len(report.orphans) - len(report.young)
            if removed or report.spool_leftovers:
                log.info(
                    "sweep removed %d spool folder(s) of ended requests and %d orphan object(s)",
                    len(report.spool_leftovers),
                    removed,
                )
        wait = interval
        if young and not (interval <= 0 and retried_young):
            wait = grace + 1 if interval <= 0 else min(interval, grace + 1)
            retried_young = True
        elif interval <= 0:
            return
        await asyncio.sleep(wait)


def create_app_from_settings() -> Starlette:
    """Factory for `uvicorn --factory`: settings from the environment, schema upgraded."""
    settings = Settings()
    # A worker process uvicorn started: the same log format as the parent's.
    configure_logging(settings)
    name_requests_in_logs()
    if settings.migrate_on_start:
        upgrade_database(settings)
    container = build_container(settings)
    container.verify()

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            async with background(container, sweep=True):
                yield
        finally:
            container.close()

    app = create_app(container)
    app.router.lifespan_context = lifespan
    return app
