"""DIMSE throughput: storescu of the benchmark corpus into us and into Orthanc 1.13, in the
same run, alternating the servers; instances per second and the server's CPU time per
instance.

    python -m benchmarks.dimse CORPUS [--rounds 2] [--pg-admin-url URL]

CORPUS is a folder made by `python -m benchmarks.corpus`. Each round stores the corpus's
studies/ into a fresh server of each kind (ours: `serve` with DICOMWEB_DIMSE_PORT, on a
fresh PostgreSQL database when an admin URL is given, else SQLite); Orthanc runs from the sid chroot
(benchmarks/orthanc_sid.py) and is left out when it is not there."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.orthanc_sid import BINARY, DEFAULT_DIR
from benchmarks.peers import Peer, create_pg_database, free_port, start_orthanc_sid, start_ours

SID = DEFAULT_DIR


def _store(folder: Path, port: int, called: str) -> float:
    started = time.monotonic()
    run = subprocess.run(
        ["storescu", "+sd", "+r", "-aec", called, "127.0.0.1", str(port), str(folder)],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if run.returncode != 0:
        raise RuntimeError(f"storescu into {called} failed: {run.stderr[-500:]}")
    return time.monotonic() - started


def _round(corpus: Path, work: Path, kind: str, admin_url: str | None) -> dict[str, float]:
    port = free_port()
    peer: Peer
    if kind == "ours":
        database_url = None
        if admin_url:
            # A fresh database each round: nothing of the corpus is stored yet.
            database_url, drop = create_pg_database(admin_url)
        peer = start_ours("ours", work, database_url, 1, {"DICOMWEB_DIMSE_PORT": str(port)})
        if admin_url:
            peer.cleanup.append(drop)
        called = "DICOMWEB"
        time.sleep(1.0)  # the DIMSE listener starts just before the web server
    else:
        extra = {
            "DicomServerEnabled": True,
            "DicomPort": port,
            "DicomAet": "ORTHANC",
            "DicomCheckCalledAet": False,
        }
        peer = start_orthanc_sid(work, SID, extra)
        called = "ORTHANC"
    try:
        cpu_before = peer.cpu_seconds()
        wall = _store(corpus / "studies", port, called)
        cpu = peer.cpu_seconds() - cpu_before
    finally:
        peer.stop()
    count = sum(1 for _ in (corpus / "studies").rglob("*.dcm"))
    return {"instances": count, "wall_s": wall, "cpu_s": cpu, "per_s": count / wall}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.dimse",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--pg-admin-url",
        default=None,
        help="PostgreSQL to make a database in per round (else ours runs on SQLite)",
    )
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args(argv)
    kinds = ["ours"] + (["orthanc-1.13"] if (SID / BINARY).exists() else [])
    results: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
    work = Path(tempfile.mkdtemp(prefix="dimse-bench-"))
    try:
        for n in range(args.rounds):
            for kind in kinds if n % 2 == 0 else list(reversed(kinds)):
                results[kind].append(_round(args.corpus, work, kind, args.pg_admin_url))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    figures: dict[str, dict[str, float]] = {}
    for kind, rounds in results.items():
        best = max(rounds, key=lambda r: r["per_s"])
        cpu_ms = 1000 * sum(r["cpu_s"] for r in rounds) / sum(r["instances"] for r in rounds)
        figures[kind] = {"instances_per_s": best["per_s"], "server_cpu_ms_per_instance": cpu_ms}
        print(
            f"{kind:14} {best['per_s']:7.1f} instances/s (best of {len(rounds)}), "
            f"server CPU {cpu_ms:.2f} ms per instance"
        )
    if args.out is not None:
        args.out.write_text(json.dumps({"figures": figures, "rounds": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
