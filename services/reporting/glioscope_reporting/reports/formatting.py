"""Number formatting shared by the draft text and the PDF table, so both quote exactly the same figures."""

from __future__ import annotations

from glioscope_common.measurements import REGIONS, Measurements

REGION_NAMES = {"WT": "whole tumour", "TC": "tumour core", "ET": "enhancing tumour"}
# Below these volumes a finding is reported as absent (segmentation noise, partial volume).
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


def ras(centroid: tuple[float, float, float] | None) -> str:
    if centroid is None:
        return "n/a"
    return "(" + ", ".join(f"{c:.1f}" for c in centroid) + ") mm"


def region(m: Measurements, key: str) -> float:
    value = m.region_volumes_ml.get(key)
    if value is not None:
        return float(value)
    return float(sum(v.volume_ml for v in m.label_volumes if v.label in REGIONS[key]))


def label_volume(m: Measurements, label: int) -> float:
    return float(sum(v.volume_ml for v in m.label_volumes if v.label == label))


def hemisphere_phrase(hemisphere: str) -> str:
    return {
        "left": "in the left cerebral hemisphere",
        "right": "in the right cerebral hemisphere",
        "bilateral": "involving both cerebral hemispheres",
    }.get(hemisphere, "without a determined hemispheric location")


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
    if m.axial_slice_index is not None:
        rows.append(("Axial slice of measurement", str(m.axial_slice_index)))
    rows.append(("Centroid (RAS)", ras(m.centroid_ras_mm)))
    rows.append(("Hemisphere", m.hemisphere))
    return rows
