"""DICOM image series <-> `Volume`, and thin NIfTI helpers.

Geometry convention (see glioscope_common.volume): for a DICOM series, i is the column index, j the
row index and k the slice index, slices sorted ascending along the slice normal
(ImageOrientationPatient row direction x column direction), so
``data[i, j, k] == pixel_array_of_slice_k[j, i]`` (after RescaleSlope/Intercept). DICOM patient
coordinates are LPS+; `Volume.affine` is RAS+, converted here and nowhere else.

Consequence for writing: a DICOM series can only express affines whose k axis points along
i x j (a positive determinant). `write_series` writes a volume with a negative-determinant affine
with its k axis reversed, so `read_series(write_series(v))` returns the same voxels at the same
patient positions with k flipped (see `canonical_slice_order`).

Error messages name the series UID and the geometric problem only, never patient data.
"""

from __future__ import annotations

import copy
import datetime as _dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, MRImageStorage, PYDICOM_IMPLEMENTATION_UID, generate_uid
from pydicom.valuerep import format_number_as_ds

from .errors import UnprocessableInput
from .volume import Volume

__all__ = [
    "read_series",
    "series_geometry",
    "canonical_slice_order",
    "write_series",
    "write_study",
    "volume_from_nifti",
    "volume_to_nifti",
    "SEQUENCE_TAGS",
]

# LPS <-> RAS: negate x and y. The matrix is its own inverse.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

ORIENTATION_TOLERANCE = 1e-4  # on direction cosines
PIXEL_SPACING_TOLERANCE = 1e-4  # mm
SPACING_REL_TOLERANCE = 0.01  # slice spacing: 1 % ...
SPACING_ABS_TOLERANCE = 0.01  # ... or 0.01 mm, whichever is larger
DUPLICATE_TOLERANCE = 1e-3  # mm along the normal


@dataclass(frozen=True)
class _Slice:
    """One 2-D plane of the series: a single-frame instance or one frame of a multi-frame one."""

    dataset: Dataset
    frame: int | None  # 0-based frame index for multi-frame instances, None for single-frame
    position: np.ndarray  # LPS, mm
    orientation: np.ndarray  # 6 direction cosines (row direction, column direction), LPS
    pixel_spacing: np.ndarray  # (row spacing, column spacing), mm
    rows: int
    columns: int
    slope: float
    intercept: float


# ---------------------------------------------------------------------------------------- reading


def _series_label(datasets: Sequence[Dataset]) -> str:
    uid = str(getattr(datasets[0], "SeriesInstanceUID", "") or "") if datasets else ""
    return f"series {uid}" if uid else "series"


def _floats(value: Any, n: int, what: str, label: str) -> np.ndarray:
    try:
        arr = np.asarray([float(v) for v in value], dtype=float)
    except (TypeError, ValueError):
        raise UnprocessableInput(f"{label}: unreadable {what}") from None
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        raise UnprocessableInput(f"{label}: invalid {what}")
    return arr


def _decimal_strings(ds: Dataset, keyword: str) -> Any:
    """The value of a DS element as a list of strings, from the raw bytes when pydicom has not
    converted them yet (creating DSfloat objects costs more than the rest of reading a slice);
    None when absent or empty."""
    if keyword not in ds:
        return None
    element = ds.get_item(keyword)
    value = element.value
    if isinstance(value, bytes) and getattr(element, "VR", None) not in (None, "DS", "IS", "UN"):
        value = ds[keyword].value  # a binary VR (FD...): pydicom converts it
    if isinstance(value, bytes):
        text = value.decode("ascii", "replace").strip(" \x00")
        return text.split("\\") if text else None
    if value is None or value == "":
        return None
    if isinstance(value, (str, bytes, int, float)):  # one converted value (DSfloat is a float)
        return [value]
    return list(value)


