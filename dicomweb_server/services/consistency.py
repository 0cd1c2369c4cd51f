"""Consistency of the archive: index against blob store, and the spool.

Objects are written before the index row that points at them, so a crash can leave an object
without a row (never the reverse). Such orphans are invisible to the API (every retrieve
goes through the index). `check` reports every orphan and every spool folder of a request
that no longer runs, whatever their age; what it removes (`repair`, and the sweep each server
process runs at start and in the background) leaves alone orphans younger than a grace
period: they may belong to a store still in progress in another process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from dicomweb_server.services.ports import BlobStore, ConsistencyIndex
from dicomweb_server.services.spool import Spool


@dataclass
class CheckReport:
    orphans: list[str] = field(default_factory=list)  # objects no index row points at
    # Orphans younger than the grace period: reported, never removed.
    young: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # index rows whose object is gone
    spool_leftovers: list[str] = field(default_factory=list)  # parts of ended requests
    repaired: bool = False

    @property
    def clean(self) -> bool:
        return not (self.orphans or self.missing or self.spool_leftovers)


class ConsistencyService:
    def __init__(
        self, index: ConsistencyIndex, blobs: BlobStore, spool: Spool, grace_seconds: float = 3600
    ) -> None:
        self._index = index
        self._blobs = blobs
        self._spool = spool
        self.grace_seconds = grace_seconds

    def check(self, repair: bool = False, grace_seconds: float | None = None) -> CheckReport:
        grace = self.grace_seconds if grace_seconds is None else grace_seconds
        cutoff = time.time() - grace
        # Keys are listed before the index is read: an object stored in between is then
        # indexed when read, never taken for an orphan.
        listed = list(self._blobs.iter_keys())
        indexed = self._index.blob_keys()
        retired = self._index.retired()
        report = CheckReport()
        for key, modified in listed:
            if key not in indexed and key not in retired:
                report.orphans.append(key)
                if modified >= cutoff:
                    report.young.append(key)
        stored = {key for key, _ in listed}
        # An instance stored after the listing is not missing: look again before saying so.
        report.missing = sorted(k for k in indexed - stored if not self._blobs_has(k))
        report.orphans.sort()
        report.young.sort()
        if repair:
            young = set(report.young)
            for key in report.orphans:
                if key not in young:
                    self._blobs.delete(key)
            # Retired copies past the grace period: no reader holds them any more.
            for key in sorted(k for k, at in retired.items() if at < cutoff):
                self._blobs.delete(key)
                self._index.forget_retired(key)
            report.spool_leftovers = [str(p) for p in self._spool.sweep()]
            report.repaired = True
        else:
            report.spool_leftovers = [str(p) for p in self._spool.leftovers()]
        return report

    def sweep(self) -> CheckReport:
        """What each server process runs at start and in the background: remove what ended
        requests left (spool folders, orphans older than the grace period)."""
        return self.check(repair=True)

    def _blobs_has(self, key: str) -> bool:
        try:
            self._blobs.read_range(key, 0, 1)
        except FileNotFoundError:
            return False
        return True
