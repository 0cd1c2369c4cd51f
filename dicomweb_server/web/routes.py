"""The whole URL surface, under the DICOMweb root (`DICOMWEB_BASE_PATH`)."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from dicomweb_server.web import qido, rendered, stow, wado, wado_uri

STUDY = "/studies/{study}"
SERIES = STUDY + "/series/{series}"
INSTANCE = SERIES + "/instances/{instance}"

DICOMWEB_ROUTES: list[BaseRoute] = [
    # STOW-RS, PS3.18 10.5
    Route("/studies", stow.store_instances, methods=["POST"]),
    Route(STUDY, stow.store_instances, methods=["POST"]),
    # QIDO-RS, PS3.18 10.6
    Route("/studies", qido.search_studies, methods=["GET"]),
    Route("/series", qido.search_series, methods=["GET"]),
    Route("/instances", qido.search_instances, methods=["GET"]),
    Route(STUDY + "/series", qido.search_series, methods=["GET"]),
    Route(STUDY + "/instances", qido.search_instances, methods=["GET"]),
    Route(SERIES + "/instances", qido.search_instances, methods=["GET"]),
    # WADO-RS, PS3.18 10.4
    Route(STUDY, wado.retrieve_instances, methods=["GET"]),
    Route(SERIES, wado.retrieve_instances, methods=["GET"]),
    Route(INSTANCE, wado.retrieve_instances, methods=["GET"]),
    Route(STUDY + "/metadata", wado.retrieve_metadata, methods=["GET"]),
    Route(SERIES + "/metadata", wado.retrieve_metadata, methods=["GET"]),
    Route(INSTANCE + "/metadata", wado.retrieve_metadata, methods=["GET"]),
    Route(INSTANCE + "/frames/{frames}", wado.retrieve_frames, methods=["GET"]),
    Route(INSTANCE + "/bulkdata/{path:path}", wado.retrieve_bulk_data, methods=["GET"]),
    # WADO-URI, PS3.18 9
    Route("/wado", wado_uri.retrieve_wado_uri, methods=["GET"]),
    # Rendered resources and thumbnails, PS3.18 10.4.1.1.3-4
    Route(STUDY + "/rendered", rendered.retrieve_rendered, methods=["GET"]),
    Route(SERIES + "/rendered", rendered.retrieve_rendered, methods=["GET"]),
    Route(INSTANCE + "/rendered", rendered.retrieve_rendered, methods=["GET"]),
    Route(
        INSTANCE + "/frames/{frames}/rendered", rendered.retrieve_rendered_frames, methods=["GET"]
    ),
    Route(STUDY + "/thumbnail", rendered.retrieve_thumbnail, methods=["GET"]),
    Route(SERIES + "/thumbnail", rendered.retrieve_thumbnail, methods=["GET"]),
    Route(INSTANCE + "/thumbnail", rendered.retrieve_thumbnail, methods=["GET"]),
    Route(INSTANCE + "/frames/{frames}/thumbnail", rendered.retrieve_thumbnail, methods=["GET"]),
]
