"""Number formatting shared by the draft text and the PDF table, so both quote exactly the same figures."""

from __future__ import annotations

from glioscope_common.measurements import REGIONS, Measurements
from glioscope_common.sequence_regions import REGION_NAMES, summary_sentence
# Below this volume a label counts as absent in ratios (claims.py holds the thresholds for what is claimed).
DETECTION_MIN_ML = 0.1
NECROTIC_LABEL = 1
OEDEMA_LABEL = 2
ENHANCING_LABEL = 3


def ml(value: float) -> str:
    return f"{value:.1f} mL"


def mm(value: float) -> str:
    return f"{value:.1f} mm"


def mm2(value: float) -> str:
    return f"{value:.1f} mm²"


def reported(m: Measurements, key: str) -> bool:
    """Whether the study's sequences support region `key` (glioscope_common.sequence_regions)."""
    return key in m.regions_reported


def reported_regions(m: Measurements) -> list[str]:
    return [key for key in ("WT", "TC", "ET") if reported(m, key)]


def sequences_sentence(m: Measurements) -> str:
    """"Sequences used: …; not available: …; regions not reported: … because …" for these measurements."""
    return summary_sentence(m.sequences_used, m.sequences_missing, m.regions_not_reported)


def region(m: Measurements, key: str) -> float:
    """The volume of a reported region; asking for one that is not reported is a bug (ValueError): such a
    region has no value to quote."""
    if not reported(m, key):
        raise ValueError(f"region {key} is not reported for this study ({m.regions_not_reported.get(key, '')})")
    value = m.region_volumes_ml.get(key)
    if value is not None:
        return float(value)
    return float(sum(v.volume_ml for v in m.label_volumes if v.label in REGIONS[key]))


def label_volume(m: Measurements, label: int) -> float:
    return float(sum(v.volume_ml for v in m.label_volumes if v.label == label))


def table_rows(m: Measurements) -> list[tuple[str, str]]:
    """The measurement table of the PDF (label, value) — every figure formatted from the measurements."""
    rows: list[tuple[str, str]] = []
    for v in sorted(m.label_volumes, key=lambda v: v.label):
        rows.append((f"Label {v.label} – {v.name}", ml(v.volume_ml)))
    for key in reported_regions(m):
        rows.append((f"{key} ({REGION_NAMES[key]})", ml(region(m, key))))
    rows.append(("Sequences used", ", ".join(m.sequences_used)))
    if m.sequences_missing:
        rows.append(("Sequences not available", ", ".join(m.sequences_missing)))
    for key, why in m.regions_not_reported.items():
        rows.append((f"{key} ({REGION_NAMES[key]})", f"not reported: {why}"))
    rows.append(("Maximum axial diameter", mm(m.max_axial_diameter_mm)))
    rows.append(("Perpendicular diameter", mm(m.perpendicular_diameter_mm)))
    rows.append(("Bidimensional product", mm2(m.bidimensional_product_mm2)))
    ref = m.measured_on
    if ref is not None and ref.instance_number is not None:
        series = f"series {ref.series_number}" if ref.series_number is not None else "T1c series"
        rows.append(("Diameters measured on", f"image {ref.instance_number}, {series}"
                     + (f" ({ref.series_description})" if ref.series_description else "")))
    if m.quality is not None and m.quality.overall is not None:
        rows.append(("Model confidence (1 = fully confident)", f"{m.quality.overall:.2f}"
                     + (f" — under {m.quality.review_below:.2f}: review carefully" if m.quality.review else "")))
    return rows