def _rescale(item: Dataset) -> tuple[float, float]:
    def one(keyword: str, default: float) -> float:
        values = _decimal_strings(item, keyword)
        return default if not values or values[0] in (None, "") else float(values[0])

    return one("RescaleSlope", 1.0), one("RescaleIntercept", 0.0)


def _single_frame_slices(datasets: Sequence[Dataset], label: str) -> list[_Slice]:
    slices = []
    for ds in datasets:
        if int(ds.get("NumberOfFrames") or 1) > 1:
            raise UnprocessableInput(f"{label}: mixes multi-frame and single-frame instances")
        geometry = {k: _decimal_strings(ds, k) for k in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")}
        for keyword in (*geometry, "Rows", "Columns"):
            if (geometry[keyword] if keyword in geometry else ds.get(keyword)) in (None, ""):
                raise UnprocessableInput(f"{label}: an instance lacks {keyword}")
        if int(ds.get("SamplesPerPixel") or 1) != 1:
            raise UnprocessableInput(f"{label}: colour images are not supported")
        try:
            slope, intercept = _rescale(ds)
        except (TypeError, ValueError):
            raise UnprocessableInput(f"{label}: unreadable RescaleSlope/RescaleIntercept") from None
        slices.append(
            _Slice(
                dataset=ds,
                frame=None,
                position=_floats(geometry["ImagePositionPatient"], 3, "ImagePositionPatient", label),
                orientation=_floats(geometry["ImageOrientationPatient"], 6, "ImageOrientationPatient", label),
                pixel_spacing=_floats(geometry["PixelSpacing"], 2, "PixelSpacing", label),
                rows=int(ds.Rows),
                columns=int(ds.Columns),
                slope=slope,
                intercept=intercept,
            )
        )
    return slices


def _functional_group(ds: Dataset, frame_item: Dataset, sequence: str) -> Dataset | None:
    """The item of a functional group macro for one frame: per-frame first, then shared."""
    for groups in (frame_item, *(ds.get("SharedFunctionalGroupsSequence") or [])):
        seq = groups.get(sequence) if groups is not None else None
        if seq:
            return seq[0]
    return None


def _multi_frame_slices(ds: Dataset, label: str) -> list[_Slice]:
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if not per_frame:
        raise UnprocessableInput(
            f"{label}: multi-frame instance without per-frame functional groups is not supported"
        )
    if int(getattr(ds, "SamplesPerPixel", 1)) != 1:
        raise UnprocessableInput(f"{label}: colour images are not supported")
    n_frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if len(per_frame) != n_frames:
        raise UnprocessableInput(f"{label}: per-frame functional groups do not match NumberOfFrames")
    slices = []
    for index, item in enumerate(per_frame):
        position = _functional_group(ds, item, "PlanePositionSequence")
        orientation = _functional_group(ds, item, "PlaneOrientationSequence")
        measures = _functional_group(ds, item, "PixelMeasuresSequence")
        if position is None or orientation is None or measures is None or "PixelSpacing" not in measures:
            raise UnprocessableInput(f"{label}: multi-frame instance lacks plane position/orientation/pixel spacing")
        transform = _functional_group(ds, item, "PixelValueTransformationSequence")
        slope, intercept = _rescale(transform) if transform is not None else _rescale(ds)
        slices.append(
            _Slice(
                dataset=ds,
                frame=index,
                position=_floats(position.ImagePositionPatient, 3, "ImagePositionPatient", label),
                orientation=_floats(orientation.ImageOrientationPatient, 6, "ImageOrientationPatient", label),
                pixel_spacing=_floats(measures.PixelSpacing, 2, "PixelSpacing", label),
                rows=int(ds.Rows),
                columns=int(ds.Columns),
                slope=slope,
                intercept=intercept,
            )
        )
    return slices


def _collect(datasets: Sequence[Dataset]) -> tuple[list[_Slice], np.ndarray, str]:
    """Validate the series geometry; return its slices sorted along the normal and the RAS affine."""
    datasets = list(datasets)
    label = _series_label(datasets)
    if not datasets:
        raise UnprocessableInput("series: no instances")
    uids = {str(getattr(ds, "SeriesInstanceUID", "")) for ds in datasets}
    if len(uids) > 1:
        raise UnprocessableInput(f"{label}: instances belong to {len(uids)} different series")
    multi = [ds for ds in datasets if "PerFrameFunctionalGroupsSequence" in ds]
    if multi:
        if len(datasets) > 1:
            raise UnprocessableInput(f"{label}: more than one multi-frame instance, or mixed with single-frame ones")
        slices = _multi_frame_slices(multi[0], label)
    else:
        slices = _single_frame_slices(datasets, label)

    if len(slices) < 2:
        raise UnprocessableInput(f"{label}: a volume needs at least 2 slices, got {len(slices)}")

    ref = slices[0]
    for s in slices[1:]:
        if not np.allclose(s.orientation, ref.orientation, atol=ORIENTATION_TOLERANCE, rtol=0):
            raise UnprocessableInput(f"{label}: inconsistent ImageOrientationPatient between slices")
        if (s.rows, s.columns) != (ref.rows, ref.columns):
            raise UnprocessableInput(
                f"{label}: inconsistent image size between slices "
                f"({ref.rows}x{ref.columns} vs {s.rows}x{s.columns})"
            )
        if not np.allclose(s.pixel_spacing, ref.pixel_spacing, atol=PIXEL_SPACING_TOLERANCE, rtol=0):
            raise UnprocessableInput(
                f"{label}: inconsistent PixelSpacing between slices "
                f"({_fmt(ref.pixel_spacing)} vs {_fmt(s.pixel_spacing)} mm)"
            )

    row_dir = ref.orientation[:3]
    col_dir = ref.orientation[3:]
    if (
        abs(np.linalg.norm(row_dir) - 1) > 1e-3
        or abs(np.linalg.norm(col_dir) - 1) > 1e-3
        or abs(np.dot(row_dir, col_dir)) > 1e-3
    ):
        raise UnprocessableInput(f"{label}: ImageOrientationPatient is not two orthonormal directions")
    row_dir = row_dir / np.linalg.norm(row_dir)
    col_dir = col_dir / np.linalg.norm(col_dir)
    normal = np.cross(row_dir, col_dir)
    if np.any(ref.pixel_spacing <= 0):
        raise UnprocessableInput(f"{label}: non-positive PixelSpacing")

    along = np.array([np.dot(s.position, normal) for s in slices])
    order = np.argsort(along, kind="stable")
    slices = [slices[i] for i in order]
    along = along[order]
    gaps = np.diff(along)
    if np.any(gaps < DUPLICATE_TOLERANCE):
        raise UnprocessableInput(f"{label}: duplicate slice positions (more than one slice at the same location)")
    mean_gap = (along[-1] - along[0]) / (len(slices) - 1)
    tolerance = max(SPACING_ABS_TOLERANCE, SPACING_REL_TOLERANCE * mean_gap)
    if gaps.max() - gaps.min() > tolerance:
        raise UnprocessableInput(
            f"{label}: inconsistent slice spacing {gaps.min():.3g}–{gaps.max():.3g} mm "
            "(missing or extra slices?)"
        )

    first = slices[0].position
    step = (slices[-1].position - first) / (len(slices) - 1)  # may be sheared (gantry tilt)
    expected = first + np.arange(len(slices))[:, None] * step
    positions = np.stack([s.position for s in slices])
    if np.abs(positions - expected).max() > tolerance:
        raise UnprocessableInput(f"{label}: slice positions do not lie on a straight line")

    row_spacing, column_spacing = ref.pixel_spacing
    lps = np.eye(4)
    lps[:3, 0] = row_dir * column_spacing  # i: along a row, i.e. the column index
    lps[:3, 1] = col_dir * row_spacing  # j: down a column, i.e. the row index
    lps[:3, 2] = step
    lps[:3, 3] = first
    return slices, LPS_TO_RAS @ lps, label


def _fmt(values: np.ndarray) -> str:
    return "\\".join(f"{v:g}" for v in values)


def series_geometry(datasets: Sequence[Dataset]) -> tuple[list[Dataset], np.ndarray]:
    """Validate a series' geometry; return its instances sorted along the slice normal and the RAS affine.

    For an enhanced multi-frame instance the list holds that one instance (frames are ordered by
    `PerFrameFunctionalGroupsSequence`; their sorted order is internal to `read_series`).
    """
    slices, affine, _ = _collect(datasets)
    if slices[0].frame is not None:
        return [slices[0].dataset], affine
    return [s.dataset for s in slices], affine


_NATIVE_LITTLE_ENDIAN = frozenset({ImplicitVRLittleEndian, ExplicitVRLittleEndian})


def _native_pixels(ds: Dataset) -> np.ndarray | None:
    """Uncompressed little-endian 8/16-bit greyscale pixels read straight from the buffer, or None
    where pydicom's general decoder is needed (compressed, big-endian, multi-frame, signed data
    with unused high bits, short pixel data). A few microseconds instead of about a millisecond
    per slice: it matters for a study of hundreds of instances."""
    meta = getattr(ds, "file_meta", None)
    if meta is None or meta.get("TransferSyntaxUID") not in _NATIVE_LITTLE_ENDIAN or "PixelData" not in ds:
        return None
    if any(ds.get(k) in (None, "") for k in ("BitsAllocated", "BitsStored", "PixelRepresentation", "Rows", "Columns")):
        return None  # pydicom refuses such an instance: let it say so
    try:
        bits_allocated, bits_stored = int(ds.BitsAllocated), int(ds.BitsStored)
        signed = int(ds.PixelRepresentation) == 1
        rows, columns = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames") or 1)
    except (AttributeError, TypeError, ValueError):
        return None
    if bits_allocated not in (8, 16) or frames != 1 or int(ds.get("SamplesPerPixel") or 1) != 1:
        return None
    if not 0 < bits_stored <= bits_allocated or (signed and bits_stored != bits_allocated):
        return None
    dtype = np.dtype(f"<{'i' if signed else 'u'}{bits_allocated // 8}")
    data = ds.PixelData
    expected = rows * columns * dtype.itemsize
    if not isinstance(data, bytes) or len(data) not in (expected, expected + 1):  # + one padding byte
        return None  # short or extra pixel data: pydicom's checks and messages
    pixels = np.frombuffer(data, dtype, count=rows * columns).reshape(rows, columns)
    if bits_stored < bits_allocated and int(pixels.max(initial=0)) >> bits_stored:
        return None  # bits above BitsStored are set (overlays, garbage): let pydicom mask them
    return pixels


def _frame_pixels(ds: Dataset, cache: dict[int, np.ndarray]) -> np.ndarray:
    key = id(ds)
    if key not in cache:
        native = _native_pixels(ds)
        cache[key] = native if native is not None else ds.pixel_array
    return cache[key]


def read_series(datasets: Sequence[Dataset]) -> Volume:
    """Single-frame MR/CT instances of one series (or one enhanced multi-frame instance) -> Volume (float32)."""
    slices, affine, label = _collect(datasets)
    ref = slices[0]
    # Planes are stacked as [k, j, i] and returned transposed: data[i, j, k] is then a
    # Fortran-ordered view (i fastest), NIfTI's own order, without a strided copy.
    stack = np.empty((len(slices), ref.rows, ref.columns), dtype=np.float32)
    exact = True  # integer pixels without rescale: finite by construction
    cache: dict[int, np.ndarray] = {}
    for k, s in enumerate(slices):
        try:
            pixels = _frame_pixels(s.dataset, cache)
        except Exception as exc:  # pydicom raises many kinds for broken or undecodable pixel data
            raise UnprocessableInput(f"{label}: cannot decode pixel data ({type(exc).__name__})") from None
        if s.frame is not None:
            pixels = pixels[s.frame] if pixels.ndim == 3 else pixels
        if pixels.shape != (ref.rows, ref.columns):
            raise UnprocessableInput(f"{label}: pixel data shape {pixels.shape} does not match Rows/Columns")
        if (s.slope, s.intercept) == (1.0, 0.0):
            stack[k] = pixels
            exact = exact and pixels.dtype.kind in "iu"
        else:  # in float64, rounded once to float32; an overflow becomes inf and is refused below
            with np.errstate(over="ignore", invalid="ignore"):
                stack[k] = pixels.astype(np.float64) * s.slope + s.intercept
            exact = False
    if not exact and not np.all(np.isfinite(stack)):
        raise UnprocessableInput(f"{label}: non-finite pixel values")
    data = stack.transpose(2, 1, 0)
    return Volume(data=data, affine=affine)


# ---------------------------------------------------------------------------------------- writing


def canonical_slice_order(volume: Volume) -> Volume:
    """The same voxels, with k reversed if needed so that k points along i x j (what DICOM can express)."""
    a = volume.affine
    if np.linalg.det(a[:3, :3]) > 0:
        return volume
    n = volume.shape[2]
    affine = a.copy()
    affine[:3, 3] = a[:3, 3] + (n - 1) * a[:3, 2]
    affine[:3, 2] = -a[:3, 2]
    return Volume(data=volume.data[:, :, ::-1], affine=affine)


def _ds(value: float) -> str:
    return format_number_as_ds(float(value))


def _scaling(data: np.ndarray) -> tuple[float, float] | None:
    """(slope, intercept) mapping uint16 to data, or None when data are already uint16 integers."""
    lo, hi = float(data.min()), float(data.max())
    if lo >= 0 and hi <= 65535 and np.array_equal(data, np.round(data)):
        return None
    intercept = float(_ds(lo))
    slope = float(_ds((hi - intercept) / 65535.0)) if hi > intercept else 1.0
    # the DS-rounded slope must still cover the range
    while intercept + 65535 * slope < hi:
        slope = float(_ds(slope * (1 + 1e-6)))
    return slope, intercept


def write_series(
    volume: Volume,
    *,
    study_instance_uid: str,
    series_instance_uid: str | None,
    series_number: int,
    series_description: str,
    patient_id: str,
    patient_name: str,
    patient_birth_date: str = "",
    patient_sex: str = "O",
    study_date: str,
    study_time: str,
    accession_number: str = "",
    study_description: str = "",
    frame_of_reference_uid: str,
    extra: dict[str, object] | None = None,
) -> list[Dataset]:
    """Volume -> MR Image Storage single-frame instances (uint16, explicit VR little endian), sorted by k.

    SOP Instance UIDs are derived deterministically from the series UID (a new random one when
    None). `extra` sets further attributes by keyword (EchoTime, RepetitionTime, Manufacturer ...).
    A volume whose affine has a negative determinant is written k-reversed (module docstring).
    """
    volume = canonical_slice_order(volume)
    data = np.asarray(volume.data)
    if not np.all(np.isfinite(data)):
        raise ValueError("volume data must be finite")
    n_i, n_j, n_k = volume.shape
    if n_i > 65535 or n_j > 65535:
        raise ValueError("image too large for DICOM")

    lps = LPS_TO_RAS @ volume.affine
    a_i, a_j, a_k, origin = lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3]
    column_spacing, row_spacing = float(np.linalg.norm(a_i)), float(np.linalg.norm(a_j))
    row_dir, col_dir = a_i / column_spacing, a_j / row_spacing
    if abs(np.dot(row_dir, col_dir)) > 1e-6:
        raise ValueError("DICOM cannot express a volume whose i and j axes are not perpendicular")
    normal = np.cross(row_dir, col_dir)
    spacing_between = float(np.dot(a_k, normal))

    scaling = _scaling(data)
    if scaling is None:
        stored = data.astype(np.uint16)
    else:
        slope, intercept = scaling
        stored = np.clip(np.rint((data.astype(np.float64) - intercept) / slope), 0, 65535).astype(np.uint16)
    # frames: (k, row j, column i), C-contiguous so each slice's bytes are one view
    frames = np.ascontiguousarray(stored.transpose(2, 1, 0))

    series_uid = series_instance_uid or generate_uid()
    # DS values: format_number_as_ds keeps 16 characters, i.e. ~1e-10 relative precision
    orientation = [_ds(v) for v in np.concatenate([row_dir, col_dir])]
    pixel_spacing = [_ds(row_spacing), _ds(column_spacing)]
    vmin, vmax = float(data.min()), float(data.max())
    window_width = max(vmax - vmin, 1.0)
    now = _dt.datetime.now()

    shared: list[tuple[str, object]] = [
        ("SpecificCharacterSet", "ISO_IR 192"),
        ("ImageType", ["ORIGINAL", "PRIMARY", "M", "ND"]),
        ("SOPClassUID", MRImageStorage),
        ("StudyDate", study_date),
        ("SeriesDate", study_date),
        ("ContentDate", study_date),
        ("StudyTime", study_time),
        ("SeriesTime", study_time),
        ("ContentTime", study_time),
        ("AccessionNumber", accession_number),
        ("Modality", "MR"),
        ("Manufacturer", "Glioscope"),
        ("ReferringPhysicianName", ""),
        ("StudyDescription", study_description),
        ("SeriesDescription", series_description),
        ("PatientName", patient_name),
        ("PatientID", patient_id),
        ("PatientBirthDate", patient_birth_date),
        ("PatientSex", patient_sex),
        ("BodyPartExamined", "BRAIN"),
        ("ScanningSequence", "RM"),
        ("SequenceVariant", "NONE"),
        ("ScanOptions", ""),
        ("MRAcquisitionType", "3D"),
        ("SliceThickness", _ds(abs(spacing_between))),
        ("RepetitionTime", ""),
        ("EchoTime", ""),
        ("EchoTrainLength", ""),
        ("SpacingBetweenSlices", _ds(abs(spacing_between))),
        ("PatientPosition", "HFS"),
        ("StudyInstanceUID", study_instance_uid),
        ("SeriesInstanceUID", series_uid),
        ("StudyID", "1"),
        ("SeriesNumber", int(series_number)),
        ("ImageOrientationPatient", orientation),
        ("FrameOfReferenceUID", frame_of_reference_uid),
        ("PositionReferenceIndicator", ""),
        ("SamplesPerPixel", 1),
        ("PhotometricInterpretation", "MONOCHROME2"),
        ("Rows", n_j),
        ("Columns", n_i),
        ("PixelSpacing", pixel_spacing),
        ("BitsAllocated", 16),
        ("BitsStored", 16),
        ("HighBit", 15),
        ("PixelRepresentation", 0),
        ("WindowCenter", _ds((vmin + vmax) / 2)),
        ("WindowWidth", _ds(window_width)),
        ("InstanceCreationDate", now.strftime("%Y%m%d")),
        ("InstanceCreationTime", now.strftime("%H%M%S")),
    ]
    if scaling is not None:
        shared += [("RescaleIntercept", _ds(scaling[1])), ("RescaleSlope", _ds(scaling[0]))]
    overrides = dict(extra or {})
    shared = [(kw, overrides.pop(kw, value)) for kw, value in shared]
    shared += list(overrides.items())

    # Build the shared elements once (value conversion and validation dominate pydicom's cost) and
    # give every instance its own copies: multi-valued ones deep, so no two datasets share a list.
    template = Dataset()
    for keyword, value in shared:
        setattr(template, keyword, value)
    elements = list(template.items())

    out = []
    for k in range(n_k):
        ds = Dataset(
            {tag: copy.deepcopy(elem) if elem.VM > 1 else copy.copy(elem) for tag, elem in elements}
        )
        sop_uid = generate_uid(entropy_srcs=[str(series_uid), "instance", str(k)])
        ds.SOPInstanceUID = sop_uid
        ds.InstanceNumber = k + 1
        position = origin + k * a_k
        ds.ImagePositionPatient = [_ds(v) for v in position]
        ds.SliceLocation = _ds(float(np.dot(position, normal)))
        plane = frames[k]
        ds.SmallestImagePixelValue = int(plane.min())
        ds.LargestImagePixelValue = int(plane.max())
        ds.PixelData = plane.tobytes()

        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        meta.ImplementationVersionName = "GLIOSCOPE_01"
        ds.file_meta = meta
        ds.preamble = b"\x00" * 128
        out.append(ds)
    return out


