"""`Volume` -> DICOM MR Image Storage instances (`write_series`).

A DICOM series can only express affines whose k axis points along i x j: `write_series` writes a
volume with a negative-determinant affine k-reversed (`canonical_slice_order`; glioscope_common.dicom).
"""

from __future__ import annotations

import copy
import datetime as _dt

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, PYDICOM_IMPLEMENTATION_UID, generate_uid
from pydicom.valuerep import format_number_as_ds

from glioscope_common.dicom import LPS_TO_RAS
from glioscope_common.volume import Volume

__all__ = ["canonical_slice_order", "write_series"]


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
