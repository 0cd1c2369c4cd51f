"""Audit messages as JSON lines, one message a line, to a file (appended) or to stdout."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

import orjson

from dicomweb_server.services.audit import AuditMessage, as_dict


class JsonLinesSink:
    def __init__(self, path: Path | None) -> None:
        # None: standard output (a container's log collector takes it from there).
        self.name = "stdout" if path is None else "file"
        self._path = path

    def write(self, messages: list[AuditMessage]) -> None:
        text = b"".join(orjson.dumps(as_dict(m)) + b"\n" for m in messages)
        if self._path is None:
            out: TextIO = sys.stdout
            out.write(text.decode("utf-8"))
            out.flush()
            return
        # Opened per batch: a rotated file is followed, and nothing is held open.
        with self._path.open("ab") as fp:
            fp.write(text)

    def close(self) -> None:
        pass
