"""`application/zip` responses (PS3.18 8.7.5), written as they are sent.

zipfile writes to a sink that cannot seek, so each member's sizes follow it in a data
descriptor and nothing is held but the chunk in flight; ZIP64 records allow any size.
"""

from __future__ import annotations

import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class ZipMember:
    name: str
    chunks: Callable[[], Iterable[bytes]]


class _Sink:
    """A write-only file whose bytes are taken away as soon as they are written."""

    def __init__(self) -> None:
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._pending.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        out = b"".join(self._pending)
        self._pending.clear()
        return out


def zip_stream(members: list[ZipMember]) -> Iterator[bytes]:
    sink = _Sink()
    stamp = time.localtime()[:6]
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as archive:  # type: ignore[call-overload]
        for member in members:
            info = zipfile.ZipInfo(member.name, date_time=stamp)
            with archive.open(info, "w", force_zip64=True) as out:
                for chunk in member.chunks():
                    out.write(chunk)
                    yield sink.take()
            yield sink.take()
    yield sink.take()
