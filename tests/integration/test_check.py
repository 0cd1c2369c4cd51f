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
    spool = archive.container.store.spool
    # Left by a version that spooled into the root folder, and by a request whose process
    # died (its folder is there, nobody holds its lock); a running request's folder is not.
    loose = spool.root / "part-interrupted.dcm"
    loose.write_bytes(b"partial")
    dead = spool.root / "request-dead"
    dead.mkdir()
    (dead / ".lock").touch()
    (dead / "part-1.dcm").write_bytes(b"partial")
    running = spool.request()
    live = running.__enter__()
    try:

        def stored() -> set[str]:
            return {key for key, _ in blobs.iter_keys()}

        # Reported whatever their age: the young orphan too (it may be a store in progress).
        found = check(archive, *grace)
        assert found.returncode == 1, found.stdout + found.stderr
        orphans = 2 if on_disk else 1
        assert f"{orphans} orphan object(s), 2 spool leftover(s), 0 missing" in found.stdout
        assert ("younger than the grace period, kept" in found.stdout) == on_disk
        assert orphan in stored() and loose.exists() and dead.exists()
        assert "--repair would remove 1 orphan object(s), 2 spool leftover(s)" in found.stdout

        repaired = check(archive, "--repair", *grace)
        assert repaired.returncode == 0, repaired.stdout + repaired.stderr
        # It says what it removed, and what it kept and why.
        assert "removed: 1 orphan object(s), 2 spool leftover(s)" in repaired.stdout
        young = "kept: 1 orphan object(s) younger than the grace period"
        assert (young in repaired.stdout) == on_disk, repaired.stdout
        assert orphan not in stored() and not loose.exists() and not dead.exists()
        assert live.path.is_dir()
        assert recent in stored() or not on_disk
        again = check(archive, *grace)
        # What is left is the young orphan alone: reported, and not a fault.
        assert again.returncode == 0, again.stdout
        assert f"{1 if on_disk else 0} orphan object(s), 0 spool leftover(s)" in again.stdout
    finally:
        running.__exit__(None, None, None)
    assert not live.path.exists()
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
    assert result.returncode == 1, result.stdout + result.stderr
    assert "MISSING object of an indexed instance" in result.stdout
    assert "kept: 1 index row(s) whose object is missing" in result.stdout


def test_check_never_changes_the_schema(tmp_path: Path) -> None:
    """`check` on an archive whose schema is behind says so and stops; it migrates nothing
    (even where serve would, and where migrations are left to a separate job)."""
    from sqlalchemy import create_engine, inspect

    database = tmp_path / "index.sqlite3"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOMWEB_")}
    env.update({"DICOMWEB_DATA_DIR": str(tmp_path), "DICOMWEB_MIGRATE_ON_START": "false"})
    command = [str(Path(sys.executable).parent / "dicomweb-server"), "check"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "db upgrade" in result.stderr
    engine = create_engine(f"sqlite:///{database}")
    try:
        assert "instances" not in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_an_orphan_young_at_start_is_swept_once_its_grace_has_passed(tmp_path: Path) -> None:
    """A process killed just before this one started leaves an object younger than the grace
    period: the start-up sweep keeps it, and looks again once the grace has passed instead of
    waiting for the next interval."""
    import asyncio

    from dicomweb_server.app import sweep_periodically
    from dicomweb_server.container import build_container, upgrade_database
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, orphan_grace_seconds=0.5, sweep_interval_seconds=600)
    upgrade_database(settings)
    container = build_container(settings)
    orphan = tmp_path / "part"
    orphan.write_bytes(b"written by a process that died before indexing it")
    container.blobs.put_file("1.2.3/1.2.3.4/1.2.3.4.5.deadbeef.dcm", orphan)

    async def watch() -> tuple[int, int]:
        task = asyncio.create_task(sweep_periodically(container))
        await asyncio.sleep(0.2)
        at_start = len(list(container.blobs.iter_keys()))  # young: kept
        await asyncio.sleep(2.3)
        later = len(list(container.blobs.iter_keys()))
        task.cancel()
        return at_start, later

    try:
        assert asyncio.run(watch()) == (1, 0)
    finally:
        container.close()
