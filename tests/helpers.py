"""Helpers for talking DICOMweb in tests: multipart bodies in and out."""

from __future__ import annotations

import email.parser
import email.policy
import uuid
from collections.abc import Iterable

import httpx
from pydicom.dataset import Dataset

from tests.factories import to_bytes

STOW_TYPE = 'multipart/related; type="application/dicom"; boundary={}'


def origin_of(client: httpx.Client) -> str:
    """The server's origin (the client's base URL is its DICOMweb root)."""
    return f"{client.base_url.scheme}://{client.base_url.netloc.decode()}"


def multipart_body(
    parts: Iterable[bytes], part_type: str | None = "application/dicom", boundary: str | None = None
) -> tuple[bytes, str]:
    boundary = boundary or uuid.uuid4().hex
    chunks = []
    for part in parts:
        head = f"--{boundary}\r\n"
        if part_type:
            head += f"Content-Type: {part_type}\r\n"
        chunks.append(head.encode() + b"\r\n" + part + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), STOW_TYPE.format(boundary)


def stow(
    client: httpx.Client,
    items: Iterable[Dataset | bytes],
    study: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    body, content_type = multipart_body(to_bytes(i) if isinstance(i, Dataset) else i for i in items)
    url = "/studies" if study is None else f"/studies/{study}"
    return client.post(url, content=body, headers={"Content-Type": content_type, **(headers or {})})


def parts(response: httpx.Response) -> list[tuple[dict[str, str], bytes]]:
    """Split a multipart/related response into (headers, body) pairs."""
    content_type = response.headers["content-type"]
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + response.content
    )
    assert message.is_multipart(), content_type
    out = []
    for part in message.iter_parts():
        headers = {k.lower(): str(v) for k, v in part.items()}
        out.append((headers, part.get_payload(decode=True) or b""))
    return out


def values(dataset_json: dict, tag: str) -> list:
    return dataset_json.get(tag, {}).get("Value", [])


def sequence(response: httpx.Response, tag: str) -> list[dict]:
    return response.json().get(tag, {}).get("Value", [])
