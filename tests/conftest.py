"""Real components for every test: a real server over a real socket, on each backend.

The API tests run on four backend pairs: SQLite or PostgreSQL for the index, the file system
or an S3 bucket for objects. PostgreSQL is the one on 127.0.0.1:5432; each run gets a database
of its own, dropped at the end, and each test starts from empty tables. S3 is a real
S3-protocol server (moto's server mode) on a loopback port, spoken to over HTTP by boto3; each
backend pair gets a bucket of its own. Without PostgreSQL the PostgreSQL half is skipped with
a visible reason; under CI=true that is a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import create_engine, text

from dicomweb_server.app import create_app
from dicomweb_server.container import Container, build_container, upgrade_database
from dicomweb_server.serving import http_protocol
from dicomweb_server.settings import Settings

PG_ADMIN_URL = os.environ.get(
    "DICOMWEB_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# index + blob store; a name without "+s3" keeps objects on the file system.
BACKENDS = ["sqlite", "postgresql", "sqlite+s3", "postgresql+s3"]
S3_ACCESS = {"s3_access_key_id": "test", "s3_secret_access_key": "test-secret"}

_pg_problem: str | None = None


def pytest_report_header(config: pytest.Config) -> str:
    return f"PostgreSQL for tests: {PG_ADMIN_URL} (CI={IN_CI})"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _pg_problem:
        terminalreporter.write_sep("!", "POSTGRESQL TESTS SKIPPED", red=True, bold=True)
        terminalreporter.write_line(f"PostgreSQL was not reachable: {_pg_problem}", red=True)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    global _pg_problem
    name = f"dicomweb_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - any failure to reach PostgreSQL is reported
        _pg_problem = f"{type(exc).__name__}: {exc}".splitlines()[0]
        if IN_CI:
            pytest.fail(f"CI=true and PostgreSQL is unreachable: {_pg_problem}")
        pytest.skip(f"PostgreSQL unreachable ({_pg_problem}); PostgreSQL tests skipped")
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3-protocol server (moto) on a loopback port, for the whole run. It runs in a
    process of its own, so the memory it uses for objects is not counted as the server's."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                httpx.get(endpoint, timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the S3-protocol test server did not start") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=30)


def new_bucket(endpoint: str, name: str) -> None:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=S3_ACCESS["s3_access_key_id"],
        aws_secret_access_key=S3_ACCESS["s3_secret_access_key"],
    )
    client.create_bucket(Bucket=name)
    client.close()


@dataclass
class RunningServer:
    backend: str
    container: Container
    url: str
    settings: Settings

    @property
    def base_url(self) -> str:
        return self.url + self.settings.base_path

    @property
    def database(self) -> str:
        return self.backend.split("+")[0]

    def reset(self) -> None:
        with self.container.engine.begin() as conn:
            if self.database == "postgresql":
                conn.execute(
                    text(
                        "TRUNCATE instances, series, studies, retired_objects, rejected_objects, "
                        "original_versions "
                        "RESTART IDENTITY "
                        "CASCADE"
                    )
                )
                # The change log's sequence goes on (as it always does): a live reader's
                # cursor stays valid.
                conn.execute(text("TRUNCATE changes, deliveries, subscriptions"))
                conn.execute(
                    text(
                        "TRUNCATE workitems, workitem_subscriptions, workitem_events, "
                        "workitem_receivers"
                    )
                )
            else:
                for table in (
                    "instances",
                    "series",
                    "studies",
                    "retired_objects",
                    "rejected_objects",
                    "original_versions",
                    "changes",
                    "deliveries",
                    "subscriptions",
                    "workitems",
                    "workitem_subscriptions",
                    "workitem_events",
                    "workitem_receivers",
                ):
                    conn.execute(text(f"DELETE FROM {table}"))
        if self.settings.blob_store == "s3":
            blobs = self.container.blobs
            for key, _ in list(blobs.iter_keys()):
                blobs.delete(key)
        else:
            blob_dir = self.settings.resolved_blob_dir
            shutil.rmtree(blob_dir, ignore_errors=True)
            blob_dir.mkdir(parents=True)


def start_serve(
    settings: Settings, *extra: str, log: Path | None = None, prefix: tuple[str, ...] = ()
) -> tuple[subprocess.Popen[bytes], str]:
    """A real `dicomweb-server serve` process on the given settings, ready; returns it and
    its DICOMweb root URL. Its output goes to `log` when given; `prefix` runs it under
    another command (`prlimit ...`)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOMWEB_")}
    env.update(settings_env(settings))
    command = [str(Path(sys.executable).parent / "dicomweb-server"), "serve", "--port", str(port)]
    output = log.open("wb") if log is not None else subprocess.DEVNULL
    try:
        process = subprocess.Popen(
            [*prefix, *command, *extra], env=env, stdout=output, stderr=output
        )
    finally:
        if log is not None:
            output.close()  # type: ignore[union-attr]
    root = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(root + "/ready").status_code == 200:
                return process, root + settings.base_path
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the server did not start")


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as the environment variables that give them (for subprocesses). A
    test server runs one process unless its test asks for more (`--workers`): the default,
    one per core, would start every test's server several times over."""
    env = {
        f"DICOMWEB_{name.upper()}": str(value)
        for name, value in settings.model_dump().items()
        if value is not None and value != ""
    }
    if settings.workers == 0:
        env["DICOMWEB_WORKERS"] = "1"
    return env


