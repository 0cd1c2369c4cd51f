"""UPS-RS: what a workitem's life costs, and how soon a subscriber hears of it.

    python -m benchmarks.workitems [--count 200] [--workers 2] [--clients 4]
                                   [--database postgresql|sqlite] [--pg-admin-url URL]

Our server (`serve`, PostgreSQL by default with 2 worker processes, so that a change often
commits in a process other than the one holding the subscriber's WebSocket) takes `--count`
workitems through their whole life from `--clients` clients: create, claim (IN PROGRESS),
update (the Final State attributes), complete. A Worklist subscriber (global subscription)
notes when each State Report arrives; its latency is that time minus the moment the request
that made it was answered. Prints per-transaction latency, the server's CPU time per
workitem (its processes and their children; PostgreSQL's own backends are not counted) and
the report latencies, as JSON (`--out` writes them too). Orthanc has no UPS-RS: there is no
peer to run beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import httpx
import websockets
from pydicom.uid import generate_uid

from benchmarks.events import percentiles
from benchmarks.peers import create_pg_database, start_ours

JSON = {"Content-Type": "application/dicom+json"}
GLOBAL = "1.2.840.10008.5.1.4.34.5"


def _code(value: str) -> dict[str, Any]:
    return {
        "00080100": {"vr": "SH", "Value": [value]},
        "00080102": {"vr": "SH", "Value": ["99BENCH"]},
        "00080104": {"vr": "LO", "Value": [value]},
    }


def workitem() -> dict[str, Any]:
    """Every Type 1 and 2 attribute of N-CREATE (PS3.4 Table CC.2.5-3)."""
    empty = {"vr": "SQ"}
    return {
        "00741200": {"vr": "CS", "Value": ["MEDIUM"]},
        "00741204": {"vr": "LO", "Value": ["benchmark"]},
        "00741202": {"vr": "LO", "Value": ["BENCH"]},
        "00404025": empty,
        "00404026": empty,
        "00404027": empty,
        "00404005": {"vr": "DT", "Value": ["20261202090000"]},
        "00404018": {"vr": "SQ", "Value": [_code("BENCH")]},
        "00404041": {"vr": "CS", "Value": ["READY"]},
        "00404021": empty,
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Bench^Mark"}]},
        "00100020": {"vr": "LO", "Value": ["BENCH"]},
        "00100030": {"vr": "DA"},
        "00100040": {"vr": "CS"},
        "00380010": {"vr": "LO"},
        "00380014": empty,
        "00081080": {"vr": "LO"},
        "00081084": empty,
        "0040A370": empty,
        "00741000": {"vr": "CS", "Value": ["SCHEDULED"]},
    }


PERFORMED = {
    "00741216": {
        "vr": "SQ",
        "Value": [
            {
                "00404028": {"vr": "SQ"},
                "00404050": {"vr": "DT", "Value": ["20261202090500"]},
                "00404019": {"vr": "SQ"},
                "00404051": {"vr": "DT", "Value": ["20261202091000"]},
                "00404033": {"vr": "SQ"},
            }
        ],
    }
}


def _state(state: str, txn: str) -> bytes:
    return json.dumps(
        [{"00741000": {"vr": "CS", "Value": [state]}, "00081195": {"vr": "UI", "Value": [txn]}}]
    ).encode()


def measure(root: str, count: int, clients: int, cpu: Any) -> dict[str, Any]:
    answered: dict[tuple[str, str], float] = {}
    heard: dict[tuple[str, str], float] = {}
    took: dict[str, list[float]] = defaultdict(list)
    subscribed = httpx.post(f"{root}/workitems/{GLOBAL}/subscribers/BENCH", timeout=30)
    subscribed.raise_for_status()
    channel = subscribed.headers["content-location"]
    listening = threading.Event()
    expected = 3 * count  # SCHEDULED, IN PROGRESS, COMPLETED

    async def listen() -> None:
        async with websockets.connect(channel) as socket:
            listening.set()
            while len(heard) < expected:
                report = json.loads(await asyncio.wait_for(socket.recv(), 60))
                if report["00001002"]["Value"] == [1]:
                    key = (report["00001000"]["Value"][0], report["00741000"]["Value"][0])
                    heard.setdefault(key, time.monotonic())

    listener = threading.Thread(target=lambda: asyncio.run(listen()), daemon=True)
    listener.start()
    if not listening.wait(30):
        raise RuntimeError("the event channel did not open")
    todo = iter(range(count))
    lock = threading.Lock()

    def timed(http: httpx.Client, name: str, method: str, url: str, body: bytes) -> float:
        began = time.monotonic()
        answer = http.request(method, url, content=body, headers=JSON)
        at = time.monotonic()
        answer.raise_for_status()
        took[name].append(at - began)
        return at

    def client() -> None:
        # Each client talks to every process in turn (a load balancer would).
        with httpx.Client(base_url=root, timeout=60) as http:
            while True:
                with lock:
                    n = next(todo, None)
                if n is None:
                    return
                uid, txn = generate_uid(), generate_uid()
                body = json.dumps([workitem()]).encode()
                answered[(uid, "SCHEDULED")] = timed(
                    http, "create", "POST", f"/workitems?workitem={uid}", body
                )
                answered[(uid, "IN PROGRESS")] = timed(
                    http, "claim", "PUT", f"/workitems/{uid}/state", _state("IN PROGRESS", txn)
                )
                timed(
                    http,
                    "update",
                    "POST",
                    f"/workitems/{uid}?transaction={txn}",
                    json.dumps([PERFORMED]).encode(),
                )
                answered[(uid, "COMPLETED")] = timed(
                    http, "complete", "PUT", f"/workitems/{uid}/state", _state("COMPLETED", txn)
                )

    cpu_before = cpu()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    cpu_used = cpu() - cpu_before
    deadline = time.monotonic() + 60
    while len(heard) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    listener.join(5)
    return {
        "workitems": count,
        "clients": clients,
        "workitems_per_s": round(count / elapsed, 1),
        "server_cpu_ms_per_workitem": round(cpu_used * 1000 / count, 2),
        "transactions": {name: percentiles(values) for name, values in took.items()},
        "state_reports": percentiles([heard[k] - answered[k] for k in answered if k in heard]),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.workitems", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument(
        "--pg-admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    with TemporaryDirectory(prefix="dicomweb-workitems-") as folder:
        url, drop = (None, None)
        if args.database == "postgresql":
            url, drop = create_pg_database(args.pg_admin_url)
        workers = args.workers if args.database == "postgresql" else 1
        peer = start_ours("ours", Path(folder), url, workers)
        try:
            figures = measure(peer.dicomweb, args.count, args.clients, peer.cpu_seconds)
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
