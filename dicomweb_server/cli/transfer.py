"""`dicomweb-server import` and `export`: objects in and out in bulk, with progress on the
terminal (a bar redrawn in place) or plain lines otherwise, and a summary."""

from __future__ import annotations

import contextlib
import os
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, TextIO

from dicomweb_server.settings import Settings

_PLAIN_EVERY = 5.0  # seconds between progress lines when not on a terminal
_DRAW_EVERY = 0.2


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Reporter:
    """Progress to `out`: on a terminal one line redrawn in place (files, bytes, rate, ETA
    and a bar), else a plain line every few seconds."""

    def __init__(self, out: TextIO, verb: str) -> None:
        self._out = out
        self._tty = out.isatty()
        self._verb = verb
        self._last = 0.0
        self._finished = False

    def __call__(self, progress: object) -> None:
        from dicomweb_server.services.bulk import Progress

        assert isinstance(progress, Progress)
        now = time.monotonic()
        finished = progress.done_files >= progress.total_files
        if self._finished:
            return
        self._finished = finished
        every = _DRAW_EVERY if self._tty else _PLAIN_EVERY
        if not finished and now - self._last < every:
            return
        self._last = now
        files_rate, bytes_rate = progress.rate
        text = (
            f"{self._verb} {progress.done_files}/{progress.total_files} files, "
            f"{_size(progress.done_bytes)}/{_size(progress.total_bytes)}, "
            f"{files_rate:.1f} files/s, {_size(bytes_rate)}/s, ETA {_duration(progress.eta)}"
        )
        if self._tty:
            width = 24
            share = progress.done_bytes / progress.total_bytes if progress.total_bytes else 1.0
            bar = "#" * int(width * share)
            end = "\n" if finished else ""
            self._out.write(f"\r[{bar:<{width}}] {text}\x1b[K{end}")
        else:
            self._out.write(text + "\n")
        self._out.flush()


def run_import(
    settings: Settings,
    paths: list[str],
    to: str | None,
    token: str | None,
    workers: int,
    restart: bool,
) -> int:
    from dicomweb_server.container import build_container, stow_sink
    from dicomweb_server.services import audit
    from dicomweb_server.services.bulk import BulkImport, Journal, LocalSink, journal_path
    from dicomweb_server.services.context import Caller

    _quiet_pydicom()
    sources = [Path(p) for p in paths]
    journal_file = journal_path(settings.data_dir / "imports", sources, to or "local")
    if restart:
        journal_file.unlink(missing_ok=True)
    journal = Journal(journal_file)
    container = build_container(settings)
    sink = stow_sink(to, token) if to else LocalSink(container.store)

    @contextlib.contextmanager
    def spool() -> Iterator[Path]:
        with container.store.request_spool() as folder:
            yield folder.path

    reporter = Reporter(sys.stderr, "imported")
    job = BulkImport(sink, spool, journal, workers, reporter)
    try:
        summary = job.run(sources)
        if not to and summary.studies:
            container.audit.record(
                audit.transfer(
                    Caller.anonymous("cli"),
                    sorted(summary.studies),
                    audit.SUCCESS,
                    stored=True,
                    note=f"bulk import: {summary.stored} instance(s)",
                )
            )
    finally:
        journal.close()
        sink.close()
        container.close()
    spent = time.monotonic() - job.progress.started
    rate = job.progress.done_files / spent if spent > 0 else 0.0
    print(
        f"stored {summary.stored}, skipped {summary.skipped_total}, failed {len(summary.failed)}"
        + (f", already imported by an earlier run {summary.resumed}" if summary.resumed else "")
        + f" ({job.progress.done_files} files in {spent:.1f} s, {rate:.1f} files/s)"
    )
    for reason, count in sorted(summary.skipped.items()):
        print(f"  skipped {count}: {reason}")
    for name, reason in sorted(summary.failed)[:50]:
        print(f"  failed: {name}: {reason}")
    if len(summary.failed) > 50:
        print(f"  ... and {len(summary.failed) - 50} more failed")
    return 1 if summary.failed else 0


def run_export(settings: Settings, studies: list[str], to: str, token: str | None) -> int:
    from dicomweb_server.container import build_container, stow_sink
    from dicomweb_server.services import audit
    from dicomweb_server.services.bulk import BATCH_FILES, Progress
    from dicomweb_server.services.context import Caller
    from dicomweb_server.services.errors import ServiceError
    from dicomweb_server.services.ports.bulk import FAILED, Item

    container = build_container(settings)
    who = Caller.anonymous("cli")
    reporter = Reporter(sys.stderr, "exported")
    try:
        try:
            found = [i for s in studies for i in container.retrieve.objects(who, s)]
        except ServiceError as exc:
            print(f"dicomweb-server: {exc}", file=sys.stderr)
            return 2
        progress = Progress(len(found), sum(i.size for i in found))
        failed = 0
        remote = to.startswith(("http://", "https://"))
        with contextlib.ExitStack() as stack:
            archive = None
            if not remote and to.lower().endswith(".zip"):
                archive = stack.enter_context(zipfile.ZipFile(to, "w", zipfile.ZIP_STORED))
            sink = stow_sink(to, token) if remote else None
            spool = stack.enter_context(container.store.request_spool()) if remote else None
            batch: list[tuple[Item, Path]] = []
            for n, inst in enumerate(found):
                name = f"{inst.study_uid}/{inst.series_uid}/{inst.sop_instance_uid}.dcm"
                chunks = container.retrieve.stream(inst)
                if archive is not None:
                    with archive.open(name, "w", force_zip64=True) as out:
                        out.writelines(chunks)
                elif spool is not None and sink is not None:
                    path = spool.path / f"{n}.dcm"
                    with path.open("wb") as out:
                        out.writelines(chunks)
                    batch.append((Item(name, inst.size, "", _no_open), path))
                    if len(batch) >= BATCH_FILES or n == len(found) - 1:
                        failed += sum(r.kind == FAILED for r in sink.send(batch))
                        batch = []
                else:
                    target = Path(to) / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    partial = target.with_suffix(".partial")
                    with partial.open("wb") as out:
                        out.writelines(chunks)
                    os.replace(partial, target)
                progress.done_files += 1
                progress.done_bytes += inst.size
                reporter(progress)
        container.audit.record(
            audit.transfer(
                who,
                studies,
                audit.SUCCESS if not failed else audit.MINOR_FAILURE,
                stored=False,
                note=f"export: {len(found) - failed} instance(s)",
            )
        )
    finally:
        container.close()
    print(f"exported {len(found) - failed} instance(s) of {len(studies)} study(ies) to {to}")
    if failed:
        print(f"  failed: {failed} instance(s) refused by the archive")
    return 1 if failed else 0


def _no_open() -> contextlib.AbstractContextManager[BinaryIO]:
    raise AssertionError("an exported file is already spooled")


def _quiet_pydicom() -> None:
    """pydicom warns of every odd value it reads; an import of old media has many, and the
    summary gives each failure its reason, so they would only bury the progress."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", module="pydicom")
    logging.getLogger("pydicom").setLevel(logging.ERROR)
