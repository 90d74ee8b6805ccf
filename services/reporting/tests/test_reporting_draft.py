from __future__ import annotations

import time

from glioscope_common.measurements import Measurements
from glioscope_reporting.reports.draft import draft_sections
from glioscope_reporting.reports.pdf import PdfInput, render_pdf
from glioscope_reporting.reports.schemas import ModelInfo, Patient, Study

MODEL = ModelInfo(name="glioscope_unet", version="1.2.0", intended_use="research use only")


def _location(hemisphere: str, *lobes: str) -> dict:  # type: ignore[type-arg]
    share = round(1 / max(1, len(lobes)), 3)
    return {"hemisphere": hemisphere, "lobes": [{"name": lobe, "fraction": share} for lobe in lobes],
            "right_fraction": 1.0 if hemisphere == "right" else 0.0, "left_fraction": 1.0 if hemisphere == "left" else 0.0,
            "centroid_mni_mm": (30.0, 20.0, 20.0), "method": "test"}


def _m(necrotic: float, oedema: float, enhancing: float, **extra) -> Measurements:  # type: ignore[no-untyped-def]
    hemisphere = extra.get("hemisphere", "right")
    location = extra.get("location", _location(hemisphere, "frontal lobe") if hemisphere in ("left", "right", "bilateral", "midline") else None)
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
        measured_on=extra.get("measured_on"),
        centroid_ras_mm=(25.0, -10.04, 15.55),
        hemisphere=hemisphere,
        location=location,
        location_note=extra.get("location_note", ""),
        tumour_detected=necrotic + oedema + enhancing > 0,
        input_warnings=extra.get("input_warnings", []),
    )


def test_high_grade() -> None:
    s = draft_sections(_m(6.04, 30.0, 9.96), MODEL)
    assert "Imaging features compatible with a high-grade glioma" in s.diagnosis
    assert "Contrast enhancement: present (10.0 mL)." in s.findings and "Necrosis: present." in s.findings
    assert "rim enhancement around a necrotic core" in s.findings
    assert "Whole tumour (WT) 46.0 mL, tumour core (TC) 16.0 mL, enhancing tumour (ET) 10.0 mL." in s.findings
    assert "right cerebral hemisphere" in s.findings and "Approximate location: right frontal lobe" in s.findings
    assert "41.3 mm" in s.findings and "30.0 mm" in s.findings and "1239.5 mm²" in s.findings
    assert "RAS" not in s.findings  # no scanner coordinates
    assert "glioscope_unet 1.2.0" in s.findings
    assert "MDT" in s.recommendations and "Follow-up" in s.recommendations and "Correlate" in s.recommendations


def test_r1_detection_threshold() -> None:
    """R1: under 0.5 mL of whole tumour there is no tumour to describe."""
    s = draft_sections(_m(0.0, 0.45, 0.0, d1=5.0, d2=4.0, hemisphere="none"), MODEL)
    assert s.impression == "No tumour detected by the automated segmentation."
    assert s.diagnosis.startswith("No tumour detected") and "0.5 mL" in s.findings
    assert "MDT" not in s.recommendations
    assert draft_sections(_m(0.0, 0.55, 0.0), MODEL).impression.startswith("Lesion without measurable enhancement")


def test_r2_enhancing_specks_are_not_enhancement() -> None:
    """R2: 0.4 mL of enhancing tumour is "no measurable enhancement", and no grade follows from it."""
    s = draft_sections(_m(8.5, 20.0, 0.4), MODEL)
    assert "Contrast enhancement: no measurable enhancement (0.4 mL, below 0.5 mL)." in s.findings
    assert "Enhancement pattern" not in s.findings and "high-grade glioma (" not in s.diagnosis
    assert "rim enhancement" not in s.findings


def test_r3_core_without_enhancing_rim_is_not_necrosis() -> None:
    """R3: label 1 without enhancement, or with enhancement under 10 % of the core, is not called necrosis."""
    s = draft_sections(_m(8.9, 20.0, 0.0), MODEL)
    assert "Necrosis: not claimed (non-enhancing tumour core without an enhancing rim)." in s.findings
    s = draft_sections(_m(8.9, 20.0, 0.8), MODEL)  # enhancement 8 % of the core
    assert "Necrosis: not claimed" in s.findings and "Contrast enhancement: present" in s.findings
    assert "compatible with a high-grade glioma" not in s.diagnosis
    s = draft_sections(_m(0.0, 20.0, 0.0), MODEL)
    assert "Necrosis: absent." in s.findings and "Contrast enhancement: absent." in s.findings


def test_r4_rim_needs_necrosis_and_enough_enhancement() -> None:
    assert "rim enhancement around a necrotic core" in draft_sections(_m(2.0, 10.0, 6.0), MODEL).findings  # ratio 3
    assert "solid enhancement" in draft_sections(_m(1.0, 10.0, 6.0), MODEL).findings  # ratio 6
    assert "solid enhancement" in draft_sections(_m(0.0, 10.0, 3.0), MODEL).findings  # no necrosis
    assert "solid enhancement" in draft_sections(_m(5.0, 10.0, 0.9), MODEL).findings  # rim under 1 mL


