"""Number formatting shared by the draft text and the PDF table, so both quote exactly the same figures."""

from __future__ import annotations

from glioscope_common.measurements import REGIONS, Measurements

REGION_NAMES = {"WT": "whole tumour", "TC": "tumour core", "ET": "enhancing tumour"}
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


def region(m: Measurements, key: str) -> float:
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
    for key in ("WT", "TC", "ET"):
        rows.append((f"{key} ({REGION_NAMES[key]})", ml(region(m, key))))
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
