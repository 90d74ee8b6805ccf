"""The report PDF (reportlab platypus): header, AI notice, sections, measurements, key images, signature."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from xml.sax.saxutils import escape

from PIL import Image as PILImage
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.platypus import Image, KeepTogether, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from glioscope_common.measurements import Measurements
from glioscope_reporting.reports.formatting import table_rows
from glioscope_reporting.reports.location import Location, location_phrase
from glioscope_reporting.reports.schemas import ModelInfo, Patient, Sections, Study

NOTICE = "AI-assisted, research use only — not for clinical decisions"
AI_MARK = "[AI-drafted]"
PATTERN_NAMES = {"none": "none", "rim": "rim (around necrosis)", "solid": "solid",
                 "not_assessed": "not assessed (no post-contrast T1)"}
FOOTER_FONT = "Helvetica"
FOOTER_SIZE = 7
FOOTER_GAP = 4 * mm  # between the footer's text and the page number
ELLIPSIS = "…"
SECTION_TITLES = (
    ("findings", "Findings"),
    ("impression", "Impression"),
    ("diagnosis", "Diagnosis"),
    ("recommendations", "Recommendations"),
)


@dataclass(frozen=True)
class PdfInput:
    report_id: str
    status: str
    version: int
    study_instance_uid: str
    patient: Patient
    study: Study
    model: ModelInfo
    measurements: Measurements
    sections: Sections
    key_images: list[tuple[str, bytes]]  # (name, png)
    signed_by: str | None = None
    signed_role: str | None = None
    signed_at: datetime | None = None
    ai_sections: dict[str, bool] = field(default_factory=dict)
    structured: dict[str, Any] = field(default_factory=dict)
    addenda: list[tuple[str, str | None, datetime, str]] = field(default_factory=list)  # author, role, at, text
    screenshots: list[tuple[str, bytes]] = field(default_factory=list)  # (caption, png)


def _text(value: str) -> str:
    return escape(value or "—")


def _person_name(dicom_name: str) -> str:
    parts = [p for p in (dicom_name or "").split("^") if p]
    if len(parts) >= 2:
        return f"{parts[0]}, {' '.join(parts[1:])}"
    return parts[0] if parts else ""


def _date(value: str) -> str:
    if len(value) == 8 and value.isdigit():
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    return value


def _fit(text: str, max_width: float, font: str = FOOTER_FONT, size: float = FOOTER_SIZE) -> str:
    """`text` if it fits `max_width` points, else its longest prefix that fits with "…" appended."""
    if stringWidth(text, font, size) <= max_width:
        return text
    fits = 0
    low, high = 1, len(text)
    while low <= high:  # the longest prefix whose shortened form fits
        middle = (low + high) // 2
        if stringWidth(text[:middle].rstrip() + ELLIPSIS, font, size) <= max_width:
            fits, low = middle, middle + 1
        else:
            high = middle - 1
    if fits == 0:
        return ELLIPSIS if stringWidth(ELLIPSIS, font, size) <= max_width else ""
    return text[:fits].rstrip() + ELLIPSIS


def footer_text(data: PdfInput, max_width: float) -> str:
    """One footer line no wider than `max_width` points: the patient's name and ID are shortened
    (with "…") first, so the report's identity and the research-use notice stay whole."""
    separator = " · "
    tail = (f"{separator}Report {data.report_id} v{data.version} ({'signed' if data.signed_by else 'not signed'})"
            f"{separator}AI-assisted, research use only")
    budget = max_width - stringWidth(tail + separator, FOOTER_FONT, FOOTER_SIZE)
    patient_id = _fit(data.patient.patient_id or "—", budget / 3)
    name_width = budget - stringWidth(patient_id, FOOTER_FONT, FOOTER_SIZE)
    name = _fit(_person_name(data.patient.patient_name) or "—", name_width)
    return _fit(f"{name}{separator}{patient_id}{tail}", max_width)


def _thumbnail(png: bytes, max_px: int, width: float) -> Image:
    with PILImage.open(io.BytesIO(png)) as img:
        img = img.convert("RGB") if img.mode not in ("RGB", "L") else img.copy()
        img.thumbnail((max_px, max_px))
        buffer = io.BytesIO()
        img.save(buffer, format="PNG", optimize=True)
        w, h = img.size
    buffer.seek(0)
    return Image(buffer, width=width, height=width * h / w)


