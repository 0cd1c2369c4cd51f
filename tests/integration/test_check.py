"""`dicomweb-server check [--repair]` against a real archive, on every backend."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import RunningServer, settings_env
from tests.factories import make_instance
from tests.helpers import stow

HOUR_AGO = time.time() - 7200


def check(archive: RunningServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOMWEB_")}
    env.update(settings_env(archive.settings))
    command = [str(Path(sys.executable).parent / "dicomweb-server"), "check", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def test_check_finds_and_repairs_orphans_and_leftovers(
    archive: RunningServer, client: httpx.Client, tmp_path: Path
) -> None:
    kept = make_instance()
    assert stow(client, [kept]).status_code == 200
    blobs = archive.container.blobs
    on_disk = archive.settings.blob_store == "filesystem"
    # What a crash between writing an object and committing its row leaves behind.
    orphan = f"{kept.StudyInstanceUID}/1.2.3/1.2.3.4.deadbeef.dcm"
    recent = f"{kept.StudyInstanceUID}/1.2.3/1.2.3.5.cafe.dcm"  # may be a store in progress
    for key in (orphan, recent):
        junk = tmp_path / "junk"
        junk.write_bytes(b"\0" * 100)
        blobs.put_file(key, junk)
    if on_disk:
        os.utime(archive.settings.resolved_blob_dir / orphan, (HOUR_AGO, HOUR_AGO))
        grace: tuple[str, ...] = ()
    else:
        # An S3 object's age cannot be set: every leftover counts as old.
        blobs.delete(recent)
        grace = ("--grace-minutes", "0")
    spool = archive.settings.resolved_spool_dir / "part-interrupted.dcm"
    spool.write_bytes(b"partial")
    os.utime(spool, (HOUR_AGO, HOUR_AGO))

    def stored() -> set[str]:
        return {key for key, _ in blobs.iter_keys()}

    found = check(archive, *grace)
    assert found.returncode == 1, found.stdout + found.stderr
    assert "1 orphan object(s), 1 spool leftover(s), 0 missing" in found.stdout
    assert orphan in stored() and spool.exists()

    repaired = check(archive, "--repair", *grace)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert orphan not in stored() and not spool.exists()
    assert recent in stored() or not on_disk
    again = check(archive, *grace)
    assert again.returncode == 0 and "0 orphan object(s)" in again.stdout
    # The stored instance is untouched and still served.
    url = f"/studies/{kept.StudyInstanceUID}/series/{kept.SeriesInstanceUID}/instances/"
    assert client.get(url + kept.SOPInstanceUID).status_code == 200


def test_check_reports_an_indexed_instance_whose_object_is_gone(
    archive: RunningServer, client: httpx.Client
) -> None:
    ds = make_instance()
    assert stow(client, [ds]).status_code == 200
    ((key, _),) = archive.container.blobs.iter_keys()
    archive.container.blobs.delete(key)
    result = check(archive, "--repair")
    assert result.returncode == 1
    assert "MISSING object of an indexed instance" in result.stdout
