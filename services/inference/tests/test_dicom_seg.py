"""DICOM-SEG from a label map: read back with highdicom, patient geometry checked by hand, dciodvfy (no error,
no warning) on a synthetic and on a real vendor series; on the vendor series also the report's SR and PDF built
from the worker's report payload."""

from __future__ import annotations

import io
import random
import subprocess
import sys
import tarfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from glioscope_common.dicom.read import read_series
from glioscope_common.dicom.write import write_series
from glioscope_common.model_metadata import ModelMetadata
from glioscope_common.dev.testing import require_executable, require_module, require_path
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


REAL = Path(__file__).resolve().parents[4] / "shared" / "data" / "real"
SIEMENS_MPRAGE = REAL / "siemens-t1-mprage-dicom" / "t1_MPRAGEcr_noGRAPPA_19.tar.gz"  # a real vendor MR series


def dciodvfy_findings(path: Path) -> list[str]:
    """dciodvfy's Error and Warning lines for one file. Fails (CI=true) or skips (elsewhere) without dciodvfy."""
    require_executable("dciodvfy", "Debian dicom3tools")
    proc = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
    output = proc.stdout + proc.stderr
    assert output.strip(), "dciodvfy printed nothing"
    return [line for line in output.splitlines() if line.startswith(("Error", "Warning"))]


def test_dciodvfy(source, tmp_path):
    """The model's SEG and an edited one (SEMIAUTOMATIC, a person as content creator): no error, no warning."""
    _, datasets = source
    seg_path = tmp_path / "seg.dcm"
    build_segmentation(asymmetric_labels(), datasets, METADATA).save_as(seg_path)
    edited_path = tmp_path / "seg-edited.dcm"
    edited = build_segmentation(
        asymmetric_labels(), datasets, METADATA, series_number=901,
        series_description="Glioscope tumour segmentation v2 (edited)", content_creator="dr.jones",
        series_instance_uid=generate_uid(), sop_instance_uid=generate_uid(), algorithm_type="SEMIAUTOMATIC",
    )
    assert edited.SegmentSequence[0].SegmentAlgorithmType == "SEMIAUTOMATIC"
    edited.save_as(edited_path)
    for path in (seg_path, edited_path):
        assert dciodvfy_findings(path) == [], path.name
    # The synthetic source itself: no error (its ImageType value 3 "M", as Siemens writes it, is a warning).
    mr_path = tmp_path / "mr.dcm"
    datasets[0].save_as(mr_path, enforce_file_format=True)
    assert [line for line in dciodvfy_findings(mr_path) if line.startswith("Error")] == []


