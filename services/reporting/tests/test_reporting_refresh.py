"""A report follows its segmentation (issue 17, item 4): a new SEG version refreshes the measurements,
redrafts the sections nobody edited, keeps a clinician's text and marks it for review where its numbers
changed; sign-off is refused while the report is stale (SQLite and Postgres)."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path

from fastapi.testclient import TestClient

from glioscope_reporting.reports.draft import draft_sections
from glioscope_reporting.reports.refresh import refresh_sections
from glioscope_reporting.reports.schemas import Sections

from .conftest import measurements_high_grade, png_bytes, segmentation_ref


def _version_2(study_instance_uid: str = "1.2.826.0.1.3680043.8.498.12345") -> dict:
    """SEG version 2: the clinician removed most of the enhancing tumour."""
    measurements = copy.deepcopy(measurements_high_grade())
    measurements["label_volumes"][2]["volume_ml"] = 3.51
    measurements["region_volumes_ml"] = {"WT": 8.14 + 25.27 + 3.51, "TC": 8.14 + 3.51, "ET": 3.51}
    ref = segmentation_ref(study_instance_uid)
    ref.update(version=2, series_instance_uid=f"{study_instance_uid}.901", sop_instance_uid=f"{study_instance_uid}.901.1",
               series_number=901, source_series=ref["source_series"][:1])
    return {"segmentation": ref, "measurements": measurements}


def _refresh(client: TestClient, report_id: str, body: dict, auth: dict, files=None):  # type: ignore[no-untyped-def]
    return client.put(f"/api/reports/{report_id}/segmentation", data={"payload": json.dumps(body)}, files=files, headers=auth)


def test_refresh_redrafts_untouched_sections_and_marks_edited_ones(
    post_report, payload_factory, key_images, client: TestClient, auth, radiologist, tmp_path: Path
) -> None:
    created = post_report(payload_factory(), key_images)
    assert created.status_code == 201, created.text
    report = created.json()
    rid, url = report["id"], f"/api/reports/{report['id']}"
    assert report["segmentation"]["version"] == 1 and report["review_sections"] == []
    assert "enhancing tumour (ET) 12.0 mL" in report["sections"]["findings"]

    mine = "Left frontal enhancing mass, ET 12.0 mL, see findings."
    assert client.put(f"{url}/sections/impression", json={"text": mine}, headers=radiologist).status_code == 200

    # only the worker (the service role) refreshes
    assert _refresh(client, rid, _version_2(), radiologist).status_code == 403
    new_axial = ("key_images", ("axial.png", png_bytes((10, 10, 250)), "image/png"))
    refreshed = _refresh(client, rid, _version_2(), auth, files=[new_axial])
    assert refreshed.status_code == 200, refreshed.text
    body = refreshed.json()
    assert body["segmentation"]["version"] == 2 and body["segmentation"]["series_number"] == 901
    assert body["measurements"]["region_volumes_ml"]["ET"] == 3.51
    assert "enhancing tumour (ET) 3.5 mL" in body["sections"]["findings"]  # nobody edited it: redrafted
    assert body["sections"]["impression"] == mine  # the clinician's text is kept ...
    assert body["review_sections"] == ["impression"]  # ... and marked: its draft changed with the numbers
    assert body["version"] == 3
    versions = client.get(f"{url}/versions", headers=auth).json()["versions"]
    assert versions[-1]["action"] == "segmentation:v2"
    assert body["key_images"] == ["axial"]  # the new version's pictures

    # the same version again changes nothing (the worker's retry)
    again = _refresh(client, rid, _version_2(), auth)
    assert again.status_code == 200 and again.json()["version"] == 3

    # sign-off refused while a section is to review, and while a newer SEG version exists than described
    refused = client.post(f"{url}/sign", json={}, headers=radiologist)
    assert refused.status_code == 409 and "impression" in refused.text
    kept = client.put(f"{url}/sections/impression", json={"text": mine}, headers=radiologist).json()  # reviewed, kept as is
    assert kept["review_sections"] == [] and kept["sections"]["impression"] == mine and kept["version"] == 4
    assert client.get(f"{url}/versions", headers=auth).json()["versions"][-1]["action"] == "reviewed:impression"
    stale = client.post(f"{url}/sign", params={"latest_segmentation_version": 3}, json={}, headers=radiologist)
    assert stale.status_code == 409 and "version 3 is newer" in stale.text
    signed = client.post(f"{url}/sign", params={"latest_segmentation_version": 2}, json={}, headers=radiologist)
    assert signed.status_code == 200, signed.text

    # the PDF quotes version 2's numbers
    pdf = client.get(f"{url}/pdf", headers=auth)
    path = tmp_path / "report.pdf"
    path.write_bytes(pdf.content)
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, check=True).stdout
        text = " ".join(text.split())
        assert "enhancing tumour (ET) 3.5 mL" in text and "enhancing tumour (ET) 12.0 mL" not in text
        assert text.count("12.0 mL") == 1  # only in the clinician's own impression, which they reviewed and kept

    # a signed report is not changed by a later version: an addendum describes it
    version_3 = _version_2()
    version_3["segmentation"]["version"] = 3
    assert _refresh(client, rid, version_3, auth).status_code == 409


def test_refresh_rules() -> None:
    """Pure rules: LLM-worded text counts as untouched; a person's text is kept and marked only where the
    draft changed; unchanged drafts change nothing; marks persist until the section is edited."""
    from glioscope_common.measurements import Measurements
    from glioscope_reporting.reports.schemas import ModelInfo

    model = ModelInfo(name="glioscope_unet", version="1.2.0")
    no_enhancement = copy.deepcopy(_version_2()["measurements"])
    no_enhancement["label_volumes"][2]["volume_ml"] = 0.3
    no_enhancement["region_volumes_ml"] = {"WT": 8.14 + 25.27 + 0.3, "TC": 8.14 + 0.3, "ET": 0.3}
    old = draft_sections(Measurements.model_validate(measurements_high_grade()), model)
    new = draft_sections(Measurements.model_validate(no_enhancement), model)
    assert old.diagnosis != new.diagnosis and old.impression != new.impression
    assert old.recommendations == new.recommendations
    current = old.model_dump() | {"diagnosis": "Reworded by the LLM.", "impression": "My own words.",
                                  "recommendations": "My own plan."}
    result = refresh_sections(current, {"diagnosis": True}, old, new, pending_review=[])
    assert result.sections["findings"] == new.findings and result.sections["diagnosis"] == new.diagnosis
    assert result.redrafted == ["findings", "diagnosis"] and result.ai_sections["diagnosis"] is False
    assert result.sections["impression"] == "My own words." and result.review == ["impression"]
    assert result.sections["recommendations"] == "My own plan."  # its draft did not change: not marked
    same = refresh_sections(old.model_dump(), {}, old, old, pending_review=["impression"])
    assert same.sections == old.model_dump() and same.review == ["impression"] and same.redrafted == []
    assert isinstance(Sections.model_validate(result.sections), Sections)


def test_refresh_payload_is_validated(post_report, payload_factory, client: TestClient, auth) -> None:
    rid = post_report(payload_factory()).json()["id"]
    assert _refresh(client, rid, {"segmentation": {"version": 2}}, auth).status_code == 422
    assert client.put(f"/api/reports/{rid}/segmentation", data={"payload": "{"}, headers=auth).status_code == 400
    assert _refresh(client, "no-such-report", _version_2(), auth).status_code == 404
