"""`dicomweb-server import` and `export` run as subprocesses on real files (issue 18):
folders, a zip, a DICOMDIR made with pydicom's FileSet, files that are not DICOM; the summary,
resuming, the progress bar in a pseudo-terminal, `kill -9` with `check` clean afterwards,
`--to URL` into another archive, and export to a folder, a zip and a URL."""

from __future__ import annotations

import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import pytest
from pydicom import dcmread
from pydicom.fileset import FileSet
from pydicom.uid import generate_uid

from tests.conftest import RunningServer, make_settings, private_server, settings_env
from tests.factories import bundled_path, make_instance, to_bytes

CLI = str(Path(sys.executable).parent / "dicomweb-server")
PYDICOM_FILES = ("MR_small.dcm", "rtplan.dcm", "JPEG2000.dcm", "rtdose.dcm", "SC_rgb_rle.dcm")


def _env(archive: RunningServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOMWEB_")}
    env.update(settings_env(archive.settings))
    env["DICOMWEB_LOG_LEVEL"] = "warning"
    return env


def _run(
    archive: RunningServer, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], env=_env(archive), capture_output=True, text=True, timeout=timeout
    )


def _corpus(root: Path, studies: int = 3, per_study: int = 4) -> list[str]:
    """Instances in nested folders; their SOP Instance UIDs."""
    sops = []
    for s in range(studies):
        study, series = generate_uid(), generate_uid()
        folder = root / f"patient{s}" / "study"
        folder.mkdir(parents=True)
        for i in range(per_study):
            ds = make_instance(study_uid=study, series_uid=series, instance_number=i + 1)
            (folder / f"IM{i:04d}").write_bytes(to_bytes(ds))
            sops.append(str(ds.SOPInstanceUID))
    return sops


def _count(client: httpx.Client) -> int:
    return len(client.get("/instances", params={"limit": 10000}).json())