def serve_in_thread(container: Container) -> tuple[uvicorn.Server, threading.Thread, str]:
    # The stack `serve` runs: httptools with the header deadline and TCP_NODELAY, uvloop.
    config = uvicorn.Config(
        create_app(container),
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan="on",
        http=http_protocol("httptools"),
        loop="uvloop",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, thread, f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def private_server(
    settings: Settings, upgrade: bool = True
) -> Iterator[tuple[httpx.Client, Container]]:
    """A server of its own on `settings` (schema upgraded unless told not to), in a thread on
    a loopback port: a client on its DICOMweb root, and its container (whose services a test
    may watch without touching the shared server). Stopped and closed at the end."""
    if upgrade:
        upgrade_database(settings)
    container = build_container(settings)
    server, thread, root = serve_in_thread(container)
    try:
        with httpx.Client(base_url=root + settings.base_path, timeout=60) as client:
            yield client, container
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        container.close()


def make_settings(data_dir: Path, database_url: str | None = None, **extra: object) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=data_dir,
        database_url=database_url,  # type: ignore[call-arg]
        **extra,
    )


@pytest.fixture(scope="session", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    backend: str = request.param
    database, _, blobs = backend.partition("+")
    database_url = request.getfixturevalue("pg_url") if database == "postgresql" else None
    extra: dict[str, object] = {}
    if blobs == "s3":
        endpoint = request.getfixturevalue("s3_endpoint")
        bucket = f"dicomweb-{database}-{uuid.uuid4().hex[:8]}"
        new_bucket(endpoint, bucket)
        extra = {
            "blob_store": "s3",
            "s3_bucket": bucket,
            "s3_endpoint_url": endpoint,
            "s3_region": "us-east-1",
            "s3_addressing_style": "path",
            **S3_ACCESS,
        }
    folder = tmp_path_factory.mktemp(f"archive-{backend.replace('+', '-')}")
    settings = make_settings(folder, database_url, **extra)
    upgrade_database(settings)
    container = build_container(settings)
    container.verify()
    uv, thread, url = serve_in_thread(container)
    try:
        yield RunningServer(backend, container, url, settings)
    finally:
        uv.should_exit = True
        thread.join(timeout=10)
        container.close()


@pytest.fixture
def archive(server: RunningServer) -> Iterator[RunningServer]:
    server.reset()
    yield server
    # Whatever a test sent, every request removed what it spooled (a test that leaves
    # leftovers on purpose removes them).
    leftovers = list(server.container.store.spool.root.iterdir())
    assert leftovers == [], leftovers


@pytest.fixture
def client(archive: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=archive.base_url, timeout=60) as c:
        yield c
