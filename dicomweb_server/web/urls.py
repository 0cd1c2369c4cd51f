"""Every URL the server hands out: RetrieveURL, BulkDataURI, Content-Location, Link.

Built from the route table's path templates (`web/routes.py`) and the public base URL of the
request (`base_url`), in this one module; services and `dicom/` only ever see identifiers,
or a function from here that turns them into a URL.
"""

from __future__ import annotations

from urllib.parse import urlencode

import orjson
from starlette.requests import HTTPConnection, Request

from dicomweb_server.web.context import container
from dicomweb_server.web.paths import BULK_DATA, FRAMES, INSTANCE, SERIES, STUDY


def base_url(request: HTTPConnection) -> str:
    """The absolute URL of the DICOMweb root, as the client reached it.

    A configured public base URL wins (behind a proxy). Otherwise the Host header, keeping
    the port the request arrived on when Host lacks one (some clients omit it), when it is
    one of DICOMWEB_ALLOWED_HOSTS (or none are listed); else the first listed host.
    """
    root = container(request).root
    if root.public_base_url:
        return root.public_base_url.rstrip("/")
    scope = request.scope
    # From the scope, not request.url: building the whole URL cost more than the rest of a
    # frame request's handler.
    scheme = scope.get("scheme", "http")
    # A WebSocket's answers name the HTTP resources.
    scheme = {"ws": "http", "wss": "https"}.get(scheme, scheme)
    host = request.headers.get("host", "")
    server = scope.get("server")
    key = (scheme, host, server)
    cached = _BASES.get(key)
    if cached is not None and cached[0] is root:
        return cached[1]
    given = host
    if host and ":" not in host.rsplit("]", 1)[-1] and server is not None:
        port = server[1]
        if port and (scheme, port) not in (("http", 80), ("https", 443)):
            host = f"{host}:{port}"
    if not host and server is not None:
        host = f"{server[0]}:{server[1]}"
    if root.allowed_hosts:
        # Never a URL built from whatever Host a client sends, where hosts are listed: a
        # listed Host is used as listed, any other gets the first listed.
        if given.lower() in root.allowed_hosts:
            host = given
        elif host.lower() not in root.allowed_hosts:
            host = root.allowed_hosts[0]
    url = f"{scheme}://{host}{root.base_path}"
    # The URL ends up inside JSON texts by plain substitution: keep it free of JSON specials.
    url = orjson.dumps(url).decode()[1:-1]
    if len(_BASES) >= _MAX_BASES:
        _BASES.clear()  # any Host a client sends could be a key: bounded
    _BASES[key] = (root, url)
    return url


# (scheme, Host, server address) -> (the root it was built for, the base URL).
_BASES: dict[tuple[object, str, object], tuple[object, str]] = {}
_MAX_BASES = 256


def study_path(study: str) -> str:
    return STUDY.format(study=study)


def series_path(study: str, series: str) -> str:
    return SERIES.format(study=study, series=series)


def instance_path(study: str, series: str, instance: str) -> str:
    return INSTANCE.format(study=study, series=series, instance=instance)


def bulk_data_path(study: str, series: str, instance: str, path: str) -> str:
    """The root-relative BulkDataURI kept in the stored metadata; `with_base` makes it
    absolute when the metadata is served, so a change of host needs no rewrite."""
    return BULK_DATA.format(study=study, series=series, instance=instance, path=path)


def resource_path(study: str, series: str | None = None, instance: str | None = None) -> str:
    """A study, a series or an instance (a QIDO-RS result's RetrieveURL)."""
    if series is None:
        return study_path(study)
    if instance is None:
        return series_path(study, series)
    return instance_path(study, series, instance)


class Urls:
    """The absolute URLs of one request's answer."""

    def __init__(self, base: str) -> None:
        self.base = base

    def study(self, study: str) -> str:
        return self.base + study_path(study)

    def instance(self, study: str, series: str, instance: str) -> str:
        return self.base + instance_path(study, series, instance)

    def resource(self, study: str, series: str | None = None, instance: str | None = None) -> str:
        return self.base + resource_path(study, series, instance)

    def frame(self, study: str, series: str, instance: str, number: int) -> str:
        return self.base + FRAMES.format(
            study=study, series=series, instance=instance, frames=number
        )

    def share_link(self, token: str) -> str:
        """Where the holder of a share link opens it."""
        return f"{self.base}/shares/open?{urlencode({'token': token})}"

    def bulk_data(self, study: str, series: str, instance: str, path: str) -> str:
        return self.base + bulk_data_path(study, series, instance, path)

    def with_base(self, texts: list[str]) -> bytes:
        """Join stored DICOM JSON texts into an array, making BulkDataURIs absolute.

        Stored BulkDataURIs are root-relative; the key `"BulkDataURI":"` can only occur as a
        key in JSON text (a quote inside a string is escaped), so a plain substitution is
        exact. PostgreSQL's jsonb writes `"BulkDataURI": "` (a space after the colon)."""
        joined = "[" + ",".join(texts) + "]"
        for key in ('"BulkDataURI":"', '"BulkDataURI": "'):
            joined = joined.replace(key, key + self.base)
        return joined.encode("utf-8")


def next_page(request: Request, offset: int) -> str:
    """The same search from `offset` on (Link: rel="next", RFC 8288), under the DICOMweb root
    clients reach (DICOMWEB_PUBLIC_BASE_URL, or a Host of DICOMWEB_ALLOWED_HOSTS), as every
    other absolute URL: never the request's own scheme and Host."""
    root = container(request).root
    path = request.url.path
    if root.base_path and path.startswith(root.base_path):
        path = path[len(root.base_path) :]
    query = request.url.include_query_params(offset=offset).query
    return f"{base_url(request)}{path}?{query}"


def urls(request: HTTPConnection) -> Urls:
    return Urls(base_url(request))
