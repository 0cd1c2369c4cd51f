"""How soon the world hears of a stored instance: STOW-RS acknowledged -> WebSocket frame,
and -> webhook received, over loopback.

    python -m benchmarks.events [--count 500] [--workers 2] [--uploaders 4]
                                [--database postgresql|sqlite] [--pg-admin-url URL]

Our server (`serve`, PostgreSQL by default, 2 worker processes so that half the uploads
commit in a process other than the one holding the WebSocket: the news crosses processes by
LISTEN/NOTIFY) gets `--count` single-instance uploads from `--uploaders` clients. A
WebSocket subscriber and a webhook receiver (a subscription with no filter) note when each
instance's event arrives; the latency is that time minus the moment its STOW-RS answer
arrived (negative: the event came first, which it may, since the commit precedes the
answer). Prints p50 / p99 / max per channel and writes them as JSON with `--out`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import httpx
import numpy as np
import websockets
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from benchmarks.peers import create_pg_database, start_ours

BOUNDARY = "benchmark-events"


def _instance(study: str) -> bytes:
    import io

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, generate_uid()
    ds.PatientID, ds.Modality = "BENCH", "OT"
    ds.Rows = ds.Columns = 64
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = np.zeros((64, 64), np.uint16).tobytes()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _body(part: bytes) -> bytes:
    head = f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
    return head + part + f"\r\n--{BOUNDARY}--\r\n".encode()


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"count": 0}
    at = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {
        "count": len(ordered),
        "p50_ms": round(at(0.50) * 1000, 1),
        "p99_ms": round(at(0.99) * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 1),
    }


def measure(root: str, count: int, uploaders: int) -> dict[str, Any]:
    acked: dict[str, float] = {}
    streamed: dict[str, float] = {}
    hooked: dict[str, float] = {}

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            hooked.setdefault(json.loads(body)["data"]["SopInstanceUid"], time.monotonic())
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    made = httpx.post(
        f"{root}/subscriptions",
        json={"url": f"http://127.0.0.1:{receiver.server_address[1]}/hook"},
        timeout=30,
    )
    made.raise_for_status()
    listening = threading.Event()

    async def listen() -> None:
        url = root.replace("http://", "ws://") + "/changefeed/ws?action=create"
        async with websockets.connect(url) as socket:
            listening.set()
            while len(streamed) < count:
                entry = json.loads(await asyncio.wait_for(socket.recv(), 60))
                streamed.setdefault(entry["SopInstanceUid"], time.monotonic())

    listener = threading.Thread(target=lambda: asyncio.run(listen()), daemon=True)
    listener.start()
    if not listening.wait(30):
        raise RuntimeError("the WebSocket did not open")
    bodies = [_instance(generate_uid()) for _ in range(count)]
    uids = iter(range(count))
    lock = threading.Lock()

    def upload() -> None:
        with httpx.Client(timeout=60) as http:
            while True:
                with lock:
                    n = next(uids, None)
                if n is None:
                    return
                answer = http.post(
                    f"{root}/studies",
                    content=_body(bodies[n]),
                    headers={
                        "Content-Type": f'multipart/related; type="application/dicom"; '
                        f"boundary={BOUNDARY}"
                    },
                )
                at = time.monotonic()
                answer.raise_for_status()
                uid = answer.json()["00081199"]["Value"][0]["00081155"]["Value"][0]
                acked[uid] = at

    threads = [threading.Thread(target=upload) for _ in range(uploaders)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    deadline = time.monotonic() + 60
    while (len(hooked) < count or len(streamed) < count) and time.monotonic() < deadline:
        time.sleep(0.05)
    listener.join(5)
    receiver.shutdown()
    return {
        "instances": count,
        "uploaders": uploaders,
        "instances_per_s": round(count / elapsed, 1),
        "websocket": percentiles([streamed[u] - acked[u] for u in acked if u in streamed]),
        "webhook": percentiles([hooked[u] - acked[u] for u in acked if u in hooked]),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.events", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--uploaders", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument(
        "--pg-admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    with TemporaryDirectory(prefix="dicomweb-events-") as folder:
        url, drop = (None, None)
        if args.database == "postgresql":
            url, drop = create_pg_database(args.pg_admin_url)
        workers = args.workers if args.database == "postgresql" else 1
        # The webhook receiver is on loopback: allowed for this measurement only.
        peer = start_ours(
            "ours", Path(folder), url, workers, {"DICOMWEB_WEBHOOK_ALLOW_PRIVATE": "true"}
        )
        try:
            figures = measure(peer.dicomweb, args.count, args.uploaders)
        finally:
            peer.stop()
            if callable(drop):
                drop()
    figures.update(database=args.database, workers=workers)
    text = json.dumps(figures, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
