"""A full or read-only object store: 507 or 503 with the reason, nothing half stored, /ready
says so, and everything stored before is still served.

The objects and the spool live on a small tmpfs mounted for the test (root is needed to
mount; file permissions do not stop root, a read-only mount does).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydicom.uid import generate_uid

from dicomweb_server.container import build_container, upgrade_database
from tests.conftest import IN_CI, make_settings, serve_in_thread
from tests.factories import make_instance
from tests.helpers import stow

SIZE_MB = 40


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        reason = f"cannot mount a tmpfs here: {done.stderr.strip()}"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def on_small_disk(small_disk: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    settings = make_settings(
        tmp_path / "data", blob_dir=small_disk / "objects", spool_dir=small_disk / "spool"
    )
    upgrade_database(settings)
    container = build_container(settings)
    uv, thread, url = serve_in_thread(container)
    try:
        yield url, small_disk
    finally:
        uv.should_exit = True
        thread.join(timeout=10)
        container.close()


def _big(study: str, megabytes: int):
    frames = megabytes // 2  # 1024 x 1024 x 16 bits: 2 MiB a frame
    return make_instance(study, rows=1024, columns=1024, frames=frames)


def test_full_disk(on_small_disk: tuple[str, Path]) -> None:
    url, disk = on_small_disk
    study = generate_uid()
    with httpx.Client(base_url=url + "/dicomweb", timeout=60) as c:
        first = _big(study, 22)
        assert stow(c, [first]).status_code == 200
        assert httpx.get(url + "/ready").status_code == 200
        # What is left cannot hold the next one: refused with the reason, nothing kept.
        r = stow(c, [_big(study, 22)])
        assert r.status_code == 507, r.text
        assert "full" in r.json()["error"] and str(disk) not in r.text
        assert len(c.get(f"/studies/{study}/instances").json()) == 1
        assert list((disk / "spool").iterdir()) == []
        assert len(list((disk / "objects").rglob("*.dcm"))) == 1
        # Filled to the brim, the archive is not ready and says why.
        (disk / "filler").write_bytes(b"\0" * ((SIZE_MB - 23) * 2**20 - 4096))
        ready = httpx.get(url + "/ready")
        assert ready.status_code == 503
        assert "full" in ready.text and str(disk) not in ready.text
        # Reading goes on.
        url_first = f"/studies/{study}/series/{first.SeriesInstanceUID}/instances/"
        got = c.get(url_first + first.SOPInstanceUID, headers={"Accept": "*/*"})
        assert got.status_code == 200
        (disk / "filler").unlink()
        assert httpx.get(url + "/ready").status_code == 200
        assert stow(c, [make_instance(study)]).status_code == 200


def test_read_only_store(on_small_disk: tuple[str, Path]) -> None:
    url, disk = on_small_disk
    study = generate_uid()
    with httpx.Client(base_url=url + "/dicomweb", timeout=60) as c:
        kept = make_instance(study)
        assert stow(c, [kept]).status_code == 200
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        try:
            r = stow(c, [make_instance(study)])
            assert r.status_code == 503, r.text
            assert "read-only" in r.json()["error"] and r.headers.get("retry-after")
            ready = httpx.get(url + "/ready")
            assert ready.status_code == 503 and "read-only" in ready.text
            assert str(disk) not in ready.text
            url_kept = f"/studies/{study}/series/{kept.SeriesInstanceUID}/instances/"
            assert (
                c.get(url_kept + kept.SOPInstanceUID, headers={"Accept": "*/*"}).status_code == 200
            )
        finally:
            subprocess.run(["mount", "-o", "remount,rw", str(disk)], check=True)
        assert len(c.get(f"/studies/{study}/instances").json()) == 1
        assert stow(c, [make_instance(study)]).status_code == 200
