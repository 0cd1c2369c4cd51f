"""multipart/related (RFC 2387) in both directions, streamed.

Reading: python-multipart's low-level parser is fed the request body chunk by chunk; each
part goes straight to a spool file, so memory stays flat whatever the body's size.
Writing: parts are emitted as an iterator of byte chunks with a precomputed Content-Length.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser

SpoolFactory = Callable[[], tuple[Path, IO[bytes]]]
_MAX_PREAMBLE = 64 * 1024


class PartLimitExceeded(Exception):
    """A part is larger than allowed, or there are more parts than allowed."""


@dataclass
class ReceivedPart:
    path: Path
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def content_type(self) -> str | None:
        return self.headers.get("content-type")


class MultipartReader:
    def __init__(
        self,
        boundary: str,
        open_spool: SpoolFactory,
        max_part_bytes: int | None = None,
        max_parts: int | None = None,
    ) -> None:
        self._open_spool = open_spool
        self._max_part_bytes = max_part_bytes
        self._max_parts = max_parts
        self._part_bytes = 0
        self._part_count = 0
        self.error: str | None = None
        self.limit_exceeded: str | None = None
        self._delimiter = b"--" + boundary.encode("latin-1")
        self._preamble = bytearray()
        self._in_body = False
        self._done: list[ReceivedPart] = []
        self._current: ReceivedPart | None = None
        self._file: IO[bytes] | None = None
        self._field = bytearray()
        self._value = bytearray()
        self.finished = False
        self._parser = MultipartParser(
            boundary.encode("latin-1"),
            {
                "on_part_begin": self._part_begin,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value,
                "on_header_end": self._header_end,
                "on_end": self._end,
            },
            max_header_count=32,
        )

    def _part_begin(self) -> None:
        self._part_count += 1
        if self._max_parts is not None and self._part_count > self._max_parts:
            raise PartLimitExceeded(f"the request has more than {self._max_parts} parts")
        path, self._file = self._open_spool()
        self._current = ReceivedPart(path)
        self._part_bytes = 0

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        assert self._file is not None
        self._part_bytes += end - start
        if self._max_part_bytes is not None and self._part_bytes > self._max_part_bytes:
            raise PartLimitExceeded(
                f"part {self._part_count} is larger than {self._max_part_bytes} bytes"
            )
        self._file.write(data[start:end])

    def _part_end(self) -> None:
        assert self._file is not None and self._current is not None
        self._file.close()
        self._done.append(self._current)
        self._file, self._current = None, None

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        assert self._current is not None
        name = self._field.decode("latin-1").strip().lower()
        self._current.headers[name] = self._value.decode("latin-1").strip()
        self._field.clear()
        self._value.clear()

    def _end(self) -> None:
        self.finished = True

    def feed(self, chunk: bytes) -> list[ReceivedPart]:
        """Parse a chunk of the body; return the parts it completed.

        A malformed body or an exceeded limit stops the parsing: the parts completed before
        it are still returned, and the reason is kept in `error` or `limit_exceeded`.
        """
        if not self._in_body:
            chunk = self._skip_preamble(chunk)
        if chunk and self.error is None and self.limit_exceeded is None:
            try:
                self._parser.write(chunk)
            except MultipartParseError as exc:
                self.error = f"the multipart body is malformed: {exc}"
            except PartLimitExceeded as exc:
                self.limit_exceeded = str(exc)
        done, self._done = self._done, []
        return done

    def _skip_preamble(self, chunk: bytes) -> bytes:
        """RFC 2046 5.1.1: text before the first delimiter is a preamble, to be ignored."""
        self._preamble += chunk
        start = 0
        while True:
            found = self._preamble.find(self._delimiter, start)
            if found < 0:
                break
            if found == 0 or self._preamble[found - 1 : found] == b"\n":
                self._in_body = True
                rest = bytes(self._preamble[found:])
                self._preamble.clear()
                return rest
            start = found + 1
        if len(self._preamble) > _MAX_PREAMBLE:
            self.error = "no multipart boundary in the first 64 KiB of the body"
            self._preamble.clear()
        return b""

    def discard(self) -> None:
        """Drop a part left incomplete when the body ended or broke off."""
        if self._file is not None:
            self._file.close()
        if self._current is not None:
            self._current.path.unlink(missing_ok=True)
        self._file, self._current = None, None


def new_boundary() -> str:
    return secrets.token_hex(16)


@dataclass(frozen=True)
class OutgoingPart:
    content_type: str
    length: int
    chunks: Callable[[], Iterable[bytes]]
    content_location: str | None = None
    # (start, length) -> those bytes of the part, where it can be read piecewise.
    read_slice: Callable[[int, int], Iterable[bytes]] | None = None
    # The bytes if they can be had without waiting (the page cache), else None.
    cached: Callable[[], bytes | None] | None = None

    @classmethod
    def of(
        cls, content_type: str, data: bytes, content_location: str | None = None
    ) -> OutgoingPart:
        """A part whose bytes are already in memory."""
        return cls(content_type, len(data), lambda: (data,), content_location, None, lambda: data)


class MultipartBody:
    """A multipart/related body whose parts are produced lazily."""

    def __init__(self, parts: list[OutgoingPart], boundary: str | None = None) -> None:
        self.boundary = boundary or new_boundary()
        self._parts = parts
        self._heads = [self._head(p) for p in parts]
        self._tail = f"--{self.boundary}--\r\n".encode("ascii")

    def _head(self, part: OutgoingPart) -> bytes:
        lines = [f"--{self.boundary}", f"Content-Type: {part.content_type}"]
        if part.content_location:
            lines.append(f"Content-Location: {part.content_location}")
        lines.append(f"Content-Length: {part.length}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    @property
    def content_length(self) -> int:
        return sum(
            len(h) + p.length + 2 for h, p in zip(self._heads, self._parts, strict=True)
        ) + len(self._tail)

    def __iter__(self) -> Iterator[bytes]:
        for head, part in zip(self._heads, self._parts, strict=True):
            yield head
            yield from part.chunks()
            yield b"\r\n"
        yield self._tail

    def read(self) -> bytes:
        """The whole body at once (for bodies known to be small)."""
        return b"".join(self)

    def read_cached(self) -> bytes | None:
        """The whole body if every part's bytes can be had without waiting (see
        OutgoingPart.cached), else None."""
        pieces: list[bytes] = []
        for head, part in zip(self._heads, self._parts, strict=True):
            data = part.cached() if part.cached is not None else None
            if data is None:
                return None
            pieces += (head, data, b"\r\n")
        pieces.append(self._tail)
        return b"".join(pieces)

    def coalesced(self, size: int) -> Iterator[bytes]:
        """The body in pieces of at least `size` bytes (but the last): each piece sent costs
        a thread hop and an ASGI message, so headers and small chunks travel together."""
        pending: list[bytes] = []
        buffered = 0
        for chunk in self:
            if len(chunk) >= size:
                # A large chunk (a body held in memory) goes as it is: joining would copy it.
                if pending:
                    yield b"".join(pending)
                    pending, buffered = [], 0
                yield chunk
                continue
            pending.append(chunk)
            buffered += len(chunk)
            if buffered >= size:
                yield b"".join(pending)
                pending, buffered = [], 0
        if pending:
            yield b"".join(pending)
