"""DICOM-SEG from a label map: read back with highdicom, patient geometry checked by hand, dciodvfy."""

from __future__ import annotations

import io
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from glioscope_common.dicom_volume import read_series, write_series
from glioscope_common.model_metadata import ModelMetadata
from glioscope_common.volume import Volume

try:
    from glioscope_inference.dicom_seg import build_segmentation, read_segmentation
except ModuleNotFoundError:  # the inference package is not installed in this environment
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from glioscope_inference.dicom_seg import build_segmentation, read_segmentation

SHAPE = (23, 31, 17)


def oblique_affine() -> np.ndarray:
    a, b = 0.35, -0.2
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    affine = np.eye(4)
    affine[:3, :3] = rz @ rx @ np.diag([0.9, 1.1, 2.5]) @ np.diag([-1.0, 1.0, -1.0])  # flips, det > 0
    affine[:3, 3] = (40.0, -20.0, 30.0)
    return affine


METADATA = ModelMetadata.model_validate(
    {
        "name": "glioscope-unet",
        "version": "2024.1",
        "channels": ["T1", "T1c", "T2", "FLAIR"],
        "spacing_mm": [1, 1, 1],
        "normalisation": {"method": "zscore", "mask": "nonzero"},
        "patch_size": [64, 64, 64],
        "labels": [
            {
                "value": 1,
                "name": "Necrotic tumour core",
                "category": {"value": "49755003", "meaning": "Morphologically abnormal structure"},
                "type": {"value": "6574001", "meaning": "Necrosis"},
                "color_rgb": [255, 0, 0],
            },
            {
                "value": 2,
                "name": "Peritumoral oedema",
                "category": {"value": "49755003", "meaning": "Morphologically abnormal structure"},
                "type": {"value": "79654002", "meaning": "Edema"},
                "color_rgb": [0, 255, 0],
            },
            {
                "value": 4,  # deliberately not 3: label values need not be 1..N
                "name": "Enhancing tumour",
                "category": {"value": "49755003", "meaning": "Morphologically abnormal structure"},
                "type": {"value": "108369006", "meaning": "Neoplasm"},
                "color_rgb": [255, 255, 0],
            },
        ],
        "intended_use": "research use only",
        "training_data": "synthetic",
        "algorithm_name": "Glioscope U-Net",
        "algorithm_version": "0.1.0",
    }
)


@pytest.fixture(scope="module")
def source() -> tuple[Volume, list[pydicom.Dataset]]:
    i, j, k = np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij")
    volume = Volume((10 * i + j + 100 * k).astype(np.float32), oblique_affine())
    datasets = write_series(
        volume,
        study_instance_uid=generate_uid(),
        series_instance_uid=generate_uid(),
        series_number=4,
        series_description="T2 FLAIR AX",
        patient_id="TEST001",
        patient_name="Test^Patient",
        study_date="20240102",
        study_time="101500",
        frame_of_reference_uid=generate_uid(),
    )
    return read_series(datasets), datasets


def asymmetric_labels() -> np.ndarray:
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[3:9, 5:20, 2:6] = 2  # oedema block, off-centre
    labels[4:6, 7:10, 3:5] = 1  # necrosis inside it
    labels[15, 25, 11] = 4  # a single enhancing voxel far away
    labels[20:22, 2, 12] = 4
    labels[0, 30, 16] = 1  # a corner voxel (i=0, j=max, k=max)
    return labels


def serialised(ds: pydicom.Dataset) -> pydicom.Dataset:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    return pydicom.dcmread(buffer)


