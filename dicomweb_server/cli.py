"""Command line: `dicomweb-server serve`, `dicomweb-server db upgrade`."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dicomweb-server", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="apply pending migrations and start the server")
    serve.add_argument("--host", help="bind address (default: DICOMWEB_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: DICOMWEB_PORT or 8080)")
    serve.add_argument("--workers", type=int, help="server processes (default: 1)")
    db = commands.add_parser("db", help="index database commands")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_commands.add_parser("upgrade", help="create or upgrade the index schema")
    args = parser.parse_args(argv)

    from pydantic import ValidationError

    from dicomweb_server.settings import Settings

    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"dicomweb-server: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from dicomweb_server.container import upgrade_database

    if args.command == "db":
        upgrade_database(settings)
        print("index schema is up to date")
        return 0
    upgrade_database(settings)
    import uvicorn

    from dicomweb_server.serving import NoDelayH11Protocol

    uvicorn.run(
        "dicomweb_server.app:create_app_from_settings",
        factory=True,
        host=args.host or settings.host,
        port=args.port or settings.port,
        workers=args.workers or settings.workers,
        log_level=settings.log_level.lower(),
        proxy_headers=True,
        http=NoDelayH11Protocol,
    )
    return 0