def render_pdf(data: PdfInput, image_max_px: int = 512) -> bytes:
    styles = getSampleStyleSheet()
    body = ParagraphStyle("body", parent=styles["BodyText"], fontSize=9.5, leading=12.5)
    small = ParagraphStyle("small", parent=body, fontSize=8, leading=10)
    h2 = ParagraphStyle("h2", parent=styles["Heading2"], fontSize=11.5, spaceBefore=6, spaceAfter=3)
    caption = ParagraphStyle("caption", parent=small, alignment=1)
    caption_style = caption
    notice_style = ParagraphStyle("notice", parent=body, fontName="Helvetica-Bold", textColor=colors.HexColor("#9b1c1c"), alignment=1)

    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=15 * mm,
        rightMargin=15 * mm,
        topMargin=14 * mm,
        bottomMargin=14 * mm,
        title="Glioscope report",
        author="Glioscope",
        subject=f"Report {data.report_id}",
    )
    width = doc.width
    story: list[object] = [Paragraph("Glioscope — MRI brain tumour segmentation report", styles["Title"])]

    p, s = data.patient, data.study
    header = [
        [Paragraph("<b>Patient</b>", small), Paragraph(_text(_person_name(p.patient_name)), small),
         Paragraph("<b>Study date</b>", small), Paragraph(_text(_date(s.study_date)), small)],
        [Paragraph("<b>Patient ID</b>", small), Paragraph(_text(p.patient_id), small),
         Paragraph("<b>Study</b>", small), Paragraph(_text(s.study_description), small)],
        [Paragraph("<b>Sex / birth date</b>", small), Paragraph(_text(f"{p.patient_sex or '—'} / {_date(p.patient_birth_date) or '—'}"), small),
         Paragraph("<b>Accession</b>", small), Paragraph(_text(s.accession_number), small)],
        [Paragraph("<b>Report</b>", small), Paragraph(_text(f"{data.status}, version {data.version}"), small),
         Paragraph("<b>Study UID</b>", small), Paragraph(_text(data.study_instance_uid), small)],
    ]
    header_table = Table(header, colWidths=[0.16 * width, 0.34 * width, 0.14 * width, 0.36 * width])
    header_table.setStyle(
        TableStyle(
            [
                ("BOX", (0, 0), (-1, -1), 0.5, colors.grey),
                ("BACKGROUND", (0, 0), (-1, -1), colors.HexColor("#f4f6f8")),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("TOPPADDING", (0, 0), (-1, -1), 2),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
            ]
        )
    )
    story += [header_table, Spacer(1, 4 * mm)]

    notice = Table([[Paragraph(escape(NOTICE), notice_style)]], colWidths=[width])
    notice.setStyle(
        TableStyle(
            [
                ("BOX", (0, 0), (-1, -1), 1.5, colors.HexColor("#9b1c1c")),
                ("BACKGROUND", (0, 0), (-1, -1), colors.HexColor("#fdecea")),
                ("TOPPADDING", (0, 0), (-1, -1), 5),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 5),
            ]
        )
    )
    story += [notice, Spacer(1, 2 * mm)]

    ai_style = ParagraphStyle("ai", parent=small, textColor=colors.HexColor("#6b4e00"))
    for key, title in SECTION_TITLES:
        heading = escape(title)
        if data.ai_sections.get(key):
            heading += f' <font size="8" color="#6b4e00">{escape(AI_MARK)}</font>'
        story += [Paragraph(heading, h2), Paragraph(_text(getattr(data.sections, key)), body)]
    if any(data.ai_sections.values()):
        story += [Paragraph(escape(f"{AI_MARK}: worded by a language model from the measurements and the deterministic "
                                   "draft; every number was checked against the measurements."), ai_style)]

    rows = [[Paragraph("<b>Measurement</b>", small), Paragraph("<b>Value</b>", small)]]
    rows += [[Paragraph(escape(label), small), Paragraph(escape(value), small)] for label, value in table_rows(data.measurements)]
    measurement_table = Table(rows, colWidths=[0.55 * width, 0.45 * width], repeatRows=1)
    measurement_table.setStyle(
        TableStyle(
            [
                ("GRID", (0, 0), (-1, -1), 0.4, colors.lightgrey),
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e3e8ee")),
                ("TOPPADDING", (0, 0), (-1, -1), 1.5),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
            ]
        )
    )
    story += [KeepTogether([Paragraph("Measurements", h2), measurement_table])]

    structured_rows = _structured_rows(data.structured)
    if structured_rows:
        rows2 = [[Paragraph(escape(label), small), Paragraph(escape(value), small)] for label, value in structured_rows]
        table2 = Table(rows2, colWidths=[0.3 * width, 0.7 * width])
        table2.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.4, colors.lightgrey), ("TOPPADDING", (0, 0), (-1, -1), 1.5),
                                    ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5), ("VALIGN", (0, 0), (-1, -1), "TOP")]))
        story += [KeepTogether([Paragraph("Location, enhancement and change", h2), table2])]

    if data.key_images:
        cell = width / 3 - 4 * mm
        images = [_thumbnail(png, image_max_px, cell) for _, png in data.key_images]
        captions = [Paragraph(escape(name.capitalize()), caption) for name, _ in data.key_images]
        grid = Table([images, captions], colWidths=[width / 3] * len(images))
        grid.setStyle(TableStyle([("ALIGN", (0, 0), (-1, -1), "CENTER"), ("VALIGN", (0, 0), (-1, -1), "MIDDLE")]))
        story += [KeepTogether([Paragraph("Key images (segmentation overlay)", h2), grid])]

    if data.screenshots:
        cell = width / 2 - 4 * mm
        shots = [(_thumbnail(png, image_max_px, cell), Paragraph(escape(caption or f"Screenshot {i + 1}"), caption_style))
                 for i, (caption, png) in enumerate(data.screenshots)]
        rows3 = []
        for i in range(0, len(shots), 2):
            pair = shots[i : i + 2]
            rows3.append([p[0] for p in pair] + [""] * (2 - len(pair)))
            rows3.append([p[1] for p in pair] + [""] * (2 - len(pair)))
        grid2 = Table(rows3, colWidths=[width / 2] * 2)
        grid2.setStyle(TableStyle([("ALIGN", (0, 0), (-1, -1), "CENTER"), ("VALIGN", (0, 0), (-1, -1), "MIDDLE")]))
        story += [Paragraph("Viewer screenshots", h2), grid2]

    m = data.model
    story += [
        Paragraph("Model", h2),
        Paragraph(_text(f"{m.name} {m.version} — intended use: {m.intended_use}"), body),
        Spacer(1, 4 * mm),
    ]
    signed_at = f"{data.signed_at:%Y-%m-%d %H:%M} UTC" if data.signed_at else "—"
    signature = Table(
        [
            [Paragraph("<b>Signed by</b>", small), Paragraph(_text(data.signed_by or "Not signed"), small)],
            [Paragraph("<b>Role</b>", small), Paragraph(_text(data.signed_role or "—"), small)],
            [Paragraph("<b>Signed at</b>", small), Paragraph(_text(signed_at), small)],
        ],
        colWidths=[0.25 * width, 0.75 * width],
    )
    signature.setStyle(  # no fixed row height: a row grows with a long name instead of spilling over
        TableStyle(
            [
                ("BOX", (0, 0), (-1, -1), 0.6, colors.grey),
                ("INNERGRID", (0, 0), (-1, -1), 0.3, colors.lightgrey),
                ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
                ("TOPPADDING", (0, 0), (-1, -1), 5),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 5),
            ]
        )
    )
    story += [KeepTogether([Paragraph("Sign-off", h2), signature])]
    for author, role, at, addendum in data.addenda:
        story += [
            Paragraph(escape(f"Addendum — {author}{f' ({role})' if role else ''}, {at:%Y-%m-%d %H:%M} UTC"), h2),
            Paragraph(_text(addendum), body),
        ]
    story += [Spacer(1, 3 * mm), Paragraph(escape(NOTICE) + f" · Report {escape(data.report_id)}", small)]

    def footer(canvas, document) -> None:  # type: ignore[no-untyped-def]
        page_label = f"page {document.page}"
        text_width = document.width - stringWidth(page_label, FOOTER_FONT, FOOTER_SIZE) - FOOTER_GAP
        canvas.saveState()
        canvas.setFont(FOOTER_FONT, FOOTER_SIZE)
        canvas.setFillColor(colors.grey)
        canvas.drawString(document.leftMargin, 8 * mm, footer_text(data, text_width))
        canvas.drawRightString(document.leftMargin + document.width, 8 * mm, page_label)
        canvas.restoreState()

    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return buffer.getvalue()


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):+.1f} %"


