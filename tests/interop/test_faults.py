"""Backends failing under load: PostgreSQL cut off for a few seconds, then back.

The server reaches PostgreSQL through a TCP proxy the test controls. While the proxy drops
every connection, requests answer 503 with Retry-After (never 500); no instance is half
stored; when the proxy forwards again the same server process serves again, unrestarted.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from pydicom.uid import generate_uid
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from dicomweb_server.container import build_container, upgrade_database
from tests.conftest import PG_ADMIN_URL, make_settings, serve_in_thread
from tests.factories import make_instance
from tests.helpers import stow


class CuttableProxy:
    """Forwards loopback TCP connections to a target; `cut()` drops them all (and any new
    ones) until `restore()`."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = True
        self.sockets: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.sockets.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.up = False
        with self.lock:
            for s in self.sockets:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            self.sockets.clear()

    def restore(self) -> None:
        self.up = True

    def close(self) -> None:
        self.closed = True
        self.cut()
        self.listener.close()


@pytest.fixture
def fault_database(pg_url: str) -> Iterator[str]:
    """A database of its own (the shared test database keeps its state)."""
    name = f"dicomweb_fault_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_database_cut_off_during_load(fault_database: str, tmp_path: object) -> None:
    direct = make_url(fault_database)
    proxy = CuttableProxy((direct.host or "127.0.0.1", direct.port or 5432))
    through_proxy = direct.set(host="127.0.0.1", port=proxy.port).render_as_string(
        hide_password=False
    )
    settings = make_settings(tmp_path, through_proxy, db_pool_size=2)  # type: ignore[arg-type]
    upgrade_database(make_settings(tmp_path, fault_database))  # type: ignore[arg-type]
    container = build_container(settings)
    uv, thread, url = serve_in_thread(container)
    base = url + settings.base_path
    statuses: list[tuple[float, str, int, str]] = []
    bodies: list[str] = []
    acknowledged: list[str] = []
    study = generate_uid()
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=base, timeout=30) as client:
            while not stop.is_set():
                ds = make_instance(study)
                r = stow(client, [ds])
                statuses.append(
                    (time.monotonic(), "stow", r.status_code, r.headers.get("retry-after", ""))
                )
                if r.status_code == 503:
                    bodies.append(r.text)
                if r.status_code == 200:
                    acknowledged.append(ds.SOPInstanceUID)
                q = client.get("/studies", params={"StudyInstanceUID": study})
                statuses.append(
                    (time.monotonic(), "qido", q.status_code, q.headers.get("retry-after", ""))
                )
                time.sleep(0.02)

    loader = threading.Thread(target=load)
    try:
        loader.start()
        time.sleep(1.5)
        cut_at = time.monotonic()
        proxy.cut()
        time.sleep(3)
        restored_at = time.monotonic()
        proxy.restore()
        time.sleep(3)
        stop.set()
        loader.join(timeout=60)

        codes = {code for _, _, code, _ in statuses}
        assert codes <= {200, 503}, statuses
        assert any(code == 503 for _, _, code, _ in statuses), "the cut was not noticed"
        assert all(retry for _, _, code, retry in statuses if code == 503)
        # The body says the database is unavailable, never where it is.
        port = str(proxy.port)
        assert bodies and all("database" in b and port not in b for b in bodies), bodies[:3]
        assert not any("127.0.0.1" in b for b in bodies)
        # Served again by the same process once the database is back (pool pre-ping).
        late = [code for t, _, code, _ in statuses if t > restored_at + 1.5]
        assert late and all(code == 200 for code in late), late
        assert any(t < cut_at and code == 200 for t, _, code, _ in statuses)

        # Nothing acknowledged is lost; nothing is half stored.
        with httpx.Client(base_url=base, timeout=30) as client:
            found = client.get(f"/studies/{study}/instances").json()
            indexed = {item["00080018"]["Value"][0] for item in found}
            assert set(acknowledged) <= indexed
            for item in found:
                assert client.get(item["00081190"]["Value"][0]).status_code == 200
        ok = sum(code == 200 for _, _, code, _ in statuses)
        print(f"\n{ok} x 200, {len(statuses) - ok} x 503, {len(acknowledged)} acknowledged")
        report = container.consistency.check(grace_seconds=0)
        assert report.missing == [] and report.orphans == [], report
        # Every request, whatever happened to it, removed what it spooled.
        assert report.spool_leftovers == [] and not any(settings.resolved_spool_dir.iterdir())
    finally:
        stop.set()
        uv.should_exit = True
        thread.join(timeout=10)
        container.close()
        proxy.close()


def test_blob_store_cut_off(s3_endpoint: str, tmp_path: object) -> None:
    """S3 unreachable: STOW answers 503 and indexes nothing; retrieve answers 503; both work
    again when it is back."""
    from tests.conftest import S3_ACCESS, new_bucket

    endpoint = make_url(s3_endpoint.replace("http://", "postgresql://"))
    proxy = CuttableProxy((endpoint.host or "127.0.0.1", endpoint.port or 80))
    bucket = f"dicomweb-fault-{uuid.uuid4().hex[:8]}"
    new_bucket(s3_endpoint, bucket)
    settings = make_settings(
        tmp_path,  # type: ignore[arg-type]
        blob_store="s3",
        s3_bucket=bucket,
        s3_endpoint_url=f"http://127.0.0.1:{proxy.port}",
        s3_region="us-east-1",
        s3_addressing_style="path",
        s3_max_attempts=2,
        s3_connect_timeout=1,
        s3_read_timeout=2,
        **S3_ACCESS,
    )
    upgrade_database(settings)
    container = build_container(settings)
    uv, thread, url = serve_in_thread(container)
    try:
        with httpx.Client(base_url=url + settings.base_path, timeout=60) as client:
            kept = make_instance()
            assert stow(client, [kept]).status_code == 200
            instance_url = (
                f"/studies/{kept.StudyInstanceUID}/series/{kept.SeriesInstanceUID}"
                f"/instances/{kept.SOPInstanceUID}"
            )
            proxy.cut()
            lost = make_instance()
            r = stow(client, [lost])
            assert r.status_code == 503, r.text
            assert r.headers["retry-after"]
            assert "blob" in r.json()["error"] or "s3://" in r.json()["error"]
            r = client.get(instance_url)
            assert r.status_code == 503
            # The index never took the instance whose object could not be written.
            assert (
                client.get("/studies", params={"StudyInstanceUID": lost.StudyInstanceUID}).json()
                == []
            )
            ready = httpx.get(url + "/ready", timeout=30)
            assert ready.status_code == 503 and "blob store" in ready.json()["problems"]
            proxy.restore()
            assert httpx.get(url + "/ready", timeout=30).status_code == 200
            assert client.get(instance_url).status_code == 200
            assert stow(client, [lost]).status_code == 200
    finally:
        uv.should_exit = True
        thread.join(timeout=10)
        container.close()
        proxy.close()
