"""The API explorer: Swagger UI at `GET /docs`, loading `/openapi.yaml`.

Swagger UI's files come from the installed `swagger-ui-py` package (Apache-2.0), served from
here: no CDN, nothing fetched from outside (its validator badge, which would call
validator.swagger.io, is off). The page itself is ours.
"""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from dicomweb_server.services.errors import NotFound
from dicomweb_server.web.ui import NOT_FRAMED

# The files the page uses, and their media types: nothing else of the package is served.
_ASSETS = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui-standalone-preset.js": "text/javascript",
    "favicon-32x32.png": "image/png",
    "favicon-16x16.png": "image/png",
}

_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>dicomweb-server API</title>
  <link rel="icon" type="image/png" href="docs/favicon-32x32.png">
  <link rel="stylesheet" href="docs/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/swagger-ui-bundle.js"></script>
  <script src="docs/swagger-ui-standalone-preset.js"></script>
  <script>
    window.ui = SwaggerUIBundle({
      url: "openapi.yaml",
      dom_id: "#swagger-ui",
      presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
      layout: "StandaloneLayout",
      validatorUrl: null,
      deepLinking: true,
    });
  </script>
</body>
</html>
"""


async def api_explorer(_request: Request) -> Response:
    return HTMLResponse(_PAGE, headers={"Cache-Control": "no-cache", **NOT_FRAMED})


async def asset(request: Request) -> Response:
    name = request.path_params["name"]
    media_type = _ASSETS.get(name)
    if media_type is None:
        raise NotFound("no such file of the API explorer")
    body = resources.files("swagger_ui").joinpath("static", name).read_bytes()
    return Response(body, media_type=media_type, headers={"Cache-Control": "max-age=86400"})
