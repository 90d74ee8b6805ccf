"""Tumour measurements: written by the inference worker, stored by the gateway, read by reporting."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

# The label of a whole tumour that is not subdivided (a study without T1c: glioscope_common.sequence_regions).
# Not 4: BraTS up to 2020 used 4 for the enhancing tumour, which this label must not be read as.
WHOLE_TUMOUR_LABEL = 5
# BraTS regions built from the labels 1 necrotic core, 2 oedema, 3 enhancing tumour (and the undivided whole tumour).
REGIONS: dict[str, tuple[int, ...]] = {"WT": (1, 2, 3, WHOLE_TUMOUR_LABEL), "TC": (1, 3), "ET": (3,)}
ALL_SEQUENCES = ["T1", "T1c", "T2", "FLAIR"]


class LabelVolume(BaseModel):
    label: int
    name: str
    volume_ml: float = Field(ge=0)


class LobeShare(BaseModel):
    name: str
    fraction: float = Field(ge=0, le=1)  # share of the whole-tumour voxels in this lobe


class TumourLocation(BaseModel):
    """Hemisphere and lobes from one computation in MNI152 space (glioscope_common.brain_atlas)."""

    hemisphere: Literal["left", "right", "bilateral", "midline"]
    lobes: list[LobeShare]  # lobes holding >= 10 % of the tumour, largest share first
    right_fraction: float
    left_fraction: float
    centroid_mni_mm: tuple[float, float, float]
    method: str


class AtlasRegistration(BaseModel):
    """The study's affine registration to the MNI152 template, kept so an edited mask is located alike."""

    world_to_mni: list[list[float]]  # 4 x 4: patient RAS mm (the T1c's world) -> MNI152 RAS mm
    brain_dice: float  # overlap of the registered brain with the template's brain
    scales: tuple[float, float, float]  # singular values of the linear part
    accepted: bool
    note: str = ""


class SegmentationQuality(BaseModel):
    """The model's own confidence in its regions (glioscope_inference.quality): soft Dice of each region's
    probabilities with its labels, 1 = fully confident; None for a region neither drawn nor likely."""

    wt: float | None
    tc: float | None
    et: float | None
    overall: float | None = None  # the lowest of the regions' estimates: the case's estimate
    review: bool  # `overall` is under `review_below`: review the case carefully
    review_below: float


class SliceReference(BaseModel):
    """A source image, as a radiologist finds it in the PACS: the series and the image's InstanceNumber."""

    series_instance_uid: str
    series_number: int | None = None
    series_description: str = ""
    instance_number: int | None = None
    sop_instance_uid: str = ""


class Measurements(BaseModel):
    """Everything numeric a report may quote. Lengths in mm, volumes in mL, coordinates RAS mm."""

    label_volumes: list[LabelVolume]
    region_volumes_ml: dict[str, float]  # keys: the reported regions among "WT", "TC", "ET"
    max_axial_diameter_mm: float = Field(ge=0)
    perpendicular_diameter_mm: float = Field(ge=0)
    bidimensional_product_mm2: float = Field(ge=0)
    axial_slice_index: int | None = None  # slice (k index in the T1c grid) where the diameters were measured
    measured_on: SliceReference | None = None  # that slice's source image (set by the worker, which has the DICOM)
    centroid_ras_mm: tuple[float, float, float] | None = None
    # "none": no tumour; "undetermined": a tumour whose location is not available (no accepted registration
    # to the atlas: `location_note` says why). Otherwise location.hemisphere.
    hemisphere: Literal["left", "right", "bilateral", "midline", "none", "undetermined"] = "none"
    location: TumourLocation | None = None
    location_note: str = ""
    atlas_registration: AtlasRegistration | None = None
    tumour_detected: bool = False
    quality: SegmentationQuality | None = None  # from the model run; an edited mask keeps the run's estimate
    # Why the input may be outside what the model was trained on (e.g. not skull-stripped); the
    # report repeats them. Plain sentences without patient data.
    input_warnings: list[str] = Field(default_factory=list)
    # The sequences the model read and the regions they support (glioscope_common.sequence_regions); the
    # defaults are those of a complete study, as every record stored before these fields existed was.
    sequences_used: list[str] = Field(default_factory=lambda: list(ALL_SEQUENCES))
    sequences_missing: list[str] = Field(default_factory=list)
    regions_reported: list[str] = Field(default_factory=lambda: ["WT", "TC", "ET"])
    regions_not_reported: dict[str, str] = Field(default_factory=dict)  # region -> why it is not reported
