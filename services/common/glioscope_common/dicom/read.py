"""DICOM series -> `Volume`: geometry validation (`series_geometry`) and pixel decoding (`read_series`).

The geometry convention is the package's (glioscope_common.dicom). Error messages name the series
UID and the geometric problem only, never patient data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from glioscope_common.dicom import LPS_TO_RAS
from glioscope_common.errors import UnprocessableInput
from glioscope_common.volume import Volume

__all__ = ["read_series", "series_geometry"]

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