def test_roundtrip_through_highdicom(source):
    volume, datasets = source
    labels = asymmetric_labels()
    seg = serialised(build_segmentation(labels, datasets, METADATA))
    shuffled = list(datasets)
    random.Random(3).shuffle(shuffled)
    back = read_segmentation(seg, shuffled)
    assert back.dtype == np.uint8 and back.shape == SHAPE
    np.testing.assert_array_equal(back, labels)
    # segments: BINARY, one per metadata label, coded, automatic, with the algorithm
    assert seg.SegmentationType == "BINARY"
    assert [int(s.SegmentNumber) for s in seg.SegmentSequence] == [1, 2, 3]
    third = seg.SegmentSequence[2]
    assert third.SegmentedPropertyTypeCodeSequence[0].CodeValue == "108369006"
    assert third.SegmentedPropertyCategoryCodeSequence[0].CodingSchemeDesignator == "SCT"
    assert third.SegmentAlgorithmType == "AUTOMATIC"
    assert third.SegmentAlgorithmName == "Glioscope U-Net"
    assert seg.SeriesNumber == 900
    # empty frames are omitted: only slices with labels, per segment
    expected_frames = sum(len(np.unique(np.nonzero(labels == v)[2])) for v in (1, 2, 4))
    assert int(seg.NumberOfFrames) == expected_frames
    referenced = {str(item.ReferencedSOPInstanceUID) for item in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == {str(d.SOPInstanceUID) for d in datasets}


def test_labelled_voxels_are_at_the_same_patient_position(source):
    """Decode the SEG with plain pydicom and place every labelled pixel in patient space by hand."""
    volume, datasets = source
    labels = asymmetric_labels()
    seg = serialised(build_segmentation(labels, datasets, METADATA))
    segment_value = {1: 1, 2: 2, 3: 4}  # segment number -> label value, metadata order
    shared = seg.SharedFunctionalGroupsSequence[0]
    iop = np.array(shared.PlaneOrientationSequence[0].ImageOrientationPatient, dtype=float)
    row_spacing, column_spacing = (float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing)
    frames = seg.pixel_array.reshape(int(seg.NumberOfFrames), int(seg.Rows), int(seg.Columns))
    inverse = np.linalg.inv(volume.affine)
    counts = {value: 0 for value in segment_value.values()}
    for frame, item in zip(frames, seg.PerFrameFunctionalGroupsSequence):
        ipp = np.array(item.PlanePositionSequence[0].ImagePositionPatient, dtype=float)
        value = segment_value[int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)]
        rows, columns = np.nonzero(frame)
        lps = ipp + np.outer(columns * column_spacing, iop[:3]) + np.outer(rows * row_spacing, iop[3:])
        ras = lps * np.array([-1.0, -1.0, 1.0])  # LPS -> RAS
        ijk_float = ras @ inverse[:3, :3].T + inverse[:3, 3]
        ijk = np.rint(ijk_float).astype(int)
        assert np.abs(ijk_float - ijk).max() < 1e-3
        np.testing.assert_allclose(volume.world_coordinates(ijk), ras, atol=1e-4)
        assert np.all(labels[tuple(ijk.T)] == value)
        counts[value] += len(rows)
    assert counts == {v: int((labels == v).sum()) for v in counts}
    # the single enhancing voxel in particular
    (voxel,) = [tuple(v) for v in np.argwhere(labels == 4) if tuple(v) == (15, 25, 11)]
    assert voxel


def test_absent_label_and_empty_map(source):
    _, datasets = source
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[10:12, 10:12, 8] = 2
    seg = serialised(build_segmentation(labels, datasets, METADATA))
    assert len(seg.SegmentSequence) == 3  # segments for absent labels are still described
    np.testing.assert_array_equal(read_segmentation(seg, datasets), labels)

    empty = np.zeros(SHAPE, dtype=np.uint8)
    seg = serialised(build_segmentation(empty, datasets, METADATA))
    np.testing.assert_array_equal(read_segmentation(seg, datasets), empty)


def test_invalid_label_map(source):
    _, datasets = source
    labels = asymmetric_labels()
    labels[0, 0, 0] = 3  # not in the metadata
    with pytest.raises(ValueError, match=r"\[3\]"):
        build_segmentation(labels, datasets, METADATA)
    with pytest.raises(ValueError, match="does not match"):
        build_segmentation(np.zeros((31, 23, 17), dtype=np.uint8), datasets, METADATA)


@pytest.mark.skipif(
    shutil.which("dciodvfy") is None and os.environ.get("CI") != "true",
    reason="dciodvfy (Debian dicom3tools) not installed",
)
def test_dciodvfy(source, tmp_path):
    _, datasets = source
    seg_path = tmp_path / "seg.dcm"
    build_segmentation(asymmetric_labels(), datasets, METADATA).save_as(seg_path)
    mr_path = tmp_path / "mr.dcm"
    datasets[0].save_as(mr_path, enforce_file_format=True)
    for path in (seg_path, mr_path):
        proc = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
        output = proc.stdout + proc.stderr
        assert output.strip(), "dciodvfy printed nothing"
        errors = [line for line in output.splitlines() if line.startswith("Error")]
        assert errors == [], f"{path.name}: {errors}"
