"""Scale mode: fill the PostgreSQL index with synthetic rows and time QIDO as it grows.

Rows are generated in SQL (no objects exist): 100 instances per study, 4 series of 25. Each
checkpoint (10k, 100k, ... up to the total) is timed with the same queries, each answer's
size checked against what the generator put there.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from benchmarks.corpus import FAMILY
from benchmarks.measure import Mismatch, Unsupported, check, timed
from benchmarks.peers import create_pg_database, start_ours

PER_STUDY, PER_SERIES = 100, 25
ROOT = "1.2.826.0.1.3680043.10.1543.9"
CT = "1.2.840.10008.5.1.4.1.1.2"


def _pn(expr: str) -> str:
    return (
        f"json_build_object('vr','PN','Value',json_build_array("
        f"json_build_object('Alphabetic',{expr})))"
    )


def _v(vr: str, expr: str) -> str:
    return f"json_build_object('vr','{vr}','Value',json_build_array({expr}))"


def _name(s: int) -> str:
    return f"{FAMILY[s % len(FAMILY)]}^P{s}"


def _date(s: int) -> str:
    import datetime

    return (datetime.date(2000, 1, 1) + datetime.timedelta(days=s % 7000)).strftime("%Y%m%d")


def fill(conn: Any, studies_from: int, studies_to: int) -> None:
    family = "ARRAY[" + ",".join(f"'{f}'" for f in FAMILY) + "]"
    name = f"({family})[1 + s % {len(FAMILY)}] || '^P' || s"
    date = "to_char(date '2000-01-01' + (s % 7000), 'YYYYMMDD')"
    conn.execute(
        text(f"""
        INSERT INTO studies (pk, study_instance_uid, patient_id, patient_name,
            patient_birth_date, patient_sex, study_date, study_time, accession_number,
            study_id, study_description, modalities_in_study, sop_classes_in_study,
            number_of_series, number_of_instances, attributes)
        SELECT s + 1, '{ROOT}.1.' || s, 'SP' || lpad((s / 2)::text, 7, '0'), {name},
            '19700101', 'O', {date}, '120000', 'SACC' || s, s::text, 'SCALE STUDY', 'CT',
            '{CT}', 4, {PER_STUDY},
            json_build_object('0020000D', {_v("UI", f"'{ROOT}.1.' || s")},
                '00100010', {_pn(name)},
                '00100020', {_v("LO", "'SP' || lpad((s / 2)::text, 7, '0')")},
                '00080020', {_v("DA", date)}, '00080030', {_v("TM", "'120000'")},
                '00080050', {_v("SH", "'SACC' || s")})
        FROM generate_series(:a, :b - 1) AS s
    """),
        {"a": studies_from, "b": studies_to},
    )
    per = PER_STUDY // PER_SERIES
    conn.execute(
        text(f"""
        INSERT INTO series (pk, study_pk, series_instance_uid, modality, series_number,
            number_of_instances, attributes)
        SELECT r + 1, r / {per} + 1, '{ROOT}.2.' || r, 'CT', r % {per} + 1, {PER_SERIES},
            json_build_object('0020000E', {_v("UI", f"'{ROOT}.2.' || r")},
                '00080060', {_v("CS", "'CT'")}, '00200011', {_v("IS", f"r % {per} + 1")},
                '00080080', {_v("LO", "'HOSP' || r")})
        FROM generate_series(:a, :b - 1) AS r
    """),
        {"a": studies_from * per, "b": studies_to * per},
    )
    conn.execute(
        text(f"""
        INSERT INTO instances (pk, series_pk, study_pk, sop_instance_uid, sop_class_uid,
            instance_number, transfer_syntax_uid, blob_key, size, number_of_frames,
            attributes, metadata, bulk_data)
        SELECT k + 1, k / {PER_SERIES} + 1, k / {PER_STUDY} + 1, '{ROOT}.3.' || k, '{CT}',
            k % {PER_SERIES} + 1, '1.2.840.10008.1.2.1', 'synthetic', 0, 1,
            json_build_object('00080018', {_v("UI", f"'{ROOT}.3.' || k")},
                '00080016', {_v("UI", f"'{CT}'")},
                '00200013', {_v("IS", f"k % {PER_SERIES} + 1")})::text,
            json_build_object('00080018', {_v("UI", f"'{ROOT}.3.' || k")},
                '00080016', {_v("UI", f"'{CT}'")},
                '00200013', {_v("IS", f"k % {PER_SERIES} + 1")},
                '00080008', json_build_object('vr', 'CS',
                    'Value', json_build_array('ORIGINAL', 'PRIMARY', 'AXIAL')),
                '00180050', {_v("DS", "k % 5 + 1")},
                '00204000', {_v("LT", "'C' || k")}), '{{}}'
        FROM generate_series(:a, :b - 1) AS k
    """),
        {"a": studies_from * PER_STUDY, "b": studies_to * PER_STUDY},
    )


def scale_run(
    work: Path, pg_admin_url: str, total: int, workers: int | None, warmups: int, reps: int
) -> dict[str, Any]:

    url, drop = create_pg_database(pg_admin_url)
    peer = start_ours("ours-pg-scale", work, url, workers)
    engine = create_engine(url)
    checkpoints: dict[str, Any] = {}
    fill_seconds = 0.0
    try:
        done = 0
        points = [n for n in (10_000, 100_000, 1_000_000, 10_000_000) if n < total] + [total]
        client = httpx.Client(timeout=120)
        for point in points:
            studies = point // PER_STUDY
            start = time.perf_counter()
            with engine.begin() as conn:
                fill(conn, done, studies)
            with engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
            fill_seconds += time.perf_counter() - start
            done = studies
            base = peer.dicomweb
            mid = studies // 2
            study_uid = f"{ROOT}.1.{mid}"
            series_uid = f"{ROOT}.2.{mid * (PER_STUDY // PER_SERIES)}"
            prefix = _name(mid)[: len(_name(mid)) - 1] if mid >= 10 else _name(mid)
            expected_prefix = sum(1 for s in range(studies) if _name(s).startswith(prefix))
            lo, hi = "20050101", "20050131"
            expected_dates = sum(1 for s in range(studies) if lo <= _date(s) <= hi)

            def qido(path: str, params: dict[str, str], expected: int, base: str = base) -> Any:
                def run() -> int:
                    r = check(client.get(base + path, params=params))
                    if len(r.json()) != expected:
                        if "299" in r.headers.get("warning", ""):
                            raise Unsupported("ignored with Warning 299")
                        raise Mismatch(f"{len(r.json())} results, expected {expected}")
                    return 0

                return run

            checkpoints[str(point)] = {
                "qido_patient_id": timed(
                    qido(
                        "/studies",
                        {"PatientID": f"SP{mid // 2:07d}"},
                        len({mid // 2 * 2, mid // 2 * 2 + 1} & set(range(studies))),
                    ),
                    warmups,
                    reps,
                ),
                "qido_study_date_range": timed(
                    qido("/studies", {"StudyDate": f"{lo}-{hi}"}, expected_dates), warmups, reps
                ),
                "qido_patient_name_prefix": timed(
                    qido("/studies", {"PatientName": prefix + "*"}, expected_prefix), warmups, reps
                ),
                "qido_series_of_study": timed(
                    qido(f"/studies/{study_uid}/series", {}, PER_STUDY // PER_SERIES), warmups, reps
                ),
                "qido_instances_of_series": timed(
                    qido(f"/studies/{study_uid}/series/{series_uid}/instances", {}, PER_SERIES),
                    warmups,
                    reps,
                ),
                # A page of the study list, as the web application asks for it: in the
                # order of storage, newest first (orderby), by name.
                "qido_page_of_studies": timed(
                    qido("/studies", {"limit": "25"}, min(25, studies)), warmups, reps
                ),
                "qido_page_sorted_newest_first": timed(
                    qido("/studies", {"limit": "25", "orderby": "-StudyDate"}, min(25, studies)),
                    warmups,
                    reps,
                ),
                "qido_page_sorted_by_name": timed(
                    qido("/studies", {"limit": "25", "orderby": "PatientName"}, min(25, studies)),
                    warmups,
                    reps,
                ),
                "qido_instance_by_uid": timed(
                    qido("/instances", {"SOPInstanceUID": f"{ROOT}.3.{point // 2}"}, 1),
                    warmups,
                    reps,
                ),
                # Attributes without a column: matched on the stored JSON (PostgreSQL: an
                # exact value through the GIN index; a wildcard reads every row's JSON).
                "qido_non_indexed_exact_instance": timed(
                    qido("/instances", {"ImageComments": f"C{point // 2}"}, 1), warmups, reps
                ),
                "qido_non_indexed_exact_series": timed(
                    qido("/series", {"InstitutionName": f"HOSP{point // PER_SERIES // 2}"}, 1),
                    warmups,
                    reps,
                ),
                "qido_non_indexed_wildcard_series": timed(
                    qido("/series", {"InstitutionName": "NOWHERE*"}, 0), warmups, reps
                ),
            }
            print(f"   scale {point:,}: done", flush=True)
        client.close()
    finally:
        peer.stop()
        engine.dispose()
        drop()
    return {"checkpoints": checkpoints, "fill_seconds": fill_seconds}