def test_r5_high_grade_needs_enhancement_and_necrosis() -> None:
    s = draft_sections(_m(0.0, 10.0, 3.0, hemisphere="bilateral"), MODEL)
    assert "Necrosis: absent." in s.findings and "Contrast enhancement: present" in s.findings
    assert "differential" in s.diagnosis and "compatible with a high-grade glioma" not in s.diagnosis
    assert "both cerebral hemispheres" in s.findings
    s = draft_sections(_m(0.0, 22.5, 0.0, hemisphere="left"), MODEL)
    assert "without measurable enhancement, low-grade glioma in the differential" in s.diagnosis.lower()
    assert s.impression.startswith("Lesion without measurable enhancement in the left cerebral hemisphere, whole tumour 22.5 mL")


def test_r6_result_not_reliable_outside_the_training_domain() -> None:
    """R6: images that are not skull-stripped (and were not brain-extracted): no diagnosis is drafted."""
    warning = "The images do not look skull-stripped (6.0 L of image foreground; a skull-stripped brain is under 3 L)."
    s = draft_sections(_m(6.04, 30.0, 9.96, input_warnings=[warning]), MODEL)
    assert s.diagnosis.startswith("Result not reliable: no diagnosis is drafted.") and warning in s.diagnosis
    assert "high-grade" not in s.diagnosis and s.impression.startswith("Result not reliable")
    note = "Skull and neck removed automatically (deepbet brain extraction: the images were not skull-stripped); review the brain boundary."
    s = draft_sections(_m(6.04, 30.0, 9.96, input_warnings=[note]), MODEL)
    assert "compatible with a high-grade glioma" in s.diagnosis and note in s.findings


def test_r6_a_low_quality_estimate_makes_the_result_unreliable() -> None:
    quality = {"wt": 0.92, "tc": 0.75, "et": 0.62, "overall": 0.62, "review": True, "review_below": 0.85}
    s = draft_sections(Measurements.model_validate({**_m(6.04, 30.0, 9.96).model_dump(), "quality": quality}), MODEL)
    assert s.diagnosis.startswith("Result not reliable") and "quality estimate 0.62, below 0.85" in s.diagnosis
    assert "Model confidence (quality estimate, 1 = fully confident): 0.62, under 0.85" in s.findings
    confident = {"wt": 0.97, "tc": 0.95, "et": 0.93, "overall": 0.93, "review": False, "review_below": 0.85}
    s = draft_sections(Measurements.model_validate({**_m(6.04, 30.0, 9.96).model_dump(), "quality": confident}), MODEL)
    assert "compatible with a high-grade glioma" in s.diagnosis and "fully confident): 0.93." in s.findings


def test_r7_location_only_from_the_atlas() -> None:
    s = draft_sections(_m(2.0, 10.0, 6.0, hemisphere="undetermined",
                          location_note="the registration to the atlas was rejected: too little overlap"), MODEL)
    assert "Location: not available (the registration to the atlas was rejected: too little overlap)." in s.findings
    assert "hemisphere" not in s.findings and "lobe" not in s.findings and "hemisphere" not in s.impression
    s = draft_sections(_m(2.0, 10.0, 6.0, hemisphere="left", location=_location("left", "temporal lobe", "parietal lobe")), MODEL)
    assert "Approximate location: left temporal lobe and parietal lobe" in s.findings
    s = draft_sections(_m(2.0, 10.0, 6.0, hemisphere="midline", location=_location("midline", "posterior fossa (cerebellum/brainstem)")), MODEL)
    assert "posterior fossa (cerebellum/brainstem), midline" in s.findings and "at the midline" in s.findings


def test_measured_slice_named_by_series_and_instance_number() -> None:
    ref = {"series_instance_uid": "1.2.3.4", "series_number": 7, "series_description": "T1 post Gd", "instance_number": 45}
    s = draft_sections(_m(6.04, 30.0, 9.96, measured_on=ref), MODEL)
    assert "measured on image 45 of series 7 (T1 post Gd)" in s.findings
    assert "slice 60" not in s.findings and "60" not in s.findings


def test_numbers_are_never_invented() -> None:
    import re

    m = _m(6.04, 30.0, 9.96)
    s = draft_sections(m, MODEL)
    allowed = {f"{v:.1f}" for v in [6.04, 30.0, 9.96, 46.0, 16.0, 41.26, 30.04, 41.26 * 30.04]}
    allowed |= {"1.2.0"}
    text = " ".join([s.findings, s.impression, s.diagnosis, s.recommendations]).replace("glioscope_unet 1.2.0", "").replace("MNI152", "")
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
    for measurements in (_m(6.04, 30.0, 9.96), _m(0.0, 0.02, 0.0, d1=0.0, d2=0.0, hemisphere="none")):  # noqa: B007
        s = draft_sections(measurements.model_copy(update={"input_warnings": [warning]}), MODEL)
        assert s.findings.endswith(f"Input quality: {warning}")
        assert s.recommendations.startswith("Verify the automated segmentation against the images")
        plain = draft_sections(measurements, MODEL)
        assert "Input quality" not in plain.findings