def test_import_folders_a_zip_and_a_dicomdir(
    archive: RunningServer, client: httpx.Client, tmp_path: Path
) -> None:
    source = tmp_path / "cd"
    sops = _corpus(source)
    # pydicom's own test files: several SOP classes and transfer syntaxes.
    bundled = source / "bundled"
    bundled.mkdir()
    for name in PYDICOM_FILES:
        (bundled / name).write_bytes(bundled_path(name).read_bytes())
    (source / "README.TXT").write_text("not an image")
    (source / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00garbage")
    with zipfile.ZipFile(source / "more.zip", "w") as bundle:
        bundle.write(bundled_path("CT_small.dcm"), "CT_small.dcm")
        bundle.writestr("notes.txt", "hello")
    media = tmp_path / "media"
    fileset = FileSet()
    for _ in range(2):
        fileset.add(make_instance())
    fileset.write(media)

    run = _run(archive, "import", str(source), str(media / "DICOMDIR"))
    assert run.returncode == 1, run.stderr  # the broken file failed
    summary = run.stdout
    assert "stored 20, skipped 2, failed 1" in summary, summary
    assert "skipped 2: not a DICOM file" in summary
    assert f"failed: {source / 'broken.dcm'}:" in summary
    assert _count(client) == 20
    assert {str(s) for s in sops} <= {
        i["00080018"]["Value"][0] for i in client.get("/instances", params={"limit": 100}).json()
    }
    # The same command again: nothing stored twice, the failure tried again.
    again = _run(archive, "import", str(source), str(media / "DICOMDIR"))
    assert "stored 0, skipped 2, failed 1, already imported by an earlier run 20" in again.stdout
    # The media's folder: the DICOMDIR itself is skipped with its reason, its files are
    # already stored.
    folder = _run(archive, "import", str(media))
    assert "skipped 1: a DICOMDIR (media directory)" in folder.stdout, folder.stdout
    assert "skipped 2: already stored" in folder.stdout
    assert _count(client) == 20
    # Ingest as STOW-RS: the change feed has a create entry per instance.
    entries = client.get("/changefeed", params={"limit": 100}).json()
    assert sum(e["Action"] == "create" for e in entries) == 20
    assert archive.container.consistency.check().clean


def test_a_dicomdir_of_any_name_and_encoding_is_a_media_directory(
    archive: RunningServer, tmp_path: Path
) -> None:
    """Media directories are told by their content (the Media Storage Directory SOP Class of
    their File Meta), not only by the name DICOMDIR: renamed, in Implicit VR Little Endian,
    lower-case, in a zip, each is skipped as a media directory, never a failure."""
    if archive.backend != "sqlite":
        pytest.skip("reading media does not depend on the backends")
    media = tmp_path / "media"
    fileset = FileSet()
    fileset.add(make_instance())
    fileset.write(media)
    loose = tmp_path / "loose"
    loose.mkdir()
    directory = dcmread(media / "DICOMDIR")
    (loose / "DIR00001").write_bytes((media / "DICOMDIR").read_bytes())
    (loose / "dicomdir").write_bytes((media / "DICOMDIR").read_bytes())
    directory.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2"
    directory.save_as(loose / "IMPLICIT", implicit_vr=True, little_endian=True)
    with zipfile.ZipFile(loose / "cd.zip", "w") as bundle:
        bundle.write(media / "DICOMDIR", "CD/DICOMDIR")
        bundle.write(media / "DICOMDIR", "CD/INDEX")
    run = _run(archive, "import", str(loose))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "failed 0" in run.stdout and "skipped 5: a DICOMDIR (media directory)" in run.stdout


def test_what_pydicom_reads_with_complaints_is_stored_and_the_rest_says_why_not(
    archive: RunningServer, tmp_path: Path
) -> None:
    """Old media have odd values (a DS that is no number, an IS with letters): pydicom reads
    them with a warning, and so they are stored; a file cut short fails with its reason."""
    if archive.backend != "sqlite":
        pytest.skip("reading media does not depend on the backends")
    folder = tmp_path / "old"
    folder.mkdir()
    odd = make_instance()
    odd.add_new(0x00181050, "DS", "1234.56789")  # Spatial Resolution
    odd.add_new(0x00200012, "IS", "987654321")  # Acquisition Number
    data = to_bytes(odd)
    # The values spoilt in place, same lengths (nothing else of the file holds them).
    assert data.count(b"1234.56789") == 1 and data.count(b"987654321 ") == 1
    data = data.replace(b"1234.56789", b"12x4.5y789").replace(b"987654321 ", b"98765432a ")
    (folder / "odd.dcm").write_bytes(data)
    (folder / "cut.dcm").write_bytes(to_bytes(make_instance())[:300])
    run = _run(archive, "import", str(folder))
    assert "stored 1, skipped 0, failed 1" in run.stdout, run.stdout + run.stderr
    assert f"failed: {folder / 'cut.dcm'}: " in run.stdout


def test_progress_bar_in_a_terminal(archive: RunningServer, tmp_path: Path) -> None:
    if archive.backend != "sqlite":
        pytest.skip("the progress output does not depend on the backends")
    _corpus(tmp_path / "src", studies=2, per_study=40)
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [CLI, "import", "--workers", "1", str(tmp_path / "src")],
        env=_env(archive),
        stdin=follower,
        stdout=follower,
        stderr=follower,
        close_fds=True,
    )
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 1)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        elif process.poll() is not None:
            break
    process.wait(timeout=30)
    os.close(leader)
    text = seen.decode("utf-8", "replace")
    assert process.returncode == 0, text
    # Redrawn in place: carriage returns, a bar, counts, rate and ETA.
    assert "\r[" in text and "\x1b[K" in text
    assert "[########################] imported 80/80 files" in text
    assert "files/s" in text and "ETA" in text
    assert "stored 80, skipped 0, failed 0" in text


def test_plain_progress_lines_when_not_a_terminal(archive: RunningServer, tmp_path: Path) -> None:
    if archive.backend != "sqlite":
        pytest.skip("the progress output does not depend on the backends")
    _corpus(tmp_path / "src", studies=1, per_study=3)
    run = _run(archive, "import", str(tmp_path / "src"))
    assert run.returncode == 0
    assert "\r" not in run.stderr and "\x1b" not in run.stderr
    assert "imported 3/3 files" in run.stderr


