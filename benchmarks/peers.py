"""Start and stop the servers the benchmark compares, each on a loopback port.

- ours: `dicomweb-server serve` with PostgreSQL + filesystem, or the embedded default;
- Orthanc with its DICOMweb plugin (installed with apt-get when missing), from its binary;
- nginx serving the corpus as static files (the retrieve ceiling).
Every process is stopped by PID when the run ends.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ORTHANC_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def processes() -> Iterator[tuple[int, str, list[str]]]:
    """Every process on the machine: its pid, its command name and the fields of
    /proc/PID/stat after the name (state, parent, ..., utime at 11, stime at 12)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name, rest = stat.split("(", 1)[1].rsplit(")", 1)
        yield int(entry.name), name, rest.split()


def _tree_pids(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for child, _name, fields in processes():
        children.setdefault(int(fields[1]), []).append(child)
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(children.get(current, []))
    return out


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and all its living descendants, in seconds:
    the machine-independent cost of the work it did, where wall time is noisy."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in _tree_pids(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MiB."""
    total = 0
    for p in _tree_pids(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


@dataclass
class Peer:
    name: str
    dicomweb: str  # the DICOMweb root URL
    wado_uri: str | None
    process: subprocess.Popen[bytes]
    cleanup: list[object] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    # Sent with every request (the production profile's API key).
    headers: dict[str, str] = field(default_factory=dict)

    def sample(self) -> None:
        self.peak_rss_mb = max(self.peak_rss_mb, rss_mb(self.process.pid))

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for action in self.cleanup:
            if callable(action):
                action()


def _wait(url: str, process: subprocess.Popen[bytes], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited during start-up (code {process.returncode})")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{what} did not answer {url} within {timeout} s")


def create_pg_database(admin_url: str) -> tuple[str, object]:
    """A fresh PostgreSQL database; returns its URL and a function that drops it."""
    from sqlalchemy import create_engine, text

    name = f"dicomweb_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return admin_url.rsplit("/", 1)[0] + f"/{name}", drop


def start_s3_server(workdir: Path) -> tuple[dict[str, str], object]:
    """An S3-protocol server on loopback (moto's server mode, from the test extra) with a
    bucket; returns the settings that point our server at it, and a function that stops it.
    It is a Python server keeping objects in memory: slower than MinIO or AWS S3, so the
    S3 column is an upper bound on what S3 costs us."""
    import boto3

    port = free_port()
    log = (workdir / "s3-server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{port}"
    _wait(endpoint, process, "the S3-protocol server")
    settings = {
        "DICOMWEB_BLOB_STORE": "s3",
        "DICOMWEB_S3_BUCKET": "dicomweb-bench",
        "DICOMWEB_S3_ENDPOINT_URL": endpoint,
        "DICOMWEB_S3_REGION": "us-east-1",
        "DICOMWEB_S3_ADDRESSING_STYLE": "path",
        "DICOMWEB_S3_ACCESS_KEY_ID": "bench",
        "DICOMWEB_S3_SECRET_ACCESS_KEY": "bench-secret",
    }
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench-secret",
    )
    client.create_bucket(Bucket=settings["DICOMWEB_S3_BUCKET"])
    client.close()

    def stop() -> None:
        process.terminate()
        process.wait(timeout=30)
        log.close()

    return settings, stop


# The production profile the deploy files turn on: API keys, the audit table.
PRODUCTION = {"DICOMWEB_AUTH": "api-key", "DICOMWEB_AUDIT": "table"}


def start_ours(
    name: str,
    workdir: Path,
    database_url: str | None,
    workers: int | None,
    extra_env: dict[str, str] | None = None,
    log_level: str | None = "warning",
) -> Peer:
    """`dicomweb-server serve`; with `workers` None and `log_level` None, exactly as the
    README starts it (one worker per core, the access log at info). With DICOMWEB_AUTH in
    `extra_env`, a key with every reading and writing scope is made and sent by every
    client of the benchmark (Peer.headers)."""
    port = free_port()
    data = workdir / name
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOMWEB_")}
    env["DICOMWEB_DATA_DIR"] = str(data)
    if log_level is not None:
        env["DICOMWEB_LOG_LEVEL"] = log_level
    env.update(extra_env or {})
    if database_url:
        env["DICOMWEB_DATABASE_URL"] = database_url
    program = str(Path(sys.executable).parent / "dicomweb-server")
    command = [program, "serve", "--port", str(port)]
    if workers is not None:
        command += ["--workers", str(workers)]
    log = (workdir / f"{name}.log").open("wb")
    process = subprocess.Popen(command, env=env, cwd=data, stdout=log, stderr=subprocess.STDOUT)
    _wait(f"http://127.0.0.1:{port}/health", process, name)
    root = f"http://127.0.0.1:{port}/dicomweb"
    headers = {}
    if env.get("DICOMWEB_AUTH", "none") != "none":
        made = subprocess.run(
            [program, "keys", "create", "--name", "benchmark", "--scopes", "read,write,delete"],
            env=env,
            cwd=data,
            capture_output=True,
            text=True,
            check=True,
        )
        headers["X-API-Key"] = made.stdout.strip().splitlines()[-1].strip()
    return Peer(name, root, f"{root}/wado", process, [log.close], headers=headers)


def apt_install(*packages: str) -> None:
    """Install Debian packages when running as root with apt-get; otherwise do nothing."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
    subprocess.run(["apt-get", "install", "-y", "-qq", *packages], env=env, check=False)


def ensure_orthanc() -> str | None:
    """The Orthanc binary, installing Debian's packages when missing; None if impossible."""
    if not (shutil.which("Orthanc") and Path(ORTHANC_PLUGIN).is_file()):
        apt_install("orthanc", "orthanc-dicomweb")
    binary = shutil.which("Orthanc")
    return binary if binary and Path(ORTHANC_PLUGIN).is_file() else None


def orthanc_config(name: str, home: Path, port: int, plugins: list[str]) -> dict[str, Any]:
    """What both Orthancs run with: storage under `home`, HTTP on `port` without
    authentication (loopback only), no DICOM port, DICOMweb and WADO-URI on."""
    return {
        "Name": name,
        "StorageDirectory": str(home / "storage"),
        "IndexDirectory": str(home / "index"),
        "HttpPort": port,
        "DicomServerEnabled": False,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": plugins,
        "DicomWeb": {
            "Enable": True,
            "Root": "/dicom-web/",
            "EnableWado": True,
            "WadoRoot": "/wado",
            "Ssl": False,
        },
    }


def start_orthanc(workdir: Path, binary: str) -> Peer:
    port = free_port()
    home = workdir / "orthanc"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    config = orthanc_config("benchmark", home, port, [ORTHANC_PLUGIN])
    config["StorageCompression"] = False
    (home / "config.json").write_text(json.dumps(config))
    log = (workdir / "orthanc.log").open("wb")
    process = subprocess.Popen(
        [binary, str(home / "config.json")], cwd=home, stdout=log, stderr=subprocess.STDOUT
    )
    _wait(f"http://127.0.0.1:{port}/system", process, "Orthanc")
    return Peer(
        "orthanc",
        f"http://127.0.0.1:{port}/dicom-web",
        f"http://127.0.0.1:{port}/wado",
        process,
        [log.close],
    )


def start_nginx(workdir: Path, root: Path) -> Peer | None:
    if shutil.which("nginx") is None:
        apt_install("nginx-light")
    binary = shutil.which("nginx")
    if binary is None:
        return None
    port = free_port()
    home = workdir / "nginx"
    home.mkdir(parents=True, exist_ok=True)
    conf = home / "nginx.conf"
    # Started as root, nginx's workers would run as nobody and miss private folders.
    user = "user root;" if os.geteuid() == 0 else ""
    conf.write_text(f"""
{user}
daemon off;
worker_processes 2;
pid {home}/nginx.pid;
error_log {home}/error.log;
events {{ worker_connections 256; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    client_body_temp_path {home}/body;
    proxy_temp_path {home}/proxy;
    fastcgi_temp_path {home}/fastcgi;
    uwsgi_temp_path {home}/uwsgi;
    scgi_temp_path {home}/scgi;
    types {{ application/dicom dcm; }}
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
""")
    process = subprocess.Popen(
        [binary, "-c", str(conf), "-p", str(home)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait(f"http://127.0.0.1:{port}/manifest.json", process, "nginx")
    return Peer("nginx", f"http://127.0.0.1:{port}", None, process)


# What Orthanc 1.13's documentation and start-up messages recommend for DICOMweb speed, and
# that a fair comparison turns on (shared/ENVIRONMENT.md): full metadata kept at study and
# series level, its metadata cache, the instance tags its QIDO answers need, a storage cache
# that holds the corpus, no compression, keep-alive and TCP_NODELAY.
ORTHANC_13_EXTRA = {
    "StorageCompression": False,
    "KeepAlive": True,
    "TcpNoDelay": True,
    "MaximumStorageCacheSize": 1024,
    "ExtraMainDicomTags": {
        "Instance": [
            "Rows",
            "Columns",
            "ImageType",
            "SOPClassUID",
            "ContentDate",
            "ContentTime",
            "FrameOfReferenceUID",
            "PixelSpacing",
            "SpecificCharacterSet",
            "BitsAllocated",
            "NumberOfFrames",
        ],
        "Series": [
            "TimezoneOffsetFromUTC",
            "PerformedProcedureStepStartDate",
            "PerformedProcedureStepStartTime",
            "RequestAttributesSequence",
        ],
    },
}


def start_orthanc_sid(workdir: Path, chroot: Path, extra: dict[str, Any] | None = None) -> Peer:
    """Orthanc 1.13 with DICOMweb 1.24 and GDCM from the sid chroot (benchmarks/orthanc_sid.py),
    with the preload that keeps its ports on loopback and its threads' stacks large enough."""
    from benchmarks.orthanc_sid import BINARY, PLUGINS, PRELOAD

    port = free_port()
    inside = Path("/var/lib/benchmark") / workdir.name
    home = chroot / inside.relative_to("/")
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    plugins = [f"/{PLUGINS}/libOrthancDicomWeb.so", f"/{PLUGINS}/libOrthancGdcm.so"]
    config = {
        **orthanc_config("benchmark-1.13", inside, port, plugins),
        **ORTHANC_13_EXTRA,
        **(extra or {}),
    }
    config["DicomWeb"].update(
        {"StudiesMetadata": "Full", "SeriesMetadata": "Full", "EnableMetadataCache": True}
    )
    (home / "config.json").write_text(json.dumps(config))
    log = (workdir / "orthanc-1.13.log").open("wb")
    process = subprocess.Popen(
        [
            "chroot",
            str(chroot),
            "env",
            f"LD_PRELOAD=/{PRELOAD}",
            f"/{BINARY}",
            str(inside / "config.json"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    _wait(f"http://127.0.0.1:{port}/system", process, "Orthanc 1.13")

    def remove() -> None:
        shutil.rmtree(home, ignore_errors=True)

    return Peer(
        "orthanc-1.13",
        f"http://127.0.0.1:{port}/dicom-web",
        f"http://127.0.0.1:{port}/wado",
        process,
        [log.close, remove],
    )
