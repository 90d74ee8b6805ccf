from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import inspect

from glioscope_common.db import make_engine
from glioscope_reporting.reports.pdf import NOTICE

from .conftest import TOKEN, worker_auth


def _pdf_text(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "report.pdf"
    path.write_bytes(pdf)
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout
    else:
        from pypdf import PdfReader

        text = "\n".join(page.extract_text() for page in PdfReader(path).pages)
    return re.sub(r"\s+", " ", text)


def test_create_get_pdf(post_report, payload_factory, key_images, client: TestClient, auth, tmp_path: Path, artifacts_dir: Path, database_url: str) -> None:
    response = post_report(payload_factory(), key_images)
    assert response.status_code == 201, response.text
    report = response.json()
    assert report["status"] == "draft" and report["version"] == 1 and report["ai_drafted"] is False
    assert report["ai_sections"] == {"findings": False, "impression": False, "diagnosis": False, "recommendations": False}
    assert report["key_images"] == ["axial", "coronal", "sagittal"]
    assert report["pdf_url"] == f"/api/reports/{report['id']}/pdf"
    sections = report["sections"]
    assert "45.4 mL" in sections["findings"] and "52.3 mm" in sections["findings"]
    assert "high-grade glioma" in sections["diagnosis"]

    got = client.get(f"/api/reports/{report['id']}", headers=auth)
    assert got.status_code == 200 and got.json() == report

    started = time.perf_counter()
    pdf = client.get(f"/api/reports/{report['id']}/pdf", headers=auth)
    elapsed = time.perf_counter() - started
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    assert elapsed < 1.0, f"PDF took {elapsed:.2f} s"
    assert len(pdf.content) < 400_000

    text = _pdf_text(pdf.content, tmp_path)
    for expected in ["8.1 mL", "25.3 mL", "12.0 mL", "45.4 mL", "20.2 mL", "52.3 mm", "38.1 mm", "1992.1 mm²",
                     "left frontal lobe", "image 78, series 5 (T1 post contrast)"]:
        assert expected in text, expected
    assert NOTICE in text
    for expected in ["Doe, Jane", "GLIO-0001", "2024-03-15", "MRI brain with contrast", "ACC42", "glioscope_unet 1.2.0",
                     "Not signed", "Axial", "Coronal", "Sagittal", "Findings", "Impression", "Diagnosis", "Recommendations"]:
        assert expected in text, expected

    if shutil.which("pdftoppm"):
        backend = "postgres" if database_url.startswith("postgresql") else "sqlite"
        (artifacts_dir / f"report-{backend}.pdf").write_bytes(pdf.content)
        subprocess.run(
            ["pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "1", str(artifacts_dir / f"report-{backend}.pdf"), str(artifacts_dir / f"report-{backend}")],
            check=True,
        )
        assert list(artifacts_dir.glob(f"report-{backend}*.png"))


def test_idempotent_repeat(post_report, payload_factory, key_images, client: TestClient, auth) -> None:
    first = post_report(payload_factory(), key_images)
    assert first.status_code == 201
    again = post_report(payload_factory(), key_images)
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    other_job = post_report(payload_factory(job_id="job-2"))
    assert other_job.status_code == 201 and other_job.json()["id"] != first.json()["id"]
    listed = client.get("/api/reports", params={"study_instance_uid": "1.2.826.0.1.3680043.8.498.12345"}, headers=auth).json()["reports"]
    assert sorted(r["job_id"] for r in listed) == ["job-1", "job-2"]
    assert client.get("/api/reports", params={"study_instance_uid": "1.2.3"}, headers=auth).json()["reports"] == []
    assert len(client.get("/api/reports", headers=auth).json()["reports"]) == 2


INVALID_MEASUREMENTS = [
    ("missing", lambda m: {"label_volumes": []}),
    ("negative diameter", lambda m: {**m, "max_axial_diameter_mm": -1}),
    ("negative volume", lambda m: {**m, "label_volumes": [{"label": 1, "name": "necrotic core", "volume_ml": -2}]}),
    ("bad hemisphere", lambda m: {**m, "hemisphere": "top"}),
    ("not a number", lambda m: {**m, "bidimensional_product_mm2": "big"}),
]


@pytest.mark.parametrize("change", [c for _, c in INVALID_MEASUREMENTS], ids=[n for n, _ in INVALID_MEASUREMENTS])
def test_invalid_measurements_422(change, post_report, payload_factory, client: TestClient, auth) -> None:
    payload = payload_factory()
    payload["measurements"] = change(payload["measurements"])
    response = post_report(payload)
    assert response.status_code == 422, response.text
    assert "measurements" in response.json()["detail"]
    assert client.get("/api/reports", headers=auth).json()["reports"] == []


def test_invalid_payload(post_report, payload_factory, client: TestClient, auth) -> None:
    assert post_report(payload_factory(study_instance_uid="not a uid")).status_code == 422
    no_model = payload_factory()
    del no_model["model"]
    assert post_report(no_model).status_code == 422
    broken = client.post("/api/reports", data={"payload": "{not json"}, headers=auth)
    assert broken.status_code == 400
    missing = client.post("/api/reports", data={}, headers=auth)
    assert missing.status_code == 422


def test_key_image_validation(post_report, payload_factory, key_images, client: TestClient, auth) -> None:
    jpeg_like = [("key_images", ("axial.png", b"\xff\xd8\xff\xe0 not a png", "image/png"))]
    response = post_report(payload_factory(), jpeg_like)
    assert response.status_code == 400 and "not a PNG" in response.json()["detail"]
    truncated = [("key_images", ("axial.png", key_images[0][1][1][:40], "image/png"))]
    assert post_report(payload_factory(), truncated).status_code == 400
    wrong_name = [("key_images", ("lateral.png", key_images[0][1][1], "image/png"))]
    assert post_report(payload_factory(), wrong_name).status_code == 400
    twice = [key_images[0], key_images[0]]
    assert post_report(payload_factory(), twice).status_code == 400
    assert client.get("/api/reports", headers=auth).json()["reports"] == []


def test_key_image_too_large(database_url: str, payload_factory, key_images) -> None:
    from glioscope_reporting.main import create_app
    from glioscope_reporting.settings import Settings

    settings = Settings(environment="test", database_url=database_url, service_token=TOKEN, max_key_image_bytes=100)
    with TestClient(create_app(settings)) as client:
        response = client.post(
            "/api/reports", data={"payload": json.dumps(payload_factory())}, files=key_images, headers=worker_auth()
        )
        assert response.status_code == 413


def test_token_required(client: TestClient, post_report, payload_factory) -> None:
    assert post_report(payload_factory(), headers={}).status_code == 401
    assert post_report(payload_factory(), headers={"Authorization": "Bearer wrong"}).status_code == 401
    for path in ["/api/reports", "/api/reports/x", "/api/reports/x/pdf"]:
        response = client.get(path)
        assert response.status_code == 401 and response.json()["error"] == "unauthorized"


def test_unknown_report_404(client: TestClient, auth) -> None:
    for path in ["/api/reports/00000000-0000-0000-0000-000000000000", "/api/reports/nope/pdf"]:
        response = client.get(path, headers=auth)
        assert response.status_code == 404 and response.json()["error"] == "not_found"


def test_health_ready_and_migrations(client: TestClient, database_url: str) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["status"] == "ready"
    assert client.get("/metrics").status_code == 200
    assert "/api/reports" in client.get("/openapi.json").json()["paths"]
    engine = make_engine(database_url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"reporting_reports", "reporting_key_images", "alembic_version_reporting"} <= tables
    assert "alembic_version" not in tables  # never the shared default version table


def test_migrate_is_idempotent_next_to_other_histories(database_url: str) -> None:
    from glioscope_reporting.migrate import migrate

    migrate(database_url)
    migrate(database_url)


def test_readyz_fails_without_database(tmp_path: Path) -> None:
    from glioscope_reporting.main import create_app
    from glioscope_reporting.settings import Settings

    settings = Settings(environment="test", database_url=f"sqlite:///{tmp_path / 'empty.db'}", service_token=TOKEN, migrate_on_start=False)
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").status_code == 503


def test_models_match_migrations_and_coexist_with_other_histories(database_url: str) -> None:
    from alembic.migration import MigrationContext
    from alembic.autogenerate import compare_metadata

    from glioscope_reporting.migrate import migrate
    from glioscope_reporting.reports.models import ReportingBase

    try:  # the gateway's records share the database with their own version table
        from glioscope_common.records.migrate import migrate as migrate_records
    except ImportError:
        migrate_records = None
    if migrate_records is not None:
        migrate_records(database_url)
    migrate(database_url)
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"include_object": lambda o, name, type_, r, c: type_ != "table" or name.startswith("reporting_")}
            )
            diff = compare_metadata(context, ReportingBase.metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_migration_0002_backfills_existing_reports(database_url: str) -> None:
    """A report written under reporting_0001 gets its version row, patient_id and study_date (and down again)."""
    from alembic import command
    from sqlalchemy import text as sql

    from glioscope_reporting.migrate import alembic_config, migrate

    config = alembic_config(database_url)
    migrate(database_url)
    command.downgrade(config, "reporting_0001")
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sql(
                    "INSERT INTO reporting_reports (id, study_instance_uid, job_id, status, version, created_at, updated_at,"
                    " author, ai_drafted, patient, study, model, measurements, sections) VALUES (:id, '1.2.3', 'j', 'draft', 1,"
                    " :now, :now, NULL, :ai, :patient, :study, '{}', '{}', :sections)"
                ),
                {"id": "old-1", "now": "2026-01-01 00:00:00+00:00", "ai": True,
                 "patient": json.dumps({"patient_id": "P-9"}), "study": json.dumps({"study_date": "20250101"}),
                 "sections": json.dumps({"findings": "f", "impression": "i", "diagnosis": "d", "recommendations": "r"})},
            )
            conn.execute(sql("INSERT INTO reporting_key_images (report_id, name, position, png) VALUES ('old-1', 'axial', 0, :png)"),
                         {"png": b"\x89PNG"})
        migrate(database_url)
        with engine.begin() as conn:
            assert conn.execute(sql("SELECT count(*) FROM reporting_key_images WHERE report_id = 'old-1'")).scalar() == 1
            row = conn.execute(sql("SELECT patient_id, study_date, ai_drafted FROM reporting_reports WHERE id = 'old-1'")).one()
            assert (row[0], row[1], bool(row[2])) == ("P-9", "20250101", False)
            versions = conn.execute(sql("SELECT version, action FROM reporting_report_versions WHERE report_id = 'old-1'")).all()
            assert [tuple(v) for v in versions] == [(1, "created")]
        command.downgrade(config, "reporting_0001")  # and down again: the key images survive that too
        with engine.begin() as conn:
            assert conn.execute(sql("SELECT count(*) FROM reporting_key_images WHERE report_id = 'old-1'")).scalar() == 1
            conn.execute(sql("DELETE FROM reporting_key_images"))
            conn.execute(sql("DELETE FROM reporting_reports"))
        migrate(database_url)
    finally:
        engine.dispose()
