"""The benchmark harness on a tiny corpus: it runs end to end and verifies what it measures.

Correctness of the harness only; timings are the benchmark's business, never a test's.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmarks import corpus, dimse, events, orthanc_sid, run, workitems
from tests.conftest import PG_ADMIN_URL


def test_benchmark_runs_on_a_tiny_corpus(tmp_path: Path, pg_url: str) -> None:
    data = tmp_path / "corpus"
    assert (
        corpus.main(
            [str(data), "--studies", "2", "--series", "2", "--instances", "3", "--frames", "8"]
        )
        == 0
    )
    manifest = corpus.load_manifest(data)
    assert sum(e.kind == "image" for e in manifest) == 12
    # Deterministic: the same arguments give the same bytes.
    again = tmp_path / "again"
    corpus.main(
        [str(again), "--studies", "2", "--series", "2", "--instances", "3", "--frames", "8"]
    )
    assert (again / "multiframe.dcm").read_bytes() == (data / "multiframe.dcm").read_bytes()
    assert (again / manifest[0].path).read_bytes() == (data / manifest[0].path).read_bytes()

    peers = ["ours-sqlite", "ours-sqlite-production", "ours-pg", "ours-pg-s3"]
    have_orthanc = (
        shutil.which("Orthanc") is not None
        and Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so").is_file()
    )
    if have_orthanc:
        peers.append("orthanc")
    # Orthanc 1.13 from the Debian sid chroot, when .ci/run (or benchmarks.orthanc_sid) made it.
    have_orthanc_13 = orthanc_sid.ready(orthanc_sid.DEFAULT_DIR)
    if have_orthanc_13:
        peers.append("orthanc-1.13")
    out = tmp_path / "out"
    # One command: the runner makes the corpus itself when its folder holds none.
    code = run.main(
        [
            str(tmp_path / "made-by-run"),
            "--studies",
            "2",
            "--series",
            "2",
            "--instances",
            "3",
            "--frames",
            "8",
            "--out",
            str(out),
            "--peers",
            ",".join(peers),
            "--warmups",
            "1",
            "--repetitions",
            "2",
            "--workers",
            "1",
            "--pg-admin-url",
            PG_ADMIN_URL,
            "--scale",
            "2000",
            "--profile",
            str(tmp_path / "profiles"),
            "--worker-scaling",
            "1,2",
            "--floor-seconds",
            "1",
        ]
    )
    assert code == 0
    report = json.loads((out / "results.json").read_text())
    for name in ("ours-sqlite", "ours-sqlite-production", "ours-pg", "ours-pg-s3"):
        results = report["peers"][name]
        failed = {m: r for m, r in results.items() if "failed" in r}
        assert failed == {}
        assert results["stow_1_per_request"]["instances"] == 6
        assert results["stow_20_per_request"]["instances"] == 6
        for metric in (
            "qido_patient_id",
            "wado_series_retrieve",
            "wado_series_metadata",
            "wado_frame_first",
            "wado_frame_last",
            "wado_rendered_jpeg",
            "wado_rendered_frame",
            "wado_study_thumbnails",
            "wado_uri_instance",
            "concurrent_frames",
            "concurrent_instances",
            "concurrent_series_metadata",
            "concurrent_qido_series",
        ):
            assert results[metric]["median_ms"] > 0, metric
            # The server's CPU per request, beside the wall time.
            assert results[metric]["cpu_ms"] >= 0, metric
        assert results["stow_1_per_request"]["cpu_ms_per_instance"] > 0
        # The per-request floor, measured with wrk before anything is stored.
        floor = results["qido_empty_floor"]
        assert floor["requests_per_s"] > 0 and floor["cpu_ms"] > 0, floor
        assert results["concurrent_frames"]["clients"] == run.CLIENTS
        assert report["peak_rss_mb"][name] > 0
    if have_orthanc:
        assert "instances_per_s" in report["peers"]["orthanc"]["stow_1_per_request"]
    if have_orthanc_13:
        newest = report["peers"]["orthanc-1.13"]
        assert "instances_per_s" in newest["stow_1_per_request"]
        assert newest["wado_series_metadata"]["median_ms"] > 0
    assert report["ceilings"]["pydicom_header_parse"]["instances_per_s"] > 0
    scale = report["scale"]["checkpoints"]["2000"]
    assert all("failed" not in r for r in scale.values()), scale
    assert (tmp_path / "made-by-run" / "manifest.json").is_file()
    assert (tmp_path / "made-by-run" / "manifest.json").is_file()
    table = (out / "results.md").read_text()
    assert "| wado_series_metadata |" in table and "QIDO at scale" in table
    # The production profile (a key on every request) beside the open one.
    assert "ours-sqlite-production vs ours-sqlite" in table
    # A py-spy profile of each phase of each of our peers; Orthanc is not profiled.
    profiles = {p.name for p in (tmp_path / "profiles").iterdir()}
    for name in ("ours-sqlite", "ours-pg"):
        for phase in ("ingest", "reads", "concurrent"):
            profile = tmp_path / "profiles" / f"{name}-{phase}.speedscope.json"
            assert profile.is_file(), sorted(profiles)
            assert json.loads(profile.read_text())["profiles"], profile.name
    assert not any(p.startswith("orthanc") for p in profiles)
    scaling = report["worker_scaling"]
    assert set(scaling) == {"1", "2"}
    for figures in scaling.values():
        assert figures["instances"] == 12 and figures["instances_per_s"] > 0
        assert figures["server_cores"] > 0 and figures["limit"]
    assert "| workers (PostgreSQL" in table


def test_events_benchmark_measures_both_channels(tmp_path: Path) -> None:
    """The latency benchmark of issue 16, on a few instances, without timings."""
    out = tmp_path / "events.json"
    assert (
        events.main(["--count", "6", "--uploaders", "2", "--database", "sqlite", "--out", str(out)])
        == 0
    )
    figures = json.loads(out.read_text())
    assert figures["websocket"]["count"] == 6 and figures["webhook"]["count"] == 6
    assert set(figures["websocket"]) == {"count", "p50_ms", "p99_ms", "max_ms", "mean_ms"}


def test_workitems_benchmark_measures_every_transaction(tmp_path: Path) -> None:
    """The UPS-RS benchmark of issue 17, on a few workitems, without timings."""
    out = tmp_path / "workitems.json"
    assert (
        workitems.main(
            ["--count", "4", "--clients", "2", "--database", "sqlite", "--out", str(out)]
        )
        == 0
    )
    figures = json.loads(out.read_text())
    assert set(figures["transactions"]) == {"create", "claim", "update", "complete"}
    assert figures["state_reports"]["count"] == 12
    assert figures["server_cpu_ms_per_workitem"] > 0


def test_dimse_benchmark_stores_by_storescu(tmp_path: Path) -> None:
    """The DIMSE throughput benchmark of issue 19, on a few instances, without timings."""
    if shutil.which("storescu") is None:
        pytest.skip("dcmtk is not installed")
    data = tmp_path / "corpus"
    corpus.main([str(data), "--studies", "1", "--series", "1", "--instances", "4", "--frames", "2"])
    out = tmp_path / "dimse.json"
    assert dimse.main([str(data), "--rounds", "1", "--out", str(out)]) == 0
    figures = json.loads(out.read_text())["figures"]
    assert figures["ours"]["instances_per_s"] > 0
    if (orthanc_sid.DEFAULT_DIR / orthanc_sid.BINARY).exists():
        assert figures["orthanc-1.13"]["instances_per_s"] > 0


def test_benchmark_commands_have_help() -> None:
    for module in (corpus, run, events, workitems, dimse):
        with pytest.raises(SystemExit) as exit_info:
            module.main(["--help"])
        assert exit_info.value.code == 0
