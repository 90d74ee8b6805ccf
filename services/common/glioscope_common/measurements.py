"""Tumour measurements: written by the inference worker, stored by the gateway, read by reporting."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

# BraTS regions built from the labels 1 necrotic core, 2 oedema, 3 enhancing tumour.
REGIONS: dict[str, tuple[int, ...]] = {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}


class LabelVolume(BaseModel):
    label: int
    name: str
    volume_ml: float = Field(ge=0)


class Measurements(BaseModel):
    """Everything numeric a report may quote. Lengths in mm, volumes in mL, coordinates RAS mm."""

    label_volumes: list[LabelVolume]
    region_volumes_ml: dict[str, float]  # keys "WT", "TC", "ET"
    max_axial_diameter_mm: float = Field(ge=0)
    perpendicular_diameter_mm: float = Field(ge=0)
    bidimensional_product_mm2: float = Field(ge=0)
    axial_slice_index: int | None = None  # slice (k index in the T1c grid) where the diameters were measured
    centroid_ras_mm: tuple[float, float, float] | None = None
    hemisphere: Literal["left", "right", "bilateral", "none"] = "none"
    tumour_detected: bool = False
    # Why the input may be outside what the model was trained on (e.g. not skull-stripped); the
    # report repeats them. Plain sentences without patient data.
    input_warnings: list[str] = Field(default_factory=list)
