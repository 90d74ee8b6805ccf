"""Deterministic report draft from the measurements (no LLM). Every number comes from `formatting`, every
claim (tumour, enhancement, necrosis, pattern, grade, reliability, location) from the rules in `claims`."""

from __future__ import annotations

from glioscope_common.measurements import Measurements
from glioscope_reporting.reports.analysis import Comparison, Structured, structured_fields
from glioscope_reporting.reports.claims import ENHANCEMENT_MIN_ML, TUMOUR_MIN_ML, assess
from glioscope_reporting.reports.formatting import (
    OEDEMA_LABEL,
    REGION_NAMES,
    label_volume,
    ml,
    mm,
    mm2,
    region,
    reported,
    reported_regions,
    sequences_sentence,
)
from glioscope_reporting.reports.location import hemisphere_phrase, location_phrase
from glioscope_reporting.reports.schemas import ModelInfo, Sections

RANO_NAMES = {"CR": "complete response", "PR": "partial response", "SD": "stable disease", "PD": "progressive disease"}
PATTERN_TEXT = {
    "none": "no enhancement",
    "rim": "rim enhancement around a necrotic core",
    "solid": "solid enhancement",
    "not_assessed": "not assessed (no post-contrast T1)",
}
NO_T1C_DIAGNOSIS = ("Contrast enhancement and necrosis cannot be assessed without a post-contrast T1 (T1c): no grade "
                    "or differential is suggested from the automated segmentation.")
NO_T1C_RECOMMENDATION = ("Acquire a post-contrast T1-weighted series: enhancement, necrosis and the tumour core are not "
                         "reported without it.")
NO_FLAIR_RECOMMENDATION = ("Acquire a FLAIR (or T2-weighted) series: the whole tumour extent and the oedema are not "
                           "reported without it.")

REVIEW = "Radiologist review of the segmentation and of the full study is required before any clinical use."


def tumour_present(m: Measurements) -> bool:
    return assess(m).tumour


def quality_phrase(m: Measurements) -> str:
    """The model's quality estimate as the findings state it ("" without one)."""
    q = m.quality
    if q is None or q.overall is None:
        return ""
    flag = f", under {q.review_below:.2f}: flagged for careful review" if q.review else ""
    return f"Model confidence (quality estimate, 1 = fully confident): {q.overall:.2f}{flag}."


def slice_phrase(m: Measurements) -> str:
    """Where the diameters were measured, as the radiologist finds the image ("" when not known)."""
    ref = m.measured_on
    if ref is None or ref.instance_number is None:
        return ""
    series = f"series {ref.series_number}" if ref.series_number is not None else "the T1c series"
    if ref.series_description:
        series += f" ({ref.series_description})"
    return f"image {ref.instance_number} of {series}"


def _signed_pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1f} %"


def comparison_text(c: Comparison) -> tuple[str, str]:
    """(findings sentence, impression sentence) on the change since the prior study. No dates (no PHI)."""
    parts = [
        f"{key} {c.volume_change_ml[key]:+.1f} mL ({_signed_pct(c.volume_change_pct[key])})"
        for key in ("WT", "TC", "ET") if key in c.volume_change_ml
    ]
    findings = (
        "Compared with the prior study: " + ", ".join(parts) + "; bidimensional product "
        f"{mm2(c.bidimensional_product_mm2)} versus {mm2(c.prior_bidimensional_product_mm2)} "
        f"({_signed_pct(c.bidimensional_change_pct)})."
    )
    if c.rano_suggestion is None:
        return findings, ("No RANO-style category is suggested: the enhancing tumour is not reported for both studies "
                          "(a post-contrast T1 is missing).")
    impression = (
        f"Suggested RANO-style category: {c.rano_suggestion} ({RANO_NAMES[c.rano_suggestion]}), a suggestion from "
        "the bidimensional product only, to be confirmed by the radiologist."
    )
    return findings, impression


