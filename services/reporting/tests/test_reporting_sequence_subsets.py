"""Reports of studies segmented from a subset of the sequences (glioscope_common.sequence_regions): the
sequences used and the regions not reported are stated, and no claim rests on a region that is not
reported (claims.py R8, R9) — in the draft, the PDF and the SR."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import highdicom as hd
import pydicom
import pytest

from glioscope_common.measurements import WHOLE_TUMOUR_LABEL, Measurements
from glioscope_common.sequence_regions import plan_sequences
from glioscope_common.dev.testing import require_executable
from glioscope_reporting.reports import dicom_export
from glioscope_reporting.reports.analysis import compare, structured_fields
from glioscope_reporting.reports.claims import assess
from glioscope_reporting.reports.draft import draft_sections
from glioscope_reporting.reports.pdf import PdfInput, render_pdf
from glioscope_reporting.reports.schemas import ModelInfo, Patient, Study

MODEL = ModelInfo(name="glioscope_unet", version="1.2.0", intended_use="research use only")
ENHANCEMENT_CLAIMS = re.compile(r"(enhancing lesion|contrast enhancement: (present|absent)|necrosis: (present|absent)|"
                                r"necrotic core|high-grade|low-grade|rim enhancement|solid enhancement|no measurable enhancement)",
                                re.IGNORECASE)


def measurements_for(sequences: list[str], labels: dict[int, tuple[str, float]]) -> Measurements:
    plan = plan_sequences(sequences)
    volumes = {value: volume for value, (_, volume) in labels.items()}
    regions = {"WT": sum(volumes.values()), "TC": volumes.get(1, 0.0) + volumes.get(3, 0.0), "ET": volumes.get(3, 0.0)}
    return Measurements(
        label_volumes=[{"label": value, "name": name, "volume_ml": volume} for value, (name, volume) in labels.items()],
        region_volumes_ml={key: regions[key] for key in plan.regions},
        max_axial_diameter_mm=41.26, perpendicular_diameter_mm=30.04, bidimensional_product_mm2=1239.5,
        hemisphere="undetermined", location_note="the study was not registered to the atlas", tumour_detected=True,
        sequences_used=list(plan.used), sequences_missing=list(plan.missing), regions_reported=list(plan.regions),
        regions_not_reported=dict(plan.not_reported),
    )


def without_t1c() -> Measurements:
    return measurements_for(["T1", "T2", "FLAIR"], {WHOLE_TUMOUR_LABEL: ("Whole tumour (not subdivided: no T1c)", 46.04)})


def t1c_only() -> Measurements:
    return measurements_for(["T1c"], {1: ("Necrotic / non-enhancing tumour core", 6.04), 3: ("Enhancing tumour", 9.96)})


def pdf_text(m: Measurements, tmp_path: Path) -> str:
    require_executable("pdftotext", "Debian poppler-utils")
    data = PdfInput(report_id="r1", status="draft", version=1, study_instance_uid="1.2.3", patient=Patient(),
                    study=Study(), model=MODEL, measurements=m, sections=draft_sections(m, MODEL), key_images=[],
                    structured=structured_fields(m).model_dump(mode="json"))
    path = tmp_path / "report.pdf"
    path.write_bytes(render_pdf(data))
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout


def test_without_t1c_the_report_makes_no_enhancement_necrosis_or_core_claim(tmp_path: Path) -> None:
    m = without_t1c()
    claims = assess(m)
    assert claims.tumour and not claims.enhancement_assessed and claims.pattern == "not_assessed"
    assert not (claims.enhancement or claims.necrosis or claims.non_enhancing_core or claims.high_grade_features)
    s = draft_sections(m, MODEL)
    assert s.findings.startswith("Sequences used: T1, T2, FLAIR; not available: T1c; regions not reported: tumour "
                                 "core (TC) and enhancing tumour (ET), because there is no post-contrast T1 (T1c)")
    assert "Whole tumour (WT) 46.0 mL." in s.findings
    assert "Contrast enhancement: not assessed" in s.findings and "Necrosis: not assessed" in s.findings
    text = " ".join([s.findings, s.impression, s.diagnosis, s.recommendations])
    assert not ENHANCEMENT_CLAIMS.search(text), ENHANCEMENT_CLAIMS.search(text)
    assert "(TC) " not in text.replace("tumour core (TC) and", "") and "ET)" not in text.replace("tumour (ET), because", "")
    assert "Acquire a post-contrast T1" in s.recommendations
    pdf = pdf_text(m, tmp_path)
    assert "Sequences used" in pdf and "T1, T2, FLAIR" in pdf and "Sequences not available" in pdf
    assert "not reported: there is no post-contrast T1" in " ".join(pdf.split())
    assert "not assessed (no post-contrast T1)" in pdf  # the enhancement pattern row
    assert not re.search(r"(TC \(tumour core\)|ET \(enhancing tumour\))\s+[\d.]+ mL", pdf)  # no volume, "not reported"


def test_with_t1c_only_the_report_makes_no_whole_tumour_or_oedema_claim(tmp_path: Path) -> None:
    m = t1c_only()
    claims = assess(m)
    assert claims.tumour and claims.enhancement and claims.necrosis and not claims.whole_tumour_assessed
    s = draft_sections(m, MODEL)
    assert "regions not reported: whole tumour (WT), because there is neither FLAIR nor T2" in s.findings
    assert "Tumour core (TC) 16.0 mL, enhancing tumour (ET) 10.0 mL." in s.findings
    assert "Enhancing lesion with a necrotic core, tumour core 16.0 mL; enhancing tumour 10.0 mL." in s.impression
    text = " ".join([s.findings, s.impression, s.diagnosis, s.recommendations])
    assert "oedema of" not in text and "Whole tumour (WT)" not in text and "whole tumour 16" not in text
    assert "Acquire a FLAIR" in s.recommendations
    pdf = pdf_text(m, tmp_path)
    assert "not reported: there is neither FLAIR nor T2" in " ".join(pdf.split())
    assert "WT (whole tumour)" in pdf and not re.search(r"WT \(whole tumour\)\s+[\d.]+ mL", pdf)


def test_a_complete_study_reads_as_before() -> None:
    m = measurements_for(["T1", "T1c", "T2", "FLAIR"], {1: ("necrotic", 6.04), 2: ("oedema", 30.0), 3: ("enhancing", 9.96)})
    s = draft_sections(m, MODEL)
    assert not s.findings.startswith("Sequences used") and "Whole tumour (WT) 46.0 mL, tumour core (TC) 16.0 mL" in s.findings


def test_a_comparison_covers_only_the_regions_both_studies_report() -> None:
    full = measurements_for(["T1", "T1c", "T2", "FLAIR"], {1: ("n", 6.0), 2: ("o", 30.0), 3: ("e", 10.0)})
    comparison = compare(without_t1c(), full, "prior", "1.2.3", "20250101")
    assert set(comparison.volume_change_ml) == {"WT"} and comparison.rano_suggestion is None
    s = draft_sections(without_t1c(), MODEL, structured_fields(without_t1c(), comparison))
    assert "No RANO-style category is suggested" in s.impression and "TC " not in s.findings.split("prior study:")[1]


@pytest.mark.parametrize("make", [without_t1c, t1c_only], ids=["without-T1c", "T1c-only"])
def test_the_sr_holds_only_the_reported_regions_and_delivered_segments(make, tmp_path: Path) -> None:
    m = make()
    sr = pydicom.dcmread(__import__("io").BytesIO(dicom_export.measurement_report(
        m, report_id="r-1", version=1, study_instance_uid="1.2.826.0.1.3680043.8.498.7", patient=Patient(),
        study=Study(), model=MODEL)))
    report = hd.sr.Comprehensive3DSR.from_dataset(sr)
    names = {group.tracking_identifier for group in report.content.get_image_measurement_groups()}
    regions = {name.split()[0] for name in names if not name.startswith("Label")}
    assert regions == set(m.regions_reported)
    assert {int(name.split()[1]) for name in names if name.startswith("Label")} == {v.label for v in m.label_volumes}
