"""Another DICOMweb archive as the sink of an import or export: each batch one STOW-RS
request (PS3.18 10.5), its Store Instances Response read per SOP Instance (Table 10.5.3-1).
Only the standard library: a body spooled to disk is sent with its length, never held."""

from __future__ import annotations

import http.client
import json
import secrets
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dicomweb_server.dicom import part10
from dicomweb_server.dicom.errors import backend_text
from dicomweb_server.services.ports.bulk import FAILED, Item, Result, result_of

_FAILED_SOPS, _REFERENCED_SOPS = "00081198", "00081199"
_SOP_INSTANCE, _FAILURE_REASON, _WARNING_REASON = "00081155", "00081197", "00081196"
_TIMEOUT = 300.0


class StowSink:
    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        parts = urlsplit(url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"--to {url!r}: a DICOMweb root URL (http or https)")
        self._parts = parts
        self._path = parts.path + "/studies"
        self._headers = headers or {}

    def send(self, files: list[tuple[Item, Path]]) -> list[Result]:
        uids = []
        for _, path in files:
            with path.open("rb") as fp:
                uids.append(part10.peek_uids(fp)[1])
        body = files[0][1].parent / "stow.body"
        boundary = secrets.token_hex(16)
        with body.open("wb") as out:
            for _, path in files:
                out.write(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode())
                with path.open("rb") as src:
                    while chunk := src.read(1 << 20):
                        out.write(chunk)
                out.write(b"\r\n")
            out.write(f"--{boundary}--\r\n".encode())
        try:
            status, answer = self._post(body, boundary)
        except (OSError, http.client.HTTPException) as exc:
            reason = f"the archive could not be reached: {backend_text(type(exc).__name__)}"
            return [Result(FAILED, reason)] * len(files)
        finally:
            body.unlink(missing_ok=True)
            for _, path in files:
                path.unlink(missing_ok=True)
        if status not in (200, 202, 409):
            return [Result(FAILED, f"the archive answered {status}")] * len(files)
        return [self._result(answer, uid, status) for uid in uids]

    def _post(self, body: Path, boundary: str) -> tuple[int, Any]:
        parts = self._parts
        if parts.scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                parts.hostname or "",
                parts.port,
                timeout=_TIMEOUT,
                context=ssl.create_default_context(),
            )
        else:
            conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=_TIMEOUT)
        try:
            with body.open("rb") as fp:
                conn.request(
                    "POST",
                    self._path,
                    body=fp,
                    headers={
                        **self._headers,
                        "Content-Type": f'multipart/related; type="application/dicom"; '
                        f"boundary={boundary}",
                        "Content-Length": str(body.stat().st_size),
                        "Accept": "application/dicom+json",
                    },
                )
            response = conn.getresponse()
            text = response.read(16 * 2**20)
        finally:
            conn.close()
        try:
            answer = json.loads(text) if text else {}
        except ValueError:
            answer = {}
        if isinstance(answer, list):
            answer = answer[0] if answer and isinstance(answer[0], dict) else {}
        return response.status, answer if isinstance(answer, dict) else {}

    @staticmethod
    def _result(answer: dict[str, Any], uid: str | None, status: int) -> Result:
        for item in _items(answer, _FAILED_SOPS):
            if _value(item, _SOP_INSTANCE) == uid:
                reason = _value(item, _FAILURE_REASON)
                code = int(reason) if isinstance(reason, int) else 0xC000
                return result_of(code, f"refused by the archive (status {code:04X}H)", None)
        for item in _items(answer, _REFERENCED_SOPS):
            if _value(item, _SOP_INSTANCE) == uid:
                warning = _value(item, _WARNING_REASON)
                return result_of(int(warning) if isinstance(warning, int) else 0, "", None)
        if status == 200:
            return Result("stored")
        return Result(FAILED, "not in the archive's answer")

    def close(self) -> None:
        pass


def _items(answer: dict[str, Any], tag: str) -> list[dict[str, Any]]:
    element = answer.get(tag)
    values = element.get("Value") if isinstance(element, dict) else None
    return [v for v in values or [] if isinstance(v, dict)]


def _value(item: dict[str, Any], tag: str) -> object:
    element = item.get(tag)
    values = element.get("Value") if isinstance(element, dict) else None
    return values[0] if isinstance(values, list) and values else None
