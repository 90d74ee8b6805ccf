"""Which source image a k index of a series' volume is: the DICOM instance (single-frame) whose
ImagePositionPatient is that slice's position, named as a radiologist finds it (series number and
description, InstanceNumber)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydicom import Dataset

from glioscope_common.measurements import Measurements, SliceReference
from glioscope_common.volume import Volume

__all__ = ["slice_reference", "with_measured_slice"]

POSITION_TOLERANCE_MM = 0.5


def _int(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[call-overload, no-any-return]
    except (TypeError, ValueError):
        return None


def slice_reference(datasets: Sequence[Dataset], volume: Volume, k: int) -> SliceReference | None:
    """The instance at slice k of `volume` (read from `datasets`); None for multi-frame series or when no
    instance lies at that position."""
    if not datasets or any(int(getattr(ds, "NumberOfFrames", 1) or 1) > 1 for ds in datasets):
        return None
    target = np.asarray(volume.affine)[:3, :3] @ np.array([0.0, 0.0, float(k)]) + np.asarray(volume.affine)[:3, 3]
    best, best_distance = None, np.inf
    for ds in datasets:
        position = getattr(ds, "ImagePositionPatient", None)
        if position is None or len(position) != 3:
            continue
        # DICOM positions are LPS; the volume's world is RAS
        ras = np.array([-float(position[0]), -float(position[1]), float(position[2])])
        distance = float(np.linalg.norm(ras - target))
        if distance < best_distance:
            best, best_distance = ds, distance
    if best is None or best_distance > POSITION_TOLERANCE_MM:
        return None
    return SliceReference(
        series_instance_uid=str(best.get("SeriesInstanceUID", "")),
        series_number=_int(best.get("SeriesNumber")),
        series_description=str(best.get("SeriesDescription", "") or ""),
        instance_number=_int(best.get("InstanceNumber")),
        sop_instance_uid=str(best.get("SOPInstanceUID", "")),
    )


def with_measured_slice(measurements: Measurements, datasets: Sequence[Dataset], volume: Volume) -> Measurements:
    """`measurements` with `measured_on` naming the source image of `axial_slice_index`."""
    if measurements.axial_slice_index is None:
        return measurements
    return measurements.model_copy(
        update={"measured_on": slice_reference(datasets, volume, measurements.axial_slice_index)}
    )
