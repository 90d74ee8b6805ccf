"""DICOM series <-> Volume: geometry round trips, validation errors, dciodvfy, NIfTI helpers."""

from __future__ import annotations

import io
import random
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import EnhancedMRImageStorage, ExplicitVRLittleEndian, generate_uid

from glioscope_common.dev.synthetic_study import write_study
from glioscope_common.dicom.nifti import volume_from_nifti, volume_to_nifti
from glioscope_common.dicom.read import read_series, series_geometry
from glioscope_common.dicom.write import canonical_slice_order, write_series
from glioscope_common.errors import UnprocessableInput
from glioscope_common.dev.testing import require_executable
from glioscope_common.volume import Volume

SHAPE = (23, 31, 17)


def rotation(ax: float, ay: float, az: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def make_affine(rot: np.ndarray, spacing, origin) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag(spacing)
    affine[:3, 3] = origin
    return affine


def pattern(shape=SHAPE, integer=False) -> np.ndarray:
    i, j, k = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    data = 1000 * i + 37 * j * j + 3 * k + (i * k) % 7
    if not integer:
        data = data * 0.731 - 250.5  # needs rescale slope/intercept
    return data.astype(np.float32)


OBLIQUE = make_affine(rotation(0.3, -0.2, 0.5), (0.9, 1.1, 2.5), (-91.3, 12.7, 40.2))
# LPS-like voxel axes (i -> left, j -> posterior): what most DICOM scanners produce
LPS_AXES = make_affine(np.diag([-1.0, -1.0, 1.0]), (0.5, 0.7, 3.0), (120.0, 110.0, -60.0))
# negative determinant (i -> left only, like a radiological-convention NIfTI)
NEG_DET = make_affine(np.diag([-1.0, 1.0, 1.0]) @ rotation(0.1, 0.0, -0.25), (1.0, 1.2, 2.0), (80.0, -100.0, -50.0))


def study_kwargs(**overrides):
    kwargs = dict(
        study_instance_uid=generate_uid(),
        series_instance_uid=generate_uid(),
        series_number=3,
        series_description="T2 TSE AX",
        patient_id="TEST001",
        patient_name="Test^Patient",
        study_date="20240102",
        study_time="101500",
        frame_of_reference_uid=generate_uid(),
    )
    kwargs.update(overrides)
    return kwargs


def serialised(ds: Dataset) -> Dataset:
    """Write and parse an instance, as storage in a PACS would."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    return pydicom.dcmread(buffer)


def roundtrip(volume: Volume, shuffle: bool = False) -> tuple[Volume, list[Dataset]]:
    reread = [serialised(ds) for ds in write_series(volume, **study_kwargs())]
    if shuffle:
        random.Random(4).shuffle(reread)
    return read_series(reread), reread


def assert_same_voxels_in_space(original: Volume, result: Volume, atol_value: float) -> None:
    """Every voxel of `original` is in `result` with the same value at the same RAS position."""
    ijk = np.argwhere(np.ones(original.shape, dtype=bool))
    world = original.world_coordinates(ijk)
    result_ijk = (np.linalg.inv(result.affine) @ np.c_[world, np.ones(len(world))].T).T[:, :3]
    rounded = np.rint(result_ijk).astype(int)
    assert np.abs(result_ijk - rounded).max() < 1e-4
    assert np.all(rounded >= 0) and np.all(rounded < np.array(result.shape))
    np.testing.assert_allclose(result.world_coordinates(rounded), world, atol=1e-4)
    np.testing.assert_allclose(
        result.data[tuple(rounded.T)], original.data[tuple(ijk.T)], atol=atol_value, rtol=0
    )


@pytest.mark.parametrize("affine", [OBLIQUE, LPS_AXES], ids=["oblique", "lps-axes"])
@pytest.mark.parametrize("shuffle", [False, True], ids=["ordered", "shuffled"])
def test_roundtrip_reproduces_data_and_affine(affine, shuffle):
    volume = Volume(pattern(), affine)
    result, _ = roundtrip(volume, shuffle=shuffle)
    assert result.shape == SHAPE
    assert result.data.dtype == np.float32
    np.testing.assert_allclose(result.affine, affine, atol=1e-4, rtol=0)
    scale = float(np.ptp(volume.data)) / 65535
    np.testing.assert_allclose(result.data, volume.data, atol=scale * 0.51 + 1e-3, rtol=0)
    assert_same_voxels_in_space(volume, result, atol_value=scale * 0.51 + 1e-3)


def test_integer_data_written_without_rescale():
    volume = Volume(pattern(integer=True), OBLIQUE)
    datasets = write_series(volume, **study_kwargs())
    assert "RescaleSlope" not in datasets[0]
    result = read_series(datasets)
    np.testing.assert_array_equal(result.data, volume.data)


def test_negative_determinant_is_written_k_reversed():
    volume = Volume(pattern(), NEG_DET)
    result, _ = roundtrip(volume)
    expected = canonical_slice_order(volume)
    np.testing.assert_allclose(result.affine, expected.affine, atol=1e-4, rtol=0)
    assert_same_voxels_in_space(volume, result, atol_value=float(np.ptp(volume.data)) / 65535)


def test_pixel_layout_convention():
    """data[i, j, k] == pixel_array_of_slice_k[j, i], slices ascending along the normal."""
    volume = Volume(pattern(integer=True), OBLIQUE)
    datasets = write_series(volume, **study_kwargs())
    ds = datasets[5]
    assert (ds.Rows, ds.Columns) == (SHAPE[1], SHAPE[0])
    np.testing.assert_array_equal(ds.pixel_array, volume.data[:, :, 5].T)
    iop = np.array(ds.ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    along = [float(np.dot(np.array(d.ImagePositionPatient, dtype=float), normal)) for d in datasets]
    assert np.all(np.diff(along) > 0)
    # voxel (i, j, k) at IPP + i*dc*row + j*dr*col (LPS) equals affine in RAS after x, y negation
    i, j = 7, 11
    dr, dc = (float(v) for v in ds.PixelSpacing)
    lps = np.array(ds.ImagePositionPatient, dtype=float) + i * dc * iop[:3] + j * dr * iop[3:]
    ras = volume.world_coordinates(np.array([[i, j, 5]]))[0]
    np.testing.assert_allclose(lps * [-1, -1, 1], ras, atol=1e-4)


def test_series_geometry_sorts_instances():
    volume = Volume(pattern(), OBLIQUE)
    datasets = write_series(volume, **study_kwargs())
    shuffled = list(datasets)
    random.Random(1).shuffle(shuffled)
    ordered, affine = series_geometry(shuffled)
    assert [d.SOPInstanceUID for d in ordered] == [d.SOPInstanceUID for d in datasets]
    np.testing.assert_allclose(affine, OBLIQUE, atol=1e-4)


def test_written_instances_are_complete():
    volume = Volume(pattern(), LPS_AXES)
    datasets = write_series(volume, **study_kwargs(extra={"EchoTime": "96", "Manufacturer": "Acme"}))
    ds = datasets[0]
    assert ds.SOPClassUID == pydicom.uid.MRImageStorage
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.BitsAllocated == 16 and ds.PixelRepresentation == 0
    assert float(ds.EchoTime) == 96 and ds.Manufacturer == "Acme"
    assert float(ds.SliceThickness) == pytest.approx(3.0) and float(ds.SpacingBetweenSlices) == pytest.approx(3.0)
    assert [d.InstanceNumber for d in datasets] == list(range(1, SHAPE[2] + 1))
    assert len({d.SOPInstanceUID for d in datasets}) == SHAPE[2]
    # instances must not share mutable values
    datasets[0].ImageType[0] = "DERIVED"
    assert datasets[1].ImageType[0] == "ORIGINAL"


# ------------------------------------------------------------------------------------- errors


@pytest.fixture
def series() -> list[Dataset]:
    return write_series(Volume(pattern(), OBLIQUE), **study_kwargs(series_instance_uid="1.2.826.0.1.3680043.8.498.77"))


def test_missing_slice_is_a_gap(series):
    del series[8]
    with pytest.raises(UnprocessableInput, match=r"series 1\.2\.826\.0\.1\.3680043\.8\.498\.77: inconsistent slice spacing 2\.5–5 mm"):
        read_series(series)


def test_mixed_orientation(series):
    series[4].ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    with pytest.raises(UnprocessableInput, match="inconsistent ImageOrientationPatient"):
        read_series(series)


def test_mixed_pixel_spacing(series):
    series[4].PixelSpacing = [1.5, 1.5]
    with pytest.raises(UnprocessableInput, match="inconsistent PixelSpacing"):
        read_series(series)


def test_duplicate_position(series):
    series.append(series[3])
    with pytest.raises(UnprocessableInput, match="duplicate slice positions"):
        read_series(series)


def test_single_slice(series):
    with pytest.raises(UnprocessableInput, match="at least 2 slices"):
        read_series(series[:1])


def test_mixed_series(series):
    series[2].SeriesInstanceUID = generate_uid()
    with pytest.raises(UnprocessableInput, match="different series"):
        read_series(series)


def test_mixed_image_size(series):
    series[2].Rows = 30
    with pytest.raises(UnprocessableInput, match="inconsistent image size"):
        read_series(series)


def test_error_messages_carry_no_phi(series):
    del series[8]
    with pytest.raises(UnprocessableInput) as info:
        read_series(series)
    assert "TEST001" not in str(info.value) and "Test" not in str(info.value)


# ----------------------------------------------------------------------------------- multi-frame


def enhanced_from(datasets: list[Dataset], volume_uid: str) -> Dataset:
    """A minimal enhanced MR instance (geometry only) from single-frame instances, frames reversed."""
    frames = list(reversed(datasets))
    ds = Dataset()
    ds.SOPClassUID = EnhancedMRImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = volume_uid
    ds.Rows, ds.Columns = frames[0].Rows, frames[0].Columns
    ds.NumberOfFrames = len(frames)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    shared = Dataset()
    orientation, measures, transform = Dataset(), Dataset(), Dataset()
    orientation.ImageOrientationPatient = frames[0].ImageOrientationPatient
    measures.PixelSpacing = frames[0].PixelSpacing
    measures.SliceThickness = frames[0].SliceThickness
    transform.RescaleSlope = frames[0].get("RescaleSlope", 1)
    transform.RescaleIntercept = frames[0].get("RescaleIntercept", 0)
    transform.RescaleType = "US"
    shared.PlaneOrientationSequence = DicomSequence([orientation])
    shared.PixelMeasuresSequence = DicomSequence([measures])
    shared.PixelValueTransformationSequence = DicomSequence([transform])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    per_frame = []
    for frame in frames:
        item, position = Dataset(), Dataset()
        position.ImagePositionPatient = frame.ImagePositionPatient
        item.PlanePositionSequence = DicomSequence([position])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)
    ds.PixelData = b"".join(f.PixelData for f in frames)
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def test_enhanced_multi_frame():
    volume = Volume(pattern(), OBLIQUE)
    datasets = write_series(volume, **study_kwargs())
    result = read_series([enhanced_from(datasets, str(datasets[0].SeriesInstanceUID))])
    np.testing.assert_allclose(result.affine, OBLIQUE, atol=1e-4)
    np.testing.assert_allclose(result.data, volume.data, atol=float(np.ptp(volume.data)) / 65535)


def test_legacy_multi_frame_without_functional_groups_is_refused(series):
    series[0].NumberOfFrames = 2
    with pytest.raises(UnprocessableInput, match="multi-frame"):
        read_series(series)


# ---------------------------------------------------------------------------------- study, dciodvfy


def dciodvfy_errors(path: Path) -> list[str]:
    require_executable("dciodvfy", "Debian dicom3tools")
    proc = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error")]


def test_write_study(tmp_path):
    images = {
        name: Volume(pattern(shape=(20, 24, 6)) + offset, LPS_AXES)
        for offset, name in enumerate(["T1", "T1c", "T2", "FLAIR"])
    }
    study_uid, series = write_study(images, tmp_path, patient_id="GS-0001", patient_name="Synthetic^One", study_description="MRI BRAIN")
    again, _ = write_study(images, None, patient_id="GS-0001", patient_name="Synthetic^One", study_description="MRI BRAIN")
    assert again == study_uid  # deterministic in seed
    assert set(series) == {"T1", "T1c", "T2", "FLAIR"}
    frames = {str(dss[0].FrameOfReferenceUID) for dss in series.values()}
    assert len(frames) == 1
    assert {dss[0].SeriesDescription for dss in series.values()} == {
        "T1 MPRAGE", "T1 MPRAGE POST GD", "T2 TSE AX", "T2 FLAIR AX"
    }
    assert series["T1c"][0].ContrastBolusAgent == "Gadobutrol"
    assert float(series["FLAIR"][0].InversionTime) == pytest.approx(2500)
    assert len({str(dss[0].SeriesInstanceUID) for dss in series.values()}) == 4
    files = sorted(tmp_path.rglob("*.dcm"))
    assert len(files) == 24
    assert (tmp_path / "2" / "1.dcm").exists()
    reread = [pydicom.dcmread(p) for p in sorted((tmp_path / "4").glob("*.dcm"))]
    assert all(str(d.StudyInstanceUID) == study_uid for d in reread)
    np.testing.assert_allclose(read_series(reread).data, images["FLAIR"].data, atol=np.ptp(images["FLAIR"].data) / 65535)
    for path in (tmp_path / "2" / "1.dcm", tmp_path / "4" / "3.dcm"):
        assert dciodvfy_errors(path) == []


def test_oblique_instance_passes_dciodvfy(tmp_path):
    datasets = write_series(Volume(pattern(), OBLIQUE), **study_kwargs(extra={"ScanningSequence": "SE", "EchoTime": "90"}))
    path = tmp_path / "mr.dcm"
    datasets[0].save_as(path, enforce_file_format=True)
    assert dciodvfy_errors(path) == []


# ------------------------------------------------------------------------------------------ NIfTI


def test_nifti_roundtrip(tmp_path):
    volume = Volume(pattern(), OBLIQUE)
    path = volume_to_nifti(volume, tmp_path / "t1.nii.gz", np.float32)
    back = volume_from_nifti(path)
    np.testing.assert_allclose(back.affine, OBLIQUE, atol=1e-5)
    np.testing.assert_array_equal(back.data, volume.data)
    labels = Volume(np.rint(np.abs(pattern())) % 4, NEG_DET)
    back = volume_from_nifti(volume_to_nifti(labels, tmp_path / "dseg.nii.gz", np.uint8))
    assert back.data.dtype == np.uint8
    np.testing.assert_array_equal(back.data, labels.data)
    np.testing.assert_allclose(back.affine, NEG_DET, atol=1e-5)


# ------------------------------------------------------------ the buffer fast path vs pydicom's decoder


def _plane_instance(pixels: np.ndarray, *, bits_stored: int, transfer_syntax=ExplicitVRLittleEndian) -> Dataset:
    ds = write_series(
        Volume(np.zeros((pixels.shape[1], pixels.shape[0], 2), np.float32), np.eye(4)),
        **study_kwargs(),
    )[0]
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    ds.PixelData = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    return serialised(ds)


@pytest.mark.parametrize(
    "dtype,bits_stored,high",
    [("<u2", 16, 65535), ("<u2", 12, 4095), ("<i2", 16, 30000), ("<u1", 8, 255), ("<i2", 12, 2047)],
    ids=["u16", "u12", "i16", "u8", "i12-falls-back"],
)
def test_native_pixels_match_pydicom(dtype, bits_stored, high):
    from glioscope_common.dicom.read import _native_pixels

    rng = np.random.default_rng(0)
    low = -high if np.dtype(dtype).kind == "i" else 0
    pixels = rng.integers(low, high + 1, size=(7, 9)).astype(dtype)
    ds = _plane_instance(pixels, bits_stored=bits_stored)
    fast = _native_pixels(ds)
    reference = ds.pixel_array
    np.testing.assert_array_equal(reference, pixels)
    if bits_stored < pixels.dtype.itemsize * 8 and np.dtype(dtype).kind == "i":
        assert fast is None  # sign extension below the allocated bits: pydicom's job
    else:
        assert fast is not None and fast.dtype.kind == reference.dtype.kind
        np.testing.assert_array_equal(fast, reference)


def test_native_pixels_leave_stray_high_bits_to_pydicom():
    from glioscope_common.dicom.read import _native_pixels

    pixels = np.full((4, 5), 0x1000 | 123, "<u2")  # bit 12 set although BitsStored is 12
    ds = _plane_instance(pixels, bits_stored=12)
    assert _native_pixels(ds) is None


def test_read_series_rescales_each_slice_on_its_own():
    from pydicom.uid import ImplicitVRLittleEndian

    volume = Volume(pattern(), OBLIQUE)
    baseline = read_series([serialised(ds) for ds in write_series(volume, **study_kwargs())])
    written = write_series(volume, **study_kwargs())
    slope, intercept = float(written[2].RescaleSlope), float(written[2].RescaleIntercept)
    written[2].RescaleSlope = slope * 2  # one slice with its own scaling
    written[5].file_meta.TransferSyntaxUID = ImplicitVRLittleEndian  # syntaxes may differ per instance
    result = read_series([serialised(ds) for ds in written])
    changed = [k for k in range(volume.shape[2]) if not np.array_equal(result.data[:, :, k], baseline.data[:, :, k])]
    assert len(changed) == 1
    k = changed[0]
    np.testing.assert_allclose(result.data[:, :, k], 2 * (baseline.data[:, :, k] - intercept) + intercept, rtol=1e-5, atol=1e-2)


def test_rescaled_values_are_pydicoms_float64_rescale_rounded_once():
    volume = Volume(pattern(), OBLIQUE)
    written = write_series(volume, **study_kwargs())
    for ds in written:  # a Philips-like fractional slope and an intercept
        ds.RescaleSlope, ds.RescaleIntercept = "0.3141592", "12.5"
    reread = [serialised(ds) for ds in written]
    result = read_series(reread)
    for ds in reread:
        k = int(np.argmin(np.abs([np.linalg.norm(result.world_coordinates(np.array([[0, 0, kk]]))[0]
                                                 - (LPS @ np.r_[np.asarray(ds.ImagePositionPatient, float), 1])[:3])
                                  for kk in range(result.shape[2])])))
        expected = (ds.pixel_array.astype(np.float64) * 0.3141592 + 12.5).astype(np.float32).T
        np.testing.assert_array_equal(result.data[:, :, k], expected)


LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def test_the_buffer_fast_path_leaves_odd_instances_to_pydicom():
    from glioscope_common.dicom.read import _native_pixels

    pixels = np.arange(12, dtype="<u2").reshape(3, 4)
    ds = _plane_instance(pixels, bits_stored=16)
    assert _native_pixels(ds) is not None
    no_representation = _plane_instance(pixels, bits_stored=16)
    del no_representation.PixelRepresentation
    assert _native_pixels(no_representation) is None
    extra = _plane_instance(pixels, bits_stored=16)
    extra.PixelData = extra.PixelData + bytes(24)  # a second frame's worth of data
    assert _native_pixels(extra) is None


def test_a_rescale_that_overflows_float32_is_refused():
    volume = Volume(pattern(integer=True), OBLIQUE)
    written = write_series(volume, **study_kwargs())
    written[1].RescaleSlope = "1e39"
    with pytest.raises(UnprocessableInput, match="non-finite"):
        read_series([serialised(ds) for ds in written])