# Realistic acquisition parameters per sequence (3 T brain protocol).
SEQUENCE_TAGS: dict[str, dict[str, object]] = {
    "T1": {
        "SeriesDescription": "T1 MPRAGE",
        "ProtocolName": "T1 MPRAGE",
        "SequenceName": "*tfl3d1",
        "ScanningSequence": ["GR", "IR"],
        "SequenceVariant": ["SP", "MP"],
        "ScanOptions": "",
        "MRAcquisitionType": "3D",
        "RepetitionTime": "2300",
        "EchoTime": "2.98",
        "InversionTime": "900",
        "FlipAngle": "9",
        "EchoTrainLength": "1",
    },
    "T1c": {
        "SeriesDescription": "T1 MPRAGE POST GD",
        "ProtocolName": "T1 MPRAGE POST GD",
        "SequenceName": "*tfl3d1",
        "ScanningSequence": ["GR", "IR"],
        "SequenceVariant": ["SP", "MP"],
        "ScanOptions": "",
        "MRAcquisitionType": "3D",
        "RepetitionTime": "2300",
        "EchoTime": "2.98",
        "InversionTime": "900",
        "FlipAngle": "9",
        "EchoTrainLength": "1",
        "ContrastBolusAgent": "Gadobutrol",
        "ContrastBolusRoute": "IV",
        "ContrastBolusVolume": "7.5",
    },
    "T2": {
        "SeriesDescription": "T2 TSE AX",
        "ProtocolName": "T2 TSE AX",
        "SequenceName": "*tse2d1_16",
        "ScanningSequence": "SE",
        "SequenceVariant": ["SK", "SP"],
        "ScanOptions": "",
        "MRAcquisitionType": "2D",
        "RepetitionTime": "5000",
        "EchoTime": "96",
        "FlipAngle": "150",
        "EchoTrainLength": "16",
    },
    "FLAIR": {
        "SeriesDescription": "T2 FLAIR AX",
        "ProtocolName": "T2 FLAIR AX",
        "SequenceName": "*tir2d1_16",
        "ScanningSequence": ["SE", "IR"],
        "SequenceVariant": ["SK", "SP", "MP"],
        "ScanOptions": "",
        "MRAcquisitionType": "2D",
        "RepetitionTime": "9000",
        "EchoTime": "81",
        "InversionTime": "2500",
        "FlipAngle": "150",
        "EchoTrainLength": "16",
    },
}
_COMMON_MR_TAGS: dict[str, object] = {
    "Manufacturer": "Glioscope Synthetic",
    "ManufacturerModelName": "Phantom 3T",
    "MagneticFieldStrength": "3",
    "ImagedNucleus": "1H",
    "ImagingFrequency": "123.2",
    "NumberOfAverages": "1",
    "InstitutionName": "Glioscope",
}


