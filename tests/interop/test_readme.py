"""The README works as written: `dicomweb-server serve` with zero configuration, then curl."""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dicomweb_server.settings import Settings
from tests.factories import bundled_bytes, parse

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """The real command line, in an empty folder, with nothing configured but the port."""
    yield from _serve(tmp_path, {})


def _serve(
    tmp_path: Path, extra: dict[str, str], started: list[subprocess.Popen[bytes]] | None = None
) -> Iterator[str]:
    """`serve` in `tmp_path`, ready; its DICOMweb root. The process goes into `started`."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOMWEB_")}
    env.update(extra)
    command = [str(Path(sys.executable).parent / "dicomweb-server"), "serve", "--port", str(port)]
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    if started is not None:
        started.append(process)
    base = f"http://127.0.0.1:{port}/dicomweb"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                output = process.stdout.read().decode() if process.stdout else ""
                pytest.fail(f"dicomweb-server serve did not start:\n{output}")
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
    # Zero configuration: the embedded default lives under ./data.
    assert (tmp_path / "data" / "index.sqlite3").is_file()


def multipart_payloads(path: Path) -> list[bytes]:
    """The parts of a saved multipart/related body (its boundary is on its first line)."""
    raw = path.read_bytes()
    boundary = raw.split(b"\r\n", 1)[0][2:]
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: multipart/related; boundary=" + boundary + b"\r\n\r\n" + raw
    )
    return [p.get_payload(decode=True) for p in message.iter_parts()]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_readme_curl_examples(served: str, tmp_path: Path) -> None:
    block = re.search(r"<!-- readme-curl-begin -->\n```sh\n(.*?)```", README, re.S)
    assert block is not None
    script = block.group(1).replace(".venv/bin/python", sys.executable)
    work = tmp_path / "work"
    work.mkdir()
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=work,
        env={**os.environ, "BASE": served},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert '"00081199"' in result.stdout  # the STOW response lists the stored instance
    assert "CompressedSamples^CT1" in result.stdout  # found by QIDO
    sent = bundled_bytes("CT_small.dcm")
    (instance,) = multipart_payloads(work / "instance.multipart")
    assert instance == sent
    (frame,) = multipart_payloads(work / "frame1.multipart")
    assert frame == parse(sent).PixelData


def test_every_setting_is_documented() -> None:
    example = (ROOT / ".env.example").read_text()
    for name in Settings.model_fields:
        variable = f"DICOMWEB_{name.upper()}"
        assert f"| `{variable}` |" in README, f"{variable} is missing from the README table"
        assert f"\n{variable}=" in example or f"# {variable}=" in example, (
            f"{variable} is missing from .env.example"
        )


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("auth", ["none", "api-key"])
def test_readme_ups_quick_start_runs_as_written(tmp_path: Path, auth: str) -> None:
    """The Worklist quick start in bash -e, from a copy of the checkout's examples: create,
    subscribe, the event channel (a header credential when access control is on), claim,
    record, complete; the channel printed the State Reports."""
    block = re.search(r"<!-- readme-ups-begin -->\n```sh\n(.*?)```", README, re.S)
    assert block is not None
    script = block.group(1).replace(".venv/bin/python", sys.executable)
    work = tmp_path / "checkout"
    shutil.copytree(ROOT / "docs" / "examples", work / "docs" / "examples")
    program = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOMWEB_")}
    env["PATH"] = f"{program}{os.pathsep}{env.get('PATH', '')}"
    data = tmp_path / "archive"
    data.mkdir()
    extra = {"DICOMWEB_AUTH": auth} if auth != "none" else {}
    if auth != "none":
        command = [str(program / "dicomweb-server")]
        for args in (["db", "upgrade"], ["keys", "create", "--name", "ai", "--scopes"]):
            if args[0] == "keys":
                args.append("read,workitems")
            made = subprocess.run(
                command + args,
                cwd=data,
                env={**env, **extra},
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert made.returncode == 0, made.stderr
        env["KEY"] = made.stdout.strip().splitlines()[-1]
    for base in _serve(data, extra):
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=work,
            env={**env, "BASE": base},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        states = re.findall(
            r'"00741000":\s*\{"vr":\s*"CS",\s*"Value":\s*\["([A-Z ]+)"\]', result.stdout
        )
        assert states[:3] == ["SCHEDULED", "IN PROGRESS", "COMPLETED"], result.stdout


def test_serve_says_where_it_is_and_commands_keep_alembic_quiet(tmp_path: Path) -> None:
    """`serve` prints the web app's and DICOMweb's URLs once it takes connections; Alembic's
    info lines ("Context impl SQLiteImpl", "Running upgrade") come only with -v."""
    program = str(Path(sys.executable).parent / "dicomweb-server")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOMWEB_")}
    quiet = subprocess.run(
        [program, "db", "upgrade"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert quiet.returncode == 0 and "alembic" not in quiet.stdout + quiet.stderr
    (tmp_path / "again").mkdir()
    loud = subprocess.run(
        [program, "-v", "db", "upgrade"],
        cwd=tmp_path / "again",
        env=env,
        capture_output=True,
        text=True,
    )
    assert loud.returncode == 0 and "Running upgrade" in loud.stdout + loud.stderr
    port = free_port()
    process = subprocess.Popen(
        [program, "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            lines.append(line)
            if "is up" in line:
                break
        expected = (
            f"the web app at http://127.0.0.1:{port}/ui/, "
            f"DICOMweb at http://127.0.0.1:{port}/dicomweb"
        )
        assert any(expected in line for line in lines), "".join(lines)
        assert not any("alembic" in line for line in lines), "".join(lines)
    finally:
        process.terminate()
        process.wait(timeout=15)


def _children(pid: int) -> list[str]:
    """The command lines of a process's children."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            with contextlib.suppress(OSError):
                found.append(Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" "))
    return [c.decode(errors="replace") for c in found]


def test_serve_with_no_flags_uses_every_core(tmp_path: Path) -> None:
    """The README's command gives the fast server: one worker process per usable core."""
    from dicomweb_server.serving import usable_cores

    started: list[subprocess.Popen[bytes]] = []
    for _base in _serve(tmp_path, {}, started):
        workers = [c for c in _children(started[0].pid) if "multiprocessing.spawn" in c]
        cores = usable_cores()
        # One core: uvicorn serves in the process itself, without a supervisor.
        assert len(workers) == (cores if cores > 1 else 0)
