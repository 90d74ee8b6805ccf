#!/usr/bin/env python3
"""The bad-input corpus: files that must be refused with a clear 4xx, leaving nothing stored.

`python tests/data/bad/make_cases.py [out_dir]` writes the files (each <= 100 kB) and `manifest.json`
into `out_dir` (default: tests/data/bad/cases, git-ignored); tests/contract/test_bad_input.py calls
`make_cases()` into a temporary folder. Each case says which service and route it goes to and what
answer is expected (status codes and a substring of the error's detail).
"""

from __future__ import annotations

import gzip
import io
import json
import sys
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, MRImageStorage, generate_uid

MAX_CASE_BYTES = 100 * 1024
INJECTIONS = ["Robert'); DROP TABLE studies;--", "<script>alert(1)</script>", "../../../etc/passwd", "%' OR '1'='1"]


@dataclass
class Upload:
    filename: str  # as sent in the multipart part
    file: str  # the corpus file's name
    content_type: str = "application/dicom"
    repeat: int = 1  # the same file sent this many times (the oversized case)


@dataclass
class Case:
    id: str
    service: str  # gateway | nifti
    method: str
    path: str
    expect: list[int]
    message: str = ""  # a substring of the error detail (case-insensitive)
    uploads: list[Upload] = field(default_factory=list)
    body_file: str | None = None  # raw request body (nifti PUT)
    params: dict[str, str] = field(default_factory=dict)
    json_body: object | None = None
    form: dict[str, str] = field(default_factory=dict)
    admin: bool = False  # sent as the bootstrap admin (admin-only routes), not with the service key


def mr_dataset(rows: int = 16, columns: int = 16, transfer_syntax: str = ExplicitVRLittleEndian,
               study_uid: str | None = None, patient_name: str = "Bad^Input", pixels: bytes | None = None) -> pydicom.Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = transfer_syntax
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.FrameOfReferenceUID = generate_uid()
    ds.PatientName = patient_name
    ds.PatientID = "BAD0001"
    ds.Modality = "MR"
    ds.SeriesDescription = "t1_mprage"
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelSpacing = [1.0, 1.0]
    ds.SliceThickness = 1.0
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [0, 0, 0]
    ds.PixelData = pixels if pixels is not None else bytes(rows * columns * 2)
    return ds