def write_study(
    images: dict[str, Volume],
    out_dir: Path | None,
    *,
    patient_id: str,
    patient_name: str,
    study_description: str,
    seed: int = 0,
) -> tuple[str, dict[str, list[Dataset]]]:
    """Write the four sequences ("T1", "T1c", "T2", "FLAIR"; any subset) as one study.

    UIDs, dates and times are deterministic in (seed, patient_id). With `out_dir`, files go to
    out_dir/<series_number>/<instance_number>.dcm. Returns (study_instance_uid, datasets per sequence).
    """
    unknown = sorted(set(images) - set(SEQUENCE_TAGS))
    if unknown:
        raise ValueError(f"unknown sequences {unknown}; expected a subset of {list(SEQUENCE_TAGS)}")
    entropy = [str(seed), patient_id]
    study_uid = generate_uid(entropy_srcs=[*entropy, "study"])
    frame_uid = generate_uid(entropy_srcs=[*entropy, "frame-of-reference"])
    day = _dt.date(2024, 1, 1) + _dt.timedelta(days=seed % 365)
    study_date = day.strftime("%Y%m%d")
    accession = generate_uid(entropy_srcs=[*entropy, "accession"]).split(".")[-1][:12]
    result: dict[str, list[Dataset]] = {}
    for index, name in enumerate(["T1", "T1c", "T2", "FLAIR"]):
        if name not in images:
            continue
        tags = {**_COMMON_MR_TAGS, **SEQUENCE_TAGS[name]}
        description = str(tags.pop("SeriesDescription"))
        series_number = index + 1
        series_time = f"{9 + index // 4:02d}{10 + 6 * index:02d}00"
        tags.update(SeriesTime=series_time, ContentTime=series_time, AcquisitionTime=series_time)
        datasets = write_series(
            images[name],
            study_instance_uid=study_uid,
            series_instance_uid=generate_uid(entropy_srcs=[*entropy, "series", name]),
            series_number=series_number,
            series_description=description,
            patient_id=patient_id,
            patient_name=patient_name,
            study_date=study_date,
            study_time="090000",
            accession_number=accession,
            study_description=study_description,
            frame_of_reference_uid=frame_uid,
            extra=tags,
        )
        result[name] = datasets
        if out_dir is not None:
            folder = Path(out_dir) / str(series_number)
            folder.mkdir(parents=True, exist_ok=True)
            for ds in datasets:
                ds.save_as(folder / f"{int(ds.InstanceNumber)}.dcm", enforce_file_format=True)
    return study_uid, result