def draft_sections(measurements: Measurements, model: ModelInfo, structured: Structured | None = None) -> Sections:
    """The four sections from the measurements; the worker's input warnings (e.g. images that are not
    skull-stripped) are quoted in the findings and lead the recommendations. A study with missing sequences
    says which were used and which regions are not reported (and why) at the start of the findings."""
    sections = _sections(measurements, model, structured)
    if measurements.sequences_missing:
        advice = [NO_T1C_RECOMMENDATION] if not reported(measurements, "ET") else []
        advice += [NO_FLAIR_RECOMMENDATION] if not reported(measurements, "WT") else []
        sections = sections.model_copy(update={
            "findings": f"{sequences_sentence(measurements)} {sections.findings}",
            "recommendations": " ".join([*advice, sections.recommendations]),
        })
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
    claims = assess(m)
    source = f"Automated segmentation ({model.name} {model.version})"
    comparison = comparison_text(structured.comparison) if structured.comparison else None
    if not claims.tumour:
        detected_on = "whole tumour" if claims.whole_tumour_assessed else "tumour core"
        return Sections(
            findings=(
                f"{source} of the MRI study found no tumour: {detected_on} volume "
                f"{ml(region(m, 'WT' if claims.whole_tumour_assessed else 'TC'))} "
                f"(below the detection threshold of {ml(TUMOUR_MIN_ML)})."
                + (" " + comparison[0] if comparison else "")
            ),
            impression="No tumour detected by the automated segmentation." + (" " + comparison[1] if comparison else ""),
            diagnosis=(
                "No tumour detected. A lesion below the detection threshold, or one outside the model's "
                "training domain, is not excluded."
            ),
            recommendations=" ".join(
                ["Correlate with the clinical findings and the full MRI study.",
                 "Follow-up MRI only if clinically indicated.", REVIEW]
            ),
        )

    location = structured.location
    where = hemisphere_phrase(location)
    lesion = f"a lesion {where}" if where else "a lesion"
    per_label = "; ".join(f"{v.name} {ml(v.volume_ml)}" for v in sorted(m.label_volumes, key=lambda v: v.label))
    measured_at = slice_phrase(m)
    diameters = (
        f"Maximum axial diameter {mm(m.max_axial_diameter_mm)} with a perpendicular diameter of "
        f"{mm(m.perpendicular_diameter_mm)} (bidimensional product {mm2(m.bidimensional_product_mm2)}"
        + (f", measured on {measured_at}" if measured_at else "")
        + ")."
    )
    volumes_text = ", ".join(f"{REGION_NAMES[key]} ({key}) {ml(region(m, key))}" for key in reported_regions(m)) + "."
    volumes_text = volumes_text[0].upper() + volumes_text[1:]
    et = region(m, "ET") if claims.enhancement_assessed else 0.0
    if not claims.enhancement_assessed:
        enhancement_text = "Contrast enhancement: not assessed (no post-contrast T1)."
    elif claims.enhancement:
        enhancement_text = f"Contrast enhancement: present ({ml(et)})."
    elif et > 0:
        enhancement_text = f"Contrast enhancement: no measurable enhancement ({ml(et)}, below {ml(ENHANCEMENT_MIN_ML)})."
    else:
        enhancement_text = "Contrast enhancement: absent."
    if not claims.enhancement_assessed:
        necrosis_text = "Necrosis: not assessed (no post-contrast T1)."
    elif claims.necrosis:
        necrosis_text = "Necrosis: present."
    elif claims.non_enhancing_core:
        necrosis_text = "Necrosis: not claimed (non-enhancing tumour core without an enhancing rim)."
    else:
        necrosis_text = "Necrosis: absent."
    if location.available:
        location_text = (f"Approximate location: {location_phrase(location)} (MNI152 atlas registration; lobe "
                         "boundaries approximate).")
    else:
        location_text = f"Location: not available ({location.note})."
    findings = " ".join(
        [
            f"{source} identified {lesion}.",
            volumes_text,
            f"Volumes by label: {per_label}." if per_label else "",
            diameters,
            enhancement_text,
            necrosis_text,
            f"Enhancement pattern: {PATTERN_TEXT[claims.pattern]}." if claims.enhancement else "",
            location_text,
            quality_phrase(m),
            comparison[0] if comparison else "",
        ]
    ).replace("  ", " ").strip()

    oedema = label_volume(m, OEDEMA_LABEL)
    oedema_part = f" with peritumoural oedema of {ml(oedema)}" if oedema >= TUMOUR_MIN_ML else ""
    place = f" {where}" if where else ""
    # R9: without FLAIR and T2 the lesion is sized by its core; R8: without T1c nothing on enhancement
    size = f"whole tumour {ml(region(m, 'WT'))}{oedema_part}" if claims.whole_tumour_assessed \
        else f"tumour core {ml(region(m, 'TC'))}"
    if not claims.enhancement_assessed:
        impression = f"Lesion{place}, whole tumour {ml(region(m, 'WT'))}; enhancement not assessed (no post-contrast T1)."
    elif claims.enhancement and claims.necrosis:
        impression = f"Enhancing lesion with a necrotic core{place}, {size}; enhancing tumour {ml(et)}."
    elif claims.enhancement:
        impression = f"Enhancing lesion without necrosis{place}, {size}; enhancing tumour {ml(et)}."
    else:
        impression = f"Lesion without measurable enhancement{place}, {size}."
    if not claims.reliable:
        diagnosis = ("Result not reliable: no diagnosis is drafted. " + " ".join(claims.unreliable_reasons)
                     + " The radiologist reads the images without relying on the automated segmentation.")
    elif not claims.enhancement_assessed:
        diagnosis = NO_T1C_DIAGNOSIS
    elif claims.high_grade_features:
        diagnosis = (
            "Imaging features compatible with a high-grade glioma (contrast enhancement and necrosis). "
            "Differential includes metastasis and lymphoma; histopathological confirmation is required."
        )
    elif claims.enhancement:
        diagnosis = (
            "Enhancing lesion without necrosis: a glioma is possible; the differential includes a high-grade "
            "glioma, metastasis and lymphoma. Histopathological confirmation is required."
        )
    else:
        diagnosis = (
            "Lesion without measurable enhancement, low-grade glioma in the differential. A high-grade component "
            "cannot be excluded on imaging alone; histopathological confirmation is required."
        )
    if comparison:
        impression += " " + comparison[1]
    recommendations = " ".join(
        [
            "Correlate with the clinical findings and the full MRI study.",
            "Discuss at the neuro-oncology multidisciplinary team (MDT) meeting.",
            "Follow-up contrast-enhanced MRI, interval as decided by the MDT, with the same protocol for "
            "comparable volumes.",
            REVIEW,
        ]
    )
    if not claims.reliable:
        impression = "Result not reliable (see findings). " + impression
    return Sections(findings=findings, impression=impression, diagnosis=diagnosis, recommendations=recommendations)
