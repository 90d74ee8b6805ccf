"""The PDF's layout with long identifying fields: no two words overlap and every word stays on the
page (word boxes from poppler's `pdftotext -bbox`), the footer is one line above the bottom margin."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest

from glioscope_common.measurements import Measurements
from glioscope_common.dev.testing import require_service
from reportlab.pdfbase.pdfmetrics import stringWidth

from glioscope_reporting.reports.pdf import FOOTER_FONT, FOOTER_SIZE, PdfInput, footer_text, render_pdf
from glioscope_reporting.reports.schemas import ModelInfo, Patient, Sections, Study

MODEL = ModelInfo(name="glioscope_unet", version="0.3.1", intended_use="research use only")
LONG_NAME = ("Vanderberghe-Oppenheimer-Castellanos^Maximiliana Alexandrina Konstantina Bartholomea "
             "Wilhelmina Evangelina Theodora Anastasia Margarethe Christabel Josephine Persephone")[:200]
LONG_NAME = LONG_NAME + "x" * (200 - len(LONG_NAME))
UNBROKEN_NAME = "A" * 120 + "^" + "B" * 79  # 200 characters, no space to break at
PAGE_TOLERANCE = 0.5  # points
XHTML = "{http://www.w3.org/1999/xhtml}"


@dataclass(frozen=True)
class Word:
    page: int
    text: str
    x0: float
    y0: float
    x1: float
    y1: float


def _measurements() -> Measurements:
    return Measurements(
        label_volumes=[
            {"label": 1, "name": "necrotic core", "volume_ml": 6.04},
            {"label": 2, "name": "peritumoural oedema", "volume_ml": 30.0},
            {"label": 3, "name": "enhancing tumour", "volume_ml": 9.96},
        ],
        region_volumes_ml={"WT": 46.0, "TC": 16.0, "ET": 9.96},
        max_axial_diameter_mm=41.26,
        perpendicular_diameter_mm=30.04,
        bidimensional_product_mm2=41.26 * 30.04,
        axial_slice_index=60,
        centroid_ras_mm=(25.0, -10.04, 15.55),
        hemisphere="right",
        tumour_detected=True,
    )


def _input(patient_name: str, *, signed: bool = True) -> PdfInput:
    return PdfInput(
        report_id="5b0e4c1e-8d2f-4f4e-9a53-6a1f0f3c2d11",
        status="signed" if signed else "draft",
        version=12,
        study_instance_uid="1.2.826.0.1.3680043.8.498." + "1234567890" * 3 + ".12345678901",
        patient=Patient(patient_name=patient_name, patient_id="PID-" + "9" * 60, patient_sex="F",
                        patient_birth_date="19700101"),
        study=Study(study_date="20261203", study_description="MRI BRAIN WITH AND WITHOUT CONTRAST " * 7,
                    accession_number="ACC" + "7" * 61),
        model=MODEL,
        measurements=_measurements(),
        sections=Sections(findings="Findings text.", impression="Impression text.", diagnosis="Diagnosis text.",
                          recommendations="Recommendations text."),
        key_images=[],
        signed_by=("Dr " + "Radiologist-With-A-Very-Long-Name " * 5).strip() if signed else None,
        signed_role="radiologist" if signed else None,
        signed_at=datetime(2026, 12, 3, 10, 0, tzinfo=timezone.utc) if signed else None,
        addenda=[("Dr " + "Longname " * 12, "radiologist", datetime(2026, 12, 4, 9, tzinfo=timezone.utc), "Addendum.")],
    )


def _words(pdf: bytes, tmp_path: Path) -> tuple[list[Word], list[tuple[float, float]]]:
    """Every word's box (points, origin top left) and each page's (width, height)."""
    if shutil.which("pdftotext") is None:
        require_service("pdftotext", "poppler-utils is not installed")  # fails in CI, skips elsewhere
    path = tmp_path / "report.pdf"
    path.write_bytes(pdf)
    html = subprocess.run(["pdftotext", "-bbox", str(path), "-"], capture_output=True, text=True, check=True).stdout
    words: list[Word] = []
    pages: list[tuple[float, float]] = []
    for number, page in enumerate(ET.fromstring(html).iter(f"{XHTML}page")):
        pages.append((float(page.get("width")), float(page.get("height"))))
        for word in page.iter(f"{XHTML}word"):
            words.append(Word(number, word.text or "", *(float(word.get(k)) for k in ("xMin", "yMin", "xMax", "yMax"))))
    return words, pages


def _overlap(a: Word, b: Word, tolerance: float = 0.5) -> bool:
    return (a.page == b.page and min(a.x1, b.x1) - max(a.x0, b.x0) > tolerance
            and min(a.y1, b.y1) - max(a.y0, b.y0) > tolerance)


def _assert_no_overlap_and_on_page(words: list[Word], pages: list[tuple[float, float]]) -> None:
    for word in words:
        width, height = pages[word.page]
        assert -PAGE_TOLERANCE <= word.x0 and word.x1 <= width + PAGE_TOLERANCE, word
        assert -PAGE_TOLERANCE <= word.y0 and word.y1 <= height + PAGE_TOLERANCE, word
    for i, a in enumerate(words):
        for b in words[i + 1 :]:
            assert not _overlap(a, b), (a, b)


def _footer_lines(words: list[Word], pages: list[tuple[float, float]]) -> dict[int, list[Word]]:
    """The words below the bottom margin (14 mm) of each page: the footer."""
    bottom_margin = 14 / 25.4 * 72
    return {number: [w for w in words if w.page == number and w.y0 > height - bottom_margin]
            for number, (_width, height) in enumerate(pages)}


@pytest.mark.parametrize("name", [LONG_NAME, UNBROKEN_NAME], ids=["words", "unbroken"])
@pytest.mark.parametrize("signed", [True, False], ids=["signed", "draft"])
def test_long_fields_do_not_overlap_and_stay_on_the_page(tmp_path: Path, name: str, signed: bool) -> None:
    assert len(name) == 200
    words, pages = _words(render_pdf(_input(name, signed=signed), 256), tmp_path)
    _assert_no_overlap_and_on_page(words, pages)

    margin = 15 / 25.4 * 72
    for page, footer in _footer_lines(words, pages).items():
        assert footer, page
        assert len({round(w.y0) for w in footer}) == 1, footer  # one line
        assert footer[-1].text == str(page + 1) and footer[-2].text == "page"
        for word in footer:
            assert margin - PAGE_TOLERANCE <= word.x0 and word.x1 <= pages[page][0] - margin + PAGE_TOLERANCE, word
        text = " ".join(w.text for w in footer)
        assert "…" in text  # the name was shortened, visibly
        assert "research use only" in text and f"v12 ({'signed' if signed else 'not signed'})" in text


def test_header_keeps_the_whole_name(tmp_path: Path) -> None:
    """The footer shortens the name; the header on page 1 carries all of it (wrapped)."""
    words, _pages = _words(render_pdf(_input(LONG_NAME), 256), tmp_path)
    first_page = "".join(w.text for w in words if w.page == 0)
    surname, given = LONG_NAME.split("^")
    assert f"{surname},{given}".replace(" ", "") in first_page


def test_short_name_is_not_shortened(tmp_path: Path) -> None:
    data = _input("Doe^Jane")
    data = PdfInput(**{**data.__dict__, "patient": Patient(patient_name="Doe^Jane", patient_id="P1")})
    words, pages = _words(render_pdf(data, 256), tmp_path)
    footer = " ".join(w.text for w in _footer_lines(words, pages)[0])
    assert footer.startswith("Doe, Jane · P1 · Report 5b0e4c1e-8d2f-4f4e-9a53-6a1f0f3c2d11 v12 (signed)")
    assert "…" not in footer


@pytest.mark.parametrize("max_width", [80.0, 200.0, 400.0, 480.0])
def test_footer_text_fits_and_keeps_the_report_identity(max_width: float) -> None:
    data = _input(LONG_NAME)
    text = footer_text(data, max_width)
    assert stringWidth(text, FOOTER_FONT, FOOTER_SIZE) <= max_width
    tail = "Report 5b0e4c1e-8d2f-4f4e-9a53-6a1f0f3c2d11 v12 (signed) · AI-assisted, research use only"
    if max_width >= stringWidth(tail, FOOTER_FONT, FOOTER_SIZE) + 60:
        assert text.endswith(tail) and text.startswith("Vanderberghe") and "…" in text


def test_a_long_signer_name_stays_in_its_row(tmp_path: Path) -> None:
    """The sign-off rows grow with the name: its lines lie below the heading and above "Role"."""
    words, _pages = _words(render_pdf(_input(LONG_NAME), 256), tmp_path)
    heading = next(w for w in words if w.text == "Sign-off")
    role = next(w for w in words if w.text == "Role" and w.page == heading.page)
    label = next(w for w in words if w.text == "Signed" and w.page == heading.page and heading.y1 < w.y0 < role.y0)
    signer = [w for w in words if w.page == heading.page and "Radiologist-With-A-Very-Long-Name" in w.text]
    assert len(signer) == 5
    assert all(heading.y1 + 2 < w.y0 and w.y1 + 2 < role.y0 for w in signer), (heading, role, signer)
    assert min(w.y0 for w in signer) < (label.y0 + label.y1) / 2 < max(w.y1 for w in signer)
