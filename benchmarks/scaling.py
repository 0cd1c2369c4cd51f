"""`--worker-scaling 1,2,4`: STOW-RS ingest on PostgreSQL with 1, 2 and 4 server processes.

Each count gets a fresh database and stores the corpus's images, 20 per request, from 8
uploaders. Beside the throughput it reports what each part of the machine did over the run
(cores busy: our server, PostgreSQL's processes, the whole machine and the time it waited
for the disk; the disk's write rate), so the table shows where the limit is: the machine's
cores, PostgreSQL, or the disk.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from benchmarks.peers import create_pg_database, processes, start_ours

Result = dict[str, Any]
UPLOADERS = 8
PER_REQUEST = 20


def postgres_cpu_seconds() -> float:
    """CPU time of every PostgreSQL process on the machine (its server and backends)."""
    tick = os.sysconf("SC_CLK_TCK")
    return sum(
        (int(fields[11]) + int(fields[12])) / tick
        for _pid, name, fields in processes()
        if name.startswith("postgres")
    )


def machine_seconds() -> tuple[float, float]:
    """(busy, iowait) CPU seconds of the whole machine since boot."""
    tick = os.sysconf("SC_CLK_TCK")
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle, iowait = fields[3], fields[4]
    return (sum(fields) - idle - iowait) / tick, iowait / tick


def disk_written_bytes() -> int:
    """Bytes written to the machine's block devices (partitions and loop devices left out)."""
    total = 0
    devices = {p.name for p in Path("/sys/block").iterdir() if not p.name.startswith("loop")}
    for line in Path("/proc/diskstats").read_text().splitlines():
        fields = line.split()
        if fields[2] in devices:
            total += int(fields[9]) * 512
    return total


def scaling_run(
    corpus: Any, work: Path, pg_admin_url: str, counts: list[int], ingest: Any
) -> dict[str, Result]:
    """`ingest` is the benchmark's STOW-RS phase (run.ingest)."""
    out: dict[str, Result] = {}
    for count in counts:
        url, drop = create_pg_database(pg_admin_url)
        peer = start_ours(f"ours-pg-{count}-workers", work, url, count)
        try:
            server, postgres = peer.cpu_seconds(), postgres_cpu_seconds()
            busy, iowait = machine_seconds()
            written, start = disk_written_bytes(), time.perf_counter()
            result = ingest(peer, corpus, corpus.images, PER_REQUEST, UPLOADERS)
            wall = time.perf_counter() - start
            if "failed" not in result:
                busy_after, iowait_after = machine_seconds()
                result.update(
                    server_cores=(peer.cpu_seconds() - server) / wall,
                    postgres_cores=(postgres_cpu_seconds() - postgres) / wall,
                    machine_busy_cores=(busy_after - busy) / wall,
                    iowait_cores=(iowait_after - iowait) / wall,
                    disk_mb_per_s=(disk_written_bytes() - written) / wall / 2**20,
                )
                # Read off the figures just added.
                result["limit"] = _limit(result, count)
            out[str(count)] = result
        finally:
            peer.stop()
            if callable(drop):
                drop()
    return out


def _limit(result: Result, workers: int) -> str:
    """Which resource the run used up (a reading of the figures, not a measurement)."""
    cores = os.cpu_count() or 1
    if result["machine_busy_cores"] >= 0.85 * cores:
        return "CPU (all cores busy)"
    if result["server_cores"] >= 0.85 * workers:
        return "our processes (each a core's worth: Python's GIL)"
    if result["postgres_cores"] >= 0.85:
        return "PostgreSQL (a core's worth)"
    if result["iowait_cores"] >= 0.3:
        return "disk (waiting for writes)"
    return "none reached (latency-bound: the uploaders wait for answers)"


def scaling_markdown(scaling: dict[str, Result]) -> str:
    lines = [
        f"| workers (PostgreSQL, {PER_REQUEST} per request, {UPLOADERS} uploaders) | inst/s "
        "| server CPU ms/inst | server cores | PostgreSQL cores | machine busy cores "
        "| iowait cores | disk MB/s | limit |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for count, r in scaling.items():
        if "failed" in r:
            lines.append(f"| {count} | FAILED: {r['failed']} | | | | | | | |")
            continue
        lines.append(
            f"| {count} | {r['instances_per_s']:.0f} | {r['cpu_ms_per_instance']:.1f} "
            f"| {r['server_cores']:.2f} | {r['postgres_cores']:.2f} "
            f"| {r['machine_busy_cores']:.2f} | {r['iowait_cores']:.2f} "
            f"| {r['disk_mb_per_s']:.0f} | {r['limit']} |"
        )
    return "\n".join(lines)
