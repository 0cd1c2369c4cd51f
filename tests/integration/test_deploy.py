"""deploy/: the container entrypoint run outside Docker, the manifests checked against the
application, and the nginx example run for real in front of the server."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from dicomweb_server.settings import Settings
from tests.conftest import RunningServer
from tests.factories import make_instance, to_bytes
from tests.helpers import parts, stow
from tests.interop.test_readme import free_port

DEPLOY = Path(__file__).parents[2] / "deploy"
ENTRYPOINT = DEPLOY / "docker-entrypoint.sh"
SETTINGS = {f"DICOMWEB_{name.upper()}" for name in Settings.model_fields}


def entrypoint_env(data: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOMWEB_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["DICOMWEB_DATA_DIR"] = str(data)
    env["DICOMWEB_HOST"] = "127.0.0.1"  # the image binds every interface; a test, loopback
    env.update(extra)
    return env


def test_entrypoint_serves_and_passes_commands_through(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        ["sh", str(ENTRYPOINT)],
        env=entrypoint_env(tmp_path, DICOMWEB_PORT=str(port)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/ready")
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.1)
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
        assert httpx.get(f"http://127.0.0.1:{port}/dicomweb/studies").json() == []
    finally:
        process.terminate()
        process.wait(timeout=30)
    upgrade = subprocess.run(
        ["sh", str(ENTRYPOINT), "db", "upgrade"],
        env=entrypoint_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert upgrade.returncode == 0 and "up to date" in upgrade.stdout


def test_pods_refuse_an_old_schema_when_migrations_are_a_job(tmp_path: Path) -> None:
    result = subprocess.run(
        ["sh", str(ENTRYPOINT)],
        env=entrypoint_env(
            tmp_path, DICOMWEB_PORT=str(free_port()), DICOMWEB_MIGRATE_ON_START="false"
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "db upgrade" in result.stderr


def _manifests() -> dict[str, dict]:
    found = {}
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            found[document["kind"]] = document
    return found


def test_kubernetes_manifests_fit_the_application() -> None:
    m = _manifests()
    assert set(m) >= {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "ConfigMap",
        "Secret",
        "Job",
    }
    pod = m["Deployment"]["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert (
        container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]
    )
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert m["Service"]["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert (
        m["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"]
        == (m["Deployment"]["metadata"]["name"])
    )
    (job,) = m["Job"]["spec"]["template"]["spec"]["containers"]
    assert job["args"] == ["db", "upgrade"]
    # Every variable the manifests set is a setting of the server.
    named = set(m["ConfigMap"]["data"]) | set(m["Secret"]["stringData"])
    assert named <= SETTINGS, named - SETTINGS
    assert m["ConfigMap"]["data"]["DICOMWEB_MIGRATE_ON_START"] == "false"
    # Reachable from the network: access control on, OIDC for people and keys for scripts.
    config = m["ConfigMap"]["data"]
    assert config["DICOMWEB_AUTH"] == "oidc,api-key"
    assert config["DICOMWEB_OIDC_ISSUER"].startswith("https://")
    assert "table" in config["DICOMWEB_AUDIT"]


def test_compose_and_dockerfile() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert {"dicomweb", "postgres", "minio"} <= set(compose["services"])
    environment = compose["services"]["dicomweb"]["environment"]
    assert set(environment) <= SETTINGS, set(environment) - SETTINGS
    assert environment["DICOMWEB_BLOB_STORE"] == "s3"
    # Reachable from the network: access control on (serve refuses otherwise).
    assert environment["DICOMWEB_AUTH"] == "api-key"
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    user = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert user and user[-1] not in ("root", "0")
    assert "HEALTHCHECK" in dockerfile and "/health" in dockerfile
    assert "DICOMWEB_AUTH=api-key" in dockerfile
    assert "docker-entrypoint.sh" in dockerfile and os.access(ENTRYPOINT, os.X_OK)


def test_nginx_example_streams_large_bodies(archive: RunningServer, tmp_path: Path) -> None:
    """The nginx example, run for real on loopback in front of the server: a 48 MB instance
    goes through it both ways."""
    if archive.backend != "sqlite":
        pytest.skip("the proxy path does not depend on the backends; run once")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        pytest.skip("nginx is not installed")
    port = free_port()
    upstream = archive.url.removeprefix("http://")
    site = (DEPLOY / "nginx" / "dicomweb.conf").read_text()
    site = site.replace("server dicomweb:8080;", f"server {upstream};")
    site = site.replace("listen 80;", f"listen 127.0.0.1:{port};")
    (tmp_path / "logs").mkdir()
    (tmp_path / "dicomweb.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"""daemon off;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/logs/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp_path}/body;
    proxy_temp_path {tmp_path}/proxy;
    fastcgi_temp_path {tmp_path}/fastcgi;
    uwsgi_temp_path {tmp_path}/uwsgi;
    scgi_temp_path {tmp_path}/scgi;
    include {tmp_path}/dicomweb.conf;
}}
"""
    )
    process = subprocess.Popen(
        [nginx, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}{archive.settings.base_path}"
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(base + "/studies")
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.1)
        ds = make_instance(rows=512, columns=512, frames=96)
        ds.PixelData = np.random.default_rng(5).integers(0, 4096, 512 * 512 * 96, "<u2").tobytes()
        sent = to_bytes(ds)
        with httpx.Client(base_url=base, timeout=300) as client:
            assert stow(client, [sent]).status_code == 200
            url = (
                f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
                f"/instances/{ds.SOPInstanceUID}"
            )
            r = client.get(url, headers={"Accept": "application/dicom"})
            assert r.status_code == 200 and r.content == sent
            ((_, frame),) = parts(client.get(url + "/frames/96"))
            assert frame == ds.PixelData[-512 * 512 * 2 :]
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_serve_refuses_the_network_without_access_control(tmp_path: Path) -> None:
    """Bound to anything but loopback with DICOMWEB_AUTH=none, serve refuses (before binding)
    and says why; an explicit override, or api-key, lets it start."""
    env = entrypoint_env(tmp_path, DICOMWEB_HOST="0.0.0.0", DICOMWEB_PORT=str(free_port()))
    refused = subprocess.run(
        ["sh", str(ENTRYPOINT)], env=env, capture_output=True, text=True, timeout=120
    )
    assert refused.returncode == 2
    assert "DICOMWEB_AUTH=none" in refused.stderr and "DICOMWEB_ALLOW_OPEN_ACCESS" in refused.stderr
    # What lets it start, checked without binding a public address in a test.
    from dicomweb_server.cli import open_access_refusal
    from tests.conftest import make_settings

    plain = make_settings(tmp_path)
    assert open_access_refusal(plain, "0.0.0.0") is not None
    assert open_access_refusal(plain, "::") is not None
    for host in ("127.0.0.1", "::1", "[::1]", "localhost", "127.0.0.2"):
        assert open_access_refusal(plain, host) is None, host
    for extra in ({"allow_open_access": True}, {"auth": "api-key"}):
        assert open_access_refusal(make_settings(tmp_path, **extra), "0.0.0.0") is None


def test_dimse_refuses_the_network_without_access_control(tmp_path: Path) -> None:
    """With DICOMWEB_AUTH=none, `dimse` and `serve` refuse to listen for DIMSE on anything but
    loopback (every AE could read and store every study), naming DIMSE, before binding."""
    program = str(Path(sys.executable).parent / "dicomweb-server")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOMWEB_")}
    env.update(
        DICOMWEB_DATA_DIR=str(tmp_path),
        DICOMWEB_DIMSE_PORT=str(free_port()),
        DICOMWEB_DIMSE_HOST="0.0.0.0",
        DICOMWEB_LOG_LEVEL="warning",
    )
    for command in (["dimse"], ["serve", "--port", str(free_port())]):
        refused = subprocess.run(
            [program, *command], env=env, capture_output=True, text=True, timeout=120
        )
        assert refused.returncode == 2, (command, refused.stderr)
        assert "DIMSE on 0.0.0.0" in refused.stderr, refused.stderr
        assert "DICOMWEB_ALLOW_OPEN_ACCESS" in refused.stderr
    from dicomweb_server.cli import dimse_open_access_refusal
    from tests.conftest import make_settings

    plain = make_settings(tmp_path)
    assert dimse_open_access_refusal(plain, "0.0.0.0") is not None
    assert dimse_open_access_refusal(plain, "127.0.0.1") is None
    for extra in ({"allow_open_access": True}, {"auth": "api-key"}):
        assert dimse_open_access_refusal(make_settings(tmp_path, **extra), "0.0.0.0") is None
