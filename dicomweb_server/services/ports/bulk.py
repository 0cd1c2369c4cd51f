"""The bulk import port: where an import sends its objects (this archive, or another one
over STOW-RS), and what became of each."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from dicomweb_server.dicom.store_status import ALREADY_STORED, DUPLICATE_SOP_INSTANCE


@dataclass(frozen=True)
class Item:
    """One object to import: `name` as the summary and the journal show it (a path, or a
    zip file's path, `!` and the member)."""

    name: str
    size: int
    stamp: str  # what tells the same file again when resuming: size and modification time
    opener: Callable[[], contextlib.AbstractContextManager[BinaryIO]]


@dataclass(frozen=True)
class Skip:
    name: str
    reason: str


@dataclass(frozen=True)
class Result:
    """What a sink did with one object: stored, skipped (already stored) or failed."""

    kind: str  # "stored" | "skipped" | "failed"
    reason: str = ""
    study_uid: str | None = None


STORED, SKIPPED, FAILED = "stored", "skipped", "failed"


def result_of(status: int, message: str, study_uid: str | None) -> Result:
    """A sink's Result from the DICOM status of a store (PS3.4 B.2.3, as STOW-RS reports
    it): a duplicate, whatever the policy, is skipped; other failures failed."""
    if status in (ALREADY_STORED, DUPLICATE_SOP_INSTANCE):
        return Result(SKIPPED, "already stored", study_uid)
    if status & 0xF000 in (0xA000, 0xC000) or status in (0x0110, 0x0111, 0x0122, 0x0124):
        return Result(FAILED, message or f"failed (status {status:04X}H)", study_uid)
    return Result(STORED, "", study_uid)


class Sink(Protocol):
    """Where an import's objects go."""

    def send(self, files: list[tuple[Item, Path]]) -> list[Result]:
        """Store the spooled files, in order; a Result each. The files are consumed."""

    def close(self) -> None: ...
