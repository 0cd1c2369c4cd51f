"""`dicomweb-server check [--repair]` against a real archive, on every backend."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import RunningServer
from tests.factories import make_instance
from tests.helpers import stow

HOUR_AGO = time.time() - 7200


def check(archive: RunningServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOMWEB_")}
    env["DICOMWEB_DATA_DIR"] = str(archive.settings.data_dir)
    if archive.settings.database_url:
        env["DICOMWEB_DATABASE_URL"] = archive.settings.database_url
    command = [str(Path(sys.executable).parent / "dicomweb-server"), "check", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def test_check_finds_and_repairs_orphans_and_leftovers(
    archive: RunningServer, client: httpx.Client
) -> None:
    kept = make_instance()
    assert stow(client, [kept]).status_code == 200
    blobs = archive.settings.resolved_blob_dir
    # What a crash between writing an object and committing its row leaves behind.
    orphan = blobs / kept.StudyInstanceUID / "1.2.3" / "1.2.3.4.deadbeef.dcm"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"\0" * 100)
    os.utime(orphan, (HOUR_AGO, HOUR_AGO))
    recent = orphan.with_name("1.2.3.5.cafe.dcm")  # may belong to a store in progress
    recent.write_bytes(b"\0" * 100)
    spool = archive.settings.resolved_spool_dir / "part-interrupted.dcm"
    spool.write_bytes(b"partial")
    os.utime(spool, (HOUR_AGO, HOUR_AGO))

    found = check(archive)
    assert found.returncode == 1, found.stdout + found.stderr
    assert "1 orphan object(s), 1 spool leftover(s), 0 missing" in found.stdout
    assert orphan.exists() and spool.exists()

    repaired = check(archive, "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert not orphan.exists() and not spool.exists()
    assert recent.exists()
    again = check(archive)
    assert again.returncode == 0 and "0 orphan object(s)" in again.stdout
    # The stored instance is untouched and still served.
    url = f"/studies/{kept.StudyInstanceUID}/series/{kept.SeriesInstanceUID}/instances/"
    assert client.get(url + kept.SOPInstanceUID).status_code == 200


def test_check_reports_an_indexed_instance_whose_object_is_gone(
    archive: RunningServer, client: httpx.Client
) -> None:
    ds = make_instance()
    assert stow(client, [ds]).status_code == 200
    (stored,) = archive.settings.resolved_blob_dir.rglob("*.dcm")
    stored.unlink()
    result = check(archive, "--repair")
    assert result.returncode == 1
    assert "MISSING object of an indexed instance" in result.stdout