def test_dciodvfy_on_a_vendor_series(tmp_path):
    """A SEG on a real Siemens MR series (../shared/data/real): no error, no warning, and it reads back."""
    require_path(SIEMENS_MPRAGE, "../shared/data/real")
    with tarfile.open(SIEMENS_MPRAGE) as tar:
        tar.extractall(tmp_path / "siemens", filter="data")
    datasets = [pydicom.dcmread(p) for p in sorted((tmp_path / "siemens").rglob("*.dcm"))]
    assert len(datasets) > 100 and {d.Modality for d in datasets} == {"MR"}
    volume = read_series(datasets)
    labels = np.zeros(volume.shape, dtype=np.uint8)
    ci, cj, ck = (n // 2 for n in volume.shape)
    labels[ci - 8 : ci + 8, cj - 8 : cj + 8, ck - 4 : ck + 4] = 2
    labels[ci - 3 : ci + 3, cj - 3 : cj + 3, ck - 2 : ck + 2] = 4
    seg = build_segmentation(labels, datasets, METADATA)
    seg_path = tmp_path / "seg.dcm"
    seg.save_as(seg_path)
    assert dciodvfy_findings(seg_path) == []
    written = pydicom.dcmread(seg_path)
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
                    "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName"):
        assert str(written.get(keyword, "")) == str(datasets[0].get(keyword, "")), keyword
    np.testing.assert_array_equal(read_segmentation(written, datasets), labels)

    # The worker's report payload from the same series, and the SR and PDF the reporting service makes of it.
    reports = require_module("glioscope_reporting.reports.dicom_export")
    from glioscope_common.measurements import LabelVolume, Measurements
    from glioscope_inference.segmentation.service import SEG_SERIES_NUMBER, Outputs, SegmentationService
    from glioscope_reporting.reports.schemas import CreateReport

    measurements = Measurements(
        label_volumes=[LabelVolume(label=info.value, name=info.name, volume_ml=float((labels == info.value).sum()) / 1000)
                       for info in METADATA.labels],
        region_volumes_ml={"WT": 2.048, "TC": 0.288, "ET": 0.288},
        max_axial_diameter_mm=16.0, perpendicular_diameter_mm=16.0, bidimensional_product_mm2=256.0,
    )
    worker = SegmentationService(None, None, None, None, lambda: None, METADATA)  # type: ignore[arg-type]
    outputs = Outputs(str(seg.SeriesInstanceUID), str(seg.SOPInstanceUID))
    from glioscope_common.sequence_regions import plan_sequences

    result = SimpleNamespace(measurements=measurements, plan=plan_sequences(["T1", "T1c", "T2", "FLAIR"]))
    payload = CreateReport.model_validate(
        worker._report_payload("job-1", str(datasets[0].StudyInstanceUID), {"T1c": datasets}, result, outputs)  # type: ignore[arg-type]
    )
    ref = payload.segmentation
    assert ref is not None and (ref.version, ref.series_number) == (1, SEG_SERIES_NUMBER)
    (series,) = ref.source_series
    assert series.role == "T1c" and series.series_number == 19 and series.series_description == "t1_MPRAGEcr_noGRAPPA"
    assert sorted(series.sop_instance_uids) == sorted(str(d.SOPInstanceUID) for d in datasets)
    common = dict(report_id="r-vendor", version=2, study_instance_uid=payload.study_instance_uid,
                  patient=payload.patient, study=payload.study)
    sr_bytes = reports.measurement_report(payload.measurements, model=payload.model, final=True,
                                          verifying_observer="Smith^Anna", segmentation=ref, **common)
    pdf_bytes = reports.encapsulated_pdf(b"%PDF-1.4\n% minimal\n", verified=True, **common)
    for name, data in (("sr", sr_bytes), ("pdf", pdf_bytes)):
        (tmp_path / f"{name}.dcm").write_bytes(data)
        assert dciodvfy_findings(tmp_path / f"{name}.dcm") == [], name
        ds = pydicom.dcmread(tmp_path / f"{name}.dcm")
        for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
                        "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName", "StudyDescription"):
            assert str(ds.get(keyword, "")) == str(datasets[0].get(keyword, "")), (name, keyword)
    # The SR's segment for label 4 (the third label) is the SEG segment that holds label 4.
    sr = pydicom.dcmread(tmp_path / "sr.dcm")
    (evidence,) = sr.CurrentRequestedProcedureEvidenceSequence
    cited = {str(i.ReferencedSOPInstanceUID) for s in evidence.ReferencedSeriesSequence for i in s.ReferencedSOPSequence}
    assert cited == {str(d.SOPInstanceUID) for d in datasets} | {str(seg.SOPInstanceUID)}
    import highdicom as hd

    groups = hd.sr.Comprehensive3DSR.from_dataset(sr).content.get_volumetric_roi_measurement_groups()
    (enhancing,) = [g for g in groups if g.tracking_identifier.startswith("Label 4 ")]
    segment_item, series_item = enhancing.referenced_segment
    (number,) = segment_item.referenced_segment_numbers
    assert written.SegmentSequence[number - 1].TrackingID == "glioscope-label-4"
    assert series_item.value == str(datasets[0].SeriesInstanceUID)
