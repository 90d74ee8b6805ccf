from __future__ import annotations

import time

from glioscope_common.measurements import Measurements
from glioscope_reporting.reports.draft import draft_sections
from glioscope_reporting.reports.pdf import PdfInput, render_pdf
from glioscope_reporting.reports.schemas import ModelInfo, Patient, Study

MODEL = ModelInfo(name="glioscope_unet", version="1.2.0", intended_use="research use only")


def _m(necrotic: float, oedema: float, enhancing: float, **extra) -> Measurements:  # type: ignore[no-untyped-def]
    return Measurements(
        label_volumes=[
            {"label": 1, "name": "necrotic core", "volume_ml": necrotic},
            {"label": 2, "name": "peritumoural oedema", "volume_ml": oedema},
            {"label": 3, "name": "enhancing tumour", "volume_ml": enhancing},
        ],
        region_volumes_ml={"WT": necrotic + oedema + enhancing, "TC": necrotic + enhancing, "ET": enhancing},
        max_axial_diameter_mm=extra.get("d1", 41.26),
        perpendicular_diameter_mm=extra.get("d2", 30.04),
        bidimensional_product_mm2=extra.get("d1", 41.26) * extra.get("d2", 30.04),
        axial_slice_index=60,
        centroid_ras_mm=(25.0, -10.04, 15.55),
        hemisphere=extra.get("hemisphere", "right"),
        tumour_detected=necrotic + oedema + enhancing > 0,
    )


def test_high_grade() -> None:
    s = draft_sections(_m(6.04, 30.0, 9.96), MODEL)
    assert "Imaging features compatible with a high-grade glioma" in s.diagnosis
    assert "Contrast enhancement: present." in s.findings and "Necrosis: present." in s.findings
    assert "Whole tumour (WT) 46.0 mL, tumour core (TC) 16.0 mL, enhancing tumour (ET) 10.0 mL." in s.findings
    assert "right cerebral hemisphere" in s.findings
    assert "41.3 mm" in s.findings and "30.0 mm" in s.findings and "1239.5 mm²" in s.findings
    assert "(25.0, -10.0, 15.6) mm" in s.findings
    assert "glioscope_unet 1.2.0" in s.findings
    assert "MDT" in s.recommendations and "Follow-up" in s.recommendations and "Correlate" in s.recommendations


def test_no_enhancement() -> None:
    s = draft_sections(_m(0.0, 22.5, 0.0, hemisphere="left"), MODEL)
    assert "non-enhancing lesion, low-grade glioma in the differential" in s.diagnosis.lower()
    assert "Contrast enhancement: absent." in s.findings and "Necrosis: absent." in s.findings
    assert s.impression.startswith("Non-enhancing lesion in the left cerebral hemisphere, whole tumour 22.5 mL")
    assert "high-grade glioma (" not in s.diagnosis


def test_enhancing_without_necrosis() -> None:
    s = draft_sections(_m(0.0, 10.0, 3.0, hemisphere="bilateral"), MODEL)
    assert "Necrosis: absent." in s.findings and "Contrast enhancement: present." in s.findings
    assert "differential" in s.diagnosis and "both cerebral hemispheres" in s.findings


def test_no_tumour() -> None:
    s = draft_sections(_m(0.0, 0.02, 0.0, d1=0.0, d2=0.0, hemisphere="none"), MODEL)
    assert s.impression == "No tumour detected by the automated segmentation."
    assert s.diagnosis.startswith("No tumour detected")
    assert "0.0 mL" in s.findings
    assert "MDT" not in s.recommendations


def test_numbers_are_never_invented() -> None:
    import re

    m = _m(6.04, 30.0, 9.96)
    s = draft_sections(m, MODEL)
    allowed = {f"{v:.1f}" for v in [6.04, 30.0, 9.96, 46.0, 16.0, 41.26, 30.04, 41.26 * 30.04, 25.0, -10.04, 15.55, 0.1]}
    allowed |= {"60", "1.2.0"}
    text = " ".join([s.findings, s.impression, s.diagnosis, s.recommendations]).replace("glioscope_unet 1.2.0", "")
    for number in re.findall(r"-?\d+(?:\.\d+)?", text):
        assert number in allowed, number


def test_pdf_is_fast_and_small_without_images() -> None:
    m = _m(6.04, 30.0, 9.96)
    data = PdfInput(
        report_id="r1", status="draft", version=1, study_instance_uid="1.2.3",
        patient=Patient(patient_name="<script>&", patient_id="X"), study=Study(), model=MODEL,
        measurements=m, sections=draft_sections(m, MODEL), key_images=[],
    )
    started = time.perf_counter()
    pdf = render_pdf(data)
    assert time.perf_counter() - started < 1.0
    assert pdf.startswith(b"%PDF") and len(pdf) < 50_000


def test_input_warnings_are_quoted_and_lead_the_recommendations() -> None:
    warning = "The images do not look skull-stripped (6.0 L of non-zero voxels; a brain is under 3 L)."
    for measurements in (_m(6.04, 30.0, 9.96), _m(0.0, 0.02, 0.0, d1=0.0, d2=0.0, hemisphere="none")):
        s = draft_sections(measurements.model_copy(update={"input_warnings": [warning]}), MODEL)
        assert s.findings.endswith(f"Input quality: {warning}")
        assert s.recommendations.startswith("Verify the automated segmentation against the images")
        plain = draft_sections(measurements, MODEL)
        assert "Input quality" not in plain.findings and s.diagnosis == plain.diagnosis
