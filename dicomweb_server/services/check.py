"""Consistency check of the archive: index against blob store, and the spool.

Objects are written before the index row that points at them, so a crash can leave an object
without a row (never the reverse). Such orphans are invisible to the API (every retrieve
goes through the index); `check --repair` removes them. Objects younger than a grace period
are left alone: they may belong to a store still in progress.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from dicomweb_server.services.ports import BlobStore, CheckIndex


@dataclass
class CheckReport:
    orphans: list[str] = field(default_factory=list)  # objects no index row points at
    missing: list[str] = field(default_factory=list)  # index rows whose object is gone
    spool_leftovers: list[str] = field(default_factory=list)  # parts of interrupted requests
    repaired: bool = False

    @property
    def clean(self) -> bool:
        return not (self.orphans or self.missing or self.spool_leftovers)


class CheckService:
    def __init__(self, index: CheckIndex, blobs: BlobStore, spool_dir: Path) -> None:
        self._index = index
        self._blobs = blobs
        self._spool_dir = spool_dir

    def check(self, repair: bool = False, grace_seconds: float = 3600) -> CheckReport:
        cutoff = time.time() - grace_seconds
        indexed = self._index.blob_keys()
        report = CheckReport()
        stored: set[str] = set()
        for key, modified in self._blobs.iter_keys():
            stored.add(key)
            if key not in indexed and modified < cutoff:
                report.orphans.append(key)
        report.missing = sorted(indexed - stored)
        if self._spool_dir.is_dir():
            report.spool_leftovers = sorted(
                str(p) for p in self._spool_dir.iterdir() if p.stat().st_mtime < cutoff
            )
        report.orphans.sort()
        if repair:
            for key in report.orphans:
                self._blobs.delete(key)
            for name in report.spool_leftovers:
                Path(name).unlink(missing_ok=True)
            report.repaired = True
        return report
