"""Deterministic report draft from the measurements (no LLM). Every number comes from `formatting`."""

from __future__ import annotations

from glioscope_common.measurements import Measurements
from glioscope_reporting.reports.formatting import (
    DETECTION_MIN_ML,
    NECROTIC_LABEL,
    OEDEMA_LABEL,
    hemisphere_phrase,
    label_volume,
    ml,
    mm,
    mm2,
    ras,
    region,
)
from glioscope_reporting.reports.analysis import Comparison, Structured, structured_fields
from glioscope_reporting.reports.location import location_phrase
from glioscope_reporting.reports.schemas import ModelInfo, Sections

RANO_NAMES = {"CR": "complete response", "PR": "partial response", "SD": "stable disease", "PD": "progressive disease"}
PATTERN_TEXT = {
    "none": "no enhancement",
    "rim": "rim enhancement around a necrotic core",
    "solid": "solid enhancement",
}

REVIEW = "Radiologist review of the segmentation and of the full study is required before any clinical use."


def tumour_present(m: Measurements) -> bool:
    return region(m, "WT") >= DETECTION_MIN_ML


def enhancement_present(m: Measurements) -> bool:
    return region(m, "ET") >= DETECTION_MIN_ML


def necrosis_present(m: Measurements) -> bool:
    return label_volume(m, NECROTIC_LABEL) >= DETECTION_MIN_ML


def _signed_pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1f} %"


def comparison_text(c: Comparison) -> tuple[str, str]:
    """(findings sentence, impression sentence) on the change since the prior study. No dates (no PHI)."""
    parts = [
        f"{key} {c.volume_change_ml[key]:+.1f} mL ({_signed_pct(c.volume_change_pct[key])})" for key in ("WT", "TC", "ET")
    ]
    findings = (
        "Compared with the prior study: " + ", ".join(parts) + "; bidimensional product "
        f"{mm2(c.bidimensional_product_mm2)} versus {mm2(c.prior_bidimensional_product_mm2)} "
        f"({_signed_pct(c.bidimensional_change_pct)})."
    )
    impression = (
        f"Suggested RANO-style category: {c.rano_suggestion} ({RANO_NAMES[c.rano_suggestion]}), a suggestion from "
        "the bidimensional product only, to be confirmed by the radiologist."
    )
    return findings, impression


def draft_sections(measurements: Measurements, model: ModelInfo, structured: Structured | None = None) -> Sections:
    """The four sections from the measurements; the worker's input warnings (e.g. images that are not
    skull-stripped) are quoted in the findings and lead the recommendations."""
    sections = _sections(measurements, model, structured)
    if not measurements.input_warnings:
        return sections
    caution = " ".join(measurements.input_warnings)
    return sections.model_copy(update={
        "findings": f"{sections.findings} Input quality: {caution}",
        "recommendations": "Verify the automated segmentation against the images: the input is outside the "
        f"model's training domain. {sections.recommendations}",
    })


def _sections(measurements: Measurements, model: ModelInfo, structured: Structured | None = None) -> Sections:
    m = measurements
    structured = structured or structured_fields(m)
    source = f"Automated segmentation ({model.name} {model.version})"
    if not tumour_present(m):
        return Sections(
            findings=(
                f"{source} of the MRI study found no tumour: whole tumour volume {ml(region(m, 'WT'))} "
                f"(below the detection threshold of {ml(DETECTION_MIN_ML)})."
                + (" " + comparison_text(structured.comparison)[0] if structured.comparison else "")
            ),
            impression="No tumour detected by the automated segmentation."
            + (" " + comparison_text(structured.comparison)[1] if structured.comparison else ""),
            diagnosis=(
                "No tumour detected. A lesion below the detection threshold, or one outside the model's "
                "training domain, is not excluded."
            ),
            recommendations=" ".join(
                [
                    "Correlate with the clinical findings and the full MRI study.",
                    "Follow-up MRI only if clinically indicated.",
                    REVIEW,
                ]
            ),
        )

    wt, tc, et = region(m, "WT"), region(m, "TC"), region(m, "ET")
    enhancing = enhancement_present(m)
    necrosis = necrosis_present(m)
    where = hemisphere_phrase(m.hemisphere)
    per_label = "; ".join(f"{v.name} {ml(v.volume_ml)}" for v in sorted(m.label_volumes, key=lambda v: v.label))
    diameters = (
        f"Maximum axial diameter {mm(m.max_axial_diameter_mm)} with a perpendicular diameter of "
        f"{mm(m.perpendicular_diameter_mm)} (bidimensional product {mm2(m.bidimensional_product_mm2)}"
        + (f", axial slice {m.axial_slice_index}" if m.axial_slice_index is not None else "")
        + ")."
    )
    findings = " ".join(
        [
            f"{source} identified a lesion {where}.",
            f"Whole tumour (WT) {ml(wt)}, tumour core (TC) {ml(tc)}, enhancing tumour (ET) {ml(et)}.",
            f"Volumes by label: {per_label}." if per_label else "",
            diameters,
            f"Centroid at RAS {ras(m.centroid_ras_mm)}." if m.centroid_ras_mm is not None else "",
            f"Contrast enhancement: {'present' if enhancing else 'absent'}.",
            f"Necrosis: {'present' if necrosis else 'absent'}.",
            f"Enhancement pattern: {PATTERN_TEXT[structured.enhancement.pattern]}.",
            f"Approximate location: {location_phrase(structured.location)} (coarse atlas lookup of the centroid, "
            "valid only for data registered to an MNI-like space).",
            comparison_text(structured.comparison)[0] if structured.comparison else "",
        ]
    ).replace("  ", " ").strip()

    oedema = label_volume(m, OEDEMA_LABEL)
    oedema_part = f" with peritumoural oedema of {ml(oedema)}" if oedema >= DETECTION_MIN_ML else ""
    if enhancing and necrosis:
        impression = (
            f"Enhancing lesion with a necrotic core {where}, whole tumour {ml(wt)}{oedema_part}; "
            f"enhancing tumour {ml(et)}."
        )
        diagnosis = (
            "Imaging features compatible with a high-grade glioma (contrast enhancement and necrosis). "
            "Differential includes metastasis and lymphoma; histopathological confirmation is required."
        )
    elif enhancing:
        impression = f"Enhancing lesion without necrosis {where}, whole tumour {ml(wt)}{oedema_part}; enhancing tumour {ml(et)}."
        diagnosis = (
            "Enhancing lesion without necrosis: a glioma is possible; the differential includes a high-grade "
            "glioma, metastasis and lymphoma. Histopathological confirmation is required."
        )
    else:
        impression = f"Non-enhancing lesion {where}, whole tumour {ml(wt)}{oedema_part}."
        diagnosis = (
            "Non-enhancing lesion, low-grade glioma in the differential. A high-grade component cannot be "
            "excluded on imaging alone; histopathological confirmation is required."
        )
    if structured.comparison:
        impression += " " + comparison_text(structured.comparison)[1]
    recommendations = " ".join(
        [
            "Correlate with the clinical findings and the full MRI study.",
            "Discuss at the neuro-oncology multidisciplinary team (MDT) meeting.",
            "Follow-up contrast-enhanced MRI, interval as decided by the MDT, with the same protocol for "
            "comparable volumes.",
            REVIEW,
        ]
    )
    return Sections(findings=findings, impression=impression, diagnosis=diagnosis, recommendations=recommendations)