def test_kill_during_import_then_check_is_clean_and_a_rerun_finishes(
    archive: RunningServer, client: httpx.Client, tmp_path: Path
) -> None:
    if archive.backend != "postgresql":
        pytest.skip("a kill does not depend on the blob store; run against PostgreSQL")
    sops = _corpus(tmp_path / "src", studies=4, per_study=150)
    process = subprocess.Popen(
        [CLI, "import", "--workers", "2", str(tmp_path / "src")],
        env=_env(archive),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    journal_dir = archive.settings.data_dir / "imports"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done = sum(len(p.read_text().splitlines()) for p in journal_dir.glob("*.journal"))
        if done >= 100 or process.poll() is not None:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    # A kill between the making of a request's spool folder and its lock leaves a folder
    # the spool leaves alone for a minute (it cannot tell it from one being made): this
    # test made it, so it removes it (the sweep would, a minute later).
    for staging in archive.container.store.spool.root.glob(".new-*"):
        shutil.rmtree(staging, ignore_errors=True)
    stored = _count(client)
    assert len(sops) > stored > 0, f"killed after {stored} of {len(sops)}"
    # Nothing indexed points at a missing object; what the kill left is removable.
    check = _run(archive, "check", "--repair", "--grace-minutes", "0")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "0 missing object(s)" in check.stdout
    again = _run(archive, "import", "--workers", "2", str(tmp_path / "src"))
    assert again.returncode == 0, again.stdout + again.stderr
    assert _count(client) == len(sops)
    final = _run(archive, "check")
    assert final.returncode == 0 and "0 orphan object(s)" in final.stdout, final.stdout


def test_import_into_another_archive_and_export_everywhere(
    archive: RunningServer, client: httpx.Client, tmp_path: Path
) -> None:
    if archive.backend != "sqlite":
        pytest.skip("the transfer does not depend on the backends")
    _corpus(tmp_path / "src", studies=2, per_study=3)
    target_settings = make_settings(tmp_path / "target")
    with private_server(target_settings) as (target, _container):
        root = str(target.base_url).rstrip("/")
        run = _run(archive, "import", "--to", root, str(tmp_path / "src"))
        assert run.returncode == 0, run.stdout + run.stderr
        assert "stored 6, skipped 0, failed 0" in run.stdout
        assert _count(target) == 6 and _count(client) == 0
        again = _run(archive, "import", "--restart", "--to", root, str(tmp_path / "src"))
        assert "skipped 6: already stored" in again.stdout, again.stdout

        # Export from this archive: a folder, a zip and the other archive.
        local = _run(archive, "import", str(tmp_path / "src"))
        assert local.returncode == 0
        study = client.get("/studies").json()[0]["0020000D"]["Value"][0]
        one = client.get(f"/studies/{study}/instances").json()[0]
        series, sop = one["0020000E"]["Value"][0], one["00080018"]["Value"][0]
        stored = client.get(
            f"/studies/{study}/series/{series}/instances/{sop}",
            headers={"Accept": "application/dicom; transfer-syntax=*"},
        ).content
        folder = tmp_path / "out"
        assert _run(archive, "export", study, "--to", str(folder)).returncode == 0
        assert (folder / study / series / f"{sop}.dcm").read_bytes() == stored
        assert len(list(folder.rglob("*.dcm"))) == 3
        archive_zip = tmp_path / "out.zip"
        assert _run(archive, "export", study, "--to", str(archive_zip)).returncode == 0
        with zipfile.ZipFile(archive_zip) as bundle:
            assert bundle.read(f"{study}/{series}/{sop}.dcm") == stored
        empty_settings = make_settings(tmp_path / "third")
        with private_server(empty_settings) as (third, _):
            sent = _run(archive, "export", study, "--to", str(third.base_url).rstrip("/"))
            assert sent.returncode == 0, sent.stdout + sent.stderr
            assert _count(third) == 3
        missing = _run(archive, "export", generate_uid(), "--to", str(folder))
        assert missing.returncode == 2 and "is stored" in missing.stderr
