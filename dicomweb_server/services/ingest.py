"""The files of ingest: a received part made the PS3.10 file we store, in the request's spool.

`dicom/part10.py` knows the rules and reads and writes streams; this module decides which
files those are, maps them for reading, holds memory for the steps that read an object
whole, and removes what it made when a step fails. The received file itself is the caller's
to remove.
"""

from __future__ import annotations

import contextlib
import mmap
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pydicom.dataset import Dataset

from dicomweb_server.dicom import part10
from dicomweb_server.dicom.frames import Ranges
from dicomweb_server.dicom.part10 import Encoding
from dicomweb_server.dicom.scan import Buffer, ScanResult

# Holds memory for work that reads a whole object: called with the bytes it will take.
Hold = Callable[[int], AbstractContextManager[object]]

# A whole object read, converted and written again takes about this many times its size.
WHOLE_OBJECT_COPIES = 3


def _no_hold(_amount: int) -> AbstractContextManager[object]:
    return nullcontext()


@dataclass
class PreparedInstance:
    """A received object made ready to store: the file and what the index keeps of it."""

    path: Path
    size: int
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    header: Dataset
    scan: ScanResult
    frames: list[Ranges] | None
    frames_error: str | None
    number_of_frames: int


@contextlib.contextmanager
def _mapped(path: Path) -> Iterator[Buffer]:
    """The bytes of a file, mapped read-only (an empty file: no bytes)."""
    with path.open("rb") as fp:
        if path.stat().st_size == 0:
            yield b""
            return
        with mmap.mmap(fp.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            yield buf


def prepare(
    src: Path,
    workdir: Path,
    bulk_data_threshold: int,
    max_inflated: int = 512 * 2**20,
    hold: Hold = _no_hold,
) -> PreparedInstance:
    """Check one received file and make the PS3.10 file we store of it: `src` itself when it
    is stored as it came, else a new file in `workdir`. Raises ObjectRejected."""
    with src.open("rb") as fp, _mapped(src) as buf:
        received = part10.read_received(fp, buf, max_inflated)
    path = src
    if received.needs is not Encoding.AS_IS:
        path = workdir / (src.name + ".prepared")
        whole = received.needs is Encoding.EXPLICIT_LITTLE
        with (
            hold(WHOLE_OBJECT_COPIES * src.stat().st_size) if whole else nullcontext(),
            _written(path) as dst,
            src.open("rb") as fin,
        ):
            part10.write_part10(received, fin, dst)
    header = received.header
    if received.needs is Encoding.EXPLICIT_LITTLE:
        with path.open("rb") as fp:
            header = part10.read_header(fp)
    with _mapped(path) as buf:
        located = part10.locate(received, header, buf, bulk_data_threshold)
    return PreparedInstance(
        path=path,
        size=path.stat().st_size,
        study_uid=received.study_uid,
        series_uid=received.series_uid,
        sop_instance_uid=received.sop_instance_uid,
        sop_class_uid=received.sop_class_uid,
        transfer_syntax_uid=received.stored_ts,
        header=header,
        scan=located.scan,
        frames=located.frames,
        frames_error=located.frames_error,
        number_of_frames=located.number_of_frames,
    )


def rewritten(
    src: Path,
    workdir: Path,
    change: Callable[[Dataset], None],
    failure: str,
    suffix: str,
    hold: Hold = _no_hold,
) -> Path:
    """A copy of the object in `src` with `change` applied to its data set, a new file in
    `workdir` (the object is read whole: its memory is held). Raises ObjectRejected."""
    dst_path = workdir / (src.name + suffix)
    with (
        hold(WHOLE_OBJECT_COPIES * src.stat().st_size),
        _written(dst_path) as dst,
        src.open("rb") as fin,
    ):
        part10.rewrite(fin, dst, change, failure)
    return dst_path


def peek_uids(src: Path) -> tuple[str | None, str | None]:
    """SOP Class and Instance UIDs of a file, as far as they can be read."""
    with src.open("rb") as fp:
        return part10.peek_uids(fp)


@contextlib.contextmanager
def _written(path: Path) -> Iterator[BinaryIO]:
    """A new file to write; removed again if writing it fails."""
    try:
        with path.open("wb") as out:
            yield out
    except BaseException:
        path.unlink(missing_ok=True)
        raise
