"""The measured slice named as a radiologist finds it: series number and description, InstanceNumber."""

from __future__ import annotations

import numpy as np

from glioscope_common.dev.synthetic_study import write_study
from glioscope_common.dicom.read import read_series
from glioscope_common.measurements import Measurements
from glioscope_common.volume import Volume
from glioscope_inference.slice_reference import slice_reference, with_measured_slice


def _series(affine: np.ndarray):  # type: ignore[no-untyped-def]
    data = np.random.default_rng(3).integers(0, 400, (12, 10, 8)).astype(np.float32)
    _, datasets = write_study({"T1c": Volume(data, affine)}, None, patient_id="SLICE", patient_name="Slice^Test",
                              study_description="slices")
    return datasets["T1c"]


def test_k_index_is_the_instance_at_that_position() -> None:
    affine = np.diag([1.0, 1.0, 3.0, 1.0])
    affine[:3, 3] = (-5.0, -4.0, 10.0)
    datasets = _series(affine)
    shuffled = list(reversed(datasets))  # the PACS may return instances in any order
    volume = read_series(shuffled)
    for k in (0, 3, 7):
        ref = slice_reference(shuffled, volume, k)
        assert ref is not None
        (expected,) = [ds for ds in datasets
                       if np.isclose(float(ds.ImagePositionPatient[2]), float((volume.affine @ [0, 0, k, 1])[2]))]
        assert ref.instance_number == int(expected.InstanceNumber)
        assert ref.sop_instance_uid == str(expected.SOPInstanceUID)
        assert ref.series_number == int(expected.SeriesNumber)
        assert ref.series_description == str(expected.SeriesDescription)


def test_measurements_name_their_slice_and_unknown_positions_name_none() -> None:
    datasets = _series(np.diag([1.0, 1.0, 3.0, 1.0]))
    volume = read_series(datasets)
    m = Measurements(label_volumes=[], region_volumes_ml={}, max_axial_diameter_mm=10, perpendicular_diameter_mm=8,
                     bidimensional_product_mm2=80, axial_slice_index=5)
    assert with_measured_slice(m, datasets, volume).measured_on.instance_number is not None  # type: ignore[union-attr]
    moved = Volume(volume.data, volume.affine @ np.diag([1.0, 1.0, 1.0, 1.0]) + np.array([[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1.5], [0, 0, 0, 0]]))
    assert slice_reference(datasets, moved, 5) is None  # 1.5 mm away from every instance
    assert with_measured_slice(m.model_copy(update={"axial_slice_index": None}), datasets, volume).measured_on is None
