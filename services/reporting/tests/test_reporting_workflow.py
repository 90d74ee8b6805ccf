"""Editing, versions, diff, sign-off, addenda, screenshots and the prior-study comparison (SQLite and Postgres)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from fastapi.testclient import TestClient

from glioscope_reporting.reports.pdf import AI_MARK, NOTICE

from .conftest import as_user


def _pdf_text(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "report.pdf"
    path.write_bytes(pdf)
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout
    else:
        from pypdf import PdfReader

        text = "\n".join(page.extract_text() for page in PdfReader(path).pages)
    return re.sub(r"\s+", " ", text)


def _create(post_report, payload_factory, key_images=None, **overrides) -> dict:  # type: ignore[no-untyped-def]
    response = post_report(payload_factory(**overrides), key_images)
    assert response.status_code == 201, response.text
    return response.json()


def test_edit_versions_diff_sign_addenda(post_report, payload_factory, key_images, client: TestClient, auth, radiologist, clinician, tmp_path: Path) -> None:
    report = _create(post_report, payload_factory, key_images)
    rid = report["id"]
    url = f"/api/reports/{rid}"

    # Editing needs an editing role in the signed identity (the worker and clinicians may not).
    assert client.put(f"{url}/sections/impression", json={"text": "x"}, headers=auth).status_code == 403
    assert client.put(f"{url}/sections/impression", json={"text": "x"}, headers=clinician).status_code == 403
    jones = as_user("dr.jones", "radiologist")
    assert client.put(f"{url}/sections/summary", json={"text": "x"}, headers=jones).status_code == 422

    edited = client.put(f"{url}/sections/impression", json={"text": "Left frontal high-grade glioma, 45.4 mL."}, headers=jones)
    assert edited.status_code == 200, edited.text
    assert edited.json()["version"] == 2 and edited.json()["author"] == "dr.jones"
    same = client.put(f"{url}/sections/impression", json={"text": "Left frontal high-grade glioma, 45.4 mL."}, headers=jones)
    assert same.json()["version"] == 2  # no change, no version
    edited = client.put(f"{url}/sections/diagnosis", json={"text": "High-grade glioma.\nSecond line."}, headers=radiologist)
    assert edited.json()["version"] == 3

    versions = client.get(f"{url}/versions", headers=auth).json()["versions"]
    assert [(v["version"], v["action"], v["author"]) for v in versions] == [
        (1, "created", None), (2, "edit:impression", "dr.jones"), (3, "edit:diagnosis", "dr.smith")
    ]
    assert versions[0]["sections"]["impression"] == report["sections"]["impression"]
    assert all(v["created_at"] for v in versions)

    diff = client.get(f"{url}/diff", params={"from": 1, "to": 3}, headers=auth)
    assert diff.status_code == 200, diff.text
    by_section = {d["section"]: d for d in diff.json()["sections"]}
    assert by_section["findings"] == {"section": "findings", "changed": False, "diff": ""}
    assert by_section["impression"]["changed"] and by_section["diagnosis"]["changed"]
    assert "--- v1/impression" in by_section["impression"]["diff"] and "+++ v3/impression" in by_section["impression"]["diff"]
    assert "+Left frontal high-grade glioma, 45.4 mL." in by_section["impression"]["diff"]
    assert "-" + report["sections"]["impression"] in by_section["impression"]["diff"]
    assert "+Second line." in by_section["diagnosis"]["diff"]
    assert client.get(f"{url}/diff", params={"from": 1, "to": 9}, headers=auth).status_code == 404
    assert client.get(f"{url}/diff", params={"from": 0, "to": 1}, headers=auth).status_code == 422

    # Addenda only after signing; only radiologists sign.
    assert client.post(f"{url}/addenda", json={"text": "early"}, headers=radiologist).status_code == 409
    forbidden = client.post(f"{url}/sign", json={"name": "Dr Jones"}, headers=clinician)
    assert forbidden.status_code == 403 and forbidden.json()["error"] == "forbidden"
    assert client.post(f"{url}/sign", headers=auth).status_code == 403  # the worker's identity
    # Identity headers claim nothing: only the signed token counts.
    assert client.post(f"{url}/sign", headers={**auth, "X-Glioscope-User": "x", "X-Glioscope-Role": "radiologist"}).status_code == 403
    assert client.post(f"{url}/sign", headers={"X-Glioscope-User": "x", "X-Glioscope-Role": "radiologist"}).status_code == 401

    signed = client.post(f"{url}/sign", json={"name": "Dr Anna Smith"}, headers=radiologist)
    assert signed.status_code == 200, signed.text
    body = signed.json()
    assert body["status"] == "final" and body["version"] == 4
    # The display name precedes the verified user name: nobody signs as someone else.
    assert body["signature"]["signed_by"] == "Dr Anna Smith (dr.smith)" and body["signature"]["role"] == "radiologist"
    assert body["export"] is None  # store_on_sign is off in these tests
    assert client.post(f"{url}/sign", headers=radiologist).status_code == 409

    # Locked: section edits and screenshots are 409, addenda are new versions.
    locked = client.put(f"{url}/sections/findings", json={"text": "changed"}, headers=radiologist)
    assert locked.status_code == 409 and locked.json()["error"] == "conflict"
    assert client.post(f"{url}/screenshots", files=[("screenshots", ("s.png", key_images[0][1][1], "image/png"))], headers=radiologist).status_code == 409
    assert client.post(f"{url}/addenda", json={"text": "late"}, headers=clinician).status_code == 403
    addendum = client.post(f"{url}/addenda", json={"text": "Perfusion imaging recommended."}, headers=radiologist)
    assert addendum.status_code == 201, addendum.text
    assert addendum.json()["version"] == 5
    assert addendum.json()["addenda"][0]["text"] == "Perfusion imaging recommended."
    assert addendum.json()["addenda"][0]["author"] == "dr.smith"
    versions = client.get(f"{url}/versions", headers=auth).json()["versions"]
    assert [v["action"] for v in versions] == ["created", "edit:impression", "edit:diagnosis", "signed", "addendum"]

    text = _pdf_text(client.get(f"{url}/pdf", headers=auth).content, tmp_path)
    for expected in ["Dr Anna Smith", "radiologist", "Signed at", "Addendum", "Perfusion imaging recommended.",
                     "Left frontal high-grade glioma, 45.4 mL.", "final, version 5", NOTICE]:
        assert expected in text, expected
    assert "Not signed" not in text and AI_MARK not in text


def test_unknown_report_and_identity_routes(client: TestClient, radiologist) -> None:
    for method, path, kwargs in [
        ("put", "/api/reports/nope/sections/findings", {"json": {"text": "x"}}),
        ("post", "/api/reports/nope/sign", {}),
        ("post", "/api/reports/nope/addenda", {"json": {"text": "x"}}),
        ("get", "/api/reports/nope/versions", {}),
        ("get", "/api/reports/nope/diff?from=1&to=2", {}),
    ]:
        response = getattr(client, method)(path, headers=radiologist, **kwargs)
        assert response.status_code == 404, (path, response.text)


def test_screenshots(post_report, payload_factory, key_images, client: TestClient, auth, clinician, tmp_path: Path) -> None:
    report = _create(post_report, payload_factory, key_images)
    url = f"/api/reports/{report['id']}/screenshots"
    png = key_images[1][1][1]
    bad = client.post(url, files=[("screenshots", ("s.png", b"GIF89a....", "image/png"))], headers=clinician)
    assert bad.status_code == 400 and "not a PNG" in bad.json()["detail"]
    truncated = client.post(url, files=[("screenshots", ("s.png", png[:60], "image/png"))], headers=clinician)
    assert truncated.status_code == 400
    added = client.post(
        url,
        files=[("screenshots", ("a.png", png, "image/png")), ("screenshots", ("b.png", key_images[2][1][1], "image/png"))],
        data={"captions": ["MPR with overlay, axial", "Sagittal window"]},
        headers=clinician,
    )
    assert added.status_code == 201, added.text
    shots = added.json()["screenshots"]
    assert [(s["position"], s["caption"], s["author"]) for s in shots] == [
        (0, "MPR with overlay, axial", "dr.jones"), (1, "Sagittal window", "dr.jones")
    ]
    text = _pdf_text(client.get(f"/api/reports/{report['id']}/pdf", headers=auth).content, tmp_path)
    assert "Viewer screenshots" in text and "MPR with overlay, axial" in text and "Sagittal window" in text


def test_prior_study_comparison(post_report, payload_factory, key_images, client: TestClient, auth, radiologist, tmp_path: Path, artifacts_dir: Path, database_url: str) -> None:
    prior_m = payload_factory()["measurements"]
    prior_m["bidimensional_product_mm2"] = 1500.0
    prior_m["region_volumes_ml"] = {"WT": 40.0, "TC": 18.0, "ET": 10.0}
    prior = _create(post_report, payload_factory, None, study_instance_uid="1.2.826.0.1.3680043.8.498.1", job_id="job-0",
                    study={"study_date": "20231201", "study_description": "", "accession_number": ""}, measurements=prior_m)
    assert prior["structured"]["comparison"] is None  # nothing earlier

    # another patient's earlier study is never used
    other = payload_factory(study_instance_uid="1.2.826.0.1.3680043.8.498.2", job_id="job-x",
                            study={"study_date": "20230101", "study_description": "", "accession_number": ""})
    other["patient"]["patient_id"] = "OTHER"
    assert post_report(other).status_code == 201

    current = _create(post_report, payload_factory, key_images)
    comparison = current["structured"]["comparison"]
    assert comparison["prior_report_id"] == prior["id"] and comparison["prior_study_date"] == "20231201"
    assert comparison["rano_suggestion"] == "PD"  # 1992.06 vs 1500 = +32.8 %
    assert round(comparison["bidimensional_change_pct"], 1) == 32.8
    assert round(comparison["volume_change_ml"]["WT"], 2) == 5.44
    findings, impression = current["sections"]["findings"], current["sections"]["impression"]
    assert "Compared with the prior study: WT +5.4 mL (+13.6 %)" in findings
    assert "1992.1 mm² versus 1500.0 mm² (+32.8 %)" in findings
    assert "Suggested RANO-style category: PD (progressive disease), a suggestion" in impression
    assert "2023" not in findings + impression  # no dates in the text (it may be sent to an LLM)
    shot = client.post(f"/api/reports/{current['id']}/screenshots", headers=radiologist,
                       files=[("screenshots", ("s.png", key_images[0][1][1], "image/png"))], data={"captions": ["Viewer: axial T1c with overlay"]})
    assert shot.status_code == 201
    assert client.post(f"/api/reports/{current['id']}/sign", json={"name": "Dr Anna Smith"}, headers=radiologist).status_code == 200
    pdf = client.get(f"/api/reports/{current['id']}/pdf", headers=auth).content
    text = _pdf_text(pdf, tmp_path)
    # Every measured number of the table is in the PDF.
    for expected in ["8.1 mL", "25.3 mL", "12.0 mL", "45.4 mL", "20.2 mL", "52.3 mm", "38.1 mm", "1992.1 mm²", "+5.4 mL",
                     "Dr Anna Smith", "Signed at", "Viewer: axial T1c with overlay", NOTICE]:
        assert expected in text, expected
    # Kept as test artefacts (test-artifacts/ is git-ignored): the PDF and its pages as PNG.
    backend = "postgres" if database_url.startswith("postgresql") else "sqlite"
    (artifacts_dir / f"report-followup-{backend}.pdf").write_bytes(pdf)
    if shutil.which("pdftoppm"):
        subprocess.run(["pdftoppm", "-png", "-r", "80", str(artifacts_dir / f"report-followup-{backend}.pdf"),
                        str(artifacts_dir / f"report-followup-{backend}")], check=True)
        assert list(artifacts_dir.glob(f"report-followup-{backend}-*.png"))
    for expected in ["Prior study", "2023-12-01", "+32.8 %", "PD — suggestion only", "Approximate location",
                     "left frontal lobe", "Enhancement pattern", "rim (around necrosis)"]:
        assert expected in text, expected