# ------------------------------------------------------------------------------------------ NIfTI


def volume_from_nifti(path: Path | str) -> Volume:
    """Load a NIfTI file with its own affine (no reorientation).

    Integer images without scaling keep their dtype (label maps); anything else becomes float32.
    A trailing singleton 4th dimension is dropped.
    """
    import nibabel as nib

    img = nib.load(str(path))
    slope, inter = img.dataobj.slope, img.dataobj.inter  # type: ignore[attr-defined]
    raw_dtype = img.get_data_dtype()
    if np.issubdtype(raw_dtype, np.integer) and slope in (1.0, None) and inter in (0.0, None):
        data = np.asarray(img.dataobj, dtype=raw_dtype)
    else:
        data = img.get_fdata(dtype=np.float32)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise UnprocessableInput(f"NIfTI image must be 3-D, got shape {data.shape}")
    return Volume(data=data, affine=np.asarray(img.affine, dtype=float))


def volume_to_nifti(volume: Volume, path: Path | str, dtype: Any = np.float32) -> Path:
    """Save a Volume as NIfTI-1 (.nii or .nii.gz by suffix) with sform = qform = its affine (mm)."""
    import nibabel as nib

    dtype = np.dtype(dtype)
    data = np.asarray(volume.data)
    if np.issubdtype(dtype, np.integer) and not np.issubdtype(data.dtype, np.integer):
        info = np.iinfo(dtype)
        data = np.clip(np.rint(data), info.min, info.max)
    img = nib.Nifti1Image(data.astype(dtype), volume.affine)
    img.set_sform(volume.affine, code=1)
    img.set_qform(volume.affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    path = Path(path)
    nib.save(img, str(path))
    return path

