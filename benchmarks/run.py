"""Run the benchmark side by side: our server (PostgreSQL and embedded) and Orthanc.

    python -m benchmarks.run CORPUS [--out DIR] [--peers ours-sqlite,ours-pg,orthanc-1.13,...]
                             [--repetitions N] [--warmups N] [--workers N] [--scale ROWS]
                             [--profile DIR] [--worker-scaling 1,2,4]

CORPUS is a folder made by `python -m benchmarks.corpus`; when it holds no corpus yet, the
default corpus is made there first, so one command runs the whole benchmark. Every server
gets the same corpus over STOW-RS, then the same requests; every response is verified
(status, part count, byte count, item count), so a broken endpoint cannot look fast, and an
endpoint a server lacks is reported as unsupported, never as a number. Writes
OUT/results.json and OUT/results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydicom import dcmread

from benchmarks import orthanc_sid
from benchmarks.corpus import COLUMNS, ROWS, Entry, load_manifest, make_corpus
from benchmarks.measure import (
    Mismatch,
    Result,
    Unsupported,
    check,
    concurrently,
    percentile,
    timed,
)
from benchmarks.peers import (
    PRODUCTION,
    Peer,
    create_pg_database,
    ensure_orthanc,
    start_nginx,
    start_orthanc,
    start_orthanc_sid,
    start_ours,
    start_s3_server,
)
from benchmarks.profiling import Profiler

DEFAULT_PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
STOW_TYPE = 'multipart/related; type="application/dicom"; boundary={}'
DICOM = 'multipart/related; type="application/dicom"; transfer-syntax=*'
OCTET = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
FRAME_BYTES = ROWS * COLUMNS * 2
# Viewers reading at once in the concurrent measurements.
CLIENTS = 4
# The per-request floor: wrk's connections and seconds on a query that matches nothing.
FLOOR_CONNECTIONS = 4
FLOOR_SECONDS = 6


# -- HTTP helpers --------------------------------------------------------------------------


def split_multipart(response: httpx.Response) -> list[bytes]:
    content_type = response.headers.get("content-type", "")
    if not content_type.startswith("multipart/related"):
        raise Mismatch(f"not multipart/related: {content_type}")
    boundary = next(
        (
            p.split("=", 1)[1].strip().strip('"')
            for p in content_type.split(";")
            if p.strip().lower().startswith("boundary=")
        ),
        None,
    )
    if not boundary:
        raise Mismatch("multipart response without boundary")
    pieces = response.content.split(b"--" + boundary.encode())[1:-1]
    parts = []
    for piece in pieces:
        _, _, payload = piece.partition(b"\r\n\r\n")
        parts.append(payload[:-2] if payload.endswith(b"\r\n") else payload)
    return parts


def stow_body(paths: list[Path]) -> tuple[bytes, str]:
    boundary = "benchmark-boundary-7d1f0c"
    chunks = []
    for path in paths:
        chunks.append(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode())
        chunks.append(path.read_bytes())
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), STOW_TYPE.format(boundary)


# -- measuring -----------------------------------------------------------------------------


@dataclass
class Corpus:
    root: Path
    entries: list[Entry]

    @property
    def images(self) -> list[Entry]:
        return [e for e in self.entries if e.kind == "image"]

    def studies(self) -> list[str]:
        return list(dict.fromkeys(e.study_uid for e in self.images))

    def series_of(self, study: str) -> list[str]:
        return list(dict.fromkeys(e.series_uid for e in self.images if e.study_uid == study))

    def instances_of(self, series: str) -> list[Entry]:
        return [e for e in self.images if e.series_uid == series]

    @property
    def multiframe(self) -> Entry | None:
        return next((e for e in self.entries if e.kind == "multiframe"), None)


def ingest(
    peer: Peer, corpus: Corpus, entries: list[Entry], per_request: int, uploaders: int = 4
) -> Result:
    """STOW-RS with `uploaders` concurrent clients, `per_request` instances per request."""
    batches = [entries[i : i + per_request] for i in range(0, len(entries), per_request)]
    local = threading.local()
    failures: list[str] = []

    def send(batch: list[Entry]) -> float:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(timeout=600, headers=peer.headers)
        body, content_type = stow_body([corpus.root / e.path for e in batch])
        start = time.perf_counter()
        r = client.post(
            f"{peer.dicomweb}/studies",
            content=body,
            headers={"Content-Type": content_type, "Accept": "application/dicom+json"},
        )
        elapsed = time.perf_counter() - start
        if r.status_code != 200:
            failures.append(f"HTTP {r.status_code}: {r.text[:160]}")
        else:
            stored = r.json().get("00081199", {}).get("Value", [])
            if len(stored) != len(batch):
                failures.append(f"{len(stored)} of {len(batch)} instances acknowledged")
        return elapsed

    cpu = peer.cpu_seconds()
    start = time.perf_counter()
    with ThreadPoolExecutor(uploaders) as pool:
        times = list(pool.map(send, batches))
    wall = time.perf_counter() - start
    cpu = peer.cpu_seconds() - cpu
    if failures:
        return {"failed": failures[0]}
    size = sum(e.size for e in entries)
    return {
        "instances_per_s": len(entries) / wall,
        "mb_per_s": size / wall / 2**20,
        "request_median_ms": statistics.median(times) * 1000,
        "request_p95_ms": percentile(times, 0.95) * 1000,
        "instances": len(entries),
        # Server CPU per stored instance: holds on a noisy machine where wall time does not.
        "cpu_ms_per_instance": cpu * 1000 / len(entries),
    }


def floor(peer: Peer, url: str, seconds: int = FLOOR_SECONDS) -> Result:
    """What one request costs at the least: wrk (a C client, so the figures are the
    server's) on `url` with FLOOR_CONNECTIONS connections; requests per second and the
    server's CPU milliseconds per request (the profile's key sent, if it has one)."""
    if shutil.which("wrk") is None:
        return {"unsupported": "wrk is not installed"}
    command = ["wrk", "-t1", f"-c{FLOOR_CONNECTIONS}"]
    for name, value in peer.headers.items():
        command += ["-H", f"{name}: {value}"]
    subprocess.run([*command, "-d1s", url], capture_output=True, check=False)  # warm-up
    before = peer.cpu_seconds()
    done = subprocess.run(
        [*command, f"-d{seconds}s", url], capture_output=True, text=True, check=False
    )
    cpu = peer.cpu_seconds() - before
    total = re.search(r"(\d+) requests in", done.stdout)
    refused = re.search(r"Non-2xx or 3xx responses: (\d+)", done.stdout)
    if total is None or int(total.group(1)) == 0:
        return {"failed": f"wrk: {(done.stdout + done.stderr)[-160:]}"}
    if refused is not None:
        return {"failed": f"{refused.group(1)} answers were not 2xx"}
    count = int(total.group(1))
    return {
        "requests_per_s": count / seconds,
        "cpu_ms": cpu * 1000 / count,
        "n": count,
    }


def load_rest(peer: Peer, corpus: Corpus) -> list[str]:
    """The multi-frame and bundled objects, one per request, untimed; returns those refused."""
    refused = []
    with httpx.Client(timeout=600, headers=peer.headers) as client:
        for entry in corpus.entries:
            if entry.kind == "image":
                continue
            body, content_type = stow_body([corpus.root / entry.path])
            r = client.post(
                f"{peer.dicomweb}/studies", content=body, headers={"Content-Type": content_type}
            )
            # 202 with no failure: stored, or a duplicate of another corpus object kept once.
            failures = r.json().get("00081198", {}).get("Value") if r.status_code < 300 else None
            failed = r.status_code not in (200, 202) or bool(failures)
            if failed:
                refused.append(f"{entry.path} (HTTP {r.status_code})")
    return refused


def measure_peer(
    peer: Peer,
    corpus: Corpus,
    warmups: int,
    reps: int,
    profile: Path | None = None,
    floor_seconds: int = FLOOR_SECONDS,
) -> dict[str, Result]:
    results: dict[str, Result] = {}
    profiler = Profiler(profile, peer)
    try:
        _measure(peer, corpus, warmups, reps, results, profiler, floor_seconds)
    finally:
        profiler.end()
    return results


def _measure(
    peer: Peer,
    corpus: Corpus,
    warmups: int,
    reps: int,
    results: dict[str, Result],
    profiler: Profiler,
    floor_seconds: int = FLOOR_SECONDS,
) -> None:

    def timed_cpu(fn: Callable[[], int], warmups: int, reps: int) -> Result:
        """`timed`, with the server's CPU milliseconds per request beside the wall time."""
        before = peer.cpu_seconds()
        result = timed(fn, warmups, reps)
        if "median_ms" in result:
            result["cpu_ms"] = (peer.cpu_seconds() - before) * 1000 / (warmups + reps)
        return result

    # Before anything is stored: a query that matches nothing, as fast as wrk asks.
    results["qido_empty_floor"] = floor(peer, f"{peer.dicomweb}/studies?limit=1", floor_seconds)
    images = corpus.images
    studies = corpus.studies()
    half = max(1, len(studies) // 2)
    first = [e for e in images if e.study_uid in set(studies[:half])]
    second = [e for e in images if e.study_uid not in set(studies[:half])]
    profiler.begin("ingest")
    results["stow_1_per_request"] = ingest(peer, corpus, first, 1)
    if second:
        results["stow_20_per_request"] = ingest(peer, corpus, second, 20)
    profiler.end()
    refused = load_rest(peer, corpus)
    results["other_objects_refused"] = {"objects": refused} if refused else {}

    profiler.begin("reads")
    client = httpx.Client(timeout=600, headers=peer.headers)
    base = peer.dicomweb
    study = studies[0]
    series = corpus.series_of(study)[0]
    instances = corpus.instances_of(series)
    instance = instances[0]
    series_url = f"{base}/studies/{study}/series/{series}"
    instance_url = f"{series_url}/instances/{instance.sop_instance_uid}"

    def qido(url: str, params: dict[str, str], expected: int) -> Callable[[], int]:
        def run() -> int:
            r = check(client.get(url, params=params, headers={"Accept": "application/dicom+json"}))
            found = r.json() if r.content else []
            if len(found) != expected:
                if "299" in r.headers.get("warning", ""):
                    raise Unsupported(f"ignored: {r.headers['warning'][:160]}")
                raise Mismatch(f"{len(found)} results, expected {expected}")
            return 0

        return run

    pid = images[0].patient_id
    in_range = {e.study_uid for e in images if "20100101" <= e.study_date <= "20151231"}
    prefix = images[0].patient_name.split("^")[0][:3]
    by_prefix = {e.study_uid for e in images if e.patient_name.startswith(prefix)}
    slice_hits = [e for e in images if e.study_uid == study and e.path.endswith("/0002.dcm")]
    results["qido_patient_id"] = timed_cpu(
        qido(
            f"{base}/studies",
            {"PatientID": pid},
            len({e.study_uid for e in images if e.patient_id == pid}),
        ),
        warmups,
        reps,
    )
    results["qido_study_date_range"] = timed_cpu(
        qido(f"{base}/studies", {"StudyDate": "20100101-20151231"}, len(in_range)), warmups, reps
    )
    results["qido_patient_name_prefix"] = timed_cpu(
        qido(f"{base}/studies", {"PatientName": prefix + "*"}, len(by_prefix)), warmups, reps
    )
    results["qido_series_of_study"] = timed_cpu(
        qido(f"{base}/studies/{study}/series", {}, len(corpus.series_of(study))), warmups, reps
    )
    results["qido_instances_of_series"] = timed_cpu(
        qido(f"{series_url}/instances", {}, len(instances)), warmups, reps
    )
    results["qido_non_indexed_attribute"] = timed_cpu(
        qido(f"{base}/studies/{study}/instances", {"SliceLocation": "5.0"}, len(slice_hits)),
        warmups,
        reps,
    )

    series_bytes = sum(e.size for e in instances)

    def retrieve_series() -> int:
        r = check(client.get(series_url, headers={"Accept": DICOM}))
        parts = split_multipart(r)
        if len(parts) != len(instances) or sum(map(len, parts)) < series_bytes * 0.99:
            raise Mismatch(f"{len(parts)} parts, {sum(map(len, parts))} bytes")
        return len(r.content)

    def retrieve_instance() -> int:
        r = check(client.get(instance_url, headers={"Accept": DICOM}))
        parts = split_multipart(r)
        if len(parts) != 1 or abs(len(parts[0]) - instance.size) > 4096:
            raise Mismatch(f"{len(parts)} parts")
        return len(r.content)

    def metadata(url: str, expected: int) -> Callable[[], int]:
        def run() -> int:
            r = check(client.get(url, headers={"Accept": "application/dicom+json"}))
            if len(r.json()) != expected:
                raise Mismatch(f"{len(r.json())} items, expected {expected}")
            return 0

        return run

    study_instances = sum(len(corpus.instances_of(s)) for s in corpus.series_of(study))
    results["wado_series_retrieve"] = timed_cpu(retrieve_series, warmups, reps)
    results["wado_instance"] = timed_cpu(retrieve_instance, warmups, reps)
    results["wado_series_metadata"] = timed_cpu(
        metadata(series_url + "/metadata", len(instances)), warmups, reps
    )
    results["wado_study_metadata"] = timed_cpu(
        metadata(f"{base}/studies/{study}/metadata", study_instances), warmups, reps
    )

    mf = corpus.multiframe
    if mf is not None:
        mf_url = (
            f"{base}/studies/{mf.study_uid}/series/{mf.series_uid}/instances/{mf.sop_instance_uid}"
        )
        for label, number in (("first", 1), ("middle", (mf.frames + 1) // 2), ("last", mf.frames)):

            def frame(number: int = number) -> int:
                r = check(client.get(f"{mf_url}/frames/{number}", headers={"Accept": OCTET}))
                parts = split_multipart(r)
                if len(parts) != 1 or len(parts[0]) != FRAME_BYTES:
                    raise Mismatch(f"frame of {[len(p) for p in parts]} bytes")
                return 0

            results[f"wado_frame_{label}"] = timed_cpu(frame, warmups, reps)

    def jpeg(url: str) -> None:
        """GET an image resource and check that a JPEG came back."""
        r = check(client.get(url, headers={"Accept": "image/jpeg"}))
        if not r.content.startswith(b"\xff\xd8"):
            raise Mismatch("not a JPEG")

    def rendered() -> int:
        jpeg(instance_url + "/rendered")
        return 0

    results["wado_rendered_jpeg"] = timed_cpu(rendered, warmups, reps)

    if mf is not None:

        def rendered_frame() -> int:
            jpeg(f"{mf_url}/frames/{(mf.frames + 1) // 2}/rendered")
            return 0

        results["wado_rendered_frame"] = timed_cpu(rendered_frame, warmups, reps)

    def study_thumbnails() -> int:
        """A study list's thumbnails: one request per study, as a viewer's list makes them."""
        for each in studies:
            jpeg(f"{base}/studies/{each}/thumbnail")
        return 0

    results["wado_study_thumbnails"] = timed_cpu(study_thumbnails, warmups, reps)

    def wado_uri() -> int:
        if peer.wado_uri is None:
            raise Unsupported("no WADO-URI endpoint")
        # Orthanc does not percent-decode query values: send the slash as is.
        url = (
            f"{peer.wado_uri}?requestType=WADO&studyUID={study}&seriesUID={series}"
            f"&objectUID={instance.sop_instance_uid}&contentType=application/dicom"
        )
        r = check(client.get(url))
        if abs(len(r.content) - instance.size) > 4096:
            raise Mismatch(f"{len(r.content)} bytes")
        return len(r.content)

    results["wado_uri_instance"] = timed_cpu(wado_uri, warmups, reps)

    profiler.begin("concurrent")

    # Under load: CLIENTS viewers at once, each with its own connection.
    def loaded(make: Callable[[httpx.Client, int], int]) -> Result:
        before = peer.cpu_seconds()
        result = concurrently(make, CLIENTS, reps, warmups, peer.headers)
        if "n" in result:
            requests = result["n"] + CLIENTS * warmups
            result["cpu_ms"] = (peer.cpu_seconds() - before) * 1000 / requests
        return result

    if mf is not None:

        def any_frame(c: httpx.Client, n: int) -> int:
            number = 1 + (n * 37) % mf.frames
            r = check(c.get(f"{mf_url}/frames/{number}", headers={"Accept": OCTET}))
            if len(split_multipart(r)) != 1:
                raise Mismatch("not one frame")
            return 0

        results["concurrent_frames"] = loaded(any_frame)

    def any_instance(c: httpx.Client, n: int) -> int:
        inst = instances[n % len(instances)]
        r = check(
            c.get(f"{series_url}/instances/{inst.sop_instance_uid}", headers={"Accept": DICOM})
        )
        if len(split_multipart(r)) != 1:
            raise Mismatch("not one instance")
        return 0

    def any_series_metadata(c: httpx.Client, n: int) -> int:
        each = corpus.series_of(studies[n % len(studies)])[0]
        study_of = studies[n % len(studies)]
        url = f"{base}/studies/{study_of}/series/{each}/metadata"
        r = check(c.get(url, headers={"Accept": "application/dicom+json"}))
        if len(r.json()) != len(corpus.instances_of(each)):
            raise Mismatch("wrong metadata count")
        return 0

    def any_qido(c: httpx.Client, n: int) -> int:
        study_of = studies[n % len(studies)]
        url = f"{base}/studies/{study_of}/series"
        r = check(c.get(url, headers={"Accept": "application/dicom+json"}))
        if len(r.json()) != len(corpus.series_of(study_of)):
            raise Mismatch("wrong series count")
        return 0

    results["concurrent_instances"] = loaded(any_instance)
    results["concurrent_series_metadata"] = loaded(any_series_metadata)
    results["concurrent_qido_series"] = loaded(any_qido)
    client.close()


def ceilings(corpus: Corpus, workdir: Path, warmups: int, reps: int) -> dict[str, Result]:
    out: dict[str, Result] = {}
    images = corpus.images
    start = time.perf_counter()
    for e in images:
        dcmread(corpus.root / e.path, stop_before_pixels=True)
    elapsed = time.perf_counter() - start
    out["pydicom_header_parse"] = {
        "instances_per_s": len(images) / elapsed,
        "mb_per_s": sum(e.size for e in images) / elapsed / 2**20,
    }
    nginx = start_nginx(workdir, corpus.root)
    if nginx is None:
        out["nginx_series_retrieve"] = {"unsupported": "nginx is not installed"}
        return out
    try:
        series = corpus.series_of(corpus.studies()[0])[0]
        files = corpus.instances_of(series)
        with httpx.Client(timeout=600) as client:

            def fetch() -> int:
                total = 0
                for e in files:
                    r = check(client.get(f"{nginx.dicomweb}/{e.path}"))
                    if len(r.content) != e.size:
                        raise Mismatch("short file")
                    total += len(r.content)
                return total

            out["nginx_series_retrieve"] = timed(fetch, warmups, reps)
    finally:
        nginx.stop()
    return out


class Sampler:
    """Samples the resident memory of every running peer."""

    def __init__(self) -> None:
        self.peers: list[Peer] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            for peer in list(self.peers):
                peer.sample()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def run(
    corpus_dir: Path,
    out: Path,
    peers: list[str],
    warmups: int,
    reps: int,
    workers: int | None,
    pg_admin_url: str,
    scale: int,
    corpus_size: tuple[int, int, int, int] = (10, 3, 20, 500),
    profile: Path | None = None,
    worker_scaling: list[int] | None = None,
    floor_seconds: int = FLOOR_SECONDS,
) -> Result:
    if not (corpus_dir / "manifest.json").is_file():
        print(f"-- making the default corpus in {corpus_dir}", flush=True)
        corpus_dir.mkdir(parents=True, exist_ok=True)
        make_corpus(corpus_dir, *corpus_size)
    corpus = Corpus(corpus_dir, load_manifest(corpus_dir))
    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    work.mkdir(exist_ok=True)
    report: Result = {
        "corpus": {
            "objects": len(corpus.entries),
            "mib": sum(e.size for e in corpus.entries) / 2**20,
        },
        "peers": {},
        "peak_rss_mb": {},
    }
    sampler = Sampler()
    try:
        for name in peers:
            peer, cleanup = _start(name, work, workers, pg_admin_url)
            if peer is None:
                report["peers"][name] = {"unavailable": cleanup}
                continue
            sampler.peers.append(peer)
            try:
                print(f"-- {name}", flush=True)
                report["peers"][name] = measure_peer(
                    peer, corpus, warmups, reps, profile, floor_seconds
                )
            finally:
                sampler.peers.remove(peer)
                peer.stop()
                report["peak_rss_mb"][name] = peer.peak_rss_mb
                if callable(cleanup):
                    cleanup()
                settle()
        report["ceilings"] = ceilings(corpus, work, warmups, reps)
        if scale:
            from benchmarks.scale import scale_run

            report["scale"] = scale_run(work, pg_admin_url, scale, workers, warmups, reps)
        if worker_scaling:
            from benchmarks.scaling import scaling_run

            report["worker_scaling"] = scaling_run(
                corpus, work, pg_admin_url, worker_scaling, ingest
            )
    finally:
        sampler.stop()
    (out / "results.json").write_text(json.dumps(report, indent=1))
    (out / "results.md").write_text(markdown(report))
    return report


def settle(seconds: float = 2.0) -> None:
    """Between peers: what the last one wrote flushed to disk, then a pause, so the next is
    not measured while the kernel writes back half a gigabyte of the last one's objects (a
    likely cause of a peer measuring 10-50% slower on most rows when it ran right after
    Orthanc than when it ran first)."""
    os.sync()
    time.sleep(seconds)


def _start(
    name: str, work: Path, workers: int | None, pg_admin_url: str
) -> tuple[Peer | None, Any]:
    # Ours as the README starts it (log at info, one worker per core unless --workers).
    if name == "ours-sqlite":
        return start_ours(name, work, None, workers, log_level=None), None
    if name == "ours-sqlite-production":
        return start_ours(name, work, None, workers, PRODUCTION, log_level=None), None
    if name in ("ours-pg", "ours-pg-production"):
        url, drop = create_pg_database(pg_admin_url)
        extra = PRODUCTION if name.endswith("-production") else None
        return start_ours(name, work, url, workers, extra, log_level=None), drop
    if name == "ours-pg-s3":
        url, drop = create_pg_database(pg_admin_url)
        s3, stop_s3 = start_s3_server(work)

        def cleanup() -> None:
            drop()  # type: ignore[operator]
            stop_s3()  # type: ignore[operator]

        return start_ours(name, work, url, workers, s3, log_level=None), cleanup
    if name == "orthanc":
        binary = ensure_orthanc()
        if binary is None:
            return None, "Orthanc and its DICOMweb plugin could not be installed"
        return start_orthanc(work, binary), None
    if name == "orthanc-1.13":
        chroot = orthanc_sid.ensure()
        if chroot is None:
            return None, "Orthanc 1.13 (Debian sid chroot) could not be set up"
        return start_orthanc_sid(work, chroot), None
    raise SystemExit(f"unknown peer {name!r}")


# -- report --------------------------------------------------------------------------------

LOWER_IS_BETTER = "median_ms"


def _cell(result: Result | None) -> str:
    if result is None:
        return "-"
    if "unsupported" in result:
        return "unsupported"
    if "failed" in result:
        return "FAILED"
    if "instances_per_s" in result:
        text = f"{result['instances_per_s']:.0f} inst/s, {result['mb_per_s']:.0f} MB/s"
        if "cpu_ms_per_instance" in result:
            text += f", CPU {result['cpu_ms_per_instance']:.1f} ms/inst"
        return text
    if "median_ms" not in result and "requests_per_s" in result:
        return f"{result['requests_per_s']:.0f} req/s, CPU {result.get('cpu_ms', 0):.2f} ms"
    text = f"{result['median_ms']:.1f} ms (p95 {result['p95_ms']:.1f})"
    if "mb_per_s" in result:
        text += f", {result['mb_per_s']:.0f} MB/s"
    if "requests_per_s" in result:
        text += f", {result['requests_per_s']:.0f} req/s"
    if "cpu_ms" in result:
        text += f", CPU {result['cpu_ms']:.1f} ms"
    return text


def speedup(ours: Result | None, other: Result | None) -> float | None:
    """How many times better ours is: latency ratio inverted, throughput ratio direct."""
    if not ours or not other:
        return None
    if "instances_per_s" in ours and "instances_per_s" in other:
        return float(ours["instances_per_s"] / other["instances_per_s"])
    if "median_ms" in ours and "median_ms" in other and ours["median_ms"] > 0:
        return float(other["median_ms"] / ours["median_ms"])
    # The floor (no latency of its own): how many times less CPU a request costs.
    if "cpu_ms" in ours and "cpu_ms" in other and ours["cpu_ms"] > 0:
        return float(other["cpu_ms"] / ours["cpu_ms"])
    return None


def markdown(report: Result) -> str:
    peers = list(report["peers"])
    metrics: list[str] = []
    for results in report["peers"].values():
        metrics += [m for m in results if m not in metrics and m != "unavailable"]
    # The reference is the README's command when measured (the embedded default).
    ours = next((p for p in ("ours-sqlite", "ours-pg") if p in peers), peers[0] if peers else "")
    production = f"{ours}-production" if f"{ours}-production" in peers else None
    # One ratio column per Orthanc (1.13 from Debian sid, 1.10 from Debian 12), newest first.
    orthancs = sorted((p for p in peers if p.startswith("orthanc")), reverse=True)
    lines = [
        "| metric | "
        + " | ".join(peers)
        + "".join(f" | {ours} vs {o} (x, higher is better)" for o in orthancs)
        + (f" | {production} vs {ours} (x)" if production else "")
        + " |",
        "| --- " * (len(peers) + 1 + len(orthancs) + (1 if production else 0)) + "|",
    ]
    for metric in metrics:
        if metric == "other_objects_refused":
            continue
        cells = [_cell(report["peers"][p].get(metric)) for p in peers]
        ratios = [
            speedup(
                report["peers"].get(ours, {}).get(metric),
                report["peers"].get(o, {}).get(metric),
            )
            for o in orthancs
        ]
        if production:
            ratios.append(
                speedup(
                    report["peers"].get(production, {}).get(metric),
                    report["peers"].get(ours, {}).get(metric),
                )
            )
        lines.append(
            f"| {metric} | "
            + " | ".join(cells)
            + "".join(" | " + ("-" if r is None else f"{r:.2f}") for r in ratios)
            + " |"
        )
    for p in peers:
        refused = report["peers"][p].get("other_objects_refused", {}).get("objects")
        if refused:
            lines.append("")
            lines.append(f"{p} refused: " + ", ".join(refused))
    lines.append("")
    lines.append(
        "Ratios are of latency, throughput for ingest, and CPU per request for "
        "qido_empty_floor (wrk, 4 connections, before anything is stored)."
    )
    lines.append("")
    lines.append(
        "Peak resident memory (MiB, server and its workers): "
        + ", ".join(f"{k} {v:.0f}" for k, v in report["peak_rss_mb"].items())
    )
    ceiling = report.get("ceilings", {})
    lines.append("")
    lines.append(f"| ceiling | figure | {ours} as a share |")
    lines.append("| --- | --- | --- |")
    ngx = ceiling.get("nginx_series_retrieve")
    ours_retrieve = report["peers"].get(ours, {}).get("wado_series_retrieve", {})
    if ngx and "mb_per_s" in ngx:
        share = (
            f"{ours_retrieve['mb_per_s'] / ngx['mb_per_s']:.0%}"
            if "mb_per_s" in ours_retrieve
            else "-"
        )
        lines.append(f"| nginx static files, same series | {_cell(ngx)} | {share} |")
    parse = ceiling.get("pydicom_header_parse")
    ours_stow = report["peers"].get(ours, {}).get("stow_1_per_request", {})
    if parse:
        share = (
            f"{ours_stow['instances_per_s'] / parse['instances_per_s']:.0%}"
            if "instances_per_s" in ours_stow
            else "-"
        )
        lines.append(f"| pydicom header parse (ingest reference) | {_cell(parse)} | {share} |")
    if "scale" in report:
        lines.append("")
        lines.append(scale_markdown(report["scale"]))
    if report.get("worker_scaling"):
        from benchmarks.scaling import scaling_markdown

        lines += ["", scaling_markdown(report["worker_scaling"])]
    return "\n".join(lines) + "\n"


def scale_markdown(scale: Result) -> str:
    sizes = list(scale["checkpoints"])
    metrics: list[str] = []
    for r in scale["checkpoints"].values():
        metrics += [m for m in r if m not in metrics]
    lines = [
        "| QIDO at scale (PostgreSQL) | "
        + " | ".join(f"{int(s):,} instances" for s in sizes)
        + " |",
        "| --- " * (len(sizes) + 1) + "|",
    ]
    for metric in metrics:
        lines.append(
            f"| {metric} | "
            + " | ".join(_cell(scale["checkpoints"][s].get(metric)) for s in sizes)
            + " |"
        )
    lines.append("")
    lines.append(f"Fill time: {scale['fill_seconds']:.0f} s for {int(sizes[-1]):,} rows.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "corpus", type=Path, help="folder made by benchmarks.corpus (made with defaults if empty)"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    parser.add_argument(
        "--peers",
        default="ours-sqlite,ours-sqlite-production,ours-pg,ours-pg-s3,orthanc-1.13,orthanc",
        help="comma-separated: ours-sqlite (the README's command), ours-sqlite-production "
        "(the same with API keys and the audit table, every request with a key), ours-pg, "
        "ours-pg-production, ours-pg-s3 (PostgreSQL + an S3-protocol server), orthanc-1.13 "
        "(Debian sid, from a chroot), orthanc (Debian 12's 1.10)",
    )
    # Rows of about 1 ms need a hundred requests or more: with 20, the median and the CPU
    # count (10 ms clock ticks) moved the ratios by 20-40% between runs of the same code.
    parser.add_argument("--warmups", type=int, default=10)
    parser.add_argument(
        "--floor-seconds",
        type=int,
        default=FLOOR_SECONDS,
        help="how long wrk asks the query that matches nothing (qido_empty_floor)",
    )
    parser.add_argument("--repetitions", type=int, default=100)
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="our server's processes (default: as the README starts it, one per core)",
    )
    parser.add_argument("--pg-admin-url", default=DEFAULT_PG_ADMIN)
    parser.add_argument(
        "--scale",
        type=int,
        default=0,
        help="also fill PostgreSQL with this many instance rows and measure "
        "QIDO as it grows (e.g. 1000000)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="record a py-spy profile of our server for each phase into DIR",
    )
    parser.add_argument(
        "--worker-scaling",
        default="",
        metavar="COUNTS",
        help="also measure ingest on PostgreSQL with these worker counts (e.g. 1,2,4)",
    )
    size = parser.add_argument_group("corpus size, when the runner makes the corpus")
    size.add_argument("--studies", type=int, default=10)
    size.add_argument("--series", type=int, default=3, help="series per study")
    size.add_argument("--instances", type=int, default=20, help="instances per series")
    size.add_argument("--frames", type=int, default=500, help="frames of the multi-frame object")
    args = parser.parse_args(argv)
    report = run(
        args.corpus,
        args.out,
        [p.strip() for p in args.peers.split(",") if p.strip()],
        args.warmups,
        args.repetitions,
        args.workers,
        args.pg_admin_url,
        args.scale,
        (args.studies, args.series, args.instances, args.frames),
        args.profile,
        [int(n) for n in args.worker_scaling.split(",") if n.strip()],
        args.floor_seconds,
    )
    print((args.out / "results.md").read_text())
    failed = [
        f"{p}.{m}"
        for p, r in report["peers"].items()
        for m, v in r.items()
        if p.startswith("ours") and isinstance(v, dict) and "failed" in v
    ]
    if failed:
        print("FAILED:", ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