def dicom_bytes(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def zip_of(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def bad_crc_zip(name: str, content: bytes) -> bytes:
    """A stored (uncompressed) zip whose member's bytes no longer match its CRC-32 (one byte flipped)."""
    archive = bytearray(zip_of({name: content}, zipfile.ZIP_STORED))
    at = bytes(archive).index(content) + len(content) // 2
    archive[at] ^= 0xFF
    return bytes(archive)


def nifti(data: np.ndarray, affine: np.ndarray, zooms: tuple[float, ...] | None = None) -> bytes:
    image = nib.Nifti1Image(data, affine)
    if zooms is not None:
        image.header["pixdim"][1:4] = zooms
    return gzip.compress(image.to_bytes(), compresslevel=6)


def encapsulate(frames: list[bytes]) -> bytes:
    from pydicom.encaps import encapsulate as _encapsulate

    return _encapsulate(frames)


STUDY_SERIES = {"T1": "t1_mprage", "T1c": "t1_mprage_post_gd", "T2": "t2_tse", "FLAIR": "t2_flair"}


def four_series_study(garbage_role: str, slices: int = 3) -> dict[str, bytes]:
    """A complete small study (T1, T1c, T2, FLAIR; `slices` 16 x 16 slices each, one geometry) whose
    `garbage_role` series is JPEG 2000 with undecodable pixel data: it passes the sequence and geometry checks
    and reaches the pixel decoding check. {corpus file name: bytes}."""
    study_uid, frame_uid = generate_uid(), generate_uid()
    out = {}
    for role, description in STUDY_SERIES.items():
        series_uid = generate_uid()
        for k in range(slices):
            garbage = role == garbage_role
            ds = mr_dataset(transfer_syntax=JPEG2000Lossless if garbage else ExplicitVRLittleEndian, study_uid=study_uid,
                            pixels=encapsulate([b"\xff\x4f\xff\x51" + bytes(64)]) if garbage else None)
            ds.SeriesInstanceUID, ds.FrameOfReferenceUID = series_uid, frame_uid
            ds.SeriesDescription = description
            ds.MRAcquisitionType = "3D"
            ds.InstanceNumber = k + 1
            ds.ImagePositionPatient = [0, 0, float(k)]
            out[f"j2k_study_{role}_{k}.dcm"] = dicom_bytes(ds)
    return out


def make_cases(out_dir: Path) -> list[Case]:
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, bytes] = {}
    good = dicom_bytes(mr_dataset())
    files["not_dicom.dcm"] = b"hello, this is not DICOM\n" * 20
    files["empty.dcm"] = b""
    files["truncated_header.dcm"] = good[:200]
    files["truncated_pixels.dcm"] = good[:-300]
    files["preamble_only.dcm"] = bytes(128) + b"DICM"
    files["jpeg2000_garbage.dcm"] = dicom_bytes(mr_dataset(transfer_syntax=JPEG2000Lossless,
                                                           pixels=encapsulate([b"\xff\x4f\xff\x51" + bytes(64)])))
    j2k_study = four_series_study("T1")
    files.update(j2k_study)
    no_pixels = mr_dataset()
    del no_pixels.PixelData
    files["missing_pixel_data.dcm"] = dicom_bytes(no_pixels)
    files["absurd_dimensions.dcm"] = dicom_bytes(mr_dataset(rows=65535, columns=65535, pixels=bytes(512)))
    no_uid = mr_dataset()
    del no_uid.SOPInstanceUID
    files["missing_uids.dcm"] = dicom_bytes(no_uid)
    files["injection_patient_name.dcm"] = dicom_bytes(mr_dataset(patient_name="Robert'); DROP TABLE studies;--^<script>"))
    files["two_studies_a.dcm"] = dicom_bytes(mr_dataset())
    files["two_studies_b.dcm"] = dicom_bytes(mr_dataset())
    files["filler_95k.dcm"] = dicom_bytes(mr_dataset(rows=218, columns=218))  # ~95 kB, for the oversized upload
    files["zip_bomb.zip"] = zip_of({"bomb.dcm": bytes(60 * 1024 * 1024)})
    files["zip_traversal.zip"] = zip_of({"../../evil.dcm": good})
    files["zip_absolute.zip"] = zip_of({"/etc/evil.dcm": good})
    files["zip_backslash.zip"] = zip_of({"..\\..\\evil.dcm": good})
    files["zip_nested.zip"] = zip_of({"inner.zip": zip_of({"a.dcm": good})})
    files["zip_corrupt.zip"] = b"PK\x03\x04" + b"\x00garbage" * 50
    files["zip_empty.zip"] = zip_of({})
    files["zip_only_dotfiles.zip"] = zip_of({".DS_Store": b"x", "__MACOSX/._a.dcm": b"y"})
    files["zip_bad_crc.zip"] = bad_crc_zip("bad_crc.dcm", good)
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    nan_affine = affine.copy()
    nan_affine[0, 3] = np.nan
    volume = np.zeros((8, 8, 8), dtype=np.int16)
    files["nan_affine.nii.gz"] = nifti(volume, nan_affine)
    files["nan_zooms.nii.gz"] = nifti(volume, affine, zooms=(np.nan, 1.0, 1.0))
    files["nifti_not_gzip.nii.gz"] = nib.Nifti1Image(volume, affine).to_bytes()
    files["nifti_truncated.nii.gz"] = gzip.compress(nib.Nifti1Image(np.zeros((16, 16, 16), np.float32), affine).to_bytes()[:2000])
    files["nifti_garbage.nii.gz"] = gzip.compress(b"\x00" * 400)

    for name, content in files.items():
        assert len(content) <= MAX_CASE_BYTES, (name, len(content))
        (out_dir / name).write_bytes(content)

    def up(case_id: str, expect: list[int], message: str, *uploads: Upload, form: dict[str, str] | None = None) -> Case:
        return Case(case_id, "gateway", "POST", "/api/studies", expect, message, list(uploads), form=form or {})

    T1 = "sub-bad/ses-1/anat/sub-bad_ses-1_T1w.nii.gz"
    cases = [
        up("not_dicom", [400], "not a DICOM file", Upload("notes.dcm", "not_dicom.dcm")),
        up("empty_file", [400], "empty.dcm: not a DICOM file (no DICM preamble)", Upload("empty.dcm", "empty.dcm")),
        up("truncated_header", [400], "missing SOPClassUID", Upload("t.dcm", "truncated_header.dcm")),
        up("truncated_pixels", [400], "truncated pixel data", Upload("t.dcm", "truncated_pixels.dcm")),
        up("preamble_only", [400], "missing SOPClassUID", Upload("p.dcm", "preamble_only.dcm")),
        # one J2K file alone is refused for the missing sequences before any pixel is decoded
        up("jpeg2000_garbage_single_series_lacks_sequences", [422], "lacks T1, T1c, T2, FLAIR",
           Upload("j2k.dcm", "jpeg2000_garbage.dcm")),
        # the "cannot be decoded" branch: a complete study whose T1 series is undecodable JPEG 2000
        up("jpeg2000_garbage_pixels", [422], "T1 series: its pixel data cannot be decoded (transfer syntax 1.2.840.10008.1.2.4.90",
           *[Upload(name, name) for name in j2k_study]),
        up("missing_pixel_data", [422], "no images", Upload("np.dcm", "missing_pixel_data.dcm")),
        up("absurd_dimensions", [400], "truncated pixel data", Upload("huge.dcm", "absurd_dimensions.dcm")),
        up("missing_uids", [400], "missing SOPInstanceUID", Upload("nouid.dcm", "missing_uids.dcm")),
        # refused as an incomplete study (one slice); what it checks is that the name breaks nothing on the way
        # (parsing, the series list in the message, the audit) and is stored nowhere
        up("injection_in_patient_name", [422], "series found: MR 't1_mprage'", Upload("inj.dcm", "injection_patient_name.dcm")),
        up("two_studies", [400], "exactly one study", Upload("a.dcm", "two_studies_a.dcm"), Upload("b.dcm", "two_studies_b.dcm")),
        up("oversized_upload", [413], "exceeds", Upload("f.dcm", "filler_95k.dcm", repeat=12)),
        up("zip_bomb", [413], "zip bomb", Upload("bomb.zip", "zip_bomb.zip", "application/zip")),
        up("zip_path_traversal", [400], "escapes", Upload("evil.zip", "zip_traversal.zip", "application/zip")),
        up("zip_absolute_path", [400], "unsafe name", Upload("abs.zip", "zip_absolute.zip", "application/zip")),
        up("zip_backslash_path", [400], "unsafe name", Upload("bs.zip", "zip_backslash.zip", "application/zip")),
        up("zip_nested", [400], "nested zip", Upload("nested.zip", "zip_nested.zip", "application/zip")),
        up("zip_corrupt", [400], "corrupt", Upload("corrupt.zip", "zip_corrupt.zip", "application/zip")),
        up("zip_empty", [400], "not a DICOM file", Upload("empty.zip", "zip_empty.zip", "application/zip")),
        up("zip_only_dotfiles", [400], "no files", Upload("dots.zip", "zip_only_dotfiles.zip", "application/zip")),
        up("zip_bad_crc", [400], "'bad_crc.dcm' is corrupt", Upload("crc.zip", "zip_bad_crc.zip", "application/zip")),
        up("wrong_content_type_html", [415], "unsupported content type", Upload("a.dcm", "truncated_pixels.dcm", "text/html")),
        up("wrong_content_type_png", [415], "unsupported content type", Upload("a.png", "not_dicom.dcm", "image/png")),
        up("traversal_in_filename", [400], "passwd: not a DICOM file", Upload("../../../etc/passwd", "not_dicom.dcm")),
        up("project_injection", [400], "project names", Upload("a.dcm", "not_dicom.dcm"), form={"project": "../../x'; --"}),
        Case("no_files_field", "gateway", "POST", "/api/studies", [422], "files", form={"project": "default"}),
        *[Case(f"search_injection_{i}", "gateway", "GET", "/api/studies", [200], params={"search": text})
          for i, text in enumerate(INJECTIONS)],
        Case("search_too_long", "gateway", "GET", "/api/studies", [422], "128", params={"search": "x" * 200}),
        Case("status_unknown", "gateway", "GET", "/api/studies", [422], "status", params={"status": "<script>"}),
        Case("limit_negative", "gateway", "GET", "/api/studies", [422], "limit", params={"limit": "-1"}),
        *[Case(f"path_param_injection_{i}", "gateway", "GET", f"/api/studies/{text}", [404], "no such study")
          for i, text in enumerate(["1.2.3' OR '1'='1", "%3Cscript%3Ealert(1)%3C%3Cscript%3E", "%25%27%20OR%201=1"])],
        Case("path_param_with_slashes", "gateway", "GET", "/api/studies/<script>alert(1)</script>", [404], "not found"),
        Case("job_id_injection", "gateway", "GET", "/api/jobs/'; DROP TABLE jobs;--", [404], "no such job"),
        Case("sequences_injection", "gateway", "PUT", "/api/studies/1.2.3/sequences", [400], "unknown roles",
             json_body={"overrides": {"<script>": "'; DROP TABLE series;--"}}),
        Case("sequences_wrong_shape", "gateway", "PUT", "/api/studies/1.2.3/sequences", [422], "overrides",
             json_body={"overrides": ["not", "a", "mapping"]}),
        Case("audit_since_without_time_zone", "gateway", "GET", "/api/admin/audit", [400], "time zone",
             params={"since": "2026-12-03T10:00:00"}, admin=True),
        Case("audit_export_until_without_time_zone", "gateway", "GET", "/api/admin/audit/export", [400], "time zone",
             params={"until": "2026-12-03 10:00"}, admin=True),
        # The DICOMweb proxy forwards only the routes it parses (issue 18, finding 1): anything else is 404.
        Case("dicomweb_traversal", "gateway", "GET", "/dicom-web/studies/%2E%2E/%2E%2E/tools", [404], "no such DICOMweb resource"),
        Case("dicomweb_double_encoded_find", "gateway", "POST", "/dicom-web/studies/%252e%252e/%252e%252e/tools/find",
             [404], "no such DICOMweb resource"),
        Case("dicomweb_double_encoded_system", "gateway", "GET", "/dicom-web/studies/%252e%252e/%252e%252e/system",
             [404], "no such DICOMweb resource"),
        Case("dicomweb_series_without_study", "gateway", "GET", "/dicom-web/series/1.2.3/metadata", [404],
             "no such DICOMweb resource"),
        Case("dicomweb_post_not_stow", "gateway", "POST", "/dicom-web/tools/reset", [404], "no such DICOMweb resource"),
        Case("nifti_nan_affine", "nifti", "PUT", f"/api/nifti/files/{T1}", [400], "NaN", body_file="nan_affine.nii.gz"),
        Case("nifti_nan_zooms", "nifti", "PUT", f"/api/nifti/files/{T1}", [400], "finite", body_file="nan_zooms.nii.gz"),
        Case("nifti_not_gzip", "nifti", "PUT", f"/api/nifti/files/{T1}", [400], "gzip", body_file="nifti_not_gzip.nii.gz"),
        Case("nifti_truncated", "nifti", "PUT", f"/api/nifti/files/{T1}", [400], "NIfTI is truncated", body_file="nifti_truncated.nii.gz"),
        Case("nifti_garbage", "nifti", "PUT", f"/api/nifti/files/{T1}", [400], "NIfTI", body_file="nifti_garbage.nii.gz"),
        # percent-encoded dot segments: a literal "../" is resolved by the HTTP client before the service sees it
        Case("nifti_path_traversal", "nifti", "PUT", "/api/nifti/files/sub-bad/%2E%2E/%2E%2E/%2E%2E/etc/passwd.nii.gz",
             [400], "'.' and '..' path segments are not allowed", body_file="nan_zooms.nii.gz"),
    ]
    (out_dir / "manifest.json").write_text(json.dumps([asdict(c) for c in cases], indent=1))
    return cases


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "cases"
    made = make_cases(target)
    print(f"{len(made)} cases in {target}")
