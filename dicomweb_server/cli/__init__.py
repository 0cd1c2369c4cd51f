"""Command line: `dicomweb-server serve`, `db upgrade`, `check`, `keys`, `import`, `export`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from dicomweb_server.services.context import SCOPE_MEANINGS
from dicomweb_server.settings import Settings

if TYPE_CHECKING:
    from dicomweb_server.services.consistency import CheckReport


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dicomweb-server", description=__doc__)
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also log what the libraries say at info level (Alembic's migration steps)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="apply pending migrations and start the server")
    serve.add_argument("--host", help="bind address (default: DICOMWEB_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: DICOMWEB_PORT or 8080)")
    serve.add_argument(
        "--workers", type=int, help="server processes (default: DICOMWEB_WORKERS, or one per core)"
    )
    db = commands.add_parser("db", help="index database commands")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_commands.add_parser("upgrade", help="create or upgrade the index schema")
    check = commands.add_parser(
        "check",
        help="compare the index with the stored objects; exit 1 if anything is inconsistent",
    )
    check.add_argument(
        "--repair",
        action="store_true",
        help="delete objects no index row points at, and parts left by interrupted requests",
    )
    check.add_argument(
        "--grace-minutes",
        type=float,
        default=None,
        help="--repair leaves alone orphans younger than this, which may belong to a store in "
        "progress (default: DICOMWEB_ORPHAN_GRACE_SECONDS); check reports them all",
    )
    keys = commands.add_parser("keys", help="API keys, for DICOMWEB_AUTH=api-key")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser(
        "create", help="make a key; it is printed once, as the last line of the output"
    )
    create.add_argument("--name", required=True, help="who or what the key is for")
    create.add_argument(
        "--scopes",
        default="read",
        help="comma-separated, of: "
        + "; ".join(f"{name} ({meaning})" for name, meaning in SCOPE_MEANINGS.items())
        + " (default: read)",
    )
    create.add_argument("--expires", help="lifetime such as 90d, 12h or 30m (default: none)")
    create.add_argument(
        "--studies-label",
        action="append",
        metavar="LABEL",
        help="see only the studies carrying this access-control label (repeatable; default: "
        "every study)",
    )
    key_commands.add_parser("list", help="every key: id, name, scopes, state, expiry, last use")
    revoke = key_commands.add_parser("revoke", help="revoke a key at once, in every process")
    revoke.add_argument("key_id")
    uid = commands.add_parser(
        "uid", help="print fresh UIDs under DICOMWEB_UID_ROOT (or 2.25.), one per line"
    )
    uid.add_argument("--count", type=int, default=1, help="how many (1 to 1000)")
    report = commands.add_parser(
        "report",
        help="the consistency report: what PS3.4's patient model forbids, one finding a line",
    )
    report.add_argument("--limit", type=int, default=1000, help="findings at most per kind")
    commands.add_parser(
        "dimse",
        help="serve the DIMSE service alone (C-ECHO, C-STORE, C-FIND) on DICOMWEB_DIMSE_PORT",
    )
    send = commands.add_parser(
        "send", help="send studies to another archive by C-STORE (DIMSE), for migrations"
    )
    send.add_argument("studies", nargs="+", metavar="STUDY")
    send.add_argument("--to", required=True, metavar="AE@host:port", help="the destination")
    send.add_argument("--aet", default=None, help="our AE title (default DICOMWEB_DIMSE_AE_TITLE)")
    load = commands.add_parser(
        "import",
        help="load folders (recursively), zip files and DICOMDIR media through the ingest; "
        "resumable: the same command again skips what it finished",
    )
    load.add_argument("paths", nargs="+", metavar="PATH")
    load.add_argument("--to", metavar="URL", help="another archive's DICOMweb root (STOW-RS)")
    load.add_argument(
        "--token", help="bearer token for --to (default: DICOMWEB_IMPORT_TOKEN)", default=None
    )
    load.add_argument("--workers", type=int, default=4, help="files stored at once (default 4)")
    load.add_argument(
        "--restart", action="store_true", help="forget what an earlier run of it finished"
    )
    export = commands.add_parser(
        "export", help="write studies to a folder, a zip file or another archive (STOW-RS)"
    )
    export.add_argument("studies", nargs="+", metavar="STUDY")
    export.add_argument(
        "--to",
        required=True,
        metavar="DIR|ZIP|URL",
        help="a folder, a .zip file or a DICOMweb root",
    )
    export.add_argument("--token", help="bearer token for a URL (default: DICOMWEB_IMPORT_TOKEN)")
    viewer = commands.add_parser("viewer", help="the OHIF viewer served at /viewer")
    viewer_commands = viewer.add_subparsers(dest="viewer_command", required=True)
    viewer_install = viewer_commands.add_parser(
        "install",
        help="fetch the pinned @ohif/app from the npm registry (checksum verified), configure "
        "it for this server and put it in DICOMWEB_VIEWER_DIR",
    )
    viewer_install.add_argument(
        "--from", dest="source", metavar="FILE|URL", help="a tarball of the package instead"
    )
    viewer_install.add_argument(
        "--registry", help="the npm registry (default: $npm_config_registry or registry.npmjs.org)"
    )
    args = parser.parse_args(argv)

    from pydantic import ValidationError

    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"dicomweb-server: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    if args.command == "uid":
        return _uids(settings, args.count)
    if args.command == "viewer":
        from dicomweb_server.cli.viewer import run_install

        return run_install(settings, args.source, args.registry)
    from dicomweb_server.serving import configure_logging

    configure_logging(settings, verbose=args.verbose)
    from dicomweb_server.web.access import name_requests_in_logs

    name_requests_in_logs()
    from dicomweb_server.container import upgrade_database

    if args.command == "db":
        upgrade_database(settings)
        print("index schema is up to date")
        return 0
    if args.command == "keys":
        return _keys(settings, args)
    if args.command == "report":
        return _report(settings, args.limit)
    if args.command == "dimse":
        if settings.dimse_port is None:
            print("dicomweb-server: set DICOMWEB_DIMSE_PORT for the DIMSE service", file=sys.stderr)
            return 2
        if settings.migrate_on_start:
            upgrade_database(settings)
        try:
            return _serve_dimse(settings)
        except (ValueError, OSError) as exc:
            print(f"dicomweb-server: the DIMSE service cannot start: {exc}", file=sys.stderr)
            return 2
    if args.command == "send":
        return _send(settings, args.studies, args.to, args.aet)
    if args.command in ("import", "export"):
        import os

        from dicomweb_server.cli.transfer import run_export, run_import

        token = args.token or os.environ.get("DICOMWEB_IMPORT_TOKEN")
        if args.to is None or args.command == "export":
            if settings.migrate_on_start:
                upgrade_database(settings)
            elif _schema_behind(settings, "DICOMWEB_MIGRATE_ON_START=false leaves it to a job"):
                return 2
        try:
            if args.command == "import":
                if not 1 <= args.workers <= 64:
                    print("dicomweb-server: --workers must be from 1 to 64", file=sys.stderr)
                    return 2
                return run_import(settings, args.paths, args.to, token, args.workers, args.restart)
            return run_export(settings, args.studies, args.to, token)
        except ValueError as exc:
            print(f"dicomweb-server: {exc}", file=sys.stderr)
            return 2
    if args.command == "check":
        grace = None if args.grace_minutes is None else args.grace_minutes * 60
        return _check(settings, args.repair, grace)
    host = args.host or settings.host
    refusal = open_access_refusal(settings, host)
    if refusal is not None:
        print(f"dicomweb-server: {refusal}", file=sys.stderr)
        return 2
    problem = _unusable_backend(settings)
    if problem is not None:
        print(f"dicomweb-server: {problem}", file=sys.stderr)
        return 2
    if settings.migrate_on_start:
        upgrade_database(settings)
    elif _schema_behind(settings, "DICOMWEB_MIGRATE_ON_START=false leaves it to a separate job"):
        return 2
    import uvicorn

    from dicomweb_server.serving import http_protocol, raise_file_limit, usable_cores

    if settings.dimse_port is not None:
        # In this process, beside the web server's (or its workers' supervisor): one
        # listener whatever the number of workers.
        try:
            _start_dimse(settings, host)
        except (ValueError, OSError) as exc:
            print(f"dicomweb-server: the DIMSE service cannot start: {exc}", file=sys.stderr)
            return 2

    raise_file_limit()
    port = args.port or settings.port
    _say_where_when_up(settings, host, port)
    workers = args.workers or settings.workers or usable_cores()
    if workers > 1:
        # prometheus-client's multi-process mode: each worker writes its counters there, and
        # a scrape of any sums them all (web/metrics.py). A folder of this run's own.
        import os
        import tempfile

        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="dicomweb-metrics-")
    uvicorn.run(
        "dicomweb_server.app:create_app_from_settings",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=settings.log_level.lower(),
        # X-Forwarded-For and -Proto only from the proxies named: anyone else could claim
        # any address (and escape the limits on failed credentials).
        proxy_headers=bool(settings.trusted_proxies.strip()),
        forwarded_allow_ips=settings.trusted_proxies.strip() or None,
        http=http_protocol(settings.http),
        loop=settings.loop,
        timeout_keep_alive=settings.keep_alive_seconds,
        # Past it, uvicorn answers 503 at once: connections never exhaust file descriptors.
        limit_concurrency=settings.max_connections,
        # Our own access log (web/access.py) replaces uvicorn's, which logs query values
        # (patient names and IDs) and client addresses.
        access_log=False,
        # uvicorn's own lines go through the root logger: the same format (JSON or text).
        log_config=None,
    )
    return 0


def _say_where_when_up(settings: Settings, host: str, port: int) -> None:
    """Once the port takes connections (whichever worker answers), one line with the web
    app's and the DICOMweb root's URLs."""
    import logging
    import socket
    import threading
    import time

    wildcard = host in ("0.0.0.0", "::", "")
    shown = socket.gethostname() if wildcard else host
    if ":" in shown:
        shown = f"[{shown.strip('[]')}]"
    base = (settings.public_base_url or f"http://{shown}:{port}{settings.base_path}").rstrip("/")
    origin = base.removesuffix(settings.base_path) if settings.base_path else base
    probe = ("127.0.0.1" if host != "::" else "::1") if wildcard else host.strip("[]")

    def wait() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((probe, port), timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        else:
            return
        # A log line (JSON in the JSON format, like every other line of the process).
        logging.getLogger("dicomweb_server.serve").info(
            "dicomweb-server is up: the web app at %s/ui/, DICOMweb at %s", origin, base
        )

    threading.Thread(target=wait, name="say-where", daemon=True).start()


def _start_dimse(settings: Settings, host: str) -> object:
    import ssl

    from dicomweb_server.container import build_container
    from dicomweb_server.dimse.gateway import (
        DimseGateway,
        DimseSettings,
        parse_ae_access,
        parse_peers,
        tls_context,
    )

    refusal = dimse_open_access_refusal(settings, settings.dimse_host or host)
    if refusal is not None:
        raise ValueError(refusal)
    access = parse_ae_access(settings.dimse_ae_access) if settings.dimse_ae_access else None
    if access is None and settings.auth != "none":
        raise ValueError(
            f"DICOMWEB_AUTH is {settings.auth}: set DICOMWEB_DIMSE_AE_ACCESS to say what each "
            "calling AE title may do over DIMSE (e.g. CT1=write;WS1=read,download)"
        )
    tls = None
    if settings.dimse_tls_cert or settings.dimse_tls_key:
        if not (settings.dimse_tls_cert and settings.dimse_tls_key):
            raise ValueError("DICOM TLS needs DICOMWEB_DIMSE_TLS_CERT and DICOMWEB_DIMSE_TLS_KEY")
        ca = str(settings.dimse_tls_ca) if settings.dimse_tls_ca else None
        try:
            tls = tls_context(str(settings.dimse_tls_cert), str(settings.dimse_tls_key), ca)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(
                f"DICOM TLS: the certificate or key cannot be loaded ({type(exc).__name__})"
            ) from exc
    container = build_container(settings)
    gateway = DimseGateway(
        container.store,
        container.search,
        container.retrieve,
        DimseSettings(
            ae_title=settings.dimse_ae_title,
            host=settings.dimse_host or host,
            port=settings.dimse_port or 0,
            accepted=frozenset(
                a.strip() for a in settings.dimse_accepted_aets.split(",") if a.strip()
            ),
            peers=parse_peers(settings.dimse_peers),
            access=access,
            tls=tls,
        ),
        container.audit,
    )
    gateway.start()
    print(
        f"DIMSE service {settings.dimse_ae_title} on {gateway.config.host}:{gateway.port}",
        file=sys.stderr,
    )
    return gateway


def _serve_dimse(settings: Settings) -> int:
    import signal
    import threading

    gateway = _start_dimse(settings, settings.host)
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    stopped.wait()
    gateway.stop()  # type: ignore[attr-defined]
    return 0


def _send(settings: Settings, studies: list[str], to: str, aet: str | None) -> int:
    from dicomweb_server.container import build_container
    from dicomweb_server.dimse.send import send_studies
    from dicomweb_server.services.context import Caller
    from dicomweb_server.services.errors import ServiceError

    if _schema_behind(settings, "send never changes the schema"):
        return 2
    container = build_container(settings)
    try:
        done = send_studies(
            container.retrieve,
            Caller.anonymous("cli"),
            studies,
            to,
            aet or settings.dimse_ae_title,
        )
    except (ValueError, ConnectionError, ServiceError) as exc:
        print(f"dicomweb-server: {exc}", file=sys.stderr)
        return 2
    finally:
        container.close()
    print(f"sent {done.sent}, failed {len(done.failed)}")
    for sop, why in done.failed[:50]:
        print(f"  failed: {sop}: {why}")
    return 1 if done.failed else 0


def _uids(settings: Settings, count: int) -> int:
    from dicomweb_server.dicom.uids import new_uid

    if not 1 <= count <= 1000:
        print("dicomweb-server: --count must be from 1 to 1000", file=sys.stderr)
        return 2
    for _ in range(count):
        print(new_uid(settings.uid_root))
    return 0


def _unusable_backend(settings: Settings) -> str | None:
    """Why the configured database or blob store cannot be used, before serving anything."""
    from dicomweb_server.container import BackendUnusable, build_container

    try:
        container = build_container(settings)
    except (BackendUnusable, ValueError) as exc:
        return str(exc)
    try:
        container.verify()
    except BackendUnusable as exc:
        return str(exc)
    finally:
        container.close()
    return None


def _schema_behind(settings: Settings, why: str) -> bool:
    """Say so, and how to upgrade, when the index schema is not the newest."""
    from dicomweb_server.container import pending_migrations

    behind = pending_migrations(settings)
    if behind is not None:
        print(
            f"dicomweb-server: the index schema is at {behind}; run `dicomweb-server db "
            f"upgrade` ({why})",
            file=sys.stderr,
        )
    return behind is not None


def _report(settings: Settings, limit: int) -> int:
    from dicomweb_server.container import build_container
    from dicomweb_server.services.context import Caller

    if _schema_behind(settings, "report never changes the schema"):
        return 2
    container = build_container(settings)
    try:
        found = container.stats.inconsistencies(Caller.anonymous("cli"), limit)
    finally:
        container.close()
    for finding in found:
        print(f"{finding.kind}\t{finding.subject}\t" + " | ".join(finding.values))
    print(f"{len(found)} finding(s)", file=sys.stderr)
    return 1 if found else 0


def _check(settings: Settings, repair: bool, grace_seconds: float | None) -> int:
    from dicomweb_server.container import build_container

    if _schema_behind(settings, "check never changes the schema"):
        return 2
    container = build_container(settings)
    try:
        report = container.consistency.check(repair=repair, grace_seconds=grace_seconds)
    finally:
        container.close()
    young = set(report.young)
    for key in report.orphans:
        if key in young:
            print(f"orphan object (younger than the grace period, kept): {key}")
        else:
            print(f"orphan object ({'removed' if report.repaired else 'found'}): {key}")
    for name in report.spool_leftovers:
        print(f"spool leftover ({'removed' if report.repaired else 'found'}): {name}")
    for key in report.missing:
        print(f"MISSING object of an indexed instance: {key}")
    for line in _check_summary(report, young):
        print(line)
    if report.missing:
        return 1
    # Orphans younger than the grace period are reported, not a fault: a store may own them.
    settled = len(report.orphans) == len(report.young) and not report.spool_leftovers
    return 0 if settled or report.repaired else 1


def _check_summary(report: CheckReport, young: set[str]) -> list[str]:
    """What check found and, with --repair, what it removed and what it kept, in counts."""
    old = len(report.orphans) - len(young)
    spool = len(report.spool_leftovers)
    lines = [
        f"{len(report.orphans)} orphan object(s), {spool} spool leftover(s), "
        f"{len(report.missing)} missing object(s)"
    ]
    if report.repaired:
        lines.append(f"removed: {old} orphan object(s), {spool} spool leftover(s)")
    elif old or spool:
        lines.append(f"--repair would remove {old} orphan object(s), {spool} spool leftover(s)")
    kept = []
    if young:
        kept.append(
            f"{len(young)} orphan object(s) younger than the grace period (a store may still "
            "own them; a later check removes them)"
        )
    if report.missing:
        kept.append(
            f"{len(report.missing)} index row(s) whose object is missing (restore the objects "
            "from a backup, or delete those instances)"
        )
    if kept:
        lines.append("kept: " + "; ".join(kept))
    return lines


_UNITS = {"d": 86400, "h": 3600, "m": 60}


def _lifetime(text: str) -> float:
    from dicomweb_server.dicom.numbers import parse_integer

    unit = _UNITS.get(text[-1:])
    if unit is None:
        raise ValueError(f"--expires {text!r}: a number of days, hours or minutes (90d, 12h, 30m)")
    return parse_integer(text[:-1], "--expires", 1, 100_000) * unit


def _keys(settings: Settings, args: argparse.Namespace) -> int:
    import time

    from dicomweb_server.container import build_container
    from dicomweb_server.services.errors import ServiceError

    if _schema_behind(settings, "keys never changes the schema"):
        return 2
    container = build_container(settings)
    try:
        access = container.access
        if args.keys_command == "create":
            try:
                expires = _lifetime(args.expires) if args.expires else None
                scopes = {s.strip() for s in args.scopes.split(",") if s.strip()}
                labels = frozenset(args.studies_label) if args.studies_label else None
                made = access.create_key(args.name, scopes, expires, labels)
            except (ValueError, ServiceError) as exc:
                print(f"dicomweb-server: {exc}", file=sys.stderr)
                return 2
            limit = (
                f"; studies labelled {', '.join(sorted(made.key.labels))}"
                if made.key.labels
                else ""
            )
            print(f"key {made.key.key_id} ({made.key.name}): {', '.join(sorted(scopes))}{limit}")
            if settings.auth == "none":
                print("note: DICOMWEB_AUTH is none; the server asks for no key until it is api-key")
            print(made.secret)
            return 0
        if args.keys_command == "list":
            now = time.time()
            for key in access.list_keys():
                state = key.state(now)
                used = (
                    time.strftime("%Y-%m-%d %H:%M", time.gmtime(key.last_used_at))
                    if key.last_used_at
                    else "never"
                )
                listed = ",".join(sorted(key.scopes))
                if key.labels is not None:
                    listed += f" (labels {','.join(sorted(key.labels))})"
                expiry = (
                    "expires never"
                    if key.expires_at is None
                    else ("expired " if key.expires_at <= now else "expires ")
                    + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(key.expires_at))
                )
                print(f"{key.key_id}  {key.name}  {listed}  {state}  {expiry}  last used {used}")
            return 0
        if not access.revoke_key(args.key_id):
            print(f"dicomweb-server: no active key {args.key_id}", file=sys.stderr)
            return 1
        print(f"key {args.key_id} revoked")
        return 0
    finally:
        container.close()


def open_access_refusal(settings: Settings, host: str) -> str | None:
    """Why `serve` must not bind `host` (anything but loopback with DICOMWEB_AUTH=none,
    unless DICOMWEB_ALLOW_OPEN_ACCESS says access is controlled in front of it)."""
    if not _open_to_the_network(settings, host):
        return None
    return (
        f"refusing to serve {host} with DICOMWEB_AUTH=none: anyone who reaches it could read "
        "and store every study. Set DICOMWEB_AUTH=api-key (and make keys with "
        "`dicomweb-server keys create`), bind 127.0.0.1, or set DICOMWEB_ALLOW_OPEN_ACCESS=true "
        "behind your own access control"
    )


def dimse_open_access_refusal(settings: Settings, host: str) -> str | None:
    """The same rule for the DIMSE listener (`serve` with DICOMWEB_DIMSE_PORT, `dimse`): with
    DICOMWEB_AUTH=none every calling AE could read and store every study, so only loopback,
    unless DICOMWEB_ALLOW_OPEN_ACCESS says access is controlled in front of it."""
    if not _open_to_the_network(settings, host):
        return None
    return (
        f"refusing to listen for DIMSE on {host} with DICOMWEB_AUTH=none: any AE that reaches "
        "it could read and store every study. Set DICOMWEB_AUTH=api-key with "
        "DICOMWEB_DIMSE_AE_ACCESS (what each calling AE title may do), set "
        "DICOMWEB_DIMSE_HOST=127.0.0.1, or set DICOMWEB_ALLOW_OPEN_ACCESS=true behind your own "
        "access control"
    )


def _open_to_the_network(settings: Settings, host: str) -> bool:
    """Whether binding `host` would let anyone who reaches it do everything: no access
    control, an address other than loopback, and no DICOMWEB_ALLOW_OPEN_ACCESS."""
    return settings.auth == "none" and not _loopback(host) and not settings.allow_open_access


def _loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