def _structured_rows(structured: dict[str, Any]) -> list[tuple[str, str]]:
    """Rows for the location / enhancement / comparison table (formatted as in the draft text)."""
    rows: list[tuple[str, str]] = []
    location = structured.get("location") or {}
    if "available" in location:  # the atlas location (reports drafted before it have only a centroid lookup)
        located = Location.model_validate(location)
        if located.available:
            rows.append(("Approximate location", location_phrase(located)))
            rows.append(("Location method", located.method))
        elif located.hemisphere != "none":
            rows.append(("Location", f"not available ({located.note})"))
    elif location:
        rows.append(("Approximate location", f"{location.get('hemisphere', '')} {location.get('lobe', '')}".strip()))
        rows.append(("Location method", str(location.get("method", ""))))
    enhancement = structured.get("enhancement") or {}
    if enhancement:
        ratio = enhancement.get("ratio")
        rows.append(("Enhancement pattern", PATTERN_NAMES.get(enhancement.get("pattern", ""), str(enhancement.get("pattern")))
                     + (f" (enhancing/necrotic ratio {ratio:.1f})" if ratio is not None else "")))
    comparison = structured.get("comparison")
    if comparison:
        rows.append(("Prior study", _date(str(comparison.get("prior_study_date", "")))))
        for key in ("WT", "TC", "ET"):
            if key in comparison["volume_change_ml"]:  # regions reported in both studies only
                rows.append((f"{key} change", f"{comparison['volume_change_ml'][key]:+.1f} mL "
                             f"({_pct(comparison['volume_change_pct'][key])})"))
        rows.append(("Bidimensional product change",
                     f"{comparison['prior_bidimensional_product_mm2']:.1f} mm² to {comparison['bidimensional_product_mm2']:.1f} mm² "
                     f"({_pct(comparison['bidimensional_change_pct'])})"))
        if comparison.get("rano_suggestion"):
            rows.append(("Suggested response (RANO-style)",
                          f"{comparison['rano_suggestion']} — suggestion only, not a RANO assessment"))
    return rows
